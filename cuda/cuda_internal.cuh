// Shared by the CUDA back end's files (never by lib/): the back end's state,
// error recording, launch sizes, device helpers and the op functions that
// ops_cuda.cu puts in the table.
#ifndef ALBEF_CUDA_CUDA_INTERNAL_CUH
#define ALBEF_CUDA_CUDA_INTERNAL_CUH

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

extern "C" {
#include "ops/ops.h"
}

struct cuda_lt_cache;

struct cuda_impl {
    cublasHandle_t cublas;
    cublasLtHandle_t lt;
    cudaStream_t stream;
    int num_sms;
    // Matrix products: TF32 tensor cores (off: the parity mode), bf16 inputs
    // with fp32 accumulation and output (GEMM-level autocast), and the
    // cuBLASLt path for linear layers (bias in the epilogue; off: cuBLAS).
    int tf32, bf16, use_lt;
    cuda_lt_cache *lt_cache;
    // The first thing that went wrong: a CUDA or cuBLAS error, or an argument
    // the kernels cannot handle. Ops never synchronise, so it is kept here
    // and reported by synchronize and cuda_backend_last_error.
    cudaError_t first_error;
    int has_error, error_reported;
    char error_msg[512];
    // Allocated once at creation: cuBLAS's workspace, so that cuBLAS never
    // allocates during a step, and the partial sums of the deterministic
    // reductions (one stream, so ops can share it).
    void *cublas_workspace;
    size_t cublas_workspace_bytes;
    void *scratch;
    size_t scratch_bytes;
    // bf16 mode: the products' inputs rounded to bf16. Grow-only, sized at
    // the first use of each larger product (the first step), then reused.
    void *bf16_scratch;
    size_t bf16_scratch_bytes;
    // Pinned host memory that uploads are copied into, so that the copy to
    // the device runs asynchronously and the caller may reuse its buffer at
    // once; reused from the start after each synchronisation of the stream.
    char *staging;
    size_t staging_bytes, staging_used;
    // Bits that kernels set (atomicOr) when an input is out of range (a token
    // id past the vocabulary, a row index past the table); read and cleared
    // at synchronisation points, then recorded as errors.
    int *device_status;
};

#define CUDA_STATUS_BAD_TOKEN 1     /* embedding: id outside [0, vocab) */
#define CUDA_STATUS_BAD_ROW_INDEX 2 /* gather_rows / scatter_add_rows: index outside [0, rows) */

static inline cuda_impl *cuda_impl_of(backend *be) { return static_cast<cuda_impl *>(be->impl); }
static inline cudaStream_t cuda_stream(backend *be) { return cuda_impl_of(be)->stream; }
static inline int *cuda_device_status(backend *be) { return cuda_impl_of(be)->device_status; }

