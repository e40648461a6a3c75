// What the kernel files share beyond the back end's state: launch sizes, the
// launch itself, the device helpers (warp and block reductions, dropout's
// mask, GELU). Included by cuda_internal.cuh, after the state it reads
// (cuda_impl_of, cuda_stream, cuda_record), and by cuda/emu/cuda_emu.h, which
// supplies the CUDA built-ins on CPU threads: so the emulation runs this code,
// not a copy of it.
#ifndef ALBEF_CUDA_CUDA_HELPERS_CUH
#define ALBEF_CUDA_CUDA_HELPERS_CUH

#define CUDA_STATUS_BAD_TOKEN 1     /* embedding: id outside [0, vocab) */
#define CUDA_STATUS_BAD_ROW_INDEX 2 /* gather_rows / scatter_add_rows: index outside [0, rows) */


// Blocks for a grid-stride loop over n elements: enough to fill the device,
// never more than the work needs.
static inline unsigned cuda_grid(backend *be, int64_t n, int threads = 256)
{
    int64_t want = (n + threads - 1) / threads, cap = (int64_t)cuda_impl_of(be)->num_sms * 32;
    if (want < 1)
        want = 1;
    return (unsigned)(want < cap ? want : cap);
}

// Column reductions (bias and layernorm parameter gradients) sum groups of
// rows into the scratch, then the groups in order. The grouping depends on
// the shape only (the scratch size is a constant), so results do too.
#define CUDA_COL_TILE 32
#define CUDA_ROW_LANES 8
#define CUDA_MAX_ROW_GROUPS 256
#define CUDA_MIN_ROWS_PER_GROUP 32

struct cuda_row_groups {
    int64_t groups, per_group;
};

static inline cuda_row_groups cuda_plan_row_groups(backend *be, int64_t rows, int64_t cols, int arrays)
{
    int64_t groups = (rows + CUDA_MIN_ROWS_PER_GROUP - 1) / CUDA_MIN_ROWS_PER_GROUP;
    if (groups > CUDA_MAX_ROW_GROUPS)
        groups = CUDA_MAX_ROW_GROUPS;
    int64_t fit = (int64_t)(cuda_impl_of(be)->scratch_bytes / (sizeof(float) * (size_t)(cols * arrays)));
    if (groups > fit)
        groups = fit;
    if (groups < 1)
        groups = 1;
    cuda_row_groups g;
    g.per_group = (rows + groups - 1) / groups;
    g.groups = (rows + g.per_group - 1) / g.per_group;
    return g;
}

// The reductions' scratch, or NULL (error recorded) when `bytes` exceed it.
static inline void *cuda_scratch(backend *be, size_t bytes, const char *op)
{
    cuda_impl *c = cuda_impl_of(be);
    if (bytes > c->scratch_bytes) {
        cuda_record_invalid(be, "%s: needs %zu bytes of reduction scratch, the back end has %zu", op, bytes,
                            c->scratch_bytes);
        return nullptr;
    }
    return c->scratch;
}

#define CUDA_GRID_STRIDE(i, n)                                                                                   \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// Activations only products read are fp32, or bf16 in bf16 mode (ops.h's
// "bf16 storage"): the kernels that write or read them are templates over
// the element type T, and access it through these (bf16 stores round to
// nearest even, as the CPU's f32_to_bf16).
__device__ __forceinline__ float cuda_load(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float cuda_load(const __nv_bfloat16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void cuda_store(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void cuda_store(__nv_bfloat16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

static inline float *cuda_f32(tensor t) { return static_cast<float *>(t.data); }
static inline __nv_bfloat16 *cuda_bf16(tensor t) { return static_cast<__nv_bfloat16 *>(t.data); }
static inline const __nv_bfloat16 *cuda_cbf16(tensor t) { return static_cast<const __nv_bfloat16 *>(t.data); }

// An activation of "bf16 storage" must be fp32 or bf16; records an error
// naming the op and returns false otherwise.
static inline bool cuda_check_act(backend *be, tensor t, const char *op, const char *name)
{
    if (t.dtype == DTYPE_F32 || t.dtype == DTYPE_BF16)
        return true;
    cuda_record_invalid(be, "%s: %s is %s, expected F32 or BF16", op, name, dtype_name(t.dtype));
    return false;
}
static inline const float *cuda_cf32(tensor t) { return static_cast<const float *>(t.data); }
static inline const int32_t *cuda_ci32(tensor t) { return static_cast<const int32_t *>(t.data); }

// dropout_keep() of ops.h with its threshold computed once on the host
// (cuda_dropout_threshold): the same hash, so both back ends draw the same
// mask bit for bit.
__device__ __forceinline__ bool cuda_dropout_keep(uint64_t seed, uint64_t i, uint32_t threshold)
{
    return dropout_hash(seed, i) >= threshold;
}

static inline uint32_t cuda_dropout_threshold(float p) { return (uint32_t)((double)p * 4294967296.0); }

// Exact GELU, x * Phi(x), and its derivative, in fp32: the GELU kernels and
// the fused bias + GELU ones share them.
__device__ __forceinline__ float cuda_gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f)); }
__device__ __forceinline__ float cuda_gelu_grad(float v)
{
    float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752440f));
    float pdf = 0.39894228040143267794f * expf(-0.5f * v * v);
    return cdf + v * pdf;
}

__device__ __forceinline__ float cuda_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float cuda_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ double cuda_warp_sum_f64(double v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over a block whose size is a multiple of 32 (at most 1024), in a fixed
// order; every thread gets the result. `shared` holds 32 floats and may be
// reused right after the call returns.
__device__ __forceinline__ float cuda_block_sum(float v, float *shared)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = cuda_warp_sum(v);
    __syncthreads();
    if (lane == 0)
        shared[warp] = v;
    __syncthreads();
    float r = lane < warps ? shared[lane] : 0.0f;
    return cuda_warp_sum(r);
}

__device__ __forceinline__ float cuda_block_max(float v, float *shared)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = cuda_warp_max(v);
    __syncthreads();
    if (lane == 0)
        shared[warp] = v;
    __syncthreads();
    float r = lane < warps ? shared[lane] : -INFINITY;
    return cuda_warp_max(r);
}

// cuda_block_sum in double; `shared` holds 32 doubles.
__device__ __forceinline__ double cuda_block_sum_f64(double v, double *shared)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = cuda_warp_sum_f64(v);
    __syncthreads();
    if (lane == 0)
        shared[warp] = v;
    __syncthreads();
    double r = lane < warps ? shared[lane] : 0.0;
    return cuda_warp_sum_f64(r);
}

// Launches kernel<<<grid, block, smem, the back end's stream>>>(args...)
// and records a refusal, naming the op. Through cudaLaunchKernelEx rather
// than <<< >>> so that cuda/emu can run the kernels on CPU threads. A kernel
// gets more than 48 KB of dynamic shared memory only once its limit is
// raised.
template <typename... Params, typename... Args>
static inline void cuda_launch(backend *be, const char *op, void (*kernel)(Params...), dim3 grid, dim3 block,
                               size_t smem, Args... args)
{
    cudaError_t err = cudaSuccess;
    if (smem > 48 * 1024)
        err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (err == cudaSuccess) {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = grid;
        cfg.blockDim = block;
        cfg.dynamicSmemBytes = smem;
        cfg.stream = cuda_stream(be);
        err = cudaLaunchKernelEx(&cfg, kernel, args...);
    }
    cuda_record(be, err, op);
}

#endif
