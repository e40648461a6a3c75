// Reductions that must not depend on scheduling: column sums (bias
// gradients), whole-tensor sums (losses, gradient norms), the temperature's
// gradient, and the row norms of l2norm. No atomics: each level of a sum runs
// in an order fixed by the shape alone, so reruns agree bit for bit, on any
// device.
#include "cuda_internal.cuh"

namespace {

/* ---- column sums: partial sums per group of rows, then the groups in order ---- */

#define COL_TILE CUDA_COL_TILE
#define ROW_LANES CUDA_ROW_LANES

// The block's last step: its ROW_LANES lanes' sums of column c, added in
// lane order, into partial[g][c].
__device__ __forceinline__ void store_column_partial(float (*acc)[COL_TILE + 1], float s, float *partial, int64_t g,
                                                     int64_t cols, int64_t c)
{
    int tx = threadIdx.x, ty = threadIdx.y;
    acc[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && c < cols) {
        float t = 0.0f;
        for (int l = 0; l < ROW_LANES; l++)
            t += acc[l][tx];
        partial[g * cols + c] = t;
    }
}

// partial (groups, cols): sums of src over rows [g * per_group, (g + 1) * per_group).
__global__ void column_partials_kernel(float *partial, const float *src, int64_t rows, int64_t cols,
                                       int64_t per_group)
{
    __shared__ float acc[ROW_LANES][COL_TILE + 1];
    int tx = threadIdx.x, ty = threadIdx.y;
    int64_t c = (int64_t)blockIdx.x * COL_TILE + tx, g = blockIdx.y;
    int64_t r0 = g * per_group, r1 = r0 + per_group < rows ? r0 + per_group : rows;
    float s = 0.0f;
    if (c < cols)
        for (int64_t r = r0 + ty; r < r1; r += ROW_LANES)
            s += src[r * cols + c];
    store_column_partial(acc, s, partial, g, cols, c);
}

// column_partials_kernel's sums of din = dout * GELU'(pre), written on the
// way: the bias gradient of bias_gelu_backward in the pass that makes din
// (which may alias dout: each element is read before it is written).
__global__ void gelu_grad_partials_kernel(float *partial, float *din, const float *dout, const float *pre,
                                          int64_t rows, int64_t cols, int64_t per_group)
{
    __shared__ float acc[ROW_LANES][COL_TILE + 1];
    int tx = threadIdx.x, ty = threadIdx.y;
    int64_t c = (int64_t)blockIdx.x * COL_TILE + tx, g = blockIdx.y;
    int64_t r0 = g * per_group, r1 = r0 + per_group < rows ? r0 + per_group : rows;
    float s = 0.0f;
    if (c < cols)
        for (int64_t r = r0 + ty; r < r1; r += ROW_LANES) {
            float d = dout[r * cols + c] * cuda_gelu_grad(pre[r * cols + c]);
            din[r * cols + c] = d;
            s += d;
        }
    store_column_partial(acc, s, partial, g, cols, c);
}

__global__ void column_finish_kernel(float *dst, const float *partial, int64_t groups, int64_t cols)
{
    CUDA_GRID_STRIDE(c, cols)
    {
        double s = 0.0;
        for (int64_t g = 0; g < groups; g++)
            s += partial[g * cols + c];
        dst[c] += (float)s;
    }
}

/* ---- whole-tensor sums in double ---------------------------------------------- */

enum reduce_mode { REDUCE_SUM, REDUCE_SUMSQ, REDUCE_DOT };

#define REDUCE_THREADS 256
#define REDUCE_MAX_BLOCKS 1024

__device__ __forceinline__ double block_sum_f64(double v)
{
    __shared__ double part[32];
    return cuda_block_sum_f64(v, part);
}

template <int MODE>
__global__ void reduce_partials_kernel(double *partials, const float *a, const float *b, int64_t n)
{
    double s = 0.0;
    CUDA_GRID_STRIDE(i, n)
    {
        double x = a[i];
        s += MODE == REDUCE_SUM ? x : MODE == REDUCE_SUMSQ ? x * x : x * (double)b[i];
    }
    s = block_sum_f64(s);
    if (threadIdx.x == 0)
        partials[blockIdx.x] = s;
}

// One block: the partials in order, then out[0] = scale * sum, or, for the
// temperature's gradient, ds[0] += -sum / d[0].
__global__ void reduce_finish_kernel(float *out, const double *partials, int blocks, float scale, const float *divisor)
{
    double s = 0.0;
    for (int i = threadIdx.x; i < blocks; i += blockDim.x)
        s += partials[i];
    s = block_sum_f64(s);
    if (threadIdx.x == 0) {
        if (divisor)
            out[0] += (float)(-s / divisor[0]);
        else
            out[0] = (float)(s * scale);
    }
}

// Sums over n elements into out[0] (see reduce_finish_kernel).
void reduce(backend *be, int mode, float *out, const float *a, const float *b, int64_t n, float scale,
            const float *divisor, const char *op)
{
    int64_t want = (n + REDUCE_THREADS * 4 - 1) / (REDUCE_THREADS * 4);
    int blocks = (int)(want < 1 ? 1 : want > REDUCE_MAX_BLOCKS ? REDUCE_MAX_BLOCKS : want);
    double *partials = static_cast<double *>(cuda_scratch(be, sizeof(double) * (size_t)blocks, op));
    if (!partials)
        return;
    if (mode == REDUCE_SUM)
        cuda_launch(be, "cast", reduce_partials_kernel<REDUCE_SUM>, blocks, REDUCE_THREADS, 0, partials, a, b, n);
    else if (mode == REDUCE_SUMSQ)
        cuda_launch(be, "cast", reduce_partials_kernel<REDUCE_SUMSQ>, blocks, REDUCE_THREADS, 0, partials, a, b, n);
    else
        cuda_launch(be, op, reduce_partials_kernel<REDUCE_DOT>, blocks, REDUCE_THREADS, 0, partials, a, b, n);
    cuda_launch(be, op, reduce_finish_kernel, 1, REDUCE_THREADS, 0, out, partials, blocks, scale, divisor);
}

/* ---- l2norm: one warp per row ----------------------------------------------- */

#define ROWS_PER_BLOCK 8

__global__ void l2norm_forward_kernel(float *y, float *norms, const float *x, int64_t m, int64_t c)
{
    int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= m)
        return;
    const float *xr = x + r * c;
    float s = 0.0f;
    for (int64_t i = lane; i < c; i += 32)
        s += xr[i] * xr[i];
    s = cuda_warp_sum(s);
    float nrm = sqrtf(s);
    float denom = nrm > 1e-12f ? nrm : 1e-12f;
    float *yr = y + r * c;
    for (int64_t i = lane; i < c; i += 32)
        yr[i] = xr[i] / denom;
    if (lane == 0)
        norms[r] = nrm;
}

