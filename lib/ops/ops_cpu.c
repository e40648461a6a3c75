/* The CPU back end: fp32 throughout, OpenBLAS for matrix products, OpenMP
 * loops elsewhere. It is the reference every other back end is tested
 * against, so it favours plain, deterministic code: parallel loops only split
 * independent rows or columns, and every reduction runs in a fixed order, so
 * results do not depend on the number of threads. */
#include "ops/ops.h"

#include "core/dtype.h"
#include "core/rng.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F(t) ((float *)(t).data)
#define CF(t) ((const float *)(t).data)
#define I32(t) ((const int32_t *)(t).data)

/* Loops shorter than this many elements stay on one thread. */
#define PAR_MIN 32768

static void *cpu_alloc(backend *be, size_t bytes)
{
    (void)be;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded ? rounded : 64);
}

static void cpu_free(backend *be, void *p)
{
    (void)be;
    free(p);
}

static void cpu_memcpy(backend *be, void *dst, const void *src, size_t n)
{
    (void)be;
    if (n)
        memcpy(dst, src, n);
}

static void cpu_zero(backend *be, void *dst, size_t n)
{
    (void)be;
    if (n)
        memset(dst, 0, n);
}

static void cpu_synchronize(backend *be) { (void)be; }

/* ---- bf16 mode ---------------------------------------------------------- */

/* backend_cpu_bf16(): products read their operands rounded to bf16 and
 * accumulate in fp32, as the CUDA back end's bf16 mode does, and the ops of
 * ops.h's "bf16 storage" read and write bf16 tensors. The CPU has no bf16
 * arithmetic, so this mode widens into fp32 copies: it exists to be compared
 * against, not to be fast. */
static int bf16_mode(const backend *be) { return be->act_dtype == DTYPE_BF16; }

static float *scratch_floats(size_t n)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "albef: CPU back end: out of memory for %zu floats of bf16 conversions\n", n);
        abort();
    }
    return p;
}

/* The floats a product reads from t: t's own, or (bf16 mode) a copy rounded
 * to bf16 in *copy, which the caller frees. */
static const float *product_operand(const backend *be, tensor t, float **copy)
{
    *copy = NULL;
    if (!tensor_present(t) || (t.dtype == DTYPE_F32 && !bf16_mode(be)))
        return CF(t);
    assert(bf16_mode(be) && (t.dtype == DTYPE_F32 || t.dtype == DTYPE_BF16));
    size_t n = (size_t)tensor_numel(t);
    float *c = *copy = scratch_floats(n);
    if (t.dtype == DTYPE_BF16) {
        bf16_to_f32_array(c, t.data, n);
    } else {
        const float *x = CF(t);
        for (size_t i = 0; i < n; i++)
            c[i] = bf16_to_f32(f32_to_bf16(x[i]));
    }
    return c;
}

/* Where an op writes `out`: its floats, or for a bf16 tensor a buffer in
 * *tmp that store_output rounds into it. */
static float *output_floats(tensor out, float **tmp)
{
    *tmp = NULL;
    if (out.dtype == DTYPE_F32)
        return F(out);
    assert(out.dtype == DTYPE_BF16);
    return *tmp = scratch_floats((size_t)tensor_numel(out));
}

static void store_output(tensor out, float *tmp)
{
    if (!tmp)
        return;
    f32_to_bf16_array(out.data, tmp, (size_t)tensor_numel(out));
    free(tmp);
}

/* ---- dense algebra ------------------------------------------------------ */

static void cpu_matmul(backend *be, tensor c, tensor a, tensor b, int trans_a, int trans_b, float alpha, float beta)
{
    int batched = c.ndim == 3;
    int64_t batch = batched ? c.shape[0] : 1;
    int64_t m = c.shape[c.ndim - 2], n = c.shape[c.ndim - 1];
    int64_t a_rows = a.shape[a.ndim - 2], a_cols = a.shape[a.ndim - 1];
    int64_t k = trans_a ? a_rows : a_cols;
    int64_t b_cols = b.shape[b.ndim - 1];
    assert((trans_a ? a_cols : a_rows) == m);
    assert((trans_b ? b_cols : b.shape[b.ndim - 2]) == k);
    size_t sa = batched && a.ndim == 3 ? (size_t)(a_rows * a_cols) : 0;
    size_t sb = batched && b.ndim == 3 ? (size_t)(b.shape[b.ndim - 2] * b_cols) : 0;
    float *a_copy, *b_copy;
    const float *av = product_operand(be, a, &a_copy), *bv = product_operand(be, b, &b_copy);
    for (int64_t i = 0; i < batch; i++)
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m,
                    (int)n, (int)k, alpha, av + i * sa, (int)a_cols, bv + i * sb, (int)b_cols, beta, F(c) + i * m * n,
                    (int)n);
    free(a_copy);
    free(b_copy);
}

