// Elementwise ops: GELU, sums and scalings, dropout, fills, casts, and the
// optimiser passes over the parameter arena (AdamW, EMA), the bias + GELU
// after a linear run without its bias. Grid-stride loops over int64 element
// counts; every element depends on its own inputs only.
#include "cuda_internal.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

namespace {

__global__ void gelu_forward_kernel(float *y, const float *x, int64_t n)
{
    CUDA_GRID_STRIDE(i, n)
    y[i] = cuda_gelu(x[i]);
}

__global__ void gelu_backward_kernel(float *dx, const float *dy, const float *x, int64_t n)
{
    CUDA_GRID_STRIDE(i, n)
    dx[i] = dy[i] * cuda_gelu_grad(x[i]);
}

// pre = x + bias (rounded as the CPU's separate add), y = GELU(pre); pre may
// alias x. y is fp32 or bf16 (T): an activation of bf16 storage.
template <typename T>
__global__ void bias_gelu_forward_kernel(T *y, float *pre, const float *x, const float *bias, int64_t n, int64_t cols)
{
    CUDA_GRID_STRIDE(i, n)
    {
        float v = __fadd_rn(x[i], bias[i % cols]);
        pre[i] = v;
        cuda_store(y, i, cuda_gelu(v));
    }
}

__global__ void add_kernel(float *out, const float *a, const float *b, int64_t n)
{
    CUDA_GRID_STRIDE(i, n)
    out[i] = a[i] + b[i];
}

__global__ void scale_kernel(float *x, float s, int64_t n)
{
    CUDA_GRID_STRIDE(i, n)
    x[i] *= s;
}

__global__ void clamp_kernel(float *x, float lo, float hi, int64_t n)
{
    CUDA_GRID_STRIDE(i, n)
    {
        float v = x[i];
        x[i] = v < lo ? lo : v > hi ? hi : v;
    }
}

__global__ void fill_kernel(float *x, float value, int64_t n)
{
    CUDA_GRID_STRIDE(i, n)
    x[i] = value;
}

// Box-Muller over two counter-based uniforms per element: the values depend
// on (seed, index) only, not on the launch shape.
__global__ void fill_normal_kernel(float *x, float mean, float std, uint64_t seed, int64_t n)
{
    CUDA_GRID_STRIDE(i, n)
    {
        uint64_t a = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(2 * i + 1);
        uint64_t b = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(2 * i + 2);
        a = (a ^ (a >> 30)) * 0xbf58476d1ce4e5b9ull;
        a = (a ^ (a >> 27)) * 0x94d049bb133111ebull;
        a ^= a >> 31;
        b = (b ^ (b >> 30)) * 0xbf58476d1ce4e5b9ull;
        b = (b ^ (b >> 27)) * 0x94d049bb133111ebull;
        b ^= b >> 31;
        double u1 = ((double)(a >> 11) + 1.0) * 0x1p-53; /* (0, 1]: log stays finite */
        double u2 = (double)(b >> 11) * 0x1p-53;
        double z = sqrt(-2.0 * log(u1)) * cospi(2.0 * u2);
        x[i] = mean + std * (float)z;
    }
}

__global__ void dropout_kernel(float *y, const float *x, uint64_t seed, uint32_t threshold, float keep_scale, int64_t n)
{
    CUDA_GRID_STRIDE(i, n)
    y[i] = cuda_dropout_keep(seed, (uint64_t)i, threshold) ? x[i] * keep_scale : 0.0f;
}

__global__ void div_scalar_kernel(float *out, const float *in, const float *s, int64_t n)
{
    float d = s[0];
    CUDA_GRID_STRIDE(i, n)
    out[i] = in[i] / d;
}

__global__ void f32_to_bf16_kernel(__nv_bfloat16 *dst, const float *src, int64_t n)
{
    CUDA_GRID_STRIDE(i, n)
    dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void f32_to_f16_kernel(__half *dst, const float *src, int64_t n)
{
    CUDA_GRID_STRIDE(i, n)
    dst[i] = __float2half_rn(src[i]);
}

__global__ void bf16_to_f32_kernel(float *dst, const __nv_bfloat16 *src, int64_t n)
{
    CUDA_GRID_STRIDE(i, n)
    dst[i] = __bfloat162float(src[i]);
}

__global__ void f16_to_f32_kernel(float *dst, const __half *src, int64_t n)
{
    CUDA_GRID_STRIDE(i, n)
    dst[i] = __half2float(src[i]);
}

__global__ void i32_to_f32_kernel(float *dst, const int32_t *src, int64_t n)
{
    CUDA_GRID_STRIDE(i, n)
    dst[i] = (float)src[i];
}

// The CPU's AdamW arithmetic, operation for operation, with contraction into
// fused multiply-adds ruled out (__fmul_rn, __fadd_rn), so that equal inputs
// give equal weights on both back ends.
// flags (may be NULL: every element) picks `decayed` or 1 per element.
__global__ void adamw_kernel(float *w, const float *g, float *m, float *v, const uint8_t *flags, float decayed,
                             float beta1, float beta2, float eps, float step_size, float bias2_sqrt, int64_t n)
{
    float one_minus_b1 = 1.0f - beta1, one_minus_b2 = 1.0f - beta2;
    CUDA_GRID_STRIDE(i, n)
    {
        float gi = g[i];
        float wi = __fmul_rn(w[i], !flags || flags[i] ? decayed : 1.0f);
        float mi = __fadd_rn(__fmul_rn(m[i], beta1), __fmul_rn(one_minus_b1, gi));
        float vi = __fadd_rn(__fmul_rn(v[i], beta2), __fmul_rn(__fmul_rn(one_minus_b2, gi), gi));
        float denom = __fadd_rn(sqrtf(vi) / bias2_sqrt, eps);
        w[i] = __fsub_rn(wi, __fmul_rn(step_size, mi / denom));
        m[i] = mi;
        v[i] = vi;
    }
}

__global__ void ema_kernel(float *t, const float *s, float m, int64_t n)
{
    float one_minus_m = 1.0f - m;
    CUDA_GRID_STRIDE(i, n)
    t[i] = __fadd_rn(__fmul_rn(t[i], m), __fmul_rn(s[i], one_minus_m));
}

} // namespace

void cuda_gelu_forward(backend *be, tensor out, tensor in)
{
    int64_t n = tensor_numel(in);
    if (!n)
        return;
    cuda_launch(be, "gelu_forward", gelu_forward_kernel, cuda_grid(be, n), 256, 0, cuda_f32(out), cuda_cf32(in), n);
}

void cuda_gelu_backward(backend *be, tensor din, tensor dout, tensor in)
{
    int64_t n = tensor_numel(in);
    if (!n || !tensor_present(din))
        return;
    cuda_launch(be, "gelu_backward", gelu_backward_kernel, cuda_grid(be, n), 256, 0, cuda_f32(din), cuda_cf32(dout),
                cuda_cf32(in), n);
}

void cuda_bias_gelu_forward(backend *be, tensor out, tensor pre, tensor in, tensor bias)
{
    int64_t n = tensor_numel(in), cols = tensor_cols(in);
    if (!n)
        return;
    if (tensor_numel(bias) != cols) {
        cuda_record_invalid(be, "bias_gelu_forward: bias has %lld elements for rows of %lld",
                            (long long)tensor_numel(bias), (long long)cols);
        return;
    }
    if (!cuda_check_act(be, out, "bias_gelu_forward", "out"))
        return;
    if (out.dtype == DTYPE_BF16)
        cuda_launch(be, "bias_gelu_forward", bias_gelu_forward_kernel<__nv_bfloat16>, cuda_grid(be, n), 256, 0,
                    cuda_bf16(out), cuda_f32(pre), cuda_cf32(in), cuda_cf32(bias), n, cols);
    else
        cuda_launch(be, "bias_gelu_forward", bias_gelu_forward_kernel<float>, cuda_grid(be, n), 256, 0, cuda_f32(out),
                    cuda_f32(pre), cuda_cf32(in), cuda_cf32(bias), n, cols);
}

void cuda_add(backend *be, tensor out, tensor a, tensor b)
{
    int64_t n = tensor_numel(out);
    if (!n)
        return;
    cuda_launch(be, "add", add_kernel, cuda_grid(be, n), 256, 0, cuda_f32(out), cuda_cf32(a), cuda_cf32(b), n);
}

void cuda_accumulate(backend *be, tensor acc, tensor x) { cuda_add(be, acc, acc, x); }

void cuda_scale(backend *be, tensor x, float s)
{
    int64_t n = tensor_numel(x);
    if (!n)
        return;
    cuda_launch(be, "scale", scale_kernel, cuda_grid(be, n), 256, 0, cuda_f32(x), s, n);
}

void cuda_clamp(backend *be, tensor x, float lo, float hi)
{
    int64_t n = tensor_numel(x);
    if (!n)
        return;
    cuda_launch(be, "clamp", clamp_kernel, cuda_grid(be, n), 256, 0, cuda_f32(x), lo, hi, n);
}

void cuda_fill(backend *be, tensor x, float value)
{
    int64_t n = tensor_numel(x);
    if (!n)
        return;
    cuda_launch(be, "fill", fill_kernel, cuda_grid(be, n), 256, 0, cuda_f32(x), value, n);
}

void cuda_fill_normal(backend *be, tensor x, float mean, float std, uint64_t seed)
{
    int64_t n = tensor_numel(x);
    if (!n)
        return;
    cuda_launch(be, "fill_normal", fill_normal_kernel, cuda_grid(be, n), 256, 0, cuda_f32(x), mean, std, seed, n);
}

void cuda_dropout_forward(backend *be, tensor out, tensor in, float p, uint64_t seed)
{
    int64_t n = tensor_numel(in);
    if (!n || !tensor_present(out))
        return;
    if (p <= 0.0f) {
        if (out.data != in.data)
            cuda_record(be,
                        cudaMemcpyAsync(out.data, in.data, sizeof(float) * (size_t)n, cudaMemcpyDeviceToDevice,
                                        cuda_stream(be)),
                        "dropout");
        return;
    }
    float keep_scale = 1.0f / (1.0f - p);
    cuda_launch(be, "dropout", dropout_kernel, cuda_grid(be, n), 256, 0, cuda_f32(out), cuda_cf32(in), seed,
                cuda_dropout_threshold(p), keep_scale, n);
}

// The mask is regenerated from (seed, index), never stored.
void cuda_dropout_backward(backend *be, tensor din, tensor dout, float p, uint64_t seed)
{
    cuda_dropout_forward(be, din, dout, p, seed);
}

void cuda_div_scalar_forward(backend *be, tensor out, tensor in, tensor s)
{
    int64_t n = tensor_numel(in);
    if (!n)
        return;
    cuda_launch(be, "div_scalar_forward", div_scalar_kernel, cuda_grid(be, n), 256, 0, cuda_f32(out), cuda_cf32(in),
                cuda_cf32(s), n);
}

void cuda_cast(backend *be, tensor dst, tensor src)
{
    int64_t n = tensor_numel(src);
    if (tensor_numel(dst) != n) {
        cuda_record_invalid(be, "cast: %lld elements into %lld", (long long)n, (long long)tensor_numel(dst));
        return;
    }
    if (!n)
        return;
    unsigned grid = cuda_grid(be, n);
    cudaStream_t s = cuda_stream(be);
    if (dst.dtype == src.dtype) {
        cuda_record(be, cudaMemcpyAsync(dst.data, src.data, tensor_nbytes(src), cudaMemcpyDeviceToDevice, s), "cast");
        return;
    }
    if (src.dtype == DTYPE_F32 && dst.dtype == DTYPE_BF16)
        cuda_launch(be, "cast", f32_to_bf16_kernel, grid, 256, 0, static_cast<__nv_bfloat16 *>(dst.data),
                    cuda_cf32(src), n);
    else if (src.dtype == DTYPE_F32 && dst.dtype == DTYPE_F16)
        cuda_launch(be, "cast", f32_to_f16_kernel, grid, 256, 0, static_cast<__half *>(dst.data), cuda_cf32(src), n);
    else if (src.dtype == DTYPE_BF16 && dst.dtype == DTYPE_F32)
        cuda_launch(be, "cast", bf16_to_f32_kernel, grid, 256, 0, cuda_f32(dst),
                    static_cast<const __nv_bfloat16 *>(src.data), n);
    else if (src.dtype == DTYPE_F16 && dst.dtype == DTYPE_F32)
        cuda_launch(be, "cast", f16_to_f32_kernel, grid, 256, 0, cuda_f32(dst), static_cast<const __half *>(src.data),
                    n);
    else if (src.dtype == DTYPE_I32 && dst.dtype == DTYPE_F32)
        cuda_launch(be, "cast", i32_to_f32_kernel, grid, 256, 0, cuda_f32(dst), cuda_ci32(src), n);
    else
        cuda_record_invalid(be, "cast: %s to %s is not supported on CUDA (F32 <-> BF16/F16, I32 -> F32)",
                            dtype_name(src.dtype), dtype_name(dst.dtype));
}

void cuda_round_to_bf16(backend *be, __nv_bfloat16 *dst, const float *src, int64_t n, const char *op)
{
    if (!n)
        return;
    cuda_launch(be, op, f32_to_bf16_kernel, cuda_grid(be, n), 256, 0, dst, src, n);
}

void cuda_adamw(backend *be, tensor param, tensor grad, tensor m, tensor v, tensor decay, float lr, float beta1,
                float beta2, float eps, float weight_decay, int step)
{
    int64_t n = tensor_numel(param);
    if (tensor_present(decay) && (decay.dtype != DTYPE_U8 || tensor_numel(decay) != n)) {
        cuda_record_invalid(be, "adamw: decay flags are %s (%lld), expected U8 (%lld)", dtype_name(decay.dtype),
                            (long long)tensor_numel(decay), (long long)n);
        return;
    }
    if (!n)
        return;
    // the scalars exactly as the CPU back end computes them
    float bias1 = 1.0f - powf(beta1, (float)step);
    float bias2 = 1.0f - powf(beta2, (float)step);
    float step_size = lr / bias1;
    float bias2_sqrt = sqrtf(bias2);
    float decayed = 1.0f - lr * weight_decay;
    cuda_launch(be, "adamw", adamw_kernel, cuda_grid(be, n), 256, 0, cuda_f32(param), cuda_cf32(grad), cuda_f32(m),
                cuda_f32(v), static_cast<const uint8_t *>(decay.data), decayed, beta1, beta2, eps, step_size,
                bias2_sqrt, n);
}

void cuda_ema(backend *be, tensor target, tensor source, float momentum)
{
    int64_t n = tensor_numel(target);
    if (!n)
        return;
    cuda_launch(be, "ema", ema_kernel, cuda_grid(be, n), 256, 0, cuda_f32(target), cuda_cf32(source), momentum, n);
}
