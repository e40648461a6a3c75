// Layer normalisation over the last dim: one warp per row (fp32 statistics,
// two passes over the row: the mean, then the squared deviations), and for
// the weight and bias gradients a deterministic two-level column reduction.
#include "cuda_internal.cuh"

namespace {

#define ROWS_PER_BLOCK 8

__global__ void layernorm_forward_kernel(float *y, float *mean, float *rstd, const float *x, const float *g,
                                         const float *b, float eps, int64_t m, int64_t c)
{
    int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= m)
        return;
    const float *xr = x + r * c;
    float s = 0.0f;
    for (int64_t i = lane; i < c; i += 32)
        s += xr[i];
    float mu = cuda_warp_sum(s) / (float)c;
    float v = 0.0f;
    for (int64_t i = lane; i < c; i += 32) {
        float d = xr[i] - mu;
        v += d * d;
    }
    float rs = 1.0f / sqrtf(cuda_warp_sum(v) / (float)c + eps);
    float *yr = y + r * c;
    for (int64_t i = lane; i < c; i += 32)
        yr[i] = ((xr[i] - mu) * rs) * g[i] + b[i];
    if (lane == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
}

// dx = (dn - mean(dn) - n * mean(dn * n)) * rstd, with n the normalised input
// and dn = dy * w; each lane reads its elements of dy before writing the same
// elements of dx, so dx may alias dy.
__global__ void layernorm_backward_input_kernel(float *dx, int accumulate, const float *dy, const float *x,
                                                const float *g, const float *mean, const float *rstd, int64_t m,
                                                int64_t c)
{
    int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= m)
        return;
    const float *xr = x + r * c, *dyr = dy + r * c;
    float mu = mean[r], rs = rstd[r];
    float sum_dn = 0.0f, sum_dn_n = 0.0f;
    for (int64_t i = lane; i < c; i += 32) {
        float n = (xr[i] - mu) * rs;
        float dn = dyr[i] * g[i];
        sum_dn += dn;
        sum_dn_n += dn * n;
    }
    float mean_dn = cuda_warp_sum(sum_dn) / (float)c;
    float mean_dn_n = cuda_warp_sum(sum_dn_n) / (float)c;
    float *dxr = dx + r * c;
    for (int64_t i = lane; i < c; i += 32) {
        float n = (xr[i] - mu) * rs;
        float dn = dyr[i] * g[i];
        float v = (dn - mean_dn - n * mean_dn_n) * rs;
        dxr[i] = accumulate ? dxr[i] + v : v;
    }
}

// partial_w, partial_b (groups, cols): over rows [g * per_group, ...), the sums
// of dy * n and of dy.
__global__ void layernorm_param_partials_kernel(float *partial_w, float *partial_b, const float *dy, const float *x,
                                                const float *mean, const float *rstd, int64_t rows, int64_t cols,
                                                int64_t per_group)
{
    __shared__ float acc_w[CUDA_ROW_LANES][CUDA_COL_TILE + 1], acc_b[CUDA_ROW_LANES][CUDA_COL_TILE + 1];
    int tx = threadIdx.x, ty = threadIdx.y;
    int64_t c = (int64_t)blockIdx.x * CUDA_COL_TILE + tx, g = blockIdx.y;
    int64_t r0 = g * per_group, r1 = r0 + per_group < rows ? r0 + per_group : rows;
    float sw = 0.0f, sb = 0.0f;
    if (c < cols)
        for (int64_t r = r0 + ty; r < r1; r += CUDA_ROW_LANES) {
            float d = dy[r * cols + c];
            sw += d * ((x[r * cols + c] - mean[r]) * rstd[r]);
            sb += d;
        }
    acc_w[ty][tx] = sw;
    acc_b[ty][tx] = sb;
    __syncthreads();
    if (ty == 0 && c < cols) {
        float tw = 0.0f, tb = 0.0f;
        for (int l = 0; l < CUDA_ROW_LANES; l++) {
            tw += acc_w[l][tx];
            tb += acc_b[l][tx];
        }
        partial_w[g * cols + c] = tw;
        partial_b[g * cols + c] = tb;
    }
}

__global__ void layernorm_param_finish_kernel(float *dw, float *db, const float *partial_w, const float *partial_b,
                                              int64_t groups, int64_t cols)
{
    CUDA_GRID_STRIDE(c, cols)
    {
        double sw = 0.0, sb = 0.0;
        for (int64_t g = 0; g < groups; g++) {
            sw += partial_w[g * cols + c];
            sb += partial_b[g * cols + c];
        }
        if (dw)
            dw[c] += (float)sw;
        if (db)
            db[c] += (float)sb;
    }
}

} // namespace

void cuda_layernorm_forward(backend *be, tensor out, tensor mean, tensor rstd, tensor in, tensor w, tensor b,
                            float eps)
{
    int64_t m = tensor_rows(in), c = tensor_cols(in);
    if (!m || !c)
        return;
    unsigned blocks = (unsigned)((m + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    layernorm_forward_kernel<<<blocks, 32 * ROWS_PER_BLOCK, 0, cuda_stream(be)>>>(
        cuda_f32(out), cuda_f32(mean), cuda_f32(rstd), cuda_cf32(in), cuda_cf32(w), cuda_cf32(b), eps, m, c);
    cuda_check_launch(be, "layernorm_forward");
}

void cuda_layernorm_backward(backend *be, tensor din, int accumulate, tensor dw, tensor db, tensor dout, tensor in,
                             tensor w, tensor mean, tensor rstd)
{
    int64_t m = tensor_rows(in), c = tensor_cols(in);
    if (!m || !c)
        return;
    cudaStream_t s = cuda_stream(be);
    // the parameter gradients first: they read dout, which din may overwrite
    if (tensor_present(dw) || tensor_present(db)) {
        cuda_row_groups plan = cuda_plan_row_groups(be, m, c, 2);
        float *partial = static_cast<float *>(
            cuda_scratch(be, 2 * sizeof(float) * (size_t)(plan.groups * c), "layernorm_backward"));
        if (partial) {
            float *partial_b = partial + plan.groups * c;
            dim3 grid((unsigned)((c + CUDA_COL_TILE - 1) / CUDA_COL_TILE), (unsigned)plan.groups);
            dim3 block(CUDA_COL_TILE, CUDA_ROW_LANES);
            layernorm_param_partials_kernel<<<grid, block, 0, s>>>(partial, partial_b, cuda_cf32(dout),
                                                                   cuda_cf32(in), cuda_cf32(mean), cuda_cf32(rstd),
                                                                   m, c, plan.per_group);
            cuda_check_launch(be, "layernorm_backward");
            layernorm_param_finish_kernel<<<cuda_grid(be, c), 256, 0, s>>>(
                tensor_present(dw) ? cuda_f32(dw) : nullptr, tensor_present(db) ? cuda_f32(db) : nullptr, partial,
                partial_b, plan.groups, c);
            cuda_check_launch(be, "layernorm_backward");
        }
    }
    if (tensor_present(din)) {
        unsigned blocks = (unsigned)((m + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
        layernorm_backward_input_kernel<<<blocks, 32 * ROWS_PER_BLOCK, 0, s>>>(
            cuda_f32(din), accumulate, cuda_cf32(dout), cuda_cf32(in), cuda_cf32(w), cuda_cf32(mean),
            cuda_cf32(rstd), m, c);
        cuda_check_launch(be, "layernorm_backward");
    }
}