static void cpu_linear_forward(backend *be, tensor out, tensor in, tensor w, tensor bias)
{
    int64_t m = tensor_rows(in), k = tensor_cols(in), n = w.shape[0];
    assert(w.shape[1] == k && tensor_cols(out) == n && tensor_rows(out) == m);
    float *o = F(out), *in_copy, *w_copy;
    const float *x = product_operand(be, in, &in_copy), *wv = product_operand(be, w, &w_copy);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, x, (int)k, wv, (int)k, 0.0f, o,
                (int)n);
    free(in_copy);
    free(w_copy);
    /* Not in the product (beta = 1 over bias rows): OpenBLAS adds C to each
     * K-block's partial product, so the bias would land mid-sum, where no op
     * after the product can put it. */
    if (tensor_present(bias)) {
        const float *bb = CF(bias);
#pragma omp parallel for schedule(static) if (m * n > PAR_MIN)
        for (int64_t r = 0; r < m; r++)
            for (int64_t c = 0; c < n; c++)
                o[r * n + c] += bb[c];
    }
}

/* dst[c] += sum over rows of src[r, c], rows summed in order. */
static void column_sums_add(float *dst, const float *src, int64_t rows, int64_t cols)
{
#pragma omp parallel for schedule(static) if (rows * cols > PAR_MIN)
    for (int64_t c0 = 0; c0 < cols; c0 += 64) {
        int64_t c1 = c0 + 64 < cols ? c0 + 64 : cols;
        double acc[64] = {0};
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = c0; c < c1; c++)
                acc[c - c0] += src[r * cols + c];
        for (int64_t c = c0; c < c1; c++)
            dst[c] += (float)acc[c - c0];
    }
}

static void cpu_linear_backward(backend *be, tensor din, int accumulate, tensor dw, tensor dbias, tensor dout,
                                tensor in, tensor w)
{
    int64_t m = tensor_rows(dout), n = tensor_cols(dout), k = w.shape[1];
    float *dout_copy = NULL, *w_copy = NULL, *in_copy = NULL;
    const float *dy = tensor_present(din) || tensor_present(dw) ? product_operand(be, dout, &dout_copy) : NULL;
    if (tensor_present(din)) {
        const float *wv = product_operand(be, w, &w_copy);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)k, (int)n, 1.0f, dy, (int)n, wv, (int)k,
                    accumulate ? 1.0f : 0.0f, F(din), (int)k);
    }
    if (tensor_present(dw)) {
        const float *x = product_operand(be, in, &in_copy);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)k, (int)m, 1.0f, dy, (int)n, x, (int)k, 1.0f,
                    F(dw), (int)k);
    }
    free(dout_copy);
    free(w_copy);
    free(in_copy);
    /* the bias gradient sums the fp32 dout, in bf16 mode too */
    if (tensor_present(dbias))
        column_sums_add(F(dbias), CF(dout), m, n);
}

/* ---- elementwise -------------------------------------------------------- */

#define INV_SQRT2 0.70710678118654752440
#define INV_SQRT_2PI 0.39894228040143267794

static void cpu_gelu_forward(backend *be, tensor out, tensor in)
{
    (void)be;
    int64_t n = tensor_numel(in);
    const float *x = CF(in);
    float *tmp, *y = output_floats(out, &tmp); /* bf16: bias_gelu_forward's out */
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)(0.5 * x[i] * (1.0 + erf(x[i] * INV_SQRT2)));
    store_output(out, tmp);
}

static void cpu_gelu_backward(backend *be, tensor din, tensor dout, tensor in)
{
    (void)be;
    int64_t n = tensor_numel(in);
    const float *x = CF(in), *dy = CF(dout);
    float *dx = F(din);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        double cdf = 0.5 * (1.0 + erf(v * INV_SQRT2));
        double pdf = INV_SQRT_2PI * exp(-0.5 * v * v);
        dx[i] = (float)(dy[i] * (cdf + v * pdf));
    }
}

static void cpu_bias_gelu_forward(backend *be, tensor out, tensor pre, tensor in, tensor bias)
{
    int64_t m = tensor_rows(in), n = tensor_cols(in);
    const float *x = CF(in), *bb = CF(bias);
    float *p = F(pre);
#pragma omp parallel for schedule(static) if (m * n > PAR_MIN)
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < n; c++)
            p[r * n + c] = x[r * n + c] + bb[c];
    cpu_gelu_forward(be, out, pre);
}

static void cpu_bias_gelu_backward(backend *be, tensor din, tensor dbias, tensor dout, tensor pre)
{
    cpu_gelu_backward(be, din, dout, pre);
    if (tensor_present(dbias))
        column_sums_add(F(dbias), CF(din), tensor_rows(din), tensor_cols(din));
}

static void cpu_add(backend *be, tensor out, tensor a, tensor b)
{
    (void)be;
    int64_t n = tensor_numel(out);
    float *o = F(out);
    const float *x = CF(a), *y = CF(b);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        o[i] = x[i] + y[i];
}

static void cpu_accumulate(backend *be, tensor acc, tensor x) { cpu_add(be, acc, acc, x); }

static void cpu_scale(backend *be, tensor x, float s)
{
    (void)be;
    int64_t n = tensor_numel(x);
    float *p = F(x);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        p[i] *= s;
}

static void cpu_clamp(backend *be, tensor x, float lo, float hi)
{
    (void)be;
    int64_t n = tensor_numel(x);
    float *p = F(x);
    for (int64_t i = 0; i < n; i++)
        p[i] = p[i] < lo ? lo : p[i] > hi ? hi : p[i];
}