// Records err (when it is one) as the back end's first error, naming the op.
void cuda_record(backend *be, cudaError_t err, const char *op);
void cuda_record_cublas(backend *be, cublasStatus_t status, const char *op);
// Records an argument error, printf-style: "attention_forward: head_dim 200 > 128".
void cuda_record_invalid(backend *be, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// After a launch: records a launch failure (bad configuration, no kernel image).
static inline void cuda_check_launch(backend *be, const char *op) { cuda_record(be, cudaGetLastError(), op); }

// The reductions' scratch, or NULL (error recorded) when `bytes` exceed it.
void *cuda_scratch(backend *be, size_t bytes, const char *op);

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

#define CUDA_GRID_STRIDE(i, n)                                                                                   \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

static inline float *cuda_f32(tensor t) { return static_cast<float *>(t.data); }
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

// ---- the ops, by file -------------------------------------------------------

// matmul_lt.cu: column-major d (m, n) = op(a) (m, k) op(b) (k, n) + beta d
// (+ bias (m) broadcast over the columns when bias is set). a and b are
// fp32, or bf16 in bf16 mode (ab_type says which); d and bias are fp32.
// bias_grad (n), when set instead, receives the sums of op(b) over k (the
// BGRADB epilogue), written, not added.
struct cuda_lt_gemm {
    int trans_a, trans_b;
    int64_t m, n, k;
    const void *a;
    int64_t lda;
    const void *b;
    int64_t ldb;
    float *d;
    int64_t ldd;
    float beta;
    const float *bias;
    cudaDataType_t ab_type;
    float *bias_grad;
};
int cuda_lt_cache_create(cuda_impl *c);
void cuda_lt_cache_destroy(cuda_impl *c);
// 0 when the product was issued (or its failure recorded); nonzero when
// cuBLASLt cannot do it (no algorithm, misaligned bias, full plan cache):
// the caller then uses cuBLAS, or, for a bias gradient, asks again without.
int cuda_lt_matmul(backend *be, const cuda_lt_gemm *g);

// elementwise.cu
// dst[i] = src[i] rounded to bf16 (nearest even), n elements.
void cuda_round_to_bf16(backend *be, __nv_bfloat16 *dst, const float *src, int64_t n, const char *op);
void cuda_gelu_forward(backend *be, tensor out, tensor in);
void cuda_gelu_backward(backend *be, tensor din, tensor dout, tensor in);
void cuda_bias_gelu_forward(backend *be, tensor out, tensor pre, tensor in, tensor bias);
void cuda_add(backend *be, tensor out, tensor a, tensor b);
void cuda_accumulate(backend *be, tensor acc, tensor x);
void cuda_scale(backend *be, tensor x, float s);
void cuda_clamp(backend *be, tensor x, float lo, float hi);
void cuda_fill(backend *be, tensor x, float value);
void cuda_fill_normal(backend *be, tensor x, float mean, float std, uint64_t seed);
void cuda_dropout_forward(backend *be, tensor out, tensor in, float p, uint64_t seed);
void cuda_dropout_backward(backend *be, tensor din, tensor dout, float p, uint64_t seed);
void cuda_div_scalar_forward(backend *be, tensor out, tensor in, tensor s);
void cuda_cast(backend *be, tensor dst, tensor src);
void cuda_adamw(backend *be, tensor param, tensor grad, tensor m, tensor v, tensor decay, float lr, float beta1,
                float beta2, float eps, float weight_decay, int step);
void cuda_ema(backend *be, tensor target, tensor source, float momentum);

// reduce.cu
// dst[c] += sum over rows of src[r * cols + c], deterministic.
void cuda_column_sums_add(backend *be, float *dst, const float *src, int64_t rows, int64_t cols, const char *op);
// din = dout * GELU'(pre) and dbias += its column sums, in one pass over the
// rows (dbias NULL: the elementwise pass alone).
void cuda_bias_gelu_backward(backend *be, tensor din, tensor dbias, tensor dout, tensor pre);
void cuda_reduce_sum(backend *be, tensor out, tensor in, float scale);
void cuda_reduce_sumsq(backend *be, tensor out, tensor in, float scale);
void cuda_div_scalar_backward(backend *be, tensor din, tensor ds, tensor dout, tensor out, tensor s);
void cuda_l2norm_forward(backend *be, tensor out, tensor norms, tensor in);
void cuda_l2norm_backward(backend *be, tensor din, tensor dout, tensor out, tensor norms);

// layernorm.cu
void cuda_layernorm_forward(backend *be, tensor out, tensor mean, tensor rstd, tensor in, tensor w, tensor b,
                            float eps);
void cuda_layernorm_backward(backend *be, tensor din, int accumulate, tensor dw, tensor db, tensor dout, tensor in,
                             tensor w, tensor mean, tensor rstd);
void cuda_residual_layernorm_forward(backend *be, tensor out, tensor mean, tensor rstd, tensor sum, tensor x,
                                     tensor bias, tensor residual, tensor w, tensor b, float eps, float p,
                                     uint64_t seed);
void cuda_residual_layernorm_backward(backend *be, tensor dsum, int accumulate, tensor dx, tensor dbias, tensor dw,
                                      tensor db, tensor dout, tensor sum, tensor w, tensor mean, tensor rstd, float p,
                                      uint64_t seed);

// attention.cu
void cuda_attention_forward(backend *be, const attn_params *p, tensor out, tensor state, tensor q, tensor k, tensor v,
                            tensor mask);
void cuda_attention_backward(backend *be, const attn_params *p, tensor dq, tensor dk, tensor dv, tensor scratch,
                             tensor dout, tensor out, tensor state, tensor q, tensor k, tensor v, tensor mask);

// xent.cu
void cuda_softmax_rows(backend *be, tensor out, tensor in);
void cuda_softmax_xent(backend *be, const xent_params *p, tensor loss, tensor dlogits, tensor logits, tensor labels,
                       tensor soft);

// rows.cu
void cuda_embedding_forward(backend *be, tensor out, tensor ids, tensor word, tensor pos, tensor type_row);
void cuda_embedding_backward(backend *be, tensor dword, tensor dpos, tensor dtype_row, tensor dout, tensor ids);
void cuda_patchify(backend *be, tensor patches, tensor images, int patch);
void cuda_vit_embed_forward(backend *be, tensor out, tensor patch_tokens, tensor cls, tensor pos);
void cuda_vit_embed_backward(backend *be, tensor dpatch_tokens, tensor dcls, tensor dpos, tensor dout);
void cuda_copy_rows(backend *be, tensor dst, int64_t dst_stride, tensor src, int64_t src_stride, int64_t rows,
                    int64_t cols, int accumulate);
void cuda_gather_rows(backend *be, tensor out, tensor in, tensor idx);
void cuda_scatter_add_rows(backend *be, tensor dst, tensor src, tensor idx);

// sample.cu
void cuda_itm_negatives(backend *be, tensor w, tensor neg, tensor logits, tensor same, int uniform, uint64_t seed);

#endif