__global__ void l2norm_backward_kernel(float *dx, const float *dy, const float *y, const float *norms, int64_t m,
                                       int64_t c)
{
    int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= m)
        return;
    const float *yr = y + r * c, *dyr = dy + r * c;
    float *dxr = dx + r * c;
    float nrm = norms[r];
    if (nrm > 1e-12f) {
        float dot = 0.0f;
        for (int64_t i = lane; i < c; i += 32)
            dot += dyr[i] * yr[i];
        dot = cuda_warp_sum(dot);
        for (int64_t i = lane; i < c; i += 32)
            dxr[i] = (dyr[i] - yr[i] * dot) / nrm;
    } else {
        for (int64_t i = lane; i < c; i += 32)
            dxr[i] = dyr[i] / 1e-12f;
    }
}

} // namespace

void cuda_column_sums_add(backend *be, float *dst, const float *src, int64_t rows, int64_t cols, const char *op)
{
    if (!rows || !cols)
        return;
    cuda_row_groups plan = cuda_plan_row_groups(be, rows, cols, 1);
    int64_t groups = plan.groups, per_group = plan.per_group;
    float *partial = static_cast<float *>(cuda_scratch(be, sizeof(float) * (size_t)(groups * cols), op));
    if (!partial)
        return;
    dim3 grid((unsigned)((cols + COL_TILE - 1) / COL_TILE), (unsigned)groups), block(COL_TILE, ROW_LANES);
    cuda_launch(be, op, column_partials_kernel, grid, block, 0, partial, src, rows, cols, per_group);
    cuda_launch(be, op, column_finish_kernel, cuda_grid(be, cols), 256, 0, dst, partial, groups, cols);
}

