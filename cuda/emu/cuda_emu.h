// Runs CUDA kernels on CPU threads, to check them where there is no GPU:
// one host thread per CUDA thread, one block at a time. __syncthreads is a
// barrier of the block's threads, the warp reductions exchange values
// through a barrier of the warp's 32, and dynamic shared memory is one
// buffer filled with NaN before each block (a value read before it is
// written shows as NaN), the bytes past the launch's size checked unchanged
// after it. Launches check what a GPU would refuse: more than 1024 threads,
// more than 48 KB of dynamic shared memory unless cudaFuncSetAttribute
// raised the kernel's limit, more than 227 KB (Hopper) in any case.
//
// Include it before a cuda/*.cu file: it defines cuda_internal.cuh's guard
// and what that header gives the kernels (the file must launch through
// cudaLaunchKernelEx and record errors through cuda_record). Slow (thousands
// of thread switches per block): for test shapes, not for timing.
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
#include <vector>

extern "C" {
#include "ops/ops.h"
}

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
typedef void *cudaStream_t;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorInvalidConfiguration = 9 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
struct cudaLaunchConfig_t {
    dim3 gridDim, blockDim;
    size_t dynamicSmemBytes;
    cudaStream_t stream;
    void *attrs;
    unsigned numAttrs;
};

// The emulated thread's coordinates.
extern thread_local dim3 threadIdx, blockIdx;
extern thread_local dim3 blockDim, gridDim;

static inline int min(int a, int b) { return a < b ? a : b; }

// ---- what cuda_internal.cuh gives the kernels and their host code --------

// The first error recorded (an argument the kernels refuse, a launch a GPU
// would refuse), with the op's name; emu_clear_error forgets it.
extern char emu_error[512];
void emu_clear_error();
void cuda_record_invalid(backend *be, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cuda_record(backend *be, cudaError_t err, const char *op);
static inline cudaStream_t cuda_stream(backend *be) { return be->impl; }
static inline float *cuda_f32(tensor t) { return static_cast<float *>(t.data); }
static inline const float *cuda_cf32(tensor t) { return static_cast<const float *>(t.data); }
static inline bool cuda_dropout_keep(uint64_t seed, uint64_t i, uint32_t threshold)
{
    return dropout_hash(seed, i) >= threshold;
}
static inline uint32_t cuda_dropout_threshold(float p) { return (uint32_t)((double)p * 4294967296.0); }

// The warp's lanes exchange v with lane ^ offset.
float emu_shfl_xor(float v, int offset);
static inline float cuda_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += emu_shfl_xor(v, o);
    return v;
}
static inline float cuda_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, emu_shfl_xor(v, o));
    return v;
}
void __syncthreads();

// ---- launches ---------------------------------------------------------------

#define EMU_SMEM_LIMIT (227 * 1024)
// The dynamic shared memory every block sees: the including file defines
// the array its kernels declare `extern __shared__` (with __shared__ gone,
// the declaration names it), EMU_SMEM_LIMIT bytes, and hands it over here.
void emu_set_shared_memory(float *buf, size_t bytes);

// Limits raised by cudaFuncSetAttribute, per kernel.
extern std::map<const void *, int> emu_smem_limits;

template <typename T> cudaError_t cudaFuncSetAttribute(T *kernel, cudaFuncAttribute attr, int value)
{
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > EMU_SMEM_LIMIT)
        return cudaErrorInvalidValue;
    emu_smem_limits[(const void *)kernel] = value;
    return cudaSuccess;
}

// Runs body() as every thread of every block, block after block, on `smem`.
void emu_run_grid(const cudaLaunchConfig_t &cfg, void (*body)(void *), void *ctx);

template <typename... Params, typename... Args>
cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t *cfg, void (*kernel)(Params...), Args &&...args)
{
    unsigned threads = cfg->blockDim.x * cfg->blockDim.y * cfg->blockDim.z;
    auto limit = emu_smem_limits.find((const void *)kernel);
    size_t allowed = limit == emu_smem_limits.end() ? 48 * 1024 : (size_t)limit->second;
    if (threads == 0 || threads > 1024 || threads % 32 || cfg->dynamicSmemBytes > allowed)
        return cudaErrorInvalidConfiguration;
    auto call = [&]() { kernel(args...); };
    emu_run_grid(*cfg, [](void *c) { (*static_cast<decltype(call) *>(c))(); }, &call);
    return cudaSuccess;
}

#endif
