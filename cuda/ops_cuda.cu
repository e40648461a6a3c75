// The CUDA back end of ops.h: its state, memory, errors, the cuBLAS matrix
// products and the op table; the kernels live in the other files of cuda/.
//
// Parity mode by default: fp32 storage and arithmetic, TF32 off, every
// reduction in a fixed order (no atomics), so that two runs agree bit for bit
// and the CPU back end's results are met within float rounding. TF32 and bf16
// modes change the matrix products only. One stream; no allocation and no
// host synchronisation inside ops (download, synchronize and uploads larger
// than the pinned staging memory excepted, and in bf16 mode the first product
// of each larger size, which grows the bf16 input scratch).
#include "cuda_internal.cuh"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "core/log.h"
}
#include "cuda_backend.h"

// Reductions keep their partial sums here; 64 MiB covers 256 row groups of
// the widest rows in the model (the vocabulary, 30522) twice over.
#define SCRATCH_BYTES ((size_t)64 << 20)
#define CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)
// A training step's uploads (a batch of 256 px images is 50 MB at batch 64)
// fit between its synchronisations; larger ones take the synchronous path.
#define STAGING_BYTES ((size_t)256 << 20)

/* ---- errors ---------------------------------------------------------------- */

// Waits for the stream; the staging memory is free again after it.
static cudaError_t stream_sync(cuda_impl *c)
{
    cudaError_t err = cudaStreamSynchronize(c->stream);
    if (err == cudaSuccess)
        c->staging_used = 0;
    return err;
}

static void record_message(backend *be, cudaError_t err, const char *msg)
{
    cuda_impl *c = cuda_impl_of(be);
    if (c->has_error)
        return;
    c->has_error = 1;
    c->first_error = err;
    snprintf(c->error_msg, sizeof c->error_msg, "%s", msg);
}

void cuda_record(backend *be, cudaError_t err, const char *op)
{
    if (err == cudaSuccess)
        return;
    char msg[512];
    snprintf(msg, sizeof msg, "%s: CUDA error %s (%s)", op, cudaGetErrorName(err), cudaGetErrorString(err));
    record_message(be, err, msg);
}

void cuda_record_cublas(backend *be, cublasStatus_t status, const char *op)
{
    if (status == CUBLAS_STATUS_SUCCESS)
        return;
    char msg[512];
    snprintf(msg, sizeof msg, "%s: cuBLAS error %s (%s)", op, cublasGetStatusName(status),
             cublasGetStatusString(status));
    record_message(be, cudaErrorUnknown, msg);
}

void cuda_record_invalid(backend *be, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    record_message(be, cudaErrorInvalidValue, msg);
}

// Turns the kernels' out-of-range bits into a recorded error. Called only
// where the host synchronises anyway.
static void collect_device_status(backend *be)
{
    cuda_impl *c = cuda_impl_of(be);
    int status = 0;
    if (cudaMemcpyAsync(&status, c->device_status, sizeof status, cudaMemcpyDeviceToHost, c->stream) !=
            cudaSuccess ||
        stream_sync(c) != cudaSuccess || !status)
        return;
    cudaMemsetAsync(c->device_status, 0, sizeof status, c->stream);
    if (status & CUDA_STATUS_BAD_TOKEN)
        record_message(be, cudaErrorInvalidValue,
                       "embedding_forward/embedding_backward: a token id outside the vocabulary (its row was "
                       "written as NaN or skipped)");
    if (status & CUDA_STATUS_BAD_ROW_INDEX)
        record_message(be, cudaErrorInvalidValue,
                       "gather_rows/scatter_add_rows: a row index outside the table (its row was written as NaN "
                       "or skipped)");
}

/* ---- bf16 inputs ------------------------------------------------------------ */

// In bf16 mode a product reads bf16 copies of its inputs, rounded into one
// scratch buffer that the op's copies share (each starts 256 bytes aligned).
// The buffer only grows, when a product needs more than every one before it:
// the first training step sizes it, and later steps reuse it as it is.
#define BF16_SLOT 128 // elements per 256 bytes
#define BF16_GROW_BYTES ((size_t)2 << 20)

static size_t bf16_slot(int64_t n) { return ((size_t)n + BF16_SLOT - 1) / BF16_SLOT * BF16_SLOT; }