static void cpu_dropout_forward(backend *be, tensor out, tensor in, float p, uint64_t seed)
{
    (void)be;
    int64_t n = tensor_numel(in);
    const float *x = CF(in);
    float *y = F(out);
    if (p <= 0.0f) {
        if (y != x)
            memcpy(y, x, (size_t)n * sizeof(float));
        return;
    }
    float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        y[i] = dropout_keep(seed, (uint64_t)i, p) ? x[i] * keep_scale : 0.0f;
}

static void cpu_dropout_backward(backend *be, tensor din, tensor dout, float p, uint64_t seed)
{
    cpu_dropout_forward(be, din, dout, p, seed);
}

/* ---- layer normalisation ------------------------------------------------- */

static void cpu_layernorm_forward(backend *be, tensor out, tensor mean, tensor rstd, tensor in, tensor w, tensor b,
                                  float eps)
{
    (void)be;
    int64_t m = tensor_rows(in), c = tensor_cols(in);
    const float *x = CF(in), *g = CF(w), *bb = CF(b);
    float *tmp, *y = output_floats(out, &tmp), *mu = F(mean), *rs = F(rstd);
#pragma omp parallel for schedule(static) if (m * c > PAR_MIN)
    for (int64_t r = 0; r < m; r++) {
        const float *xr = x + r * c;
        double s = 0;
        for (int64_t i = 0; i < c; i++)
            s += xr[i];
        double mu_r = s / (double)c, v = 0;
        for (int64_t i = 0; i < c; i++) {
            double d = xr[i] - mu_r;
            v += d * d;
        }
        double rstd_r = 1.0 / sqrt(v / (double)c + eps);
        float *yr = y + r * c;
        for (int64_t i = 0; i < c; i++)
            yr[i] = (float)((xr[i] - mu_r) * rstd_r) * g[i] + bb[i];
        mu[r] = (float)mu_r;
        rs[r] = (float)rstd_r;
    }
    store_output(out, tmp);
}

static void cpu_layernorm_backward(backend *be, tensor din, int accumulate, tensor dw, tensor db, tensor dout,
                                   tensor in, tensor w, tensor mean, tensor rstd)
{
    (void)be;
    int64_t m = tensor_rows(in), c = tensor_cols(in);
    const float *x = CF(in), *g = CF(w), *dy = CF(dout), *mu = CF(mean), *rs = CF(rstd);
    /* the parameter gradients first: they read dout, which din may overwrite */
    if (tensor_present(dw) || tensor_present(db)) {
        float *dg = tensor_present(dw) ? F(dw) : NULL, *dbb = tensor_present(db) ? F(db) : NULL;
#pragma omp parallel for schedule(static) if (m * c > PAR_MIN)
        for (int64_t c0 = 0; c0 < c; c0 += 64) {
            int64_t c1 = c0 + 64 < c ? c0 + 64 : c;
            double ag[64] = {0}, ab[64] = {0};
            for (int64_t r = 0; r < m; r++)
                for (int64_t i = c0; i < c1; i++) {
                    double n = (x[r * c + i] - mu[r]) * (double)rs[r];
                    ag[i - c0] += dy[r * c + i] * n;
                    ab[i - c0] += dy[r * c + i];
                }
            for (int64_t i = c0; i < c1; i++) {
                if (dg)
                    dg[i] += (float)ag[i - c0];
                if (dbb)
                    dbb[i] += (float)ab[i - c0];
            }
        }
    }
    if (tensor_present(din)) {
        float *dx = F(din);
#pragma omp parallel for schedule(static) if (m * c > PAR_MIN)
        for (int64_t r = 0; r < m; r++) {
            const float *xr = x + r * c, *dyr = dy + r * c;
            double mean_dn = 0, mean_dn_n = 0;
            for (int64_t i = 0; i < c; i++) {
                double n = (xr[i] - mu[r]) * (double)rs[r];
                double dn = (double)dyr[i] * g[i];
                mean_dn += dn;
                mean_dn_n += dn * n;
            }
            mean_dn /= (double)c;
            mean_dn_n /= (double)c;
            float *dxr = dx + r * c;
            for (int64_t i = 0; i < c; i++) {
                double n = (xr[i] - mu[r]) * (double)rs[r];
                double dn = (double)dyr[i] * g[i];
                float v = (float)((dn - mean_dn - n * mean_dn_n) * rs[r]);
                dxr[i] = accumulate ? dxr[i] + v : v;
            }
        }
    }
}

/* The fused residual sublayer runs the unfused ops' loops in their order:
 * the CPU back end is the reference, and these are its arithmetic. */
static void cpu_residual_layernorm_forward(backend *be, tensor out, tensor mean, tensor rstd, tensor sum, tensor x,
                                           tensor bias, tensor residual, tensor w, tensor b, float eps, float p,
                                           uint64_t seed)
{
    int64_t m = tensor_rows(x), c = tensor_cols(x);
    const float *xs = CF(x), *bb = tensor_present(bias) ? CF(bias) : NULL, *res = CF(residual);
    float *s = F(sum);
    float keep_scale = p > 0 ? 1.0f / (1.0f - p) : 1.0f;
#pragma omp parallel for schedule(static) if (m * c > PAR_MIN)
    for (int64_t r = 0; r < m; r++)
        for (int64_t i = r * c; i < (r + 1) * c; i++) {
            float v = bb ? xs[i] + bb[i - r * c] : xs[i];
            if (p > 0)
                v = dropout_keep(seed, (uint64_t)i, p) ? v * keep_scale : 0.0f;
            s[i] = v + res[i];
        }
    cpu_layernorm_forward(be, out, mean, rstd, sum, w, b, eps);
}

