// Runs CUDA kernels on CPU threads, to check them where there is no GPU:
// one host thread per CUDA thread, one block at a time (the threads of a
// launch are made once and step through its blocks together). __syncthreads
// is a barrier of the block's threads (a thread that returns leaves it, as on
// the GPU), the warp shuffles exchange values through a barrier of the warp's
// 32 lanes (a shuffle with a lane that returned, or with a mask other than
// the lanes taking part, is recorded as an error). Shared memory is poisoned
// with NaN before each block (a value read before it is written shows as
// NaN): the dynamic buffer, whose bytes past the launch's size are checked
// unchanged after it, and static __shared__ arrays, which become function
// statics in the section `emu_shared` (GCC ignores the section of a static in
// a template instance: such an array is shared but not poisoned). Launches
// check what a GPU would refuse: more than 1024 threads, more than 48 KB of
// dynamic shared memory unless cudaFuncSetAttribute raised the kernel's
// limit, more than 227 KB (Hopper) in any case.
//
// Include it before a cuda/*.cu file: it defines cuda_internal.cuh's guard
// and gives the kernels and their host code what that header gives them,
// cuda_helpers.cuh included (the file must launch through cuda_launch);
// cuda/emu/include stands in for the CUDA headers a file includes by name. Floating point is the host's: no
// multiply-add contraction (build with -ffp-contract=off, as nvcc's __f*_rn
// intrinsics ask), glibc's expf and erff, not the GPU's. Slow (a thread
// switch per barrier): for test shapes, not for timing.
#ifndef ALBEF_CUDA_EMU_CUDA_EMU_H
#define ALBEF_CUDA_EMU_CUDA_EMU_H
#define ALBEF_CUDA_CUDA_INTERNAL_CUH /* the real header (and the CUDA headers) stay out */

#include <barrier>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>
#include <utility>
#include <vector>

extern "C" {
#include "ops/ops.h"
}

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ __attribute__((section("emu_shared"))) static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
typedef void *cudaStream_t;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorInvalidConfiguration = 9 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
struct cudaLaunchConfig_t {
    dim3 gridDim, blockDim;
    size_t dynamicSmemBytes;
    cudaStream_t stream;
    void *attrs;
    unsigned numAttrs;
};

// The emulated thread's coordinates: plain structs (CUDA's uint3), defined
// here (inline), so that no file reads them through a TLS wrapper (GCC's
// null check after one misfires once the linker relaxes the TLS access).
struct uint3 {
    unsigned x, y, z;
};
inline thread_local uint3 threadIdx, blockIdx, blockDim, gridDim;

static inline int min(int a, int b) { return a < b ? a : b; }

// ---- device built-ins ------------------------------------------------------

void __syncthreads();
int __syncthreads_or(int predicate);

// The launch's dynamic shared memory (cuda_internal.cuh's cuda_dynamic_smem).
float *emu_dynamic_shared_memory();
static inline float *cuda_dynamic_smem() { return emu_dynamic_shared_memory(); }
void __syncwarp(unsigned mask = 0xffffffffu);

// The warp's lanes in `mask` (all of those that have not returned) each give
// `bits` and get those of lane `src` (their own when src is out of range).
uint64_t emu_warp_exchange(unsigned mask, uint64_t bits, int src, const char *what);
static inline unsigned emu_lane() { return ((threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x) % 32; }

template <typename T> T emu_shfl(unsigned mask, T v, int src, const char *what)
{
    static_assert(sizeof(T) <= sizeof(uint64_t), "shuffles move up to 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = emu_warp_exchange(mask, bits, src, what);
    memcpy(&v, &bits, sizeof v);
    return v;
}
// width: the lanes form segments of `width` (a power of two up to 32)
template <typename T> T __shfl_sync(unsigned mask, T v, int lane, int width = 32)
{
    return emu_shfl(mask, v, (int)(emu_lane() & ~(unsigned)(width - 1)) + (lane & (width - 1)), "__shfl_sync");
}
// xor may read an earlier segment, not a later one (PTX shfl.bfly: the lane
// must not pass the end of the reader's segment)
template <typename T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32)
{
    int me = (int)emu_lane(), src = me ^ lane_mask;
    return emu_shfl(mask, v, src <= (me | (width - 1)) ? src : me, "__shfl_xor_sync");
}
template <typename T> T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    int me = (int)emu_lane(), src = me + (int)delta;
    return emu_shfl(mask, v, (src & ~(width - 1)) == (me & ~(width - 1)) ? src : me, "__shfl_down_sync");
}
template <typename T> T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    int me = (int)emu_lane(), src = me - (int)delta;
    return emu_shfl(mask, v, src >= 0 && (src & ~(width - 1)) == (me & ~(width - 1)) ? src : me, "__shfl_up_sync");
}

static inline int atomicOr(int *p, int v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }

