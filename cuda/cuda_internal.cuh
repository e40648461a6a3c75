// Shared by the CUDA back end's files (never by lib/): the back end's state,
// error recording and the cuBLASLt path's interface; launch sizes, the
// launch and the device helpers come from cuda_helpers.cuh, the kernel files'
// ops from cuda_kernels.cuh (both also read by cuda/emu).
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


#include "cuda_helpers.cuh"

// The launch's dynamic shared memory, as floats (a function, not an extern
// __shared__ array in each kernel, so that cuda/emu can supply it).
__device__ __forceinline__ float *cuda_dynamic_smem()
{
    extern __shared__ float cuda_smem[];
    return cuda_smem;
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

#include "cuda_kernels.cuh"

#endif