static void cpu_residual_layernorm_backward(backend *be, tensor dsum, int accumulate, tensor dx, tensor dbias,
                                            tensor dw, tensor db, tensor dout, tensor sum, tensor w, tensor mean,
                                            tensor rstd, float p, uint64_t seed)
{
    assert(!(p > 0 && dx.data == dsum.data));
    cpu_layernorm_backward(be, dsum, accumulate, dw, db, dout, sum, w, mean, rstd);
    tensor grad = dsum; /* d(x): dsum through the dropout */
    if (tensor_present(dx) && dx.data != dsum.data) {
        cpu_dropout_backward(be, dx, dsum, p, seed);
        grad = dx;
    }
    assert(p <= 0 || grad.data != dsum.data || !tensor_present(dbias));
    if (tensor_present(dbias))
        column_sums_add(F(dbias), CF(grad), tensor_rows(grad), tensor_cols(grad));
}

/* ---- attention ----------------------------------------------------------- */

/* Attention runs per (batch, head) as matrix products on the strided q, k,
 * v views (no copies), with the softmax in place between them. The products
 * are issued one after another so that OpenBLAS threads each of them; a
 * parallel loop around them would put two thread pools on the same cores. */

/* A scratch row block for the dropped-out probabilities, kept between calls
 * (grown, never shrunk), so that steps allocate nothing once warm. */
static float *scratch_probs(size_t n)
{
    static _Thread_local float *buf;
    static _Thread_local size_t cap;
    if (n > cap) {
        free(buf);
        buf = malloc(sizeof(float) * n);
        cap = buf ? n : 0;
    }
    return buf;
}

/* s (Tq, Tk): scores already scaled; adds the mask and causal term, then
 * softmax per row, in place. */
