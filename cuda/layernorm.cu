// Layer normalisation over the last dim: one warp per row (fp32 statistics,
// two passes over the row: the mean, then the squared deviations), and for
// the weight and bias gradients a deterministic two-level column reduction.
// The residual form fuses the end of a sublayer into it: the bias of the
// linear before it, dropout and the residual add, forward and backward.
#include "cuda_internal.cuh"

namespace {

#define ROWS_PER_BLOCK 8

// y is fp32 or bf16 (T): an activation of bf16 storage.
template <typename T>
__global__ void layernorm_forward_kernel(T *y, float *mean, float *rstd, const float *x, const float *g,
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
    T *yr = y + r * c;
    for (int64_t i = lane; i < c; i += 32)
        cuda_store(yr, i, ((xr[i] - mu) * rs) * g[i] + b[i]);
    if (lane == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
}

// sum = residual + dropout(x + bias), then layernorm_forward_kernel's
// arithmetic on it. The sum is rounded step by step as the CPU rounds it
// (no multiply-add contracting the dropout scale into the add). Rows of up
// to 32 * VPL elements stay in registers (VPL values per lane, indices known
// at compile time), so x, bias and residual are read once and sum and out
// written once; wider rows (VPL = 0) read their sum back. Either way each
// lane reads an element of x and residual before writing that element of
// sum and reads back only what it wrote, so sum may alias x or residual.
// The sums run in the same order in both forms.
template <int VPL, typename T>
__global__ void residual_layernorm_forward_kernel(T *y, float *mean, float *rstd, float *sum, const float *x,
                                                  const float *bias, const float *res, const float *g,
                                                  const float *b, float eps, int dropout, uint32_t threshold,
                                                  float keep_scale, uint64_t seed, int64_t m, int64_t c)
{
    int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= m)
        return;
    const float *xr = x + r * c, *rr = res + r * c;
    float *sr = sum + r * c;
    T *yr = y + r * c;
    float vals[VPL > 0 ? VPL : 1];
    float s = 0.0f;
    auto make_sum = [&](int64_t i) {
        float v = bias ? __fadd_rn(xr[i], bias[i]) : xr[i];
        if (dropout)
            v = cuda_dropout_keep(seed, (uint64_t)(r * c + i), threshold) ? __fmul_rn(v, keep_scale) : 0.0f;
        v = __fadd_rn(v, rr[i]);
        sr[i] = v;
        return v;
    };
    if (VPL > 0) {
#pragma unroll
        for (int j = 0; j < (VPL > 0 ? VPL : 1); j++) {
            int64_t i = lane + 32 * j;
            if (i < c) {
                vals[j] = make_sum(i);
                s += vals[j];
            }
        }
    } else {
        for (int64_t i = lane; i < c; i += 32)
            s += make_sum(i);
    }
    float mu = cuda_warp_sum(s) / (float)c;
    float v = 0.0f;
    if (VPL > 0) {
#pragma unroll
        for (int j = 0; j < (VPL > 0 ? VPL : 1); j++)
            if (lane + 32 * j < c) {
                float d = vals[j] - mu;
                v += d * d;
            }
    } else {
        for (int64_t i = lane; i < c; i += 32) {
            float d = sr[i] - mu;
            v += d * d;
        }
    }
    float rs = 1.0f / sqrtf(cuda_warp_sum(v) / (float)c + eps);
    if (VPL > 0) {
#pragma unroll
        for (int j = 0; j < (VPL > 0 ? VPL : 1); j++) {
            int64_t i = lane + 32 * j;
            if (i < c)
                cuda_store(yr, i, ((vals[j] - mu) * rs) * g[i] + b[i]);
        }
    } else {
        for (int64_t i = lane; i < c; i += 32)
            cuda_store(yr, i, ((sr[i] - mu) * rs) * g[i] + b[i]);
    }
    if (lane == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
}

// dx = (dn - mean(dn) - n * mean(dn * n)) * rstd, with n the normalised input
// and dn = dy * w; each lane reads its elements of dy before writing the same
// elements of dx, so dx may alias dy. With ddrop (the residual form), dx is
// d(sum) and ddrop = dropout_backward(dx) is written too. As in the forward
// kernel, rows of up to 32 * VPL elements keep n and dn in registers (x, dy
// and w read once); VPL = 0 reads them again.
template <int VPL>
__global__ void layernorm_backward_input_kernel(float *dx, int accumulate, float *ddrop, int dropout,
                                                uint32_t threshold, float keep_scale, uint64_t seed, const float *dy,
                                                const float *x, const float *g, const float *mean, const float *rstd,
                                                int64_t m, int64_t c)
{
    int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= m)
        return;
    const float *xr = x + r * c, *dyr = dy + r * c;
    float *dxr = dx + r * c;
    float mu = mean[r], rs = rstd[r];
    float ns[VPL > 0 ? VPL : 1], dns[VPL > 0 ? VPL : 1];
    float sum_dn = 0.0f, sum_dn_n = 0.0f;
    if (VPL > 0) {
#pragma unroll
        for (int j = 0; j < (VPL > 0 ? VPL : 1); j++) {
            int64_t i = lane + 32 * j;
            if (i < c) {
                ns[j] = (xr[i] - mu) * rs;
                dns[j] = dyr[i] * g[i];
                sum_dn += dns[j];
                sum_dn_n += dns[j] * ns[j];
            }
        }
    } else {
        for (int64_t i = lane; i < c; i += 32) {
            float n = (xr[i] - mu) * rs;
            float dn = dyr[i] * g[i];
            sum_dn += dn;
            sum_dn_n += dn * n;
        }
    }
    float mean_dn = cuda_warp_sum(sum_dn) / (float)c;
    float mean_dn_n = cuda_warp_sum(sum_dn_n) / (float)c;
    auto finish = [&](int64_t i, float n, float dn) {
        float v = (dn - mean_dn - n * mean_dn_n) * rs;
        v = accumulate ? dxr[i] + v : v;
        dxr[i] = v;
        if (ddrop) {
            if (dropout)
                v = cuda_dropout_keep(seed, (uint64_t)(r * c + i), threshold) ? v * keep_scale : 0.0f;
            ddrop[r * c + i] = v;
        }
    };
    if (VPL > 0) {
#pragma unroll
        for (int j = 0; j < (VPL > 0 ? VPL : 1); j++) {
            int64_t i = lane + 32 * j;
            if (i < c)
                finish(i, ns[j], dns[j]);
        }
    } else {
        for (int64_t i = lane; i < c; i += 32)
            finish(i, (xr[i] - mu) * rs, dyr[i] * g[i]);
    }
}

// Launches the input-gradient row kernel with the register width for c
// (rows up to 1024 wide in registers; 768 takes 24 of 32 per lane); p > 0
// drops out ddrop as dropout_backward does.
void launch_backward_input(backend *be, float *dx, int accumulate, float *ddrop, float p, uint64_t seed,
                           const float *dy, const float *x, const float *g, const float *mean, const float *rstd,
                           int64_t m, int64_t c, const char *op)
{
    auto kernel = c <= 256 ? layernorm_backward_input_kernel<8>
                  : c <= 512 ? layernorm_backward_input_kernel<16>
                  : c <= 1024 ? layernorm_backward_input_kernel<32>
                              : layernorm_backward_input_kernel<0>;
    int dropout = p > 0;
    unsigned blocks = (unsigned)((m + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    cuda_launch(be, op, kernel, blocks, 32 * ROWS_PER_BLOCK, 0, dx, accumulate, ddrop, dropout,
                cuda_dropout_threshold(p), dropout ? 1.0f / (1.0f - p) : 1.0f, seed, dy, x, g, mean, rstd, m, c);
}

// partial_w, partial_b (groups, cols): over rows [g * per_group, ...), the sums
// of dy * n and of dy (partial_w NULL: neither); partial_x, when set, the
// sums of dxs (the residual form's bias gradient of the linear before).
__global__ void layernorm_param_partials_kernel(float *partial_w, float *partial_b, float *partial_x,
                                                const float *dy, const float *x, const float *dxs, const float *mean,
                                                const float *rstd, int64_t rows, int64_t cols, int64_t per_group)
{
    __shared__ float acc_w[CUDA_ROW_LANES][CUDA_COL_TILE + 1], acc_b[CUDA_ROW_LANES][CUDA_COL_TILE + 1],
        acc_x[CUDA_ROW_LANES][CUDA_COL_TILE + 1];
    int tx = threadIdx.x, ty = threadIdx.y;
    int64_t c = (int64_t)blockIdx.x * CUDA_COL_TILE + tx, g = blockIdx.y;
    int64_t r0 = g * per_group, r1 = r0 + per_group < rows ? r0 + per_group : rows;
    float sw = 0.0f, sb = 0.0f, sx = 0.0f;
    if (c < cols)
        for (int64_t r = r0 + ty; r < r1; r += CUDA_ROW_LANES) {
            if (partial_w) {
                float d = dy[r * cols + c];
                sw += d * ((x[r * cols + c] - mean[r]) * rstd[r]);
                sb += d;
            }
            if (partial_x)
                sx += dxs[r * cols + c];
        }
    acc_w[ty][tx] = sw;
    acc_b[ty][tx] = sb;
    acc_x[ty][tx] = sx;
    __syncthreads();
    if (ty == 0 && c < cols) {
        float tw = 0.0f, tb = 0.0f, tx_sum = 0.0f;
        for (int l = 0; l < CUDA_ROW_LANES; l++) {
            tw += acc_w[l][tx];
            tb += acc_b[l][tx];
            tx_sum += acc_x[l][tx];
        }
        if (partial_w) {
            partial_w[g * cols + c] = tw;
            partial_b[g * cols + c] = tb;
        }
        if (partial_x)
            partial_x[g * cols + c] = tx_sum;
    }
}

__global__ void layernorm_param_finish_kernel(float *dw, float *db, float *dx_sum, const float *partial_w,
                                              const float *partial_b, const float *partial_x, int64_t groups,
                                              int64_t cols)
{
    CUDA_GRID_STRIDE(c, cols)
    {
        double sw = 0.0, sb = 0.0, sx = 0.0;
        for (int64_t g = 0; g < groups; g++) {
            if (partial_w) {
                sw += partial_w[g * cols + c];
                sb += partial_b[g * cols + c];
            }
            if (partial_x)
                sx += partial_x[g * cols + c];
        }
        if (dw)
            dw[c] += (float)sw;
        if (db)
            db[c] += (float)sb;
        if (dx_sum)
            dx_sum[c] += (float)sx;
    }
}

// dw, db += the layer norm's parameter gradients (from dy and the normalised
// x), dx_sum += column sums of dxs; each pointer may be NULL. Two levels, in
// an order fixed by the shape.
void param_gradients(backend *be, float *dw, float *db, float *dx_sum, const float *dy, const float *x,
                     const float *dxs, const float *mean, const float *rstd, int64_t m, int64_t c, const char *op)
{
    int wb = dw || db;
    if (!wb && !dx_sum)
        return;
    int arrays = (wb ? 2 : 0) + (dx_sum ? 1 : 0);
    cuda_row_groups plan = cuda_plan_row_groups(be, m, c, arrays);
    float *partial = static_cast<float *>(cuda_scratch(be, arrays * sizeof(float) * (size_t)(plan.groups * c), op));
    if (!partial)
        return;
    float *partial_w = wb ? partial : nullptr, *partial_b = wb ? partial + plan.groups * c : nullptr;
    float *partial_x = dx_sum ? partial + (wb ? 2 : 0) * plan.groups * c : nullptr;
    dim3 grid((unsigned)((c + CUDA_COL_TILE - 1) / CUDA_COL_TILE), (unsigned)plan.groups);
    dim3 block(CUDA_COL_TILE, CUDA_ROW_LANES);
    cuda_launch(be, op, layernorm_param_partials_kernel, grid, block, 0, partial_w, partial_b, partial_x, dy, x, dxs,
                mean, rstd, m, c, plan.per_group);
    cuda_launch(be, op, layernorm_param_finish_kernel, cuda_grid(be, c), 256, 0, dw, db, dx_sum, partial_w, partial_b,
                partial_x, plan.groups, c);
}

template <typename T>
void launch_residual_forward(backend *be, T *out, tensor mean, tensor rstd, tensor sum, tensor x, tensor bias,
                             tensor residual, tensor w, tensor b, float eps, float p, uint64_t seed, int64_t m,
                             int64_t c)
{
    int dropout = p > 0;
    unsigned blocks = (unsigned)((m + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    // rows in registers up to 1024 wide (BERT and ViT-B: 768 = 24 per lane)
    auto kernel = c <= 256 ? residual_layernorm_forward_kernel<8, T>
                  : c <= 512 ? residual_layernorm_forward_kernel<16, T>
                  : c <= 1024 ? residual_layernorm_forward_kernel<32, T>
                              : residual_layernorm_forward_kernel<0, T>;
    cuda_launch(be, "residual_layernorm_forward", kernel, blocks, 32 * ROWS_PER_BLOCK, 0, out, cuda_f32(mean),
                cuda_f32(rstd), cuda_f32(sum), cuda_cf32(x), tensor_present(bias) ? cuda_cf32(bias) : nullptr,
                cuda_cf32(residual), cuda_cf32(w), cuda_cf32(b), eps, dropout, cuda_dropout_threshold(p),
                dropout ? 1.0f / (1.0f - p) : 1.0f, seed, m, c);
}

} // namespace

void cuda_layernorm_forward(backend *be, tensor out, tensor mean, tensor rstd, tensor in, tensor w, tensor b,
                            float eps)
{
    int64_t m = tensor_rows(in), c = tensor_cols(in);
    if (!m || !c)
        return;
    if (!cuda_check_act(be, out, "layernorm_forward", "out"))
        return;
    unsigned blocks = (unsigned)((m + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    if (out.dtype == DTYPE_BF16)
        cuda_launch(be, "layernorm_forward", layernorm_forward_kernel<__nv_bfloat16>, blocks, 32 * ROWS_PER_BLOCK, 0,
                    cuda_bf16(out), cuda_f32(mean), cuda_f32(rstd), cuda_cf32(in), cuda_cf32(w), cuda_cf32(b), eps, m,
                    c);
    else
        cuda_launch(be, "layernorm_forward", layernorm_forward_kernel<float>, blocks, 32 * ROWS_PER_BLOCK, 0,
                    cuda_f32(out), cuda_f32(mean), cuda_f32(rstd), cuda_cf32(in), cuda_cf32(w), cuda_cf32(b), eps, m,
                    c);
}

void cuda_layernorm_backward(backend *be, tensor din, int accumulate, tensor dw, tensor db, tensor dout, tensor in,
                             tensor w, tensor mean, tensor rstd)
{
    int64_t m = tensor_rows(in), c = tensor_cols(in);
    if (!m || !c)
        return;
    // the parameter gradients first: they read dout, which din may overwrite
    param_gradients(be, tensor_present(dw) ? cuda_f32(dw) : nullptr, tensor_present(db) ? cuda_f32(db) : nullptr,
                    nullptr, cuda_cf32(dout), cuda_cf32(in), nullptr, cuda_cf32(mean), cuda_cf32(rstd), m, c,
                    "layernorm_backward");
    if (tensor_present(din))
        launch_backward_input(be, cuda_f32(din), accumulate, nullptr, 0.0f, 0, cuda_cf32(dout), cuda_cf32(in),
                              cuda_cf32(w), cuda_cf32(mean), cuda_cf32(rstd), m, c, "layernorm_backward");
}

void cuda_residual_layernorm_forward(backend *be, tensor out, tensor mean, tensor rstd, tensor sum, tensor x,
                                     tensor bias, tensor residual, tensor w, tensor b, float eps, float p,
                                     uint64_t seed)
{
    int64_t m = tensor_rows(x), c = tensor_cols(x);
    if (!m || !c)
        return;
    if (tensor_present(bias) && tensor_numel(bias) != c) {
        cuda_record_invalid(be, "residual_layernorm_forward: bias has %lld elements for rows of %lld",
                            (long long)tensor_numel(bias), (long long)c);
        return;
    }
    if (!cuda_check_act(be, out, "residual_layernorm_forward", "out"))
        return;
    if (out.dtype == DTYPE_BF16)
        launch_residual_forward(be, cuda_bf16(out), mean, rstd, sum, x, bias, residual, w, b, eps, p, seed, m, c);
    else
        launch_residual_forward(be, cuda_f32(out), mean, rstd, sum, x, bias, residual, w, b, eps, p, seed, m, c);
}

void cuda_residual_layernorm_backward(backend *be, tensor dsum, int accumulate, tensor dx, tensor dbias, tensor dw,
                                      tensor db, tensor dout, tensor sum, tensor w, tensor mean, tensor rstd, float p,
                                      uint64_t seed)
{
    int64_t m = tensor_rows(sum), c = tensor_cols(sum);
    if (!m || !c)
        return;
    int dropout = p > 0;
    int write_dx = tensor_present(dx) && dx.data != dsum.data;
    if (!tensor_present(dsum) || (dropout && !write_dx && (tensor_present(dx) || tensor_present(dbias)))) {
        cuda_record_invalid(be, "residual_layernorm_backward: %s", !tensor_present(dsum) ? "dsum is required"
                                                                    : "with dropout, dx must be its own tensor");
        return;
    }
    // the row pass first: the bias gradient sums what it writes; dout is
    // only read (neither output may alias it), so the parameter pass can follow
    launch_backward_input(be, cuda_f32(dsum), accumulate, write_dx ? cuda_f32(dx) : nullptr, p, seed, cuda_cf32(dout),
                          cuda_cf32(sum), cuda_cf32(w), cuda_cf32(mean), cuda_cf32(rstd), m, c,
                          "residual_layernorm_backward");
    param_gradients(be, tensor_present(dw) ? cuda_f32(dw) : nullptr, tensor_present(db) ? cuda_f32(db) : nullptr,
                    tensor_present(dbias) ? cuda_f32(dbias) : nullptr, cuda_cf32(dout), cuda_cf32(sum),
                    write_dx ? cuda_cf32(dx) : cuda_cf32(dsum), cuda_cf32(mean), cuda_cf32(rstd), m, c,
                    "residual_layernorm_backward");
}