// Room for `elems` bf16 values (sums of bf16_slot); NULL with an error recorded
// when the device has no memory for it.
static __nv_bfloat16 *bf16_reserve(backend *be, size_t elems, const char *op)
{
    cuda_impl *c = cuda_impl_of(be);
    size_t bytes = elems * sizeof(__nv_bfloat16);
    if (bytes <= c->bf16_scratch_bytes)
        return static_cast<__nv_bfloat16 *>(c->bf16_scratch);
    bytes = (bytes + BF16_GROW_BYTES - 1) / BF16_GROW_BYTES * BF16_GROW_BYTES;
    // the products queued before may still read the old buffer
    cuda_record(be, stream_sync(c), op);
    if (c->bf16_scratch)
        cuda_record(be, cudaFree(c->bf16_scratch), op);
    c->bf16_scratch = nullptr;
    c->bf16_scratch_bytes = 0;
    if (cudaMalloc(&c->bf16_scratch, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        c->bf16_scratch = nullptr;
        cuda_record_invalid(be, "%s: no device memory for %zu bytes of bf16 product inputs", op, bytes);
        return nullptr;
    }
    c->bf16_scratch_bytes = bytes;
    log_debug("CUDA back end: bf16 product inputs: %.1f MiB", (double)bytes / (1 << 20));
    return static_cast<__nv_bfloat16 *>(c->bf16_scratch);
}

// Rounds n floats to bf16 at *at and moves *at past them; returns the copy.
static const __nv_bfloat16 *bf16_copy(backend *be, __nv_bfloat16 **at, const void *src, int64_t n, const char *op)
{
    __nv_bfloat16 *dst = *at;
    cuda_round_to_bf16(be, dst, static_cast<const float *>(src), n, op);
    *at += bf16_slot(n);
    return dst;
}

namespace {

/* ---- memory ---------------------------------------------------------------- */

void *cu_alloc(backend *be, size_t bytes)
{
    void *p = nullptr;
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
    if (err != cudaSuccess) {
        // Out of memory is an answer (NULL), not a back-end failure: callers
        // report it with the size they asked for. Clear the error so that it
        // does not stick to the next launch.
        (void)cudaGetLastError();
        return nullptr;
    }
    return p;
}

void cu_free(backend *be, void *p)
{
    if (p)
        cuda_record(be, cudaFree(p), "free");
}

void cu_upload(backend *be, void *dst, const void *src, size_t n)
{
    cuda_impl *c = cuda_impl_of(be);
    if (!n)
        return;
    // the host buffer may be reused as soon as we return: copy it to pinned
    // memory and let the device fetch it from there, or wait for the copy
    size_t slot = (n + 255) & ~(size_t)255;
    if (c->staging && slot <= c->staging_bytes) {
        if (c->staging_used + slot > c->staging_bytes)
            cuda_record(be, stream_sync(c), "upload");
        if (c->staging_used + slot <= c->staging_bytes) {
            char *stage = c->staging + c->staging_used;
            memcpy(stage, src, n);
            c->staging_used += slot;
            cuda_record(be, cudaMemcpyAsync(dst, stage, n, cudaMemcpyHostToDevice, c->stream), "upload");
            return;
        }
    }
    cuda_record(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->stream), "upload");
    cuda_record(be, stream_sync(c), "upload");
}

void cu_download(backend *be, void *dst, const void *src, size_t n)
{
    if (!n)
        return;
    cuda_record(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, cuda_stream(be)), "download");
    cuda_record(be, stream_sync(cuda_impl_of(be)), "download");
}

void cu_copy(backend *be, void *dst, const void *src, size_t n)
{
    if (n && dst != src)
        cuda_record(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, cuda_stream(be)), "copy");
}

void cu_zero(backend *be, void *dst, size_t n)
{
    if (n)
        cuda_record(be, cudaMemsetAsync(dst, 0, n, cuda_stream(be)), "zero");
}

void cu_synchronize(backend *be)
{
    cuda_impl *c = cuda_impl_of(be);
    cuda_record(be, stream_sync(c), "synchronize");
    cuda_record(be, cudaGetLastError(), "synchronize");
    collect_device_status(be);
    if (c->has_error && !c->error_reported) {
        c->error_reported = 1;
        log_warn("CUDA back end: %s", c->error_msg);
    }
}