static void softmax_masked(const attn_params *p, float *s, const float *mask)
{
    int tq = p->q_len, tk = p->kv_len;
    for (int i = 0; i < tq; i++) {
        float *si = s + (size_t)i * tk;
        float mx = -INFINITY;
        for (int j = 0; j < tk; j++) {
            if (mask)
                si[j] += mask[j];
            if (p->causal && j > i)
                si[j] += p->causal_value;
            mx = si[j] > mx ? si[j] : mx;
        }
        double sum = 0;
        for (int j = 0; j < tk; j++) {
            si[j] = expf(si[j] - mx);
            sum += si[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < tk; j++)
            si[j] *= inv;
    }
}

/* dst = src with dropout applied (keep / (1 - p)), for (b, h). */
static void dropout_probs(const attn_params *p, int b, int h, const float *src, float *dst)
{
    int tq = p->q_len, tk = p->kv_len;
    float keep_scale = 1.0f / (1.0f - p->dropout);
    uint64_t base = ((uint64_t)b * p->heads + h) * (uint64_t)tq * tk;
    for (size_t e = 0; e < (size_t)tq * tk; e++)
        dst[e] = dropout_keep(p->seed, base + e, p->dropout) ? src[e] * keep_scale : 0.0f;
}

static void cpu_attention_forward(backend *be, const attn_params *p, tensor out, tensor probs, tensor q, tensor k,
                                  tensor v, tensor mask)
{
    (void)be;
    int B = p->batch, H = p->heads, tq = p->q_len, tk = p->kv_len, d = p->head_dim;
    int64_t out_stride = (int64_t)H * d;
    const float *msk = tensor_present(mask) ? CF(mask) : NULL;
    float *pd = p->dropout > 0 ? scratch_probs((size_t)tq * tk) : NULL;
    float *tmp, *o = output_floats(out, &tmp);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t kv_b = p->kv_shared ? 0 : (size_t)b;
            const float *qb = CF(q) + (size_t)b * tq * p->q_stride + h * d;
            const float *kb = CF(k) + kv_b * tk * p->k_stride + h * d;
            const float *vb = CF(v) + kv_b * tk * p->v_stride + h * d;
            float *s = F(probs) + ((size_t)b * H + h) * tq * tk;
            float *ob = o + (size_t)b * tq * out_stride + h * d;
            /* S = scale * Q K^T (Tq, Tk) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tq, tk, d, p->scale, qb, (int)p->q_stride, kb,
                        (int)p->k_stride, 0.0f, s, tk);
            softmax_masked(p, s, msk ? msk + (size_t)b * tk : NULL);
            const float *pv = s;
            if (pd) {
                dropout_probs(p, b, h, s, pd);
                pv = pd;
            }
            /* O = P' V (Tq, D) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tq, d, tk, 1.0f, pv, tk, vb, (int)p->v_stride,
                        0.0f, ob, (int)out_stride);
        }
    store_output(out, tmp);
}

static void cpu_attention_backward(backend *be, const attn_params *p, tensor dq, tensor dk, tensor dv,
                                   tensor scratch, tensor dout, tensor out, tensor probs, tensor q, tensor k, tensor v,
                                   tensor mask)
{
    (void)be, (void)out, (void)mask; /* probs holds what they would give */
    assert(!p->kv_shared);
    int B = p->batch, H = p->heads, tq = p->q_len, tk = p->kv_len, d = p->head_dim;
    int64_t out_stride = (int64_t)H * d;
    float keep_scale = p->dropout > 0 ? 1.0f / (1.0f - p->dropout) : 1.0f;
    float *pd = p->dropout > 0 ? scratch_probs((size_t)tq * tk) : NULL;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *qb = CF(q) + (size_t)b * tq * p->q_stride + h * d;
            const float *kb = CF(k) + (size_t)b * tk * p->k_stride + h * d;
            const float *vb = CF(v) + (size_t)b * tk * p->v_stride + h * d;
            float *dqb = F(dq) + (size_t)b * tq * p->q_stride + h * d;
            float *dkb = F(dk) + (size_t)b * tk * p->k_stride + h * d;
            float *dvb = F(dv) + (size_t)b * tk * p->v_stride + h * d;
            const float *dob = CF(dout) + (size_t)b * tq * out_stride + h * d;
            const float *s = CF(probs) + ((size_t)b * H + h) * tq * tk;
            float *ds = F(scratch) + ((size_t)b * H + h) * tq * tk;
            const float *pv = s;
            if (pd) {
                dropout_probs(p, b, h, s, pd);
                pv = pd;
            }
            /* dV = P'^T dO (Tk, D); dP' = dO V^T (Tq, Tk) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, tk, d, tq, 1.0f, pv, tk, dob, (int)out_stride, 0.0f,
                        dvb, (int)p->v_stride);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tq, tk, d, 1.0f, dob, (int)out_stride, vb,
                        (int)p->v_stride, 0.0f, ds, tk);
            /* through the dropout, then the softmax: dS = P (dP - sum(P dP)) * scale */
            uint64_t base = ((uint64_t)b * H + h) * (uint64_t)tq * tk;
            for (int i = 0; i < tq; i++) {
                const float *si = s + (size_t)i * tk;
                float *dsi = ds + (size_t)i * tk;
                if (p->dropout > 0)
                    for (int j = 0; j < tk; j++)
                        dsi[j] = dropout_keep(p->seed, base + (uint64_t)i * tk + j, p->dropout) ? dsi[j] * keep_scale
                                                                                              : 0.0f;
                double dot = 0;
                for (int j = 0; j < tk; j++)
                    dot += (double)si[j] * dsi[j];
                for (int j = 0; j < tk; j++)
                    dsi[j] = si[j] * (dsi[j] - (float)dot) * p->scale;
            }
            /* dQ = dS K (Tq, D); dK = dS^T Q (Tk, D) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tq, d, tk, 1.0f, ds, tk, kb, (int)p->k_stride, 0.0f,
                        dqb, (int)p->q_stride);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, tk, d, tq, 1.0f, ds, tk, qb, (int)p->q_stride, 0.0f,
                        dkb, (int)p->k_stride);
        }
}

/* ---- embeddings ---------------------------------------------------------- */

static void cpu_embedding_forward(backend *be, tensor out, tensor ids, tensor word, tensor pos, tensor type_row)
{
    (void)be;
    int64_t bsz = ids.shape[0], t = ids.shape[1], c = tensor_cols(word);
    const float *tt = tensor_present(type_row) ? CF(type_row) : NULL;
#pragma omp parallel for schedule(static) if (bsz * t * c > PAR_MIN)
    for (int64_t r = 0; r < bsz * t; r++) {
        const float *we = CF(word) + (size_t)I32(ids)[r] * c;
        const float *pe = CF(pos) + (r % t) * c;
        float *o = F(out) + r * c;
        for (int64_t i = 0; i < c; i++)
            o[i] = tt ? (we[i] + tt[i]) + pe[i] : we[i] + pe[i];
    }
}

static void cpu_embedding_backward(backend *be, tensor dword, tensor dpos, tensor dtype_row, tensor dout, tensor ids)
{
    (void)be;
    int64_t bsz = ids.shape[0], t = ids.shape[1], c = tensor_cols(dout);
    /* Rows in order, columns in parallel: deterministic scatter-add. */
#pragma omp parallel for schedule(static) if (bsz * t * c > PAR_MIN)
    for (int64_t c0 = 0; c0 < c; c0 += 64) {
        int64_t c1 = c0 + 64 < c ? c0 + 64 : c;
        for (int64_t r = 0; r < bsz * t; r++) {
            const float *g = CF(dout) + r * c;
            if (tensor_present(dword)) {
                float *dw = F(dword) + (size_t)I32(ids)[r] * c;
                for (int64_t i = c0; i < c1; i++)
                    dw[i] += g[i];
            }
            if (tensor_present(dpos)) {
                float *dp = F(dpos) + (r % t) * c;
                for (int64_t i = c0; i < c1; i++)
                    dp[i] += g[i];
            }
            if (tensor_present(dtype_row))
                for (int64_t i = c0; i < c1; i++)
                    F(dtype_row)[i] += g[i];
        }
    }
}

/* ---- ViT input ------------------------------------------------------------ */

static void cpu_patchify(backend *be, tensor patches, tensor images, int patch)
{
    (void)be;
    int64_t bsz = images.shape[0], ch = images.shape[1], hh = images.shape[2], ww = images.shape[3];
    int64_t gy = hh / patch, gx = ww / patch, pp = (int64_t)patch * patch;
#pragma omp parallel for schedule(static) collapse(2) if (bsz * ch * hh * ww > PAR_MIN)
    for (int64_t b = 0; b < bsz; b++)
        for (int64_t n = 0; n < gy * gx; n++) {
            int64_t py = n / gx, px = n % gx;
            float *dst = F(patches) + (b * gy * gx + n) * ch * pp;
            for (int64_t c = 0; c < ch; c++)
                for (int64_t y = 0; y < patch; y++) {
                    const float *src = CF(images) + ((b * ch + c) * hh + py * patch + y) * ww + px * patch;
                    memcpy(dst + c * pp + y * patch, src, sizeof(float) * (size_t)patch);
                }
        }
}

static void cpu_vit_embed_forward(backend *be, tensor out, tensor patch_tokens, tensor cls, tensor pos)
{
    (void)be;
    int64_t bsz = out.shape[0], t = out.shape[1], c = out.shape[2];
#pragma omp parallel for schedule(static) if (bsz * t * c > PAR_MIN)
    for (int64_t r = 0; r < bsz * t; r++) {
        int64_t b = r / t, i = r % t;
        const float *src = i == 0 ? CF(cls) : CF(patch_tokens) + (b * (t - 1) + i - 1) * c;
        const float *pe = CF(pos) + i * c;
        float *o = F(out) + r * c;
        for (int64_t e = 0; e < c; e++)
            o[e] = src[e] + pe[e];
    }
}

static void cpu_vit_embed_backward(backend *be, tensor dpatch_tokens, tensor dcls, tensor dpos, tensor dout)
{
    (void)be;
    int64_t bsz = dout.shape[0], t = dout.shape[1], c = dout.shape[2];
    if (tensor_present(dpatch_tokens))
        for (int64_t b = 0; b < bsz; b++)
            memcpy(F(dpatch_tokens) + b * (t - 1) * c, CF(dout) + (b * t + 1) * c, sizeof(float) * (size_t)((t - 1) * c));
    for (int64_t b = 0; b < bsz; b++) {
        const float *g = CF(dout) + b * t * c;
        if (tensor_present(dcls))
            for (int64_t e = 0; e < c; e++)
                F(dcls)[e] += g[e];
        if (tensor_present(dpos))
            for (int64_t e = 0; e < t * c; e++)
                F(dpos)[e] += g[e];
    }
}

/* ---- row operations ------------------------------------------------------- */

static void cpu_l2norm_forward(backend *be, tensor out, tensor norms, tensor in)
{
    (void)be;
    int64_t m = tensor_rows(in), c = tensor_cols(in);
    for (int64_t r = 0; r < m; r++) {
        const float *x = CF(in) + r * c;
        double s = 0;
        for (int64_t i = 0; i < c; i++)
            s += (double)x[i] * x[i];
        float nrm = (float)sqrt(s);
        float denom = nrm > 1e-12f ? nrm : 1e-12f;
        float *y = F(out) + r * c;
        for (int64_t i = 0; i < c; i++)
            y[i] = x[i] / denom;
        F(norms)[r] = nrm;
    }
}

static void cpu_l2norm_backward(backend *be, tensor din, tensor dout, tensor out, tensor norms)
{
    (void)be;
    int64_t m = tensor_rows(out), c = tensor_cols(out);
    for (int64_t r = 0; r < m; r++) {
        const float *y = CF(out) + r * c, *dy = CF(dout) + r * c;
        float *dx = F(din) + r * c;
        float nrm = CF(norms)[r];
        if (nrm > 1e-12f) {
            double dot = 0;
            for (int64_t i = 0; i < c; i++)
                dot += (double)dy[i] * y[i];
            for (int64_t i = 0; i < c; i++)
                dx[i] = (float)((dy[i] - y[i] * dot) / nrm);
        } else {
            for (int64_t i = 0; i < c; i++)
                dx[i] = dy[i] / 1e-12f;
        }
    }
}

static void cpu_copy_rows(backend *be, tensor dst, int64_t dst_stride, tensor src, int64_t src_stride, int64_t rows,
                          int64_t cols, int accumulate)
{
    (void)be;
    for (int64_t r = 0; r < rows; r++) {
        float *d = F(dst) + r * dst_stride;
        const float *s = CF(src) + r * src_stride;
        if (accumulate)
            for (int64_t i = 0; i < cols; i++)
                d[i] += s[i];
        else
            memcpy(d, s, sizeof(float) * (size_t)cols);
    }
}

static void cpu_gather_rows(backend *be, tensor out, tensor in, tensor idx)
{
    (void)be;
    int64_t n = idx.shape[0], row = in.shape[0] ? tensor_numel(in) / in.shape[0] : 0;
#pragma omp parallel for schedule(static) if (n * row > PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        memcpy(F(out) + i * row, CF(in) + (size_t)I32(idx)[i] * row, sizeof(float) * (size_t)row);
}

static void cpu_scatter_add_rows(backend *be, tensor dst, tensor src, tensor idx)
{
    (void)be;
    int64_t n = idx.shape[0], row = dst.shape[0] ? tensor_numel(dst) / dst.shape[0] : 0;
#pragma omp parallel for schedule(static) if (n * row > PAR_MIN)
    for (int64_t c0 = 0; c0 < row; c0 += 256) {
        int64_t c1 = c0 + 256 < row ? c0 + 256 : row;
        for (int64_t i = 0; i < n; i++) {
            float *d = F(dst) + (size_t)I32(idx)[i] * row;
            const float *s = CF(src) + i * row;
            for (int64_t c = c0; c < c1; c++)
                d[c] += s[c];
        }
    }
}

static void cpu_div_scalar_forward(backend *be, tensor out, tensor in, tensor s)
{
    (void)be;
    int64_t n = tensor_numel(in);
    float d = CF(s)[0];
    for (int64_t i = 0; i < n; i++)
        F(out)[i] = CF(in)[i] / d;
}

static void cpu_div_scalar_backward(backend *be, tensor din, tensor ds, tensor dout, tensor out, tensor s)
{
    (void)be;
    int64_t n = tensor_numel(dout);
    float d = CF(s)[0];
    double acc = 0;
    for (int64_t i = 0; i < n; i++)
        acc += (double)CF(dout)[i] * CF(out)[i];
    if (tensor_present(din))
        for (int64_t i = 0; i < n; i++)
            F(din)[i] = CF(dout)[i] / d;
    if (tensor_present(ds))
        F(ds)[0] += (float)(-acc / d);
}

static void cpu_softmax_rows(backend *be, tensor out, tensor in)
{
    (void)be;
    int64_t m = tensor_rows(in), c = tensor_cols(in);
#pragma omp parallel for schedule(static) if (m * c > PAR_MIN)
    for (int64_t r = 0; r < m; r++) {
        const float *x = CF(in) + r * c;
        float *y = F(out) + r * c;
        float mx = -INFINITY;
        for (int64_t i = 0; i < c; i++)
            mx = x[i] > mx ? x[i] : mx;
        double sum = 0;
        for (int64_t i = 0; i < c; i++) {
            y[i] = expf(x[i] - mx);
            sum += y[i];
        }
        float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < c; i++)
            y[i] *= inv;
    }
}

static void cpu_softmax_xent(backend *be, const xent_params *p, tensor loss, tensor dlogits, tensor logits,
                             tensor labels, tensor soft)
{
    (void)be;
    int64_t m = tensor_rows(logits), c = tensor_cols(logits);
    const int32_t *lab = tensor_present(labels) ? I32(labels) : NULL;
    const float *q = tensor_present(soft) ? CF(soft) : NULL;
#pragma omp parallel for schedule(static) if (m * c > PAR_MIN)
    for (int64_t r = 0; r < m; r++) {
        const float *x = CF(logits) + r * c;
        float *g = tensor_present(dlogits) ? F(dlogits) + r * c : NULL;
        int32_t y = lab ? lab[r] : -1;
        if (lab && y == -100) {
            F(loss)[r] = 0.0f;
            if (g)
                memset(g, 0, sizeof(float) * (size_t)c);
            continue;
        }
        float mx = -INFINITY;
        for (int64_t i = 0; i < c; i++)
            mx = x[i] > mx ? x[i] : mx;
        double sum = 0;
        for (int64_t i = 0; i < c; i++)
            sum += exp((double)x[i] - mx);
        double lse = mx + log(sum);
        const float *qr = q ? q + r * c : NULL;
        double total = 0, tsum = 0;
        for (int64_t i = 0; i < c; i++) {
            double t = 0;
            if (qr)
                t += p->soft_weight * qr[i];
            if (lab && i == y)
                t += p->hard_weight;
            if (t != 0) {
                total -= t * (x[i] - lse);
                tsum += t;
            }
        }
        F(loss)[r] = (float)total;
        if (g)
            for (int64_t i = 0; i < c; i++) {
                double t = (qr ? p->soft_weight * qr[i] : 0) + (lab && i == y ? p->hard_weight : 0);
                g[i] = (float)(p->grad_scale * (tsum * exp((double)x[i] - lse) - t));
            }
    }
}

static void cpu_reduce_sum(backend *be, tensor out, tensor in, float scale)
{
    (void)be;
    int64_t n = tensor_numel(in);
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += CF(in)[i];
    F(out)[0] = (float)(s * scale);
}

static void cpu_reduce_sumsq(backend *be, tensor out, tensor in, float scale)
{
    (void)be;
    int64_t n = tensor_numel(in);
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)CF(in)[i] * CF(in)[i];
    F(out)[0] = (float)(s * scale);
}