void cuda_bias_gelu_backward(backend *be, tensor din, tensor dbias, tensor dout, tensor pre)
{
    if (!tensor_present(dbias)) {
        cuda_gelu_backward(be, din, dout, pre);
        return;
    }
    int64_t rows = tensor_rows(pre), cols = tensor_cols(pre);
    if (!rows || !cols)
        return;
    if (!tensor_present(din)) {
        cuda_record_invalid(be, "bias_gelu_backward: dbias needs din");
        return;
    }
    cuda_row_groups plan = cuda_plan_row_groups(be, rows, cols, 1);
    float *partial =
        static_cast<float *>(cuda_scratch(be, sizeof(float) * (size_t)(plan.groups * cols), "bias_gelu_backward"));
    if (!partial)
        return;
    dim3 grid((unsigned)((cols + COL_TILE - 1) / COL_TILE), (unsigned)plan.groups), block(COL_TILE, ROW_LANES);
    cuda_launch(be, "bias_gelu_backward", gelu_grad_partials_kernel, grid, block, 0, partial, cuda_f32(din),
                cuda_cf32(dout), cuda_cf32(pre), rows, cols, plan.per_group);
    cuda_launch(be, "bias_gelu_backward", column_finish_kernel, cuda_grid(be, cols), 256, 0, cuda_f32(dbias), partial,
                plan.groups, cols);
}

void cuda_reduce_sum(backend *be, tensor out, tensor in, float scale)
{
    reduce(be, REDUCE_SUM, cuda_f32(out), cuda_cf32(in), nullptr, tensor_numel(in), scale, nullptr, "reduce_sum");
}

void cuda_reduce_sumsq(backend *be, tensor out, tensor in, float scale)
{
    reduce(be, REDUCE_SUMSQ, cuda_f32(out), cuda_cf32(in), nullptr, tensor_numel(in), scale, nullptr,
           "reduce_sumsq");
}

void cuda_div_scalar_backward(backend *be, tensor din, tensor ds, tensor dout, tensor out, tensor s)
{
    // ds first: din may overwrite dout
    if (tensor_present(ds))
        reduce(be, REDUCE_DOT, cuda_f32(ds), cuda_cf32(dout), cuda_cf32(out), tensor_numel(dout), 1.0f,
               cuda_cf32(s), "div_scalar_backward");
    if (tensor_present(din))
        cuda_div_scalar_forward(be, din, dout, s);
}

void cuda_l2norm_forward(backend *be, tensor out, tensor norms, tensor in)
{
    int64_t m = tensor_rows(in), c = tensor_cols(in);
    if (!m)
        return;
    unsigned blocks = (unsigned)((m + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    cuda_launch(be, "l2norm_forward", l2norm_forward_kernel, blocks, 32 * ROWS_PER_BLOCK, 0, cuda_f32(out),
                cuda_f32(norms), cuda_cf32(in), m, c);
}

void cuda_l2norm_backward(backend *be, tensor din, tensor dout, tensor out, tensor norms)
{
    int64_t m = tensor_rows(out), c = tensor_cols(out);
    if (!m || !tensor_present(din))
        return;
    unsigned blocks = (unsigned)((m + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    cuda_launch(be, "l2norm_backward", l2norm_backward_kernel, blocks, 32 * ROWS_PER_BLOCK, 0, cuda_f32(din),
                cuda_cf32(dout), cuda_cf32(out), cuda_cf32(norms), m, c);
}