/* ---- matrix products ------------------------------------------------------- */

// Row-major C (M, N) = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: every
// call below passes B before A, with the row-major leading dimensions.

void cu_matmul(backend *be, tensor c, tensor a, tensor b, int trans_a, int trans_b, float alpha, float beta)
{
    int batched = c.ndim == 3;
    int64_t batch = batched ? c.shape[0] : 1;
    int64_t m = c.shape[c.ndim - 2], n = c.shape[c.ndim - 1];
    int64_t a_rows = a.shape[a.ndim - 2], a_cols = a.shape[a.ndim - 1];
    int64_t b_rows = b.shape[b.ndim - 2], b_cols = b.shape[b.ndim - 1];
    int64_t k = trans_a ? a_rows : a_cols;
    if ((trans_a ? a_cols : a_rows) != m || (trans_b ? b_cols : b_rows) != k) {
        cuda_record_invalid(be, "matmul: op(a) is (%lld, %lld) and op(b) (%lld, %lld) for c (%lld, %lld)",
                            (long long)(trans_a ? a_cols : a_rows), (long long)k,
                            (long long)(trans_b ? b_cols : b_rows), (long long)(trans_b ? b_rows : b_cols),
                            (long long)m, (long long)n);
        return;
    }
    if (!batch || !m || !n)
        return;
    long long sa = batched && a.ndim == 3 ? a_rows * a_cols : 0;
    long long sb = batched && b.ndim == 3 ? b_rows * b_cols : 0;
    cuda_impl *ci = cuda_impl_of(be);
    if (ci->bf16) {
        __nv_bfloat16 *at = bf16_reserve(be, bf16_slot(tensor_numel(a)) + bf16_slot(tensor_numel(b)), "matmul");
        if (!at)
            return;
        const __nv_bfloat16 *a16 = bf16_copy(be, &at, a.data, tensor_numel(a), "matmul");
        const __nv_bfloat16 *b16 = bf16_copy(be, &at, b.data, tensor_numel(b), "matmul");
        cuda_record_cublas(be,
                           cublasGemmStridedBatchedEx(ci->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                                      trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m, (int)k,
                                                      &alpha, b16, CUDA_R_16BF, (int)b_cols, sb, a16, CUDA_R_16BF,
                                                      (int)a_cols, sa, &beta, cuda_f32(c), CUDA_R_32F, (int)n, m * n,
                                                      (int)batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                           "matmul (bf16)");
        return;
    }
    cuda_record_cublas(be,
                       cublasSgemmStridedBatched(cuda_impl_of(be)->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                                 trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m, (int)k, &alpha,
                                                 cuda_cf32(b), (int)b_cols, sb, cuda_cf32(a), (int)a_cols, sa, &beta,
                                                 cuda_f32(c), (int)n, m * n, (int)batch),
                       "matmul");
}

// One column-major product d = op(a) op(b) + beta d through cuBLAS: plain
// fp32 (cublasSgemm, TF32 as the handle's math mode says) when type is
// CUDA_R_32F, bf16 a and b with fp32 accumulation and output otherwise.
void gemm(backend *be, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, const void *a,
          int64_t lda, const void *b, int64_t ldb, float beta, float *d, int64_t ldd, cudaDataType_t type,
          const char *op)
{
    cublasHandle_t h = cuda_impl_of(be)->cublas;
    float one = 1.0f;
    if (type == CUDA_R_32F)
        cuda_record_cublas(be,
                           cublasSgemm(h, ta, tb, (int)m, (int)n, (int)k, &one, static_cast<const float *>(a),
                                       (int)lda, static_cast<const float *>(b), (int)ldb, &beta, d, (int)ldd),
                           op);
    else
        cuda_record_cublas(be,
                           cublasGemmEx(h, ta, tb, (int)m, (int)n, (int)k, &one, a, type, (int)lda, b, type, (int)ldb,
                                        &beta, d, CUDA_R_32F, (int)ldd, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                           op);
}

// A linear's in: fp32, or bf16 (bf16 storage) in bf16 mode only, where the
// products read bf16; records an error otherwise.
bool product_input_ok(backend *be, tensor in, const char *op)
{
    if (in.dtype == DTYPE_F32 || (in.dtype == DTYPE_BF16 && cuda_impl_of(be)->bf16))
        return true;
    cuda_record_invalid(be, "%s: in is %s%s", op, dtype_name(in.dtype),
                        in.dtype == DTYPE_BF16 ? ", which only bf16 mode reads" : ", expected F32 or BF16");
    return false;
}

__global__ void fill_rows_kernel(float *out, const float *row, int64_t rows, int64_t cols)
{
    CUDA_GRID_STRIDE(i, rows * cols)
    out[i] = row[i % cols];
}

void cu_linear_forward(backend *be, tensor out, tensor in, tensor w, tensor bias)
{
    int64_t m = tensor_rows(in), k = tensor_cols(in), n = w.shape[0];
    if (w.shape[1] != k || tensor_cols(out) != n || tensor_rows(out) != m) {
        cuda_record_invalid(be, "linear_forward: in (%lld, %lld), w (%lld, %lld), out (%lld, %lld)", (long long)m,
                            (long long)k, (long long)w.shape[0], (long long)w.shape[1], (long long)tensor_rows(out),
                            (long long)tensor_cols(out));
        return;
    }
    if (!m || !n || !product_input_ok(be, in, "linear_forward"))
        return;
    const void *w_in = w.data, *x_in = in.data; // what the product reads
    cudaDataType_t type = CUDA_R_32F;
    if (cuda_impl_of(be)->bf16) {
        // a bf16 in (bf16 storage) is read as it is
        int round_in = in.dtype != DTYPE_BF16;
        __nv_bfloat16 *at =
            bf16_reserve(be, bf16_slot(n * k) + (round_in ? bf16_slot(m * k) : 0), "linear_forward");
        if (!at)
            return;
        w_in = bf16_copy(be, &at, w.data, n * k, "linear_forward");
        if (round_in)
            x_in = bf16_copy(be, &at, in.data, m * k, "linear_forward");
        type = CUDA_R_16BF;
    }
    if (cuda_impl_of(be)->use_lt) {
        cuda_lt_gemm g = {1, 0, n, m, k, w_in, k, x_in, k, cuda_f32(out), n, 0.0f,
                          tensor_present(bias) ? cuda_cf32(bias) : nullptr, type, nullptr};
        if (!cuda_lt_matmul(be, &g))
            return;
    }
    float beta = 0.0f;
    if (tensor_present(bias)) {
        // the bias rows first, then the finished product added onto them (the
        // epilogue's alpha * AB + beta * C): the CPU's order, product then bias
        fill_rows_kernel<<<cuda_grid(be, m * n), 256, 0, cuda_stream(be)>>>(cuda_f32(out), cuda_cf32(bias), m, n);
        cuda_check_launch(be, "linear_forward");
        beta = 1.0f;
    }
    gemm(be, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, w_in, k, x_in, k, beta, cuda_f32(out), n, type, "linear_forward");
}

void cu_linear_backward(backend *be, tensor din, int accumulate, tensor dw, tensor dbias, tensor dout, tensor in,
                        tensor w)
{
    int64_t m = tensor_rows(dout), n = tensor_cols(dout), k = w.shape[1];
    float beta_in = accumulate ? 1.0f : 0.0f;
    if (!n || !k)
        return;
    if (!m) {
        // no rows: din is empty and the parameter gradients get nothing
        return;
    }
    if (tensor_present(dw) && !product_input_ok(be, in, "linear_backward"))
        return;
    int lt = cuda_impl_of(be)->use_lt;
    const void *w_in = w.data, *dout_in = dout.data, *x_in = in.data; // what the products read
    cudaDataType_t type = CUDA_R_32F;
    if (cuda_impl_of(be)->bf16 && (tensor_present(din) || tensor_present(dw))) {
        // dout is rounded once for both products; a bf16 in is read as it is
        int round_in = tensor_present(dw) && in.dtype != DTYPE_BF16;
        size_t elems = bf16_slot(m * n) + (tensor_present(din) ? bf16_slot(n * k) : 0) +
                       (round_in ? bf16_slot(m * k) : 0);
        __nv_bfloat16 *at = bf16_reserve(be, elems, "linear_backward");
        if (!at)
            return;
        dout_in = bf16_copy(be, &at, dout.data, m * n, "linear_backward");
        if (tensor_present(din))
            w_in = bf16_copy(be, &at, w.data, n * k, "linear_backward");
        if (round_in)
            x_in = bf16_copy(be, &at, in.data, m * k, "linear_backward");
        type = CUDA_R_16BF;
    }
    // din (M, K) = dout (M, N) w (N, K)
    cuda_lt_gemm g_din = {0, 0, k, m, n, w_in, k, dout_in, n, cuda_f32(din), k, beta_in, nullptr, type, nullptr};
    if (tensor_present(din) && (!lt || cuda_lt_matmul(be, &g_din)))
        gemm(be, CUBLAS_OP_N, CUBLAS_OP_N, k, m, n, w_in, k, dout_in, n, beta_in, cuda_f32(din), k, type,
             "linear_backward (din)");
    // dw (N, K) += dout^T (N, M) in (M, K)
    cuda_lt_gemm g_dw = {0, 1, k, n, m, x_in, k, dout_in, n, cuda_f32(dw), k, 1.0f, nullptr, type, nullptr};
    int dbias_done = 0;
    if (tensor_present(dw)) {
        int issued = 0;
        // with fp32 inputs, the bias gradient comes out of the product's
        // epilogue: written into scratch, then added (the op's +=); bf16
        // inputs keep the column-sum pass over the unrounded dout
        if (lt && tensor_present(dbias) && type == CUDA_R_32F) {
            g_dw.bias_grad = static_cast<float *>(cuda_scratch(be, sizeof(float) * (size_t)n, "linear_backward"));
            if (g_dw.bias_grad && !cuda_lt_matmul(be, &g_dw)) {
                int64_t shape[1] = {n};
                cuda_accumulate(be, dbias, tensor_make(g_dw.bias_grad, DTYPE_F32, 1, shape));
                issued = dbias_done = 1;
            }
            g_dw.bias_grad = nullptr;
        }
        if (!issued && (!lt || cuda_lt_matmul(be, &g_dw)))
            gemm(be, CUBLAS_OP_N, CUBLAS_OP_T, k, n, m, x_in, k, dout_in, n, 1.0f, cuda_f32(dw), k, type,
                 "linear_backward (dw)");
    }
    if (tensor_present(dbias) && !dbias_done)
        cuda_column_sums_add(be, cuda_f32(dbias), cuda_cf32(dout), m, n, "linear_backward (dbias)");
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
    o.attention_forward = cuda_attention_forward;
    o.attention_backward = cuda_attention_backward;
    cuda_kernel_ops_fill(&o);
    return o;
}

const backend_ops cuda_ops = make_ops();

void release(cuda_impl *c)
{
    cuda_lt_cache_destroy(c);
    if (c->lt)
        cublasLtDestroy(c->lt);
    if (c->cublas)
        cublasDestroy(c->cublas);
    if (c->cublas_workspace)
        cudaFree(c->cublas_workspace);
    if (c->scratch)
        cudaFree(c->scratch);
    if (c->bf16_scratch)
        cudaFree(c->bf16_scratch);
    if (c->device_status)
        cudaFree(c->device_status);
    if (c->staging)
        cudaFreeHost(c->staging);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

} // namespace

extern "C" int cuda_backend_create(backend **out, char *msg, size_t cap)
{
    *out = nullptr;
    cuda_impl *c = static_cast<cuda_impl *>(calloc(1, sizeof(cuda_impl)));
    backend *be = static_cast<backend *>(calloc(1, sizeof(backend)));
    if (!c || !be) {
        snprintf(msg, cap, "out of host memory");
        free(c);
        free(be);
        return 1;
    }
    int device = 0;
    cudaError_t err = cudaGetDevice(&device);
    err = err ? err : cudaDeviceGetAttribute(&c->num_sms, cudaDevAttrMultiProcessorCount, device);
    err = err ? err : cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    err = err ? err : cudaMalloc(&c->scratch, SCRATCH_BYTES);
    err = err ? err : cudaMalloc(&c->cublas_workspace, CUBLAS_WORKSPACE_BYTES);
    err = err ? err : cudaMalloc(&c->device_status, sizeof(int));
    err = err ? err : cudaMemsetAsync(c->device_status, 0, sizeof(int), c->stream);
    // without pinned memory, uploads wait for their copies instead
    if (!err && cudaHostAlloc((void **)&c->staging, STAGING_BYTES, cudaHostAllocDefault) != cudaSuccess) {
        (void)cudaGetLastError();
        c->staging = nullptr;
    }
    if (err != cudaSuccess) {
        snprintf(msg, cap, "cannot set up the CUDA back end: %s", cudaGetErrorString(err));
        release(c);
        free(be);
        return 1;
    }
    c->scratch_bytes = SCRATCH_BYTES;
    c->staging_bytes = c->staging ? STAGING_BYTES : 0;
    c->cublas_workspace_bytes = CUBLAS_WORKSPACE_BYTES;
    cublasStatus_t st = cublasCreate(&c->cublas);
    if (st != CUBLAS_STATUS_SUCCESS) {
        c->cublas = nullptr;
        snprintf(msg, cap, "cannot initialise cuBLAS: %s", cublasGetStatusString(st));
        release(c);
        free(be);
        return 1;
    }
    if (cublasLtCreate(&c->lt) != CUBLAS_STATUS_SUCCESS || cuda_lt_cache_create(c)) {
        c->lt = nullptr;
        snprintf(msg, cap, "cannot initialise cuBLASLt");
        release(c);
        free(be);
        return 1;
    }
    st = cublasSetStream(c->cublas, c->stream);
    st = st ? st : cublasSetWorkspace(c->cublas, c->cublas_workspace, c->cublas_workspace_bytes);
    // parity mode: plain fp32 products, no TF32 rounding of the inputs
    st = st ? st : cublasSetMathMode(c->cublas, CUBLAS_DEFAULT_MATH);
    if (st != CUBLAS_STATUS_SUCCESS) {
        snprintf(msg, cap, "cannot configure cuBLAS: %s", cublasGetStatusString(st));
        release(c);
        free(be);
        return 1;
    }
    be->ops = &cuda_ops;
    be->kind = BACKEND_CUDA;
    be->attn_layout = ATTN_LAYOUT_LSE;
    be->act_dtype = DTYPE_F32; // bf16 with --precision bf16 (backend_set_precision)
    be->name = "cuda";
    be->impl = c;
    *out = be;
    return 0;
}

extern "C" void cuda_backend_destroy(backend *be)
{
    if (!be)
        return;
    cudaStreamSynchronize(cuda_stream(be));
    release(cuda_impl_of(be));
    free(be);
}

extern "C" int cuda_backend_last_error(backend *be, char *msg, size_t cap)
{
    cuda_impl *c = cuda_impl_of(be);
    cuda_record(be, stream_sync(c), "synchronize");
    cuda_record(be, cudaGetLastError(), "synchronize");
    collect_device_status(be);
    if (cap)
        snprintf(msg, cap, "%s", c->has_error ? c->error_msg : "");
    return c->has_error;
}

extern "C" void cuda_backend_clear_error(backend *be)
{
    cuda_impl *c = cuda_impl_of(be);
    stream_sync(c);
    (void)cudaGetLastError();
    cudaMemsetAsync(c->device_status, 0, sizeof(int), c->stream);
    c->has_error = c->error_reported = 0;
    c->first_error = cudaSuccess;
    c->error_msg[0] = '\0';
}

extern "C" int cuda_backend_set_tf32(backend *be, int on)
{
    cuda_impl *c = cuda_impl_of(be);
    cublasStatus_t st = cublasSetMathMode(c->cublas, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
    if (st != CUBLAS_STATUS_SUCCESS)
        return 1;
    c->tf32 = !!on;
    return 0;
}

extern "C" void cuda_backend_set_bf16(backend *be, int on) { cuda_impl_of(be)->bf16 = !!on; }

extern "C" void cuda_backend_set_lt(backend *be, int on) { cuda_impl_of(be)->use_lt = !!on; }

extern "C" int cuda_backend_memory(backend *be, size_t *free_bytes, size_t *total_bytes)
{
    (void)be;
    return cudaMemGetInfo(free_bytes, total_bytes) != cudaSuccess;
}