static void cpu_fill(backend *be, tensor x, float value)
{
    (void)be;
    int64_t n = tensor_numel(x);
    for (int64_t i = 0; i < n; i++)
        F(x)[i] = value;
}

static void cpu_fill_normal(backend *be, tensor x, float mean, float std, uint64_t seed)
{
    (void)be;
    rng_state r;
    rng_seed(&r, seed);
    int64_t n = tensor_numel(x);
    for (int64_t i = 0; i < n; i++)
        F(x)[i] = mean + std * (float)rng_normal(&r);
}

static void cpu_cast(backend *be, tensor dst, tensor src)
{
    (void)be;
    int64_t n = tensor_numel(src);
    if (dst.dtype == src.dtype) {
        memcpy(dst.data, src.data, tensor_nbytes(src));
    } else if (dst.dtype == DTYPE_F32) {
        dtype_convert_to_f32(F(dst), src.data, (size_t)n, src.dtype);
    } else if (src.dtype == DTYPE_F32 && dst.dtype == DTYPE_BF16) {
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)dst.data)[i] = f32_to_bf16(CF(src)[i]);
    } else if (src.dtype == DTYPE_F32 && dst.dtype == DTYPE_F16) {
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)dst.data)[i] = f32_to_f16(CF(src)[i]);
    } else {
        assert(!"cpu_cast: unsupported conversion");
    }
}

