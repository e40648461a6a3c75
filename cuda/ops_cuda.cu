// The CUDA back end of ops.h. This first version holds memory management,
// cuBLAS matrix products (fp32, TF32 off: the CPU parity mode) and the
// elementwise kernels; the remaining ops are left NULL, and backend_create
// refuses the back end, naming them, until they are written.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "ops/ops.h"
}

namespace {

struct cuda_impl {
    cublasHandle_t cublas;
    cudaStream_t stream;
    cudaError_t first_error;
};

cuda_impl *impl_of(backend *be) { return static_cast<cuda_impl *>(be->impl); }

void check(backend *be, cudaError_t err)
{
    cuda_impl *c = impl_of(be);
    if (err != cudaSuccess && c->first_error == cudaSuccess)
        c->first_error = err;
}

float *fp(tensor t) { return static_cast<float *>(t.data); }
const float *cfp(tensor t) { return static_cast<const float *>(t.data); }
int64_t numel(tensor t) { return tensor_numel(t); }
int blocks_for(int64_t n, int threads = 256) { return (int)((n + threads - 1) / threads); }

/* ---- memory ---- */

void *cu_alloc(backend *be, size_t bytes)
{
    void *p = nullptr;
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
    if (err != cudaSuccess) {
        check(be, err);
        return nullptr;
    }
    return p;
}

void cu_free(backend *be, void *p) { check(be, cudaFree(p)); }

void cu_upload(backend *be, void *dst, const void *src, size_t n)
{
    check(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, impl_of(be)->stream));
    check(be, cudaStreamSynchronize(impl_of(be)->stream));
}

void cu_download(backend *be, void *dst, const void *src, size_t n)
{
    check(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, impl_of(be)->stream));
    check(be, cudaStreamSynchronize(impl_of(be)->stream));
}

void cu_copy(backend *be, void *dst, const void *src, size_t n)
{
    check(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, impl_of(be)->stream));
}

void cu_zero(backend *be, void *dst, size_t n) { check(be, cudaMemsetAsync(dst, 0, n, impl_of(be)->stream)); }

void cu_synchronize(backend *be) { check(be, cudaStreamSynchronize(impl_of(be)->stream)); }

/* ---- kernels ---- */

__global__ void k_fill_rows(float *out, const float *row, int64_t rows, int64_t cols)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * cols)
        out[i] = row[i % cols];
}

__global__ void k_column_sums_add(float *dst, const float *src, int64_t rows, int64_t cols)
{
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols)
        return;
    float acc = 0.0f;
    for (int64_t r = 0; r < rows; r++)
        acc += src[r * cols + c];
    dst[c] += acc;
}

__global__ void k_gelu_forward(float *y, const float *x, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

__global__ void k_gelu_backward(float *dx, const float *dy, const float *x, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}

__global__ void k_add(float *out, const float *a, const float *b, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = a[i] + b[i];
}

__global__ void k_scale(float *x, float s, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] *= s;
}

__global__ void k_fill(float *x, float v, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = v;
}

__global__ void k_ema(float *t, const float *s, float m, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        t[i] = t[i] * m + s[i] * (1.0f - m);
}

/* ---- ops ---- */

void cu_matmul(backend *be, tensor c, tensor a, tensor b, int trans_a, int trans_b, float alpha, float beta)
{
    int batched = c.ndim == 3;
    int64_t batch = batched ? c.shape[0] : 1;
    int64_t m = c.shape[c.ndim - 2], n = c.shape[c.ndim - 1];
    int64_t a_rows = a.shape[a.ndim - 2], a_cols = a.shape[a.ndim - 1], b_cols = b.shape[b.ndim - 1];
    int64_t k = trans_a ? a_rows : a_cols;
    long long sa = batched && a.ndim == 3 ? a_rows * a_cols : 0;
    long long sb = batched && b.ndim == 3 ? b.shape[b.ndim - 2] * b_cols : 0;
    /* row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T */
    cublasSgemmStridedBatched(impl_of(be)->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                              trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m, (int)k, &alpha, cfp(b),
                              (int)b_cols, sb, cfp(a), (int)a_cols, sa, &beta, fp(c), (int)n, m * n, (int)batch);
}

void cu_linear_forward(backend *be, tensor out, tensor in, tensor w, tensor bias)
{
    int64_t m = tensor_rows(in), k = tensor_cols(in), n = w.shape[0];
    float one = 1.0f, beta = 0.0f;
    if (tensor_present(bias)) {
        k_fill_rows<<<blocks_for(m * n), 256, 0, impl_of(be)->stream>>>(fp(out), cfp(bias), m, n);
        beta = 1.0f;
    }
    cublasSgemm(impl_of(be)->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)m, (int)k, &one, cfp(w), (int)k, cfp(in),
                (int)k, &beta, fp(out), (int)n);
}