static inline float __int_as_float(int v)
{
    float f;
    memcpy(&f, &v, sizeof f);
    return f;
}
static inline int __float_as_int(float f)
{
    int v;
    memcpy(&v, &f, sizeof v);
    return v;
}
// Round-to-nearest arithmetic: the host's (the build forbids contraction);
// __expf is glibc's (expf), not the GPU's approximation.
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double cospi(double x) { return cos(3.14159265358979323846 * x); }

// cuda_bf16.h and cuda_fp16.h: conversions round to nearest even, as the
// GPU's cvt.rn; a NaN becomes the canonical 0x7fff (bf16) / 0x7fff (fp16).
struct __nv_bfloat16 {
    uint16_t x;
};
struct __half {
    uint16_t x;
};
static inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return {0x7fff};
    u += 0x7fffu + ((u >> 16) & 1u);
    return {(uint16_t)(u >> 16)};
}
static inline float __bfloat162float(__nv_bfloat16 h)
{
    uint32_t u = (uint32_t)h.x << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline __half __float2half_rn(float f)
{
    if (std::isnan(f))
        return {0x7fff};
    _Float16 h = (_Float16)f; /* IEEE binary16, nearest even */
    __half r;
    memcpy(&r.x, &h, sizeof r.x);
    return r;
}
static inline float __half2float(__half h)
{
    _Float16 v;
    memcpy(&v, &h.x, sizeof v);
    return (float)v;
}

// ---- the runtime -----------------------------------------------------------

// Copies run at once (one stream, in order); streams are not emulated.
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream);
// Launch failures are recorded by cuda_launch, so there is never one left.
static inline cudaError_t cudaGetLastError() { return cudaSuccess; }

#define EMU_SMEM_LIMIT (227 * 1024)

// Limits raised by cudaFuncSetAttribute, per kernel.
extern std::map<const void *, int> emu_smem_limits;

template <typename T> cudaError_t cudaFuncSetAttribute(T *kernel, cudaFuncAttribute attr, int value)
{
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > EMU_SMEM_LIMIT)
        return cudaErrorInvalidValue;
    emu_smem_limits[(const void *)kernel] = value;
    return cudaSuccess;
}

// Runs body(ctx) as every thread of every block, block after block.
void emu_run_grid(const cudaLaunchConfig_t &cfg, void (*body)(void *), void *ctx);

template <typename... Params, typename... Args>
cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t *cfg, void (*kernel)(Params...), Args &&...args)
{
    unsigned threads = cfg->blockDim.x * cfg->blockDim.y * cfg->blockDim.z;
    auto limit = emu_smem_limits.find((const void *)kernel);
    size_t allowed = limit == emu_smem_limits.end() ? 48 * 1024 : (size_t)limit->second;
    if (threads == 0 || threads > 1024 || threads % 32 || cfg->dynamicSmemBytes > allowed || cfg->gridDim.x == 0 ||
        cfg->gridDim.y == 0 || cfg->gridDim.z == 0 || cfg->gridDim.y > 65535 || cfg->gridDim.z > 65535)
        return cudaErrorInvalidConfiguration;
    // the arguments converted to the kernel's parameter types, as CUDA's template does
    return [&](Params... coerced) {
        auto call = [&]() { kernel(coerced...); };
        emu_run_grid(*cfg, [](void *c) { (*static_cast<decltype(call) *>(c))(); }, &call);
        return cudaSuccess;
    }(std::forward<Args>(args)...);
}

// ---- what cuda_internal.cuh gives the kernels and their host code --------

// The back end's state, as far as the kernels' host code reads it.
struct cuda_impl {
    cudaStream_t stream;
    int num_sms;
    void *scratch;
    size_t scratch_bytes;
    int *device_status;
};

// An emulated CUDA back end over `ops` (which the caller fills with the
// cuda_* functions it checks): host memory, the reductions' scratch of the
// real back end's size, the SM count `num_sms` (small: grid-stride loops then
// take several turns). emu_take_status returns and clears the kernels'
// out-of-range bits.
void emu_backend_init(backend *be, backend_ops *ops, int num_sms);
int emu_take_status(backend *be);

// The first error recorded (an argument the kernels refuse, a launch a GPU
// would refuse, a shuffle that would be undefined), with the op's name;
// emu_clear_error forgets it.
extern char emu_error[512];
void emu_clear_error();
void cuda_record_invalid(backend *be, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cuda_record(backend *be, cudaError_t err, const char *op);
static inline cuda_impl *cuda_impl_of(backend *be) { return static_cast<cuda_impl *>(be->impl); }
static inline cudaStream_t cuda_stream(backend *be) { return cuda_impl_of(be)->stream; }
static inline int *cuda_device_status(backend *be) { return cuda_impl_of(be)->device_status; }
static inline void cuda_check_launch(backend *be, const char *op) { cuda_record(be, cudaGetLastError(), op); }

#include "../cuda_helpers.cuh"
#include "../cuda_kernels.cuh"

#endif