static void cpu_adamw(backend *be, tensor param, tensor grad, tensor m, tensor v, tensor decay, float lr,
                      float beta1, float beta2, float eps, float weight_decay, int step)
{
    (void)be;
    int64_t n = tensor_numel(param);
    /* The same arithmetic, in the same order, as torch.optim.AdamW. An
     * element without decay is multiplied by 1 - lr * 0 = 1 exactly, as
     * torch's group with weight_decay 0 does. */
    float bias1 = 1.0f - powf(beta1, (float)step);
    float bias2 = 1.0f - powf(beta2, (float)step);
    float step_size = lr / bias1;
    float bias2_sqrt = sqrtf(bias2);
    float decayed = 1.0f - lr * weight_decay;
    float *w = F(param), *mm = F(m), *vv = F(v);
    const float *g = CF(grad);
    const uint8_t *flags = decay.data;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        w[i] *= !flags || flags[i] ? decayed : 1.0f;
        mm[i] = mm[i] * beta1 + (1.0f - beta1) * g[i];
        vv[i] = vv[i] * beta2 + (1.0f - beta2) * g[i] * g[i];
        float denom = sqrtf(vv[i]) / bias2_sqrt + eps;
        w[i] -= step_size * (mm[i] / denom);
    }
}

static void cpu_ema(backend *be, tensor target, tensor source, float momentum)
{
    (void)be;
    int64_t n = tensor_numel(target);
    float *t = F(target);
    const float *s = CF(source);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        t[i] = t[i] * momentum + s[i] * (1.0f - momentum);
}