void cu_linear_backward(backend *be, tensor din, int accumulate, tensor dw, tensor dbias, tensor dout, tensor in,
                        tensor w)
{
    int64_t m = tensor_rows(dout), n = tensor_cols(dout), k = w.shape[1];
    float one = 1.0f, beta_in = accumulate ? 1.0f : 0.0f;
    cublasHandle_t h = impl_of(be)->cublas;
    if (tensor_present(din))
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, (int)k, (int)m, (int)n, &one, cfp(w), (int)k, cfp(dout), (int)n,
                    &beta_in, fp(din), (int)k);
    if (tensor_present(dw))
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, (int)k, (int)n, (int)m, &one, cfp(in), (int)k, cfp(dout), (int)n,
                    &one, fp(dw), (int)k);
    if (tensor_present(dbias))
        k_column_sums_add<<<blocks_for(n), 256, 0, impl_of(be)->stream>>>(fp(dbias), cfp(dout), m, n);
}

void cu_gelu_forward(backend *be, tensor out, tensor in)
{
    k_gelu_forward<<<blocks_for(numel(in)), 256, 0, impl_of(be)->stream>>>(fp(out), cfp(in), numel(in));
}

void cu_gelu_backward(backend *be, tensor din, tensor dout, tensor in)
{
    k_gelu_backward<<<blocks_for(numel(in)), 256, 0, impl_of(be)->stream>>>(fp(din), cfp(dout), cfp(in), numel(in));
}

void cu_add(backend *be, tensor out, tensor a, tensor b)
{
    k_add<<<blocks_for(numel(out)), 256, 0, impl_of(be)->stream>>>(fp(out), cfp(a), cfp(b), numel(out));
}

void cu_accumulate(backend *be, tensor acc, tensor x) { cu_add(be, acc, acc, x); }

void cu_scale(backend *be, tensor x, float s)
{
    k_scale<<<blocks_for(numel(x)), 256, 0, impl_of(be)->stream>>>(fp(x), s, numel(x));
}

void cu_fill(backend *be, tensor x, float v)
{
    k_fill<<<blocks_for(numel(x)), 256, 0, impl_of(be)->stream>>>(fp(x), v, numel(x));
}

void cu_ema(backend *be, tensor target, tensor source, float momentum)
{
    k_ema<<<blocks_for(numel(target)), 256, 0, impl_of(be)->stream>>>(fp(target), cfp(source), momentum,
                                                                      numel(target));
}

backend_ops make_ops()
{
    backend_ops o = {};
    o.alloc = cu_alloc;
    o.free = cu_free;
    o.upload = cu_upload;
    o.download = cu_download;
    o.copy = cu_copy;
    o.zero = cu_zero;
    o.synchronize = cu_synchronize;
    o.matmul = cu_matmul;
    o.linear_forward = cu_linear_forward;
    o.linear_backward = cu_linear_backward;
    o.gelu_forward = cu_gelu_forward;
    o.gelu_backward = cu_gelu_backward;
    o.add = cu_add;
    o.accumulate = cu_accumulate;
    o.scale = cu_scale;
    o.fill = cu_fill;
    o.ema = cu_ema;
    return o;
}

const backend_ops cuda_ops = make_ops();

} // namespace

extern "C" int cuda_backend_create(backend **out, char *msg, size_t cap)
{
    *out = nullptr;
    cuda_impl *c = static_cast<cuda_impl *>(calloc(1, sizeof(cuda_impl)));
    backend *be = static_cast<backend *>(calloc(1, sizeof(backend)));
    if (!c || !be) {
        snprintf(msg, cap, "out of memory");
        free(c);
        free(be);
        return 1;
    }
    cudaError_t err = cudaStreamCreate(&c->stream);
    if (err != cudaSuccess) {
        snprintf(msg, cap, "cannot create a CUDA stream: %s", cudaGetErrorString(err));
        free(c);
        free(be);
        return 1;
    }
    if (cublasCreate(&c->cublas) != CUBLAS_STATUS_SUCCESS) {
        snprintf(msg, cap, "cannot initialise cuBLAS");
        cudaStreamDestroy(c->stream);
        free(c);
        free(be);
        return 1;
    }
    cublasSetStream(c->cublas, c->stream);
    /* fp32 parity mode: no TF32 tensor-core rounding */
    cublasSetMathMode(c->cublas, CUBLAS_DEFAULT_MATH);
    be->ops = &cuda_ops;
    be->kind = BACKEND_CUDA;
    be->name = "cuda";
    be->impl = c;
    *out = be;
    return 0;
}

extern "C" void cuda_backend_destroy(backend *be)
{
    if (!be)
        return;
    cuda_impl *c = impl_of(be);
    cublasDestroy(c->cublas);
    cudaStreamDestroy(c->stream);
    free(c);
    free(be);
}