/* Each row on its own, in a fixed order, so the result does not depend on the
 * thread count; the CUDA kernel repeats this arithmetic. */
static void cpu_itm_negatives(backend *be, tensor w, tensor neg, tensor logits, tensor same, int uniform,
                              uint64_t seed)
{
    (void)be;
    int64_t B = w.shape[0], N = tensor_cols(logits);
    const int32_t *grp = tensor_present(same) ? I32(same) : NULL;
#pragma omp parallel for schedule(static) if (B * B > PAR_MIN)
    for (int64_t i = 0; i < B; i++) {
        const float *x = CF(logits) + i * N;
        float *wi = F(w) + i * B;
        float mx = -INFINITY;
        for (int64_t j = 0; j < B; j++)
            mx = x[j] > mx ? x[j] : mx;
        double s = 0;
        for (int64_t j = 0; j < B; j++)
            s += exp((double)x[j] - mx);
        for (int64_t j = 0; j < B; j++) {
            int excluded = grp ? grp[j] == grp[i] : j == i;
            wi[j] = excluded ? 0.0f : uniform ? 1.0f : (float)(exp((double)x[j] - mx) / s);
        }
        ((int32_t *)neg.data)[i] = B < 2 ? 0 : itm_draw_index(wi, B, i, itm_draw_uniform(seed, i));
    }
}

static const struct backend_ops cpu_ops = {
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .copy = cpu_memcpy,
    .zero = cpu_zero,
    .synchronize = cpu_synchronize,
    .matmul = cpu_matmul,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .bias_gelu_forward = cpu_bias_gelu_forward,
    .bias_gelu_backward = cpu_bias_gelu_backward,
    .residual_layernorm_forward = cpu_residual_layernorm_forward,
    .residual_layernorm_backward = cpu_residual_layernorm_backward,
    .add = cpu_add,
    .accumulate = cpu_accumulate,
    .scale = cpu_scale,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .dropout_forward = cpu_dropout_forward,
    .dropout_backward = cpu_dropout_backward,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .patchify = cpu_patchify,
    .vit_embed_forward = cpu_vit_embed_forward,
    .vit_embed_backward = cpu_vit_embed_backward,
    .l2norm_forward = cpu_l2norm_forward,
    .l2norm_backward = cpu_l2norm_backward,
    .copy_rows = cpu_copy_rows,
    .gather_rows = cpu_gather_rows,
    .scatter_add_rows = cpu_scatter_add_rows,
    .div_scalar_forward = cpu_div_scalar_forward,
    .div_scalar_backward = cpu_div_scalar_backward,
    .clamp = cpu_clamp,
    .softmax_rows = cpu_softmax_rows,
    .softmax_xent = cpu_softmax_xent,
    .reduce_sum = cpu_reduce_sum,
    .reduce_sumsq = cpu_reduce_sumsq,
    .itm_negatives = cpu_itm_negatives,
    .fill = cpu_fill,
    .fill_normal = cpu_fill_normal,
    .cast = cpu_cast,
    .adamw = cpu_adamw,
    .ema = cpu_ema,
};

static backend cpu_backend = {&cpu_ops, BACKEND_CPU, "cpu", NULL, ATTN_LAYOUT_PROBS, DTYPE_F32};
static backend cpu_bf16_backend = {&cpu_ops, BACKEND_CPU, "cpu-bf16", NULL, ATTN_LAYOUT_PROBS, DTYPE_BF16};

backend *backend_cpu(void) { return &cpu_backend; }
backend *backend_cpu_bf16(void) { return &cpu_bf16_backend; }
