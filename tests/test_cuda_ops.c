/* The CUDA back end against the CPU back end, op by op: fresh random inputs
 * (never zero) at several shapes, odd sizes included; the same op on both;
 * ||cuda - cpu|| / ||cpu|| <= 1e-5 for forward results and 1e-4 for
 * gradients (fp32), 1e-2 for the products in bf16 mode. Every output the op writes is poisoned with NaN on the
 * device first, so an element it forgets stays NaN and fails; outputs that
 * accumulate start from the same random values on both sides. Dropout masks
 * and ITM's drawn negatives must be identical, and two runs of the same ops
 * bitwise equal.
 *
 * Without a CUDA device (or in a build without CUDA) the program reports one
 * skipped test with the reason. */
#include "albef.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "ops/ops.h"
#include "testutil.h"
#ifdef ALBEF_HAVE_CUDA
#include "../cuda/cuda_backend.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FWD_TOL 1e-5
#define BWD_TOL 1e-4

static backend *gpu;
static rng_state rng;
static char no_device[512];

/* ---- tensors on both back ends ------------------------------------------- */

/* The same tensor twice: host memory for the CPU back end, device memory for
 * the CUDA one. */
typedef struct {
    tensor cpu, gpu;
} pair;

static pair pair_alloc(albef_dtype dt, int ndim, const int64_t *shape)
{
    pair p;
    p.cpu = tensor_make(NULL, dt, ndim, shape);
    size_t bytes = tensor_nbytes(p.cpu);
    p.cpu.data = malloc(bytes ? bytes : 1);
    assert_non_null(p.cpu.data);
    p.gpu = p.cpu;
    p.gpu.data = gpu->ops->alloc(gpu, bytes);
    assert_non_null(p.gpu.data);
    return p;
}
#define PAIR(...) pair_alloc(DTYPE_F32, TENSOR_NDIM(__VA_ARGS__), TENSOR_SHAPE(__VA_ARGS__))

static void pair_free(pair *p)
{
    free(p->cpu.data);
    gpu->ops->free(gpu, p->gpu.data);
    memset(p, 0, sizeof *p);
}

static size_t pair_bytes(const pair *p) { return tensor_nbytes(p->cpu); }
/* The device copy's size: the host copy's, except for attention state. */
static size_t pair_gpu_bytes(const pair *p) { return tensor_nbytes(p->gpu); }

/* The device copy := the host copy. */
static void pair_sync(pair *p) { gpu->ops->upload(gpu, p->gpu.data, p->cpu.data, pair_bytes(p)); }

/* Standard normal values times std, on both sides. */
static void pair_randn(pair *p, float std)
{
    float *h = p->cpu.data;
    for (int64_t i = 0; i < tensor_numel(p->cpu); i++) {
        float v = std * (float)rng_normal(&rng);
        h[i] = v != 0.0f ? v : std; /* never zero: zero would hide unwritten elements */
    }
    pair_sync(p);
}

/* An output: NaN on the device, anything on the host (the CPU op writes it). */
static void pair_poison(pair *p)
{
    size_t n = pair_gpu_bytes(p) / sizeof(float);
    float *nan = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        nan[i] = NAN;
    gpu->ops->upload(gpu, p->gpu.data, nan, pair_gpu_bytes(p));
    free(nan);
    memset(p->cpu.data, 0, pair_bytes(p));
}

static pair pair_i32(const int32_t *values, int ndim, const int64_t *shape)
{
    pair p = pair_alloc(DTYPE_I32, ndim, shape);
    memcpy(p.cpu.data, values, tensor_nbytes(p.cpu));
    pair_sync(&p);
    return p;
}

/* A view `offset` elements into p, with another shape. */
static pair pair_view(const pair *p, int64_t offset, int ndim, const int64_t *shape)
{
    pair v;
    v.cpu = tensor_make((float *)p->cpu.data + offset, p->cpu.dtype, ndim, shape);
    v.gpu = tensor_make((float *)p->gpu.data + offset, p->gpu.dtype, ndim, shape);
    return v;
}

/* Runs a statement once per back end: ON(p) is p's tensor on that side, BE
 * the back end. */
#define EACH_BACKEND for (int side_ = 0; side_ < 2; side_++)
#define BE (side_ ? gpu : backend_cpu())
#define ON(p) (side_ ? (p).gpu : (p).cpu)

static void expect_no_cuda_error(void)
{
#ifdef ALBEF_HAVE_CUDA
    char msg[512];
    if (cuda_backend_last_error(gpu, msg, sizeof msg))
        fail_msg("CUDA back end error: %s", msg);
#endif
}

static float *download(const pair *p)
{
    float *h = malloc(pair_gpu_bytes(p) ? pair_gpu_bytes(p) : 1);
    gpu->ops->download(gpu, h, p->gpu.data, pair_gpu_bytes(p));
    return h;
}

/* ||cuda - cpu|| / ||cpu|| over n floats; fails above tol, or on any NaN. */
static double compare_values(const char *what, const float *got, const float *ref, size_t n, double tol)
{
    double d2 = 0, r2 = 0, max_abs = 0;
    size_t at = 0, nans = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i]) && !isnan(ref[i])) {
            if (!nans++)
                at = i;
            continue;
        }
        double d = (double)got[i] - ref[i];
        d2 += d * d;
        r2 += (double)ref[i] * ref[i];
        if (fabs(d) > max_abs && !nans) {
            max_abs = fabs(d);
            at = i;
        }
    }
    double rel = r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
    printf("# %-44s %8zu values, |d|/|ref| %.2e, max |d| %.2e\n", what, n, rel, max_abs);
    if (nans)
        fail_msg("%s: %zu of %zu values are NaN (unwritten?), first at [%zu] (expected %.9g)", what, nans, n, at,
                 ref[at]);
    if (!(rel <= tol))
        fail_msg("%s: |d|/|ref| %.3e > %.0e; max |d| %.3g at [%zu]: got %.9g expected %.9g", what, rel, tol, max_abs,
                 at, got[at], ref[at]);
    return rel;
}

static double expect_close(const char *what, const pair *p, double tol)
{
    expect_no_cuda_error();
    float *got = download(p);
    double rel = compare_values(what, got, p->cpu.data, pair_bytes(p) / sizeof(float), tol);
    free(got);
    return rel;
}

/* The device copy equals `bytes` of host memory bit for bit. */
static void expect_bitwise(const char *what, const pair *p, const void *ref)
{
    expect_no_cuda_error();
    float *got = download(p);
    size_t n = pair_gpu_bytes(p) / sizeof(float);
    const float *r = ref;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &r[i], sizeof(float)) != 0)
            fail_msg("%s: run 2 differs from run 1 at [%zu]: %.9g vs %.9g", what, i, got[i], r[i]);
    printf("# %-44s %8zu values bitwise equal\n", what, n);
    free(got);
}

/* p := q on both sides (host and device copies). */
static void pair_assign(pair *p, const pair *q)
{
    memcpy(p->cpu.data, q->cpu.data, pair_bytes(q));
    pair_sync(p);
}

/* The device copy of p, for a rerun's bitwise comparison. */
static float *snapshot(const pair *p)
{
    expect_no_cuda_error();
    return download(p);
}

/* ---- the device ------------------------------------------------------------ */

static void test_no_cuda_device(void **state)
{
    (void)state;
    printf("# skipped: no CUDA device (%s)\n", no_device);
    skip();
}

static void test_table_is_complete(void **state)
{
    (void)state;
    char missing[1024];
    int n = backend_missing_ops(gpu, missing, sizeof missing);
    if (n)
        fail_msg("the CUDA back end lacks %d ops: %s", n, missing);
}

/* Uploads return before their copies finish (through pinned staging memory,
 * reused after each synchronisation): the source may be overwritten at
 * once, many uploads in a row wrap around the staging memory, and one larger
 * than it takes the synchronous path. Every copy must land intact. */
static void test_uploads(void **state)
{
    (void)state;
    const size_t sizes_mb[] = {1, 100, 100, 100, 300, 3};
    enum { N = sizeof sizes_mb / sizeof sizes_mb[0] };
    void *dev[N];
    size_t n[N];
    float *host = malloc((size_t)300 << 20);
    assert_non_null(host);
    for (int k = 0; k < N; k++) {
        n[k] = (sizes_mb[k] << 20) / sizeof(float);
        dev[k] = gpu->ops->alloc(gpu, n[k] * sizeof(float));
        assert_non_null(dev[k]);
        for (size_t i = 0; i < n[k]; i++)
            host[i] = (float)(k * 1000003 + (int64_t)(i % 999983));
        gpu->ops->upload(gpu, dev[k], host, n[k] * sizeof(float));
        memset(host, 0xff, n[k] * sizeof(float)); /* the caller reuses its buffer at once */
    }
    for (int k = 0; k < N; k++) {
        gpu->ops->download(gpu, host, dev[k], n[k] * sizeof(float));
        for (size_t i = 0; i < n[k]; i++)
            if (host[i] != (float)(k * 1000003 + (int64_t)(i % 999983)))
                fail_msg("upload %d (%zu MiB): [%zu] = %.9g, expected %.9g", k, sizes_mb[k], i, host[i],
                         (float)(k * 1000003 + (int64_t)(i % 999983)));
        gpu->ops->free(gpu, dev[k]);
    }
    expect_no_cuda_error();
    printf("# %d uploads (1 to 300 MiB) without synchronising in between: all intact\n", N);
    free(host);
}

/* ---- dense algebra ----------------------------------------------------------- */

/* Every shape and transpose case of matmul as the back end is set (fp32 or
 * bf16), within tol; `tag` names the setting. */
static void run_matmul_cases(const char *tag, double tol)
{
    const int64_t shapes[][4] = {{1, 1, 1, 1}, {1, 7, 13, 5}, {1, 64, 33, 17}, {3, 9, 31, 12}, {2, 40, 64, 65}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int broadcast_b = 0; broadcast_b < 2; broadcast_b++) {
                    int64_t B = shapes[s][0], M = shapes[s][1], K = shapes[s][2], N = shapes[s][3];
                    if (broadcast_b && B == 1)
                        continue;
                    pair a, b, c;
                    if (B == 1) {
                        a = ta ? PAIR(K, M) : PAIR(M, K);
                        b = tb ? PAIR(N, K) : PAIR(K, N);
                        c = PAIR(M, N);
                    } else {
                        a = ta ? PAIR(B, K, M) : PAIR(B, M, K);
                        b = broadcast_b ? (tb ? PAIR(N, K) : PAIR(K, N)) : (tb ? PAIR(B, N, K) : PAIR(B, K, N));
                        c = PAIR(B, M, N);
                    }
                    pair_randn(&a, 1);
                    pair_randn(&b, 1);
                    for (int accumulate = 0; accumulate < 2; accumulate++) {
                        float alpha = accumulate ? 0.7f : 1.0f, beta = accumulate ? 0.3f : 0.0f;
                        if (accumulate)
                            pair_randn(&c, 1);
                        else
                            pair_poison(&c);
                        EACH_BACKEND op_matmul(BE, ON(c), ON(a), ON(b), ta, tb, alpha, beta);
                        char what[128];
                        snprintf(what, sizeof what, "matmul%s B%lld %lldx%lldx%lld t%d%d%s%s", tag, (long long)B,
                                 (long long)M, (long long)K, (long long)N, ta, tb, broadcast_b ? " b2d" : "",
                                 accumulate ? " beta" : "");
                        expect_close(what, &c, tol);
                    }
                    pair_free(&a), pair_free(&b), pair_free(&c);
                }
}

static void test_matmul(void **state)
{
    (void)state;
    run_matmul_cases("", FWD_TOL);
}

/* The linear layers as the back end is set (cuBLAS or cuBLASLt, fp32 or
 * TF32), within fwd_tol / bwd_tol; `tag` names the setting. */
static void run_linear_cases(const char *tag, double fwd_tol, double bwd_tol)
{
    const int64_t shapes[][3] = {{1, 1, 1}, {5, 3, 7}, {37, 64, 96}, {200, 768, 33}, {1030, 65, 130}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        pair x = PAIR(M, K), w = PAIR(N, K), bias = PAIR(N), y = PAIR(M, N);
        pair dy = PAIR(M, N), dx = PAIR(M, K), dw = PAIR(N, K), db = PAIR(N);
        pair_randn(&x, 1), pair_randn(&w, 0.2f), pair_randn(&bias, 1), pair_randn(&dy, 1);
        char what[128];
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            pair_poison(&y);
            EACH_BACKEND op_linear_forward(BE, ON(y), ON(x), ON(w), with_bias ? ON(bias) : tensor_none());
            snprintf(what, sizeof what, "linear_forward%s %lldx%lldx%lld%s", tag, (long long)M, (long long)K,
                     (long long)N, with_bias ? " bias" : "");
            expect_close(what, &y, fwd_tol);
        }
        for (int accumulate = 0; accumulate < 2; accumulate++) {
            if (accumulate)
                pair_randn(&dx, 1);
            else
                pair_poison(&dx);
            pair_randn(&dw, 1), pair_randn(&db, 1);
            EACH_BACKEND op_linear_backward(BE, ON(dx), accumulate, ON(dw), ON(db), ON(dy), ON(x), ON(w));
            snprintf(what, sizeof what, "linear_backward%s %lldx%lldx%lld acc%d dx", tag, (long long)M, (long long)K,
                     (long long)N, accumulate);
            expect_close(what, &dx, bwd_tol);
            snprintf(what, sizeof what, "linear_backward%s %lldx%lldx%lld acc%d dw", tag, (long long)M, (long long)K,
                     (long long)N, accumulate);
            expect_close(what, &dw, bwd_tol);
            snprintf(what, sizeof what, "linear_backward%s %lldx%lldx%lld acc%d dbias", tag, (long long)M, (long long)K,
                     (long long)N, accumulate);
            expect_close(what, &db, bwd_tol);
        }
        /* no din wanted (a frozen input) */
        pair_randn(&dw, 1);
        EACH_BACKEND op_linear_backward(BE, tensor_none(), 0, ON(dw), tensor_none(), ON(dy), ON(x), ON(w));
        expect_close("linear_backward dw only", &dw, bwd_tol);
        pair_free(&x), pair_free(&w), pair_free(&bias), pair_free(&y);
        pair_free(&dy), pair_free(&dx), pair_free(&dw), pair_free(&db);
    }
}

static void test_linear(void **state)
{
    (void)state;
    run_linear_cases("", FWD_TOL, BWD_TOL);
}

#ifdef ALBEF_HAVE_CUDA
/* linear_backward on the device twice from the same accumulators: dx, dw
 * and dbias bitwise equal (on cuBLASLt, dbias comes from the BGRADB
 * epilogue). */
static void expect_linear_backward_rerun(const char *tag)
{
    int64_t M = 300, K = 768, N = 97;
    pair x = PAIR(M, K), w = PAIR(N, K), dy = PAIR(M, N), dx = PAIR(M, K), dw = PAIR(N, K), db = PAIR(N);
    pair dw0 = PAIR(N, K), db0 = PAIR(N);
    pair_randn(&x, 1), pair_randn(&w, 0.1f), pair_randn(&dy, 1), pair_randn(&dw0, 1), pair_randn(&db0, 1);
    float *first[3] = {NULL, NULL, NULL};
    char what[96];
    for (int run = 0; run < 2; run++) {
        pair_assign(&dw, &dw0), pair_assign(&db, &db0);
        op_linear_backward(gpu, dx.gpu, 0, dw.gpu, db.gpu, dy.gpu, x.gpu, w.gpu);
        pair *res[3] = {&dx, &dw, &db};
        const char *names[3] = {"dx", "dw", "dbias"};
        for (int i = 0; i < 3; i++) {
            if (run == 0) {
                first[i] = snapshot(res[i]);
            } else {
                snprintf(what, sizeof what, "linear_backward%s rerun %s", tag, names[i]);
                expect_bitwise(what, res[i], first[i]);
                free(first[i]);
            }
        }
    }
    pair *all[] = {&x, &w, &dy, &dx, &dw, &db, &dw0, &db0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        pair_free(all[i]);
}
#endif

/* The cuBLASLt path (bias in the epilogue, the bias gradient in the weight
 * gradient's, a plan per shape), run twice so that the second pass uses the
 * cached plans, and rerun bitwise; then TF32 on both paths, against the fp32
 * CPU within TF32's rounding (10-bit mantissas). */
static void test_linear_cublaslt_and_tf32(void **state)
{
    (void)state;
#ifdef ALBEF_HAVE_CUDA
    cuda_backend_set_lt(gpu, 1);
    run_linear_cases(" lt", FWD_TOL, BWD_TOL);
    run_linear_cases(" lt cached", FWD_TOL, BWD_TOL);
    expect_linear_backward_rerun(" lt");
    assert_int_equal(cuda_backend_set_tf32(gpu, 1), 0);
    run_linear_cases(" lt tf32", 3e-3, 3e-3);
    cuda_backend_set_lt(gpu, 0);
    run_linear_cases(" tf32", 3e-3, 3e-3);
    assert_int_equal(cuda_backend_set_tf32(gpu, 0), 0);
#else
    skip();
#endif
}

/* bf16 mode: every product rounds its inputs to bf16 (8-bit mantissas) and
 * accumulates in fp32, against the fp32 CPU within 1e-2; matmul, then the
 * linear layers on cuBLAS and on cuBLASLt. TF32 is off throughout. */
static void test_products_bf16(void **state)
{
    (void)state;
#ifdef ALBEF_HAVE_CUDA
    const double tol = 1e-2;
    assert_int_equal(backend_set_precision(gpu, "bf16"), ALBEF_OK);
    run_matmul_cases(" bf16", tol);
    run_linear_cases(" bf16", tol, tol);
    cuda_backend_set_lt(gpu, 1);
    run_linear_cases(" lt bf16", tol, tol);
    cuda_backend_set_lt(gpu, 0);
    assert_int_equal(backend_set_precision(gpu, "fp32"), ALBEF_OK);
    /* back in parity mode, fp32 tolerances hold again */
    run_matmul_cases(" fp32 again", FWD_TOL);
#else
    skip();
#endif
}

/* ---- bf16 storage ---------------------------------------------------------------- */

#ifdef ALBEF_HAVE_CUDA
/* A bf16 pair: both sides hold the same bf16 bits. */
static pair pair_bf16(int ndim, const int64_t *shape)
{
    return pair_alloc(DTYPE_BF16, ndim, shape);
}
#define PAIR16(...) pair_bf16(TENSOR_NDIM(__VA_ARGS__), TENSOR_SHAPE(__VA_ARGS__))

/* Standard normal values times std rounded to bf16, on both sides. */
static void pair_randn_bf16(pair *p, float std)
{
    uint16_t *h = p->cpu.data;
    for (int64_t i = 0; i < tensor_numel(p->cpu); i++) {
        float v = std * (float)rng_normal(&rng);
        h[i] = f32_to_bf16(v != 0.0f ? v : std);
    }
    pair_sync(p);
}

/* Any pair's device copy filled with 0xff bytes: NaN as fp32 and as bf16. */
static void pair_poison_bytes(pair *p)
{
    size_t n = pair_gpu_bytes(p);
    unsigned char *ff = malloc(n ? n : 1);
    memset(ff, 0xff, n);
    gpu->ops->upload(gpu, p->gpu.data, ff, n);
    free(ff);
    memset(p->cpu.data, 0, pair_bytes(p));
}

/* A bf16 pair's device values against its host values (both widened). */
static void expect_close_bf16(const char *what, const pair *p, double tol)
{
    expect_no_cuda_error();
    size_t n = (size_t)tensor_numel(p->cpu);
    uint16_t *got16 = malloc(sizeof(uint16_t) * (n ? n : 1));
    gpu->ops->download(gpu, got16, p->gpu.data, sizeof(uint16_t) * n);
    float *got = malloc(sizeof(float) * (n ? n : 1)), *ref = malloc(sizeof(float) * (n ? n : 1));
    bf16_to_f32_array(got, got16, n);
    bf16_to_f32_array(ref, p->cpu.data, n);
    compare_values(what, got, ref, n, tol);
    free(got16), free(got), free(ref);
}
#endif

/* bf16 mode's storage against the CPU's bf16 reference (backend_cpu_bf16):
 * the ops that write a bf16 activation (layer norms, bias + GELU,
 * attention), the attention backward reading one, and the linear layers
 * reading one. Stored values within 1e-2 (one bf16 rounding of values that
 * agree to fp32 precision differs by at most 2^-8); products of the same
 * bf16 operands within the fp32 tolerances. */
static void test_bf16_storage(void **state)
{
    (void)state;
#ifdef ALBEF_HAVE_CUDA
    const double tol = 1e-2;
    backend *ref = backend_cpu_bf16();
    assert_int_equal(backend_set_precision(gpu, "bf16"), ALBEF_OK);
    assert_int_equal(gpu->act_dtype, DTYPE_BF16);
    const int64_t shapes[][2] = {{37, 64}, {200, 768}, {5, 1025}};
    char what[128];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], C = shapes[s][1];
        pair x = PAIR(M, C), res = PAIR(M, C), w = PAIR(C), b = PAIR(C), bias = PAIR(C), y = PAIR16(M, C);
        pair mean = PAIR(M), rstd = PAIR(M), sum = PAIR(M, C), pre = PAIR(M, C);
        pair_randn(&x, 2), pair_randn(&res, 1), pair_randn(&w, 1), pair_randn(&b, 1), pair_randn(&bias, 0.5f);
        pair_poison_bytes(&y), pair_poison(&mean), pair_poison(&rstd);
        op_layernorm_forward(ref, y.cpu, mean.cpu, rstd.cpu, x.cpu, w.cpu, b.cpu, 1e-6f);
        op_layernorm_forward(gpu, y.gpu, mean.gpu, rstd.gpu, x.gpu, w.gpu, b.gpu, 1e-6f);
        snprintf(what, sizeof what, "layernorm_forward bf16 out %lldx%lld", (long long)M, (long long)C);
        expect_close_bf16(what, &y, tol);
        expect_close("layernorm_forward bf16: mean", &mean, FWD_TOL);

        pair_poison_bytes(&y), pair_poison(&sum), pair_poison(&mean);
        op_residual_layernorm_forward(ref, y.cpu, mean.cpu, rstd.cpu, sum.cpu, x.cpu, bias.cpu, res.cpu, w.cpu, b.cpu,
                                      1e-12f, 0.1f, 31);
        op_residual_layernorm_forward(gpu, y.gpu, mean.gpu, rstd.gpu, sum.gpu, x.gpu, bias.gpu, res.gpu, w.gpu, b.gpu,
                                      1e-12f, 0.1f, 31);
        snprintf(what, sizeof what, "residual_layernorm_forward bf16 out %lldx%lld", (long long)M, (long long)C);
        expect_close_bf16(what, &y, tol);
        expect_close("residual_layernorm_forward bf16: sum", &sum, FWD_TOL);

        pair_poison_bytes(&y), pair_poison(&pre);
        op_bias_gelu_forward(ref, y.cpu, pre.cpu, x.cpu, bias.cpu);
        op_bias_gelu_forward(gpu, y.gpu, pre.gpu, x.gpu, bias.gpu);
        snprintf(what, sizeof what, "bias_gelu_forward bf16 out %lldx%lld", (long long)M, (long long)C);
        expect_close_bf16(what, &y, tol);
        expect_close("bias_gelu_forward bf16: pre", &pre, FWD_TOL);

        /* a linear reading the bf16 activation: the same operands on both sides */
        int64_t N = 96;
        pair in16 = PAIR16(M, C), lw = PAIR(N, C), lb = PAIR(N), out = PAIR(M, N), dy = PAIR(M, N);
        pair dx = PAIR(M, C), dw = PAIR(N, C), db = PAIR(N);
        pair_randn_bf16(&in16, 1), pair_randn(&lw, 0.1f), pair_randn(&lb, 1), pair_randn(&dy, 1);
        pair_poison(&out);
        op_linear_forward(ref, out.cpu, in16.cpu, lw.cpu, lb.cpu);
        op_linear_forward(gpu, out.gpu, in16.gpu, lw.gpu, lb.gpu);
        snprintf(what, sizeof what, "linear_forward bf16 in %lldx%lldx%lld", (long long)M, (long long)C, (long long)N);
        expect_close(what, &out, FWD_TOL);
        pair_poison(&dx), pair_randn(&dw, 1), pair_randn(&db, 1);
        op_linear_backward(ref, dx.cpu, 0, dw.cpu, db.cpu, dy.cpu, in16.cpu, lw.cpu);
        op_linear_backward(gpu, dx.gpu, 0, dw.gpu, db.gpu, dy.gpu, in16.gpu, lw.gpu);
        snprintf(what, sizeof what, "linear_backward bf16 in %lldx%lldx%lld dw", (long long)M, (long long)C,
                 (long long)N);
        expect_close(what, &dw, BWD_TOL);
        expect_close("linear_backward bf16 in: dx", &dx, BWD_TOL);
        expect_close("linear_backward bf16 in: dbias", &db, BWD_TOL);
        pair *all[] = {&x, &res, &w, &b, &bias, &y, &mean, &rstd, &sum, &pre, &in16, &lw, &lb, &out, &dy, &dx, &dw, &db};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            pair_free(all[i]);
    }

    /* attention: ViT's fused qkv at 257 tokens, and text against 577 image tokens with a mask */
    const int cases[][4] = {{2, 257, 257, 1}, {3, 35, 577, 0}};
    for (size_t c = 0; c < 2; c++) {
        int B = cases[c][0], Tq = cases[c][1], Tk = cases[c][2], fused = cases[c][3], H = 12, D = 64;
        int64_t C = (int64_t)H * D, qs = fused ? 3 * C : C;
        attn_params p = {.batch = B, .heads = H, .q_len = Tq, .kv_len = Tk, .head_dim = D, .q_stride = qs,
                         .k_stride = qs, .v_stride = qs, .scale = 0.125f, .dropout = 0.1f, .seed = 9};
        pair qb = PAIR(B, Tq, qs), kb = PAIR(B, Tk, qs), vb = PAIR(B, Tk, qs), mask = PAIR(B, Tk);
        pair_randn(&qb, 1), pair_randn(&kb, 1), pair_randn(&vb, 1);
        float *mh = mask.cpu.data;
        for (int64_t i = 0; i < (int64_t)B * Tk; i++)
            mh[i] = i % Tk >= Tk - 3 * (i / Tk + 1) ? -10000.0f : 0.0f;
        pair_sync(&mask);
        pair q = qb, k = fused ? pair_view(&qb, C, 3, TENSOR_SHAPE(B, Tk, C)) : kb;
        pair v = fused ? pair_view(&qb, 2 * C, 3, TENSOR_SHAPE(B, Tk, C)) : vb;
        q.cpu.shape[2] = q.gpu.shape[2] = C;
        pair o = PAIR16(B, Tq, C), dout = PAIR(B, Tq, C), dq = PAIR(B, Tq, qs), dk = PAIR(B, Tk, qs),
             dv = PAIR(B, Tk, qs);
        pair_randn(&dout, 1);
        /* state and scratch: each back end's own layout */
        pair st = PAIR(B, H, Tq, Tk), sc = PAIR(B, H, Tq, Tk);
        tensor st_g = tensor_f32(st.gpu.data, B, H, Tq, attention_state_cols(gpu, Tk));
        tensor sc_g = tensor_f32(sc.gpu.data, B, H, Tq, attention_scratch_cols(gpu, Tk));
        tensor mask_c = fused ? tensor_none() : mask.cpu, mask_g = fused ? tensor_none() : mask.gpu;
        pair_poison_bytes(&o);
        op_attention_forward(ref, &p, o.cpu, st.cpu, q.cpu, k.cpu, v.cpu, mask_c);
        op_attention_forward(gpu, &p, o.gpu, st_g, q.gpu, k.gpu, v.gpu, mask_g);
        snprintf(what, sizeof what, "attention_forward bf16 out %dx%d", Tq, Tk);
        expect_close_bf16(what, &o, tol);
        pair gq = fused ? pair_view(&dq, 0, 3, TENSOR_SHAPE(B, Tq, C)) : dq;
        pair gk = fused ? pair_view(&dq, C, 3, TENSOR_SHAPE(B, Tk, C)) : dk;
        pair gv = fused ? pair_view(&dq, 2 * C, 3, TENSOR_SHAPE(B, Tk, C)) : dv;
        pair_poison(&dq), pair_poison(&dk), pair_poison(&dv);
        op_attention_backward(ref, &p, gq.cpu, gk.cpu, gv.cpu, sc.cpu, dout.cpu, o.cpu, st.cpu, q.cpu, k.cpu, v.cpu,
                              mask_c);
        op_attention_backward(gpu, &p, gq.gpu, gk.gpu, gv.gpu, sc_g, dout.gpu, o.gpu, st_g, q.gpu, k.gpu, v.gpu,
                              mask_g);
        snprintf(what, sizeof what, "attention_backward from a bf16 out %dx%d dq", Tq, Tk);
        expect_close(what, &dq, tol);
        if (!fused) {
            expect_close("attention_backward from a bf16 out: dk", &dk, tol);
            expect_close("attention_backward from a bf16 out: dv", &dv, tol);
        }
        pair *all[] = {&qb, &kb, &vb, &mask, &o, &dout, &dq, &dk, &dv, &st, &sc};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            pair_free(all[i]);
    }

    /* outside bf16 mode a bf16 input is refused, naming the op */
    assert_int_equal(backend_set_precision(gpu, "fp32"), ALBEF_OK);
    assert_int_equal(gpu->act_dtype, DTYPE_F32);
    pair in16 = PAIR16(4, 8), lw = PAIR(3, 8), out = PAIR(4, 3);
    pair_randn_bf16(&in16, 1), pair_randn(&lw, 1);
    op_linear_forward(gpu, out.gpu, in16.gpu, lw.gpu, tensor_none());
    char msg[512];
    assert_int_not_equal(cuda_backend_last_error(gpu, msg, sizeof msg), 0);
    printf("# recorded: %s\n", msg);
    assert_non_null(strstr(msg, "linear_forward"));
    assert_non_null(strstr(msg, "bf16 mode"));
    cuda_backend_clear_error(gpu);
    pair_free(&in16), pair_free(&lw), pair_free(&out);
#else
    skip();
#endif
}

/* ---- elementwise --------------------------------------------------------------- */

static const int64_t sizes[] = {1, 1000, 4097, 65537};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void test_gelu(void **state)
{
    (void)state;
    for (size_t s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        pair x = PAIR(n), y = PAIR(n), dy = PAIR(n), dx = PAIR(n);
        pair_randn(&x, 2), pair_randn(&dy, 1), pair_poison(&y), pair_poison(&dx);
        EACH_BACKEND op_gelu_forward(BE, ON(y), ON(x));
        expect_close("gelu_forward", &y, FWD_TOL);
        EACH_BACKEND op_gelu_backward(BE, ON(dx), ON(dy), ON(x));
        expect_close("gelu_backward", &dx, BWD_TOL);
        /* in place, as the model calls it */
        EACH_BACKEND op_gelu_backward(BE, ON(dy), ON(dy), ON(x));
        expect_close("gelu_backward in place", &dy, BWD_TOL);
        pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
    }
}

static void test_add_scale_clamp_fill(void **state)
{
    (void)state;
    for (size_t s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        pair a = PAIR(n), b = PAIR(n), out = PAIR(n);
        pair_randn(&a, 1), pair_randn(&b, 1), pair_poison(&out);
        EACH_BACKEND op_add(BE, ON(out), ON(a), ON(b));
        expect_close("add", &out, FWD_TOL);
        EACH_BACKEND op_accumulate(BE, ON(a), ON(b));
        expect_close("accumulate", &a, FWD_TOL);
        EACH_BACKEND op_scale(BE, ON(a), -0.37f);
        expect_close("scale", &a, FWD_TOL);
        EACH_BACKEND op_clamp(BE, ON(a), -0.2f, 0.3f);
        expect_close("clamp", &a, FWD_TOL);
        pair_poison(&out);
        EACH_BACKEND op_fill(BE, ON(out), 0.125f);
        expect_close("fill", &out, FWD_TOL);
        pair_randn(&a, 1), pair_randn(&b, 1);
        EACH_BACKEND op_ema(BE, ON(a), ON(b), 0.995f);
        expect_close("ema", &a, FWD_TOL);
        pair_free(&a), pair_free(&b), pair_free(&out);
    }
}

/* Dropout keeps the same elements on both back ends: the inputs are never
 * zero, so a zero output is a dropped element. */
static void expect_same_mask(const char *what, const pair *p)
{
    float *got = download(p);
    const float *ref = p->cpu.data;
    size_t n = pair_bytes(p) / sizeof(float), differ = 0, first = 0, dropped = 0;
    for (size_t i = 0; i < n; i++) {
        dropped += ref[i] == 0.0f;
        if ((got[i] == 0.0f) != (ref[i] == 0.0f) && !differ++)
            first = i;
    }
    free(got);
    printf("# %-44s %8zu values, %zu dropped, masks %s\n", what, n, dropped, differ ? "DIFFER" : "identical");
    if (differ)
        fail_msg("%s: the masks differ at %zu of %zu elements, first [%zu]", what, differ, n, first);
}

static void test_dropout(void **state)
{
    (void)state;
    const float ps[] = {0.1f, 0.5f};
    for (size_t s = 0; s < NSIZES; s++)
        for (int k = 0; k < 2; k++) {
            int64_t n = sizes[s];
            uint64_t seed = 0x1234567ull + s * 77 + (uint64_t)k;
            pair x = PAIR(n), y = PAIR(n), dy = PAIR(n), dx = PAIR(n);
            pair_randn(&x, 1), pair_randn(&dy, 1), pair_poison(&y), pair_poison(&dx);
            EACH_BACKEND op_dropout_forward(BE, ON(y), ON(x), ps[k], seed);
            expect_close("dropout_forward", &y, FWD_TOL);
            expect_same_mask("dropout_forward mask", &y);
            EACH_BACKEND op_dropout_backward(BE, ON(dx), ON(dy), ps[k], seed);
            expect_close("dropout_backward", &dx, BWD_TOL);
            expect_same_mask("dropout_backward mask", &dx);
            EACH_BACKEND op_dropout_forward(BE, ON(x), ON(x), ps[k], seed + 1);
            expect_same_mask("dropout in place mask", &x);
            /* p = 0: a copy */
            pair_poison(&y);
            EACH_BACKEND op_dropout_forward(BE, ON(y), ON(dy), 0.0f, seed);
            expect_close("dropout p=0", &y, FWD_TOL);
            pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
        }
}

static void test_cast(void **state)
{
    (void)state;
    int64_t n = 1001;
    pair x = PAIR(n), back = PAIR(n);
    pair_randn(&x, 3);
    const albef_dtype types[] = {DTYPE_BF16, DTYPE_F16};
    for (int k = 0; k < 2; k++) {
        pair h = pair_alloc(types[k], 1, TENSOR_SHAPE(n));
        EACH_BACKEND op_cast(BE, ON(h), ON(x));
        expect_no_cuda_error();
        uint16_t *got = malloc(sizeof(uint16_t) * (size_t)n);
        gpu->ops->download(gpu, got, h.gpu.data, sizeof(uint16_t) * (size_t)n);
        for (int64_t i = 0; i < n; i++)
            if (got[i] != ((uint16_t *)h.cpu.data)[i])
                fail_msg("cast f32 -> %s [%lld]: 0x%04x, CPU 0x%04x (from %.9g)", dtype_name(types[k]), (long long)i,
                         got[i], ((uint16_t *)h.cpu.data)[i], ((float *)x.cpu.data)[i]);
        printf("# cast f32 -> %-32s %8lld values bitwise equal\n", dtype_name(types[k]), (long long)n);
        free(got);
        pair_poison(&back);
        EACH_BACKEND op_cast(BE, ON(back), ON(h));
        expect_close(types[k] == DTYPE_BF16 ? "cast bf16 -> f32" : "cast f16 -> f32", &back, 0);
        pair_free(&h);
    }
    pair_poison(&back);
    EACH_BACKEND op_cast(BE, ON(back), ON(x));
    expect_close("cast f32 -> f32", &back, 0);
    pair_free(&x), pair_free(&back);
}

/* AdamW without decay flags (every element decays), then with flags in
 * runs of varying length (the trainer's whole-arena pass: decay off for
 * biases and norms), three steps each, against the CPU. */
static void test_adamw(void **state)
{
    (void)state;
    for (size_t s = 0; s < NSIZES; s++)
        for (int with_flags = 0; with_flags < 2; with_flags++) {
            int64_t n = sizes[s];
            pair w = PAIR(n), g = PAIR(n), m = PAIR(n), v = PAIR(n);
            pair flags = pair_alloc(DTYPE_U8, 1, TENSOR_SHAPE(n));
            uint8_t *fh = flags.cpu.data;
            for (int64_t i = 0, run = 0, on = 1; i < n; i++, run++) {
                if (run == 1 + (i * 7919) % 97)
                    on = !on, run = 0;
                fh[i] = (uint8_t)on;
            }
            pair_sync(&flags);
            pair_randn(&w, 1), pair_randn(&m, 0.1f), pair_randn(&v, 0.1f);
            float *vh = v.cpu.data;
            for (int64_t i = 0; i < n; i++)
                vh[i] *= vh[i];
            pair_sync(&v);
            for (int step = 1; step <= 3; step++) {
                pair_randn(&g, 1);
                EACH_BACKEND op_adamw(BE, ON(w), ON(g), ON(m), ON(v), with_flags ? ON(flags) : tensor_none(), 1e-3f,
                                      0.9f, 0.999f, 1e-8f, 0.02f, step);
            }
            const char *tag = with_flags ? " (decay flags)" : "";
            char what[64];
            snprintf(what, sizeof what, "adamw param%s", tag);
            expect_close(what, &w, 1e-6);
            snprintf(what, sizeof what, "adamw exp_avg%s", tag);
            expect_close(what, &m, 1e-6);
            snprintf(what, sizeof what, "adamw exp_avg_sq%s", tag);
            expect_close(what, &v, 1e-6);
            pair_free(&w), pair_free(&g), pair_free(&m), pair_free(&v), pair_free(&flags);
        }
}

static void test_fill_normal(void **state)
{
    (void)state;
    int64_t n = 200003;
    pair x = PAIR(n);
    pair_poison(&x);
    op_fill_normal(gpu, x.gpu, 0.5f, 2.0f, 99);
    expect_no_cuda_error();
    float *a = download(&x);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]))
            fail_msg("fill_normal [%lld] = %g", (long long)i, a[i]);
        s += a[i];
        s2 += (double)a[i] * a[i];
    }
    double mean = s / n, sd = sqrt(s2 / n - mean * mean);
    printf("# fill_normal: mean %.4f (0.5), std %.4f (2.0) over %lld values\n", mean, sd, (long long)n);
    assert_true(fabs(mean - 0.5) < 5 * 2.0 / sqrt((double)n));
    assert_true(fabs(sd - 2.0) < 0.02);
    op_fill_normal(gpu, x.gpu, 0.5f, 2.0f, 99);
    expect_bitwise("fill_normal same seed", &x, a);
    op_fill_normal(gpu, x.gpu, 0.5f, 2.0f, 100);
    float *b = download(&x);
    int64_t same = 0;
    for (int64_t i = 0; i < n; i++)
        same += a[i] == b[i];
    assert_true(same < n / 100);
    free(a), free(b);
    pair_free(&x);
}

/* ---- layer normalisation ---------------------------------------------------- */

static void test_layernorm(void **state)
{
    (void)state;
    const int64_t shapes[][2] = {{1, 8}, {3, 7}, {97, 768}, {130, 33}, {1030, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], C = shapes[s][1];
        pair x = PAIR(M, C), w = PAIR(C), b = PAIR(C), y = PAIR(M, C), mean = PAIR(M), rstd = PAIR(M);
        pair dy = PAIR(M, C), dx = PAIR(M, C), dw = PAIR(C), db = PAIR(C);
        pair_randn(&x, 2), pair_randn(&w, 1), pair_randn(&b, 1), pair_randn(&dy, 1);
        /* an offset mean, as residual streams have */
        float *xh = x.cpu.data;
        for (int64_t i = 0; i < M * C; i++)
            xh[i] += 3.0f;
        pair_sync(&x);
        const float eps[2] = {1e-6f, 1e-12f};
        for (int e = 0; e < 2; e++) {
            pair_poison(&y), pair_poison(&mean), pair_poison(&rstd);
            EACH_BACKEND op_layernorm_forward(BE, ON(y), ON(mean), ON(rstd), ON(x), ON(w), ON(b), eps[e]);
            expect_close("layernorm_forward out", &y, FWD_TOL);
            expect_close("layernorm_forward mean", &mean, FWD_TOL);
            expect_close("layernorm_forward rstd", &rstd, FWD_TOL);
        }
        for (int accumulate = 0; accumulate < 2; accumulate++) {
            if (accumulate)
                pair_randn(&dx, 1);
            else
                pair_poison(&dx);
            pair_randn(&dw, 1), pair_randn(&db, 1);
            EACH_BACKEND op_layernorm_backward(BE, ON(dx), accumulate, ON(dw), ON(db), ON(dy), ON(x), ON(w),
                                               ON(mean), ON(rstd));
            char what[96];
            snprintf(what, sizeof what, "layernorm_backward %lldx%lld acc%d dx", (long long)M, (long long)C,
                     accumulate);
            expect_close(what, &dx, BWD_TOL);
            expect_close("layernorm_backward dw", &dw, BWD_TOL);
            expect_close("layernorm_backward db", &db, BWD_TOL);
        }
        /* parameter gradients only, and input gradient only */
        pair_randn(&dw, 1);
        EACH_BACKEND op_layernorm_backward(BE, tensor_none(), 0, ON(dw), tensor_none(), ON(dy), ON(x), ON(w),
                                           ON(mean), ON(rstd));
        expect_close("layernorm_backward dw only", &dw, BWD_TOL);
        pair_poison(&dx);
        EACH_BACKEND op_layernorm_backward(BE, ON(dx), 0, tensor_none(), tensor_none(), ON(dy), ON(x), ON(w),
                                           ON(mean), ON(rstd));
        expect_close("layernorm_backward dx only", &dx, BWD_TOL);
        pair_free(&x), pair_free(&w), pair_free(&b), pair_free(&y), pair_free(&mean), pair_free(&rstd);
        pair_free(&dy), pair_free(&dx), pair_free(&dw), pair_free(&db);
    }
}

/* ---- fused sublayer ends ------------------------------------------------------ */

/* Shapes of the fused ops: the model's widths (768, 3072) and odd ones, at
 * one row, a few and more than a block's. */
static const int64_t fused_shapes[][2] = {{1, 768}, {37, 64}, {257, 100}, {37, 768}, {3, 7}, {257, 3072}};
#define NFUSED (sizeof fused_shapes / sizeof fused_shapes[0])

static void test_residual_layernorm(void **state)
{
    (void)state;
    for (size_t s = 0; s < NFUSED; s++) {
        int64_t M = fused_shapes[s][0], C = fused_shapes[s][1];
        pair x = PAIR(M, C), bias = PAIR(C), res = PAIR(M, C), w = PAIR(C), b = PAIR(C);
        pair sum = PAIR(M, C), out = PAIR(M, C), mean = PAIR(M), rstd = PAIR(M), inplace = PAIR(M, C);
        pair dout = PAIR(M, C), dsum = PAIR(M, C), dsum0 = PAIR(M, C), dx = PAIR(M, C);
        pair dbias = PAIR(C), dw = PAIR(C), db = PAIR(C), dbias0 = PAIR(C), dw0 = PAIR(C), db0 = PAIR(C);
        pair_randn(&x, 1), pair_randn(&bias, 1), pair_randn(&res, 2), pair_randn(&w, 1), pair_randn(&b, 1);
        pair_randn(&dout, 1), pair_randn(&dsum0, 1), pair_randn(&dbias0, 1), pair_randn(&dw0, 1),
            pair_randn(&db0, 1);
        char what[128];
        for (int k = 0; k < 4; k++) {
            int with_bias = k & 1;
            float p = k & 2 ? 0.1f : 0.0f;
            uint64_t seed = 0xabcdefull + (uint64_t)(s * 4 + k);
            tensor tb_cpu = with_bias ? bias.cpu : tensor_none(), tb_gpu = with_bias ? bias.gpu : tensor_none();
#define BIAS (side_ ? tb_gpu : tb_cpu)
            pair_poison(&sum), pair_poison(&out), pair_poison(&mean), pair_poison(&rstd);
            EACH_BACKEND op_residual_layernorm_forward(BE, ON(out), ON(mean), ON(rstd), ON(sum), ON(x), BIAS, ON(res),
                                                       ON(w), ON(b), 1e-12f, p, seed);
            snprintf(what, sizeof what, "residual_layernorm_forward %lldx%lld bias%d p%.1f sum", (long long)M,
                     (long long)C, with_bias, p);
            expect_close(what, &sum, FWD_TOL);
            expect_close("residual_layernorm_forward out", &out, FWD_TOL);
            expect_close("residual_layernorm_forward mean", &mean, FWD_TOL);
            expect_close("residual_layernorm_forward rstd", &rstd, FWD_TOL);
            float *run1[4] = {snapshot(&sum), snapshot(&out), snapshot(&mean), snapshot(&rstd)};
            /* in place, as the models run it: sum written over x */
            pair_assign(&inplace, &x);
            pair_poison(&out);
            EACH_BACKEND op_residual_layernorm_forward(BE, ON(out), ON(mean), ON(rstd), ON(inplace), ON(inplace),
                                                       BIAS, ON(res), ON(w), ON(b), 1e-12f, p, seed);
            expect_close("residual_layernorm_forward in place sum", &inplace, FWD_TOL);
            expect_close("residual_layernorm_forward in place out", &out, FWD_TOL);
            /* a rerun is bitwise equal */
            op_residual_layernorm_forward(gpu, out.gpu, mean.gpu, rstd.gpu, sum.gpu, x.gpu, tb_gpu, res.gpu, w.gpu,
                                          b.gpu, 1e-12f, p, seed);
            expect_bitwise("residual_layernorm_forward rerun sum", &sum, run1[0]);
            expect_bitwise("residual_layernorm_forward rerun out", &out, run1[1]);
            expect_bitwise("residual_layernorm_forward rerun mean", &mean, run1[2]);
            expect_bitwise("residual_layernorm_forward rerun rstd", &rstd, run1[3]);
            for (int i = 0; i < 4; i++)
                free(run1[i]);
#undef BIAS
            /* backward: dsum written or accumulated; dx its own tensor, or
             * (without dropout) dsum itself */
            for (int accumulate = 0; accumulate < 2; accumulate++)
                for (int own_dx = 0; own_dx < 2; own_dx++) {
                    if (!own_dx && p > 0)
                        continue;
                    if (accumulate)
                        pair_assign(&dsum, &dsum0);
                    else
                        pair_poison(&dsum);
                    pair_poison(&dx);
                    pair_assign(&dbias, &dbias0), pair_assign(&dw, &dw0), pair_assign(&db, &db0);
                    const pair *ddx = own_dx ? &dx : &dsum;
                    EACH_BACKEND op_residual_layernorm_backward(BE, ON(dsum), accumulate, ON(*ddx), ON(dbias),
                                                                ON(dw), ON(db), ON(dout), ON(sum), ON(w), ON(mean),
                                                                ON(rstd), p, seed);
                    snprintf(what, sizeof what, "residual_layernorm_backward %lldx%lld p%.1f acc%d dx%d dsum",
                             (long long)M, (long long)C, p, accumulate, own_dx);
                    expect_close(what, &dsum, BWD_TOL);
                    if (own_dx) {
                        expect_close("residual_layernorm_backward dx", &dx, BWD_TOL);
                        if (p > 0)
                            expect_same_mask("residual_layernorm_backward dx mask", &dx);
                    }
                    expect_close("residual_layernorm_backward dbias", &dbias, BWD_TOL);
                    expect_close("residual_layernorm_backward dw", &dw, BWD_TOL);
                    expect_close("residual_layernorm_backward db", &db, BWD_TOL);
                    if (accumulate && own_dx) {
                        float *run1b[5] = {snapshot(&dsum), snapshot(&dx), snapshot(&dbias), snapshot(&dw),
                                           snapshot(&db)};
                        pair_assign(&dsum, &dsum0), pair_assign(&dbias, &dbias0), pair_assign(&dw, &dw0),
                            pair_assign(&db, &db0);
                        op_residual_layernorm_backward(gpu, dsum.gpu, 1, dx.gpu, dbias.gpu, dw.gpu, db.gpu, dout.gpu,
                                                       sum.gpu, w.gpu, mean.gpu, rstd.gpu, p, seed);
                        expect_bitwise("residual_layernorm_backward rerun dsum", &dsum, run1b[0]);
                        expect_bitwise("residual_layernorm_backward rerun dx", &dx, run1b[1]);
                        expect_bitwise("residual_layernorm_backward rerun dbias", &dbias, run1b[2]);
                        expect_bitwise("residual_layernorm_backward rerun dw", &dw, run1b[3]);
                        expect_bitwise("residual_layernorm_backward rerun db", &db, run1b[4]);
                        for (int i = 0; i < 5; i++)
                            free(run1b[i]);
                    }
                }
        }
        /* no linear bias to take (ViT's first norm1) and no norm gradients */
        pair_assign(&dsum, &dsum0);
        pair_assign(&dbias, &dbias0);
        EACH_BACKEND op_residual_layernorm_backward(BE, ON(dsum), 1, ON(dsum), tensor_none(), tensor_none(),
                                                    tensor_none(), ON(dout), ON(sum), ON(w), ON(mean), ON(rstd), 0.0f,
                                                    0);
        expect_close("residual_layernorm_backward dsum only", &dsum, BWD_TOL);
        pair *all[] = {&x, &bias, &res, &w, &b, &sum, &out, &mean, &rstd, &inplace, &dout, &dsum, &dsum0, &dx,
                       &dbias, &dw, &db, &dbias0, &dw0, &db0};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            pair_free(all[i]);
    }
}

static void test_bias_gelu(void **state)
{
    (void)state;
    for (size_t s = 0; s < NFUSED; s++) {
        int64_t M = fused_shapes[s][0], N = fused_shapes[s][1];
        pair x = PAIR(M, N), bias = PAIR(N), pre = PAIR(M, N), out = PAIR(M, N), inplace = PAIR(M, N);
        pair dout = PAIR(M, N), din = PAIR(M, N), dbias = PAIR(N), dbias0 = PAIR(N);
        pair_randn(&x, 1.5f), pair_randn(&bias, 0.5f), pair_randn(&dout, 1), pair_randn(&dbias0, 1);
        char what[128];
        pair_poison(&pre), pair_poison(&out);
        EACH_BACKEND op_bias_gelu_forward(BE, ON(out), ON(pre), ON(x), ON(bias));
        snprintf(what, sizeof what, "bias_gelu_forward %lldx%lld pre", (long long)M, (long long)N);
        expect_close(what, &pre, FWD_TOL);
        expect_close("bias_gelu_forward out", &out, FWD_TOL);
        float *run1[2] = {snapshot(&pre), snapshot(&out)};
        op_bias_gelu_forward(gpu, out.gpu, pre.gpu, x.gpu, bias.gpu);
        expect_bitwise("bias_gelu_forward rerun pre", &pre, run1[0]);
        expect_bitwise("bias_gelu_forward rerun out", &out, run1[1]);
        free(run1[0]), free(run1[1]);
        pair_assign(&inplace, &x);
        pair_poison(&out);
        EACH_BACKEND op_bias_gelu_forward(BE, ON(out), ON(inplace), ON(inplace), ON(bias));
        expect_close("bias_gelu_forward in place pre", &inplace, FWD_TOL);
        expect_close("bias_gelu_forward in place out", &out, FWD_TOL);

        pair_poison(&din), pair_assign(&dbias, &dbias0);
        EACH_BACKEND op_bias_gelu_backward(BE, ON(din), ON(dbias), ON(dout), ON(pre));
        snprintf(what, sizeof what, "bias_gelu_backward %lldx%lld din", (long long)M, (long long)N);
        expect_close(what, &din, BWD_TOL);
        expect_close("bias_gelu_backward dbias", &dbias, BWD_TOL);
        float *run1b[2] = {snapshot(&din), snapshot(&dbias)};
        pair_assign(&dbias, &dbias0);
        op_bias_gelu_backward(gpu, din.gpu, dbias.gpu, dout.gpu, pre.gpu);
        expect_bitwise("bias_gelu_backward rerun din", &din, run1b[0]);
        expect_bitwise("bias_gelu_backward rerun dbias", &dbias, run1b[1]);
        free(run1b[0]), free(run1b[1]);
        /* in place, as the models run it; and without a bias gradient */
        pair_assign(&inplace, &dout), pair_assign(&dbias, &dbias0);
        EACH_BACKEND op_bias_gelu_backward(BE, ON(inplace), ON(dbias), ON(inplace), ON(pre));
        expect_close("bias_gelu_backward in place din", &inplace, BWD_TOL);
        expect_close("bias_gelu_backward in place dbias", &dbias, BWD_TOL);
        pair_poison(&din);
        EACH_BACKEND op_bias_gelu_backward(BE, ON(din), tensor_none(), ON(dout), ON(pre));
        expect_close("bias_gelu_backward no dbias", &din, BWD_TOL);
        pair *all[] = {&x, &bias, &pre, &out, &inplace, &dout, &din, &dbias, &dbias0};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            pair_free(all[i]);
    }
}

/* ---- attention ----------------------------------------------------------------- */

/* What each back end keeps between the passes (ops.h, enum attn_layout), or
 * the backward's scratch: the CPU's (B, H, Tq, Tk) on the host side, (B, H,
 * Tq, attention_state_cols or attention_scratch_cols) on the device (CUDA:
 * the log-sum-exp as max and log-sum, two floats per row; D, one). */
static pair attn_state_pair(int64_t B, int64_t H, int64_t Tq, int64_t Tk, int scratch)
{
    pair p;
    p.cpu = tensor_f32(NULL, B, H, Tq, Tk);
    p.cpu.data = malloc(tensor_nbytes(p.cpu));
    assert_non_null(p.cpu.data);
    p.gpu = tensor_f32(NULL, B, H, Tq, scratch ? attention_scratch_cols(gpu, Tk) : attention_state_cols(gpu, Tk));
    p.gpu.data = gpu->ops->alloc(gpu, tensor_nbytes(p.gpu));
    assert_non_null(p.gpu.data);
    return p;
}

enum attn_mask_kind {
    MASK_NONE,
    MASK_TAIL,     /* the last 2(b + 1) keys of batch row b at -10000 (padding) */
    MASK_ALL_LAST, /* MASK_TAIL, and every key of the last batch row at -10000 */
    MASK_TAIL_INF, /* the last 2(b + 1) keys of batch row b at -inf */
};

typedef struct {
    const char *name;
    int B, H, Tq, Tk, D;
    int fused;    /* q, k, v (and dq, dk, dv) are views into one (B, T, 3 H D) buffer */
    int masked;   /* enum attn_mask_kind: an additive (B, Tk) mask */
    int causal;
    float dropout;
    int kv_shared;
} attn_case;

static const attn_case attn_cases[] = {
    {"self", 2, 3, 7, 7, 16, 0, MASK_NONE, 0, 0, 0},
    {"vit fused qkv", 2, 2, 37, 37, 64, 1, MASK_NONE, 0, 0, 0},
    {"cross masked", 3, 2, 5, 43, 32, 0, MASK_TAIL, 0, 0, 0},
    {"causal masked", 2, 2, 9, 9, 8, 0, MASK_TAIL, 1, 0, 0},
    {"cross dropout", 3, 2, 11, 70, 32, 0, MASK_TAIL, 0, 0.1f, 0},
    {"self dropout fused", 2, 3, 33, 33, 24, 1, MASK_TAIL, 0, 0.25f, 0},
    {"head_dim 128, 3 tiles", 1, 2, 65, 65, 128, 0, MASK_NONE, 0, 0, 0},
    {"odd head_dim", 2, 1, 13, 29, 5, 0, MASK_TAIL, 0, 0, 0},
    {"kv_shared", 3, 2, 6, 41, 32, 0, MASK_TAIL, 0, 0, 1},
    /* ALBEF's shapes: text (35) against 577 image tokens (384 px), ViT self-attention at 256 px */
    {"text x image 35 x 577", 2, 2, 35, 577, 64, 0, MASK_NONE, 0, 0.1f, 0},
    {"text x image masked 35 x 577", 2, 2, 35, 577, 64, 0, MASK_TAIL, 0, 0, 0},
    {"vit self 257 fused dropout", 2, 2, 257, 257, 64, 1, MASK_NONE, 0, 0.1f, 0},
    {"head_dim 40", 2, 3, 45, 45, 40, 0, MASK_TAIL, 0, 0, 0},
    {"head_dim 72, causal", 2, 2, 40, 40, 72, 0, MASK_TAIL, 1, 0.1f, 0},
    {"batch 4, a row all at -10000", 4, 2, 30, 50, 64, 0, MASK_ALL_LAST, 0, 0, 0},
    {"keys at -inf", 3, 2, 20, 40, 32, 0, MASK_TAIL_INF, 0, 0.1f, 0},
};

/* The log-sum-exp of every (b, h, i) row of masked, scaled scores, in double
 * on the host: what the CUDA forward saves. */
static float *host_attention_lse(const attn_params *p, const float *q, const float *k, const float *mask)
{
    int B = p->batch, H = p->heads, Tq = p->q_len, Tk = p->kv_len, D = p->head_dim;
    float *lse = malloc(sizeof(float) * (size_t)B * H * Tq);
    double *s = malloc(sizeof(double) * (size_t)Tk);
    assert_non_null(lse);
    assert_non_null(s);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Tq; i++) {
                const float *qi = q + ((int64_t)b * Tq + i) * p->q_stride + h * D;
                double mx = -INFINITY;
                for (int j = 0; j < Tk; j++) {
                    const float *kj = k + ((int64_t)(p->kv_shared ? 0 : b) * Tk + j) * p->k_stride + h * D;
                    double dot = 0;
                    for (int d = 0; d < D; d++)
                        dot += (double)qi[d] * kj[d];
                    s[j] = dot * p->scale + (mask ? mask[(int64_t)b * Tk + j] : 0.0) +
                           (p->causal && j > i ? p->causal_value : 0.0);
                    mx = s[j] > mx ? s[j] : mx;
                }
                double sum = 0;
                for (int j = 0; j < Tk; j++)
                    sum += exp(s[j] - mx);
                lse[((int64_t)b * H + h) * Tq + i] = (float)(mx + log(sum));
            }
    free(s);
    return lse;
}

static void run_attention_case(const attn_case *c)
{
    int64_t B = c->B, H = c->H, Tq = c->Tq, Tk = c->Tk, D = c->D, C = H * D;
    int64_t kvB = c->kv_shared ? 1 : B;
    attn_params p = {.batch = c->B, .heads = c->H, .q_len = c->Tq, .kv_len = c->Tk, .head_dim = c->D,
                     .scale = 1.0f / sqrtf((float)D), .causal = c->causal, .causal_value = -10000.0f,
                     .dropout = c->dropout, .seed = 0xabcdef12345ull, .kv_shared = c->kv_shared};
    pair qkv = {0}, dqkv = {0}, qb = {0}, kb = {0}, vb = {0}, dqb = {0}, dkb = {0}, dvb = {0};
    pair q, k, v, dq, dk, dv;
    if (c->fused) {
        qkv = PAIR(B, Tq, 3 * C);
        dqkv = PAIR(B, Tq, 3 * C);
        pair_randn(&qkv, 1);
        q = pair_view(&qkv, 0, 3, TENSOR_SHAPE(B, Tq, C));
        k = pair_view(&qkv, C, 3, TENSOR_SHAPE(B, Tk, C));
        v = pair_view(&qkv, 2 * C, 3, TENSOR_SHAPE(B, Tk, C));
        dq = pair_view(&dqkv, 0, 3, TENSOR_SHAPE(B, Tq, C));
        dk = pair_view(&dqkv, C, 3, TENSOR_SHAPE(B, Tk, C));
        dv = pair_view(&dqkv, 2 * C, 3, TENSOR_SHAPE(B, Tk, C));
        p.q_stride = p.k_stride = p.v_stride = 3 * C;
    } else {
        qb = PAIR(B, Tq, C), kb = PAIR(kvB, Tk, C), vb = PAIR(kvB, Tk, C);
        dqb = PAIR(B, Tq, C), dkb = PAIR(B, Tk, C), dvb = PAIR(B, Tk, C);
        pair_randn(&qb, 1), pair_randn(&kb, 1), pair_randn(&vb, 1);
        q = qb, k = kb, v = vb, dq = dqb, dk = dkb, dv = dvb;
        p.q_stride = p.k_stride = p.v_stride = C;
    }
    pair out = PAIR(B, Tq, C), dout = PAIR(B, Tq, C);
    pair state = attn_state_pair(B, H, Tq, Tk, 0), scratch = attn_state_pair(B, H, Tq, Tk, 1);
    pair mask = PAIR(B, Tk);
    float *mh = mask.cpu.data;
    for (int64_t i = 0; i < B * Tk; i++) {
        int64_t b = i / Tk, j = i % Tk;
        int tail = j > Tk - 1 - (b + 1) * 2; /* the last 2(b+1) keys of row b */
        mh[i] = tail ? (c->masked == MASK_TAIL_INF ? -INFINITY : -10000.0f) : 0.0f;
        if (c->masked == MASK_ALL_LAST && b == B - 1)
            mh[i] = -10000.0f;
    }
    pair_sync(&mask);
    tensor mask_cpu = c->masked ? mask.cpu : tensor_none(), mask_gpu = c->masked ? mask.gpu : tensor_none();
#define ON_MASK (side_ ? mask_gpu : mask_cpu)
    pair_randn(&dout, 1);
    pair_poison(&out), pair_poison(&state);
    EACH_BACKEND op_attention_forward(BE, &p, ON(out), ON(state), ON(q), ON(k), ON(v), ON_MASK);
    char what[128];
    snprintf(what, sizeof what, "attention %s: out", c->name);
    expect_close(what, &out, FWD_TOL);
    if (gpu->attn_layout == ATTN_LAYOUT_LSE) {
        /* (m, log l) per row: compare m + log l */
        float *ref = host_attention_lse(&p, q.cpu.data, k.cpu.data, c->masked ? mh : NULL);
        expect_no_cuda_error();
        float *got = download(&state);
        for (int64_t i = 0; i < B * H * Tq; i++)
            got[i] = (float)((double)got[2 * i] + got[2 * i + 1]);
        snprintf(what, sizeof what, "attention %s: log-sum-exp", c->name);
        compare_values(what, got, ref, (size_t)(B * H * Tq), FWD_TOL);
        free(ref), free(got);
    } else {
        snprintf(what, sizeof what, "attention %s: probs", c->name);
        expect_close(what, &state, FWD_TOL);
    }
    if (!c->kv_shared) {
        if (c->fused)
            pair_poison(&dqkv);
        else
            pair_poison(&dq), pair_poison(&dk), pair_poison(&dv);
        pair_poison(&scratch);
        EACH_BACKEND op_attention_backward(BE, &p, ON(dq), ON(dk), ON(dv), ON(scratch), ON(dout), ON(out),
                                           ON(state), ON(q), ON(k), ON(v), ON_MASK);
        if (c->fused) {
            snprintf(what, sizeof what, "attention %s: dqkv", c->name);
            expect_close(what, &dqkv, BWD_TOL);
        } else {
            snprintf(what, sizeof what, "attention %s: dq", c->name);
            expect_close(what, &dq, BWD_TOL);
            snprintf(what, sizeof what, "attention %s: dk", c->name);
            expect_close(what, &dk, BWD_TOL);
            snprintf(what, sizeof what, "attention %s: dv", c->name);
            expect_close(what, &dv, BWD_TOL);
        }
    }
#undef ON_MASK
    if (c->fused) {
        pair_free(&qkv), pair_free(&dqkv);
    } else {
        pair_free(&qb), pair_free(&kb), pair_free(&vb), pair_free(&dqb), pair_free(&dkb), pair_free(&dvb);
    }
    pair_free(&out), pair_free(&state), pair_free(&scratch), pair_free(&dout), pair_free(&mask);
}

static void test_attention(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof attn_cases / sizeof attn_cases[0]; i++)
        run_attention_case(&attn_cases[i]);
}

/* ---- embeddings and rows --------------------------------------------------------- */

static void test_embedding(void **state)
{
    (void)state;
    const int64_t shapes[][4] = {{3, 7, 11, 33}, {4, 30, 97, 64}, {1, 1, 2, 5}}; /* B, T, V, C */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t B = shapes[s][0], T = shapes[s][1], V = shapes[s][2], C = shapes[s][3];
        int32_t *idv = malloc(sizeof(int32_t) * (size_t)(B * T));
        for (int64_t i = 0; i < B * T; i++)
            idv[i] = (int32_t)rng_below(&rng, (uint32_t)V); /* small vocabularies: repeated ids */
        pair ids = pair_i32(idv, 2, TENSOR_SHAPE(B, T));
        pair word = PAIR(V, C), pos = PAIR(T + 2, C), type = PAIR(C), out = PAIR(B, T, C), dout = PAIR(B, T, C);
        pair dword = PAIR(V, C), dpos = PAIR(T + 2, C), dtype = PAIR(C);
        pair_randn(&word, 1), pair_randn(&pos, 1), pair_randn(&type, 1), pair_randn(&dout, 1);
        for (int with_type = 0; with_type < 2; with_type++) {
            pair_poison(&out);
            EACH_BACKEND op_embedding_forward(BE, ON(out), ON(ids), ON(word), ON(pos),
                                              with_type ? ON(type) : tensor_none());
            expect_close(with_type ? "embedding_forward with type" : "embedding_forward", &out, FWD_TOL);
        }
        pair_randn(&dword, 1), pair_randn(&dpos, 1), pair_randn(&dtype, 1);
        EACH_BACKEND op_embedding_backward(BE, ON(dword), ON(dpos), ON(dtype), ON(dout), ON(ids));
        expect_close("embedding_backward dword", &dword, BWD_TOL);
        expect_close("embedding_backward dpos", &dpos, BWD_TOL);
        expect_close("embedding_backward dtype_row", &dtype, BWD_TOL);
        EACH_BACKEND op_embedding_backward(BE, ON(dword), tensor_none(), tensor_none(), ON(dout), ON(ids));
        expect_close("embedding_backward dword only", &dword, BWD_TOL);
        free(idv);
        pair_free(&ids), pair_free(&word), pair_free(&pos), pair_free(&type), pair_free(&out), pair_free(&dout);
        pair_free(&dword), pair_free(&dpos), pair_free(&dtype);
    }
}

static void test_patchify_and_vit_embed(void **state)
{
    (void)state;
    const int64_t shapes[][4] = {{2, 32, 48, 16}, {3, 24, 24, 8}, {1, 16, 16, 16}}; /* B, H, W, P */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t B = shapes[s][0], Hh = shapes[s][1], W = shapes[s][2], P = shapes[s][3];
        int64_t N = (Hh / P) * (W / P), C = 40, T = N + 1;
        pair img = PAIR(B, 3, Hh, W), patches = PAIR(B * N, 3 * P * P);
        pair_randn(&img, 1), pair_poison(&patches);
        EACH_BACKEND op_patchify(BE, ON(patches), ON(img), (int)P);
        expect_close("patchify", &patches, 0);
        pair tokens = PAIR(B, N, C), cls = PAIR(C), pos = PAIR(T, C), out = PAIR(B, T, C), dout = PAIR(B, T, C);
        pair dtokens = PAIR(B, N, C), dcls = PAIR(C), dpos = PAIR(T, C);
        pair_randn(&tokens, 1), pair_randn(&cls, 1), pair_randn(&pos, 1), pair_randn(&dout, 1);
        pair_poison(&out);
        EACH_BACKEND op_vit_embed_forward(BE, ON(out), ON(tokens), ON(cls), ON(pos));
        expect_close("vit_embed_forward", &out, FWD_TOL);
        pair_poison(&dtokens), pair_randn(&dcls, 1), pair_randn(&dpos, 1);
        EACH_BACKEND op_vit_embed_backward(BE, ON(dtokens), ON(dcls), ON(dpos), ON(dout));
        expect_close("vit_embed_backward dtokens", &dtokens, BWD_TOL);
        expect_close("vit_embed_backward dcls", &dcls, BWD_TOL);
        expect_close("vit_embed_backward dpos", &dpos, BWD_TOL);
        pair_free(&img), pair_free(&patches), pair_free(&tokens), pair_free(&cls), pair_free(&pos), pair_free(&out);
        pair_free(&dout), pair_free(&dtokens), pair_free(&dcls), pair_free(&dpos);
    }
}

static void test_l2norm_and_div_scalar(void **state)
{
    (void)state;
    const int64_t shapes[][2] = {{1, 1}, {13, 33}, {64, 256}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], C = shapes[s][1];
        pair x = PAIR(M, C), y = PAIR(M, C), norms = PAIR(M), dy = PAIR(M, C), dx = PAIR(M, C);
        pair_randn(&x, 1), pair_randn(&dy, 1), pair_poison(&y), pair_poison(&norms), pair_poison(&dx);
        EACH_BACKEND op_l2norm_forward(BE, ON(y), ON(norms), ON(x));
        expect_close("l2norm_forward out", &y, FWD_TOL);
        expect_close("l2norm_forward norms", &norms, FWD_TOL);
        EACH_BACKEND op_l2norm_backward(BE, ON(dx), ON(dy), ON(y), ON(norms));
        expect_close("l2norm_backward", &dx, BWD_TOL);

        pair temp = PAIR(1), dtemp = PAIR(1), sim = PAIR(M, C);
        ((float *)temp.cpu.data)[0] = 0.07f;
        pair_sync(&temp);
        pair_poison(&sim);
        EACH_BACKEND op_div_scalar_forward(BE, ON(sim), ON(x), ON(temp));
        expect_close("div_scalar_forward", &sim, FWD_TOL);
        pair_randn(&dtemp, 1), pair_poison(&dx);
        EACH_BACKEND op_div_scalar_backward(BE, ON(dx), ON(dtemp), ON(dy), ON(sim), ON(temp));
        expect_close("div_scalar_backward din", &dx, BWD_TOL);
        expect_close("div_scalar_backward ds", &dtemp, BWD_TOL);
        pair_free(&x), pair_free(&y), pair_free(&norms), pair_free(&dy), pair_free(&dx);
        pair_free(&temp), pair_free(&dtemp), pair_free(&sim);
    }
}

static void test_copy_gather_scatter_rows(void **state)
{
    (void)state;
    int64_t B = 5, T = 7, C = 33;
    pair seq = PAIR(B, T, C), cls = PAIR(B, C);
    pair_randn(&seq, 1), pair_poison(&cls);
    EACH_BACKEND op_copy_rows(BE, ON(cls), C, ON(seq), T * C, B, C, 0);
    expect_close("copy_rows (select [CLS])", &cls, 0);
    pair_randn(&cls, 1);
    EACH_BACKEND op_copy_rows(BE, ON(seq), T * C, ON(cls), C, B, C, 1);
    expect_close("copy_rows accumulate", &seq, FWD_TOL);

    const int64_t shapes[][3] = {{7, 10, 15}, {3, 12, 257 * 24}, {1, 1, 1}}; /* rows, n, row */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t R = shapes[s][0], N = shapes[s][1], W = shapes[s][2];
        int32_t *iv = malloc(sizeof(int32_t) * (size_t)N);
        for (int64_t i = 0; i < N; i++)
            iv[i] = (int32_t)rng_below(&rng, (uint32_t)R);
        pair idx = pair_i32(iv, 1, TENSOR_SHAPE(N));
        pair table = PAIR(R, W), rows = PAIR(N, W), dtable = PAIR(R, W);
        pair_randn(&table, 1), pair_poison(&rows);
        EACH_BACKEND op_gather_rows(BE, ON(rows), ON(table), ON(idx));
        expect_close("gather_rows", &rows, 0);
        pair_randn(&rows, 1), pair_randn(&dtable, 1);
        EACH_BACKEND op_scatter_add_rows(BE, ON(dtable), ON(rows), ON(idx));
        expect_close("scatter_add_rows", &dtable, BWD_TOL);
        free(iv);
        pair_free(&idx), pair_free(&table), pair_free(&rows), pair_free(&dtable);
    }
    pair_free(&seq), pair_free(&cls);
}

/* ---- softmax, cross-entropy, reductions ---------------------------------------------- */

static void test_softmax_rows(void **state)
{
    (void)state;
    const int64_t shapes[][2] = {{1, 1}, {33, 7}, {4, 30522}, {3, 65600}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        pair x = PAIR(shapes[s][0], shapes[s][1]), y = PAIR(shapes[s][0], shapes[s][1]);
        pair_randn(&x, 3), pair_poison(&y);
        EACH_BACKEND op_softmax_rows(BE, ON(y), ON(x));
        expect_close("softmax_rows", &y, FWD_TOL);
        EACH_BACKEND op_softmax_rows(BE, ON(x), ON(x));
        expect_close("softmax_rows in place", &x, FWD_TOL);
        pair_free(&x), pair_free(&y);
    }
}

typedef struct {
    const char *name;
    int64_t R, V;
    int hard, soft, ignored; /* labels present, soft targets present, rows labelled -100 */
    float hard_weight, soft_weight;
    int with_grad;
} xent_case;

static const xent_case xent_cases[] = {
    {"mlm hard, 3 ignored", 13, 30522, 1, 0, 3, 1.0f, 0.0f, 1},
    {"itc soft only", 8, 65, 0, 1, 0, 0.0f, 1.0f, 1},
    {"mlm distilled", 9, 30522, 1, 1, 2, 0.6f, 0.4f, 1},
    {"itm", 129, 2, 1, 0, 0, 1.0f, 0.0f, 1},
    {"loss only", 17, 1001, 1, 1, 1, 0.6f, 0.4f, 0},
};

static void test_softmax_xent(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof xent_cases / sizeof xent_cases[0]; s++) {
        const xent_case *c = &xent_cases[s];
        pair logits = PAIR(c->R, c->V), soft = PAIR(c->R, c->V), loss = PAIR(c->R), dlogits = PAIR(c->R, c->V);
        pair_randn(&logits, 2);
        pair_randn(&soft, 2);
        op_softmax_rows(backend_cpu(), soft.cpu, soft.cpu);
        pair_sync(&soft);
        int32_t *lv = malloc(sizeof(int32_t) * (size_t)c->R);
        for (int64_t i = 0; i < c->R; i++)
            lv[i] = i < c->ignored ? -100 : (int32_t)rng_below(&rng, (uint32_t)c->V);
        pair labels = pair_i32(lv, 1, TENSOR_SHAPE(c->R));
        xent_params p = {.hard_weight = c->hard_weight, .soft_weight = c->soft_weight,
                         .grad_scale = 1.0f / (float)(c->R - c->ignored)};
        pair_poison(&loss), pair_poison(&dlogits);
        EACH_BACKEND op_softmax_xent(BE, &p, ON(loss), c->with_grad ? ON(dlogits) : tensor_none(), ON(logits),
                                     c->hard ? ON(labels) : tensor_none(), c->soft ? ON(soft) : tensor_none());
        char what[96];
        snprintf(what, sizeof what, "softmax_xent %s: loss", c->name);
        expect_close(what, &loss, FWD_TOL);
        if (c->with_grad) {
            snprintf(what, sizeof what, "softmax_xent %s: dlogits", c->name);
            expect_close(what, &dlogits, BWD_TOL);
        }
        free(lv);
        pair_free(&logits), pair_free(&soft), pair_free(&loss), pair_free(&dlogits), pair_free(&labels);
    }
}

/* ITM's negatives: the same weights (within float rounding of exp) and the
 * same draws, index for index, as the CPU: the uniforms are counter-based and
 * the draw repeats the CPU's arithmetic. Modes: in-batch softmax with the
 * diagonal excluded, same-image exclusion (retrieval), uniform weights, and
 * rows with every other sample of the same image (all-zero weights). */
static void test_itm_negatives(void **state)
{
    (void)state;
    const int64_t batches[] = {2, 7, 64, 130};
    for (size_t s = 0; s < sizeof batches / sizeof batches[0]; s++) {
        int64_t B = batches[s], N = B + 5;
        int32_t *groups = malloc(sizeof(int32_t) * (size_t)B), *one = malloc(sizeof(int32_t) * (size_t)B);
        for (int64_t i = 0; i < B; i++)
            groups[i] = (int32_t)(i / 3 * 3), one[i] = 0; /* images of three captions; one image for all */
        pair same_g = pair_i32(groups, 1, TENSOR_SHAPE(B)), same_1 = pair_i32(one, 1, TENSOR_SHAPE(B));
        pair logits = PAIR(B, N), w = PAIR(B, B), neg = pair_alloc(DTYPE_I32, 1, TENSOR_SHAPE(B));
        pair_randn(&logits, 5);
        struct {
            const char *name;
            const pair *same;
            int uniform;
        } modes[] = {{"softmax", NULL, 0}, {"same image", &same_g, 0}, {"uniform", NULL, 1},
                     {"uniform, same image", &same_g, 1}, {"all one image", &same_1, 0}};
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            uint64_t seed = 1000 * s + m;
            pair_poison(&w), pair_poison(&neg);
            EACH_BACKEND op_itm_negatives(BE, ON(w), ON(neg), ON(logits), modes[m].same ? ON(*modes[m].same)
                                                                                         : tensor_none(),
                                          modes[m].uniform, seed);
            char what[96];
            snprintf(what, sizeof what, "itm_negatives weights B=%lld %s", (long long)B, modes[m].name);
            expect_close(what, &w, 1e-6);
            int32_t *got = (int32_t *)download(&neg), *ref = neg.cpu.data;
            for (int64_t i = 0; i < B; i++)
                if (got[i] != ref[i])
                    fail_msg("itm_negatives draws B=%lld %s: row %lld drew %d on the GPU, %d on the CPU", (long long)B,
                             modes[m].name, (long long)i, got[i], ref[i]);
            printf("# %-44s %8lld draws identical\n", "itm_negatives draws", (long long)B);
            free(got);
        }
        pair_free(&same_g), pair_free(&same_1), pair_free(&logits), pair_free(&w), pair_free(&neg);
        free(groups), free(one);
    }
}

static void test_reductions(void **state)
{
    (void)state;
    const int64_t ns[] = {1, 1000, (1 << 20) + 3};
    for (size_t s = 0; s < 3; s++) {
        pair x = PAIR(ns[s]), out = PAIR(2);
        pair_randn(&x, 1);
        float *xh = x.cpu.data;
        for (int64_t i = 0; i < ns[s]; i++)
            xh[i] += 0.25f; /* a sum far from zero */
        pair_sync(&x);
        pair_poison(&out);
        EACH_BACKEND op_reduce_sum(BE, tensor_slice(ON(out), 0, 1), ON(x), 0.5f);
        EACH_BACKEND op_reduce_sumsq(BE, tensor_slice(ON(out), 1, 1), ON(x), 0.5f);
        expect_close("reduce_sum, reduce_sumsq", &out, FWD_TOL);
        pair_free(&x), pair_free(&out);
    }
}

/* ---- determinism and errors ------------------------------------------------------------ */

/* The ops whose CUDA versions reduce across threads, run twice from the same
 * state: the results must be bitwise equal. */
static void test_reruns_are_bitwise_equal(void **state)
{
    (void)state;
    int64_t M = 300, K = 768, N = 97, V = 30522, R = 11;
    attn_params p = {.batch = 3, .heads = 2, .q_len = 30, .kv_len = 70, .head_dim = 32, .q_stride = 64,
                     .k_stride = 64, .v_stride = 64, .scale = 0.17f, .dropout = 0.1f, .seed = 7};
    pair x = PAIR(M, K), w = PAIR(N, K), dy = PAIR(M, N), dx = PAIR(M, K), dw = PAIR(N, K), db = PAIR(N);
    pair lw = PAIR(K), lb = PAIR(K), mean = PAIR(M), rstd = PAIR(M), ly = PAIR(M, K), ldx = PAIR(M, K);
    pair q = PAIR(3, 30, 64), k = PAIR(3, 70, 64), v = PAIR(3, 70, 64), out = PAIR(3, 30, 64);
    pair attn_dout = PAIR(3, 30, 64), attn_mask = PAIR(3, 70);
    pair attn_state = attn_state_pair(3, 2, 30, 70, 0), scratch = attn_state_pair(3, 2, 30, 70, 1);
    pair dq = PAIR(3, 30, 64), dk = PAIR(3, 70, 64), dv = PAIR(3, 70, 64);
    pair logits = PAIR(R, V), loss = PAIR(R), dlogits = PAIR(R, V), sum = PAIR(1);
    pair_randn(&x, 1), pair_randn(&w, 0.1f), pair_randn(&dy, 1), pair_randn(&lw, 1), pair_randn(&lb, 1);
    pair_randn(&q, 1), pair_randn(&k, 1), pair_randn(&v, 1), pair_randn(&attn_dout, 1), pair_randn(&logits, 2);
    for (int i = 0; i < 3 * 70; i++)
        ((float *)attn_mask.cpu.data)[i] = i % 70 >= 60 + i / 70 ? -10000.0f : 0.0f;
    pair_sync(&attn_mask);
    int32_t lv[11] = {5, -100, 30521, 0, 17, 17, 4000, 9, -100, 2, 1};
    pair labels = pair_i32(lv, 1, TENSOR_SHAPE(R));
    int32_t idv[40];
    for (int i = 0; i < 40; i++)
        idv[i] = (int32_t)(i * 7 % 13);
    pair ids = pair_i32(idv, 2, TENSOR_SHAPE(4, 10));
    pair emb_out = PAIR(4, 10, K), dword = PAIR(13, K), dpos = PAIR(10, K);
    pair_randn(&emb_out, 1);
    xent_params xp = {.hard_weight = 1, .soft_weight = 0, .grad_scale = 0.1f};

    pair *results[] = {&dx, &dw, &db, &ly, &mean, &rstd, &ldx, &lw, &lb, &out, &attn_state, &scratch, &dq, &dk, &dv,
                       &loss, &dlogits, &sum, &dword, &dpos};
    const char *names[] = {"linear dx", "linear dw", "linear db", "layernorm out", "layernorm mean", "layernorm rstd",
                           "layernorm dx", "layernorm dw", "layernorm db", "attention out", "attention state",
                           "attention scratch", "attention dq", "attention dk", "attention dv", "xent loss",
                           "xent dlogits", "reduce_sumsq", "embedding dword", "embedding dpos"};
    size_t nres = sizeof results / sizeof results[0];
    void *first[sizeof results / sizeof results[0]];
    /* the accumulating outputs start from the same values in both runs */
    pair *accumulating[] = {&dw, &db, &lw, &lb, &dword, &dpos};
    float *acc_start[6];
    for (int i = 0; i < 6; i++) {
        pair_randn(accumulating[i], 1);
        acc_start[i] = malloc(pair_bytes(accumulating[i]));
        memcpy(acc_start[i], accumulating[i]->cpu.data, pair_bytes(accumulating[i]));
    }
    pair lw_value = PAIR(K);
    pair_randn(&lw_value, 1);
    for (int run = 0; run < 2; run++) {
        for (int i = 0; i < 6; i++)
            gpu->ops->upload(gpu, accumulating[i]->gpu.data, acc_start[i], pair_bytes(accumulating[i]));
        op_linear_backward(gpu, dx.gpu, 0, dw.gpu, db.gpu, dy.gpu, x.gpu, w.gpu);
        op_layernorm_forward(gpu, ly.gpu, mean.gpu, rstd.gpu, x.gpu, lw_value.gpu, lb.gpu, 1e-12f);
        op_layernorm_backward(gpu, ldx.gpu, 0, lw.gpu, lb.gpu, x.gpu, x.gpu, lw_value.gpu, mean.gpu, rstd.gpu);
        op_attention_forward(gpu, &p, out.gpu, attn_state.gpu, q.gpu, k.gpu, v.gpu, attn_mask.gpu);
        op_attention_backward(gpu, &p, dq.gpu, dk.gpu, dv.gpu, scratch.gpu, attn_dout.gpu, out.gpu, attn_state.gpu,
                              q.gpu, k.gpu, v.gpu, attn_mask.gpu);
        op_softmax_xent(gpu, &xp, loss.gpu, dlogits.gpu, logits.gpu, labels.gpu, tensor_none());
        op_reduce_sumsq(gpu, sum.gpu, dlogits.gpu, 1.0f);
        op_embedding_backward(gpu, dword.gpu, dpos.gpu, tensor_none(), emb_out.gpu, ids.gpu);
        expect_no_cuda_error();
        for (size_t i = 0; i < nres; i++) {
            if (run == 0)
                first[i] = download(results[i]);
            else
                expect_bitwise(names[i], results[i], first[i]);
        }
    }
    for (size_t i = 0; i < nres; i++)
        free(first[i]);
    for (int i = 0; i < 6; i++)
        free(acc_start[i]);
    pair *all[] = {&x, &w, &dy, &dx, &dw, &db, &lw, &lb, &mean, &rstd, &ly, &ldx, &q, &k, &v, &out, &attn_dout,
                   &attn_mask, &attn_state, &scratch, &dq, &dk, &dv, &logits, &loss, &dlogits, &sum, &labels, &ids,
                   &emb_out, &dword, &dpos, &lw_value};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        pair_free(all[i]);
}

/* Bad arguments and out-of-range indices are recorded and reported at the
 * next synchronisation, naming the op; nothing crashes. */
static void test_errors_are_reported(void **state)
{
    (void)state;
#ifdef ALBEF_HAVE_CUDA
    char msg[512];
    assert_int_equal(cuda_backend_last_error(gpu, msg, sizeof msg), 0);
    pair q = PAIR(1, 2, 400), out = PAIR(1, 2, 400), probs = PAIR(1, 2, 2, 2);
    pair_randn(&q, 1);
    attn_params p = {.batch = 1, .heads = 2, .q_len = 2, .kv_len = 2, .head_dim = 200, .q_stride = 400,
                     .k_stride = 400, .v_stride = 400, .scale = 1};
    op_attention_forward(gpu, &p, out.gpu, probs.gpu, q.gpu, q.gpu, q.gpu, tensor_none());
    assert_int_not_equal(cuda_backend_last_error(gpu, msg, sizeof msg), 0);
    printf("# recorded: %s\n", msg);
    assert_non_null(strstr(msg, "attention_forward"));
    assert_non_null(strstr(msg, "head_dim 200"));
    cuda_backend_clear_error(gpu);

    int32_t bad[3] = {0, 5, 1};
    pair idx = pair_i32(bad, 1, TENSOR_SHAPE(3)), table = PAIR(2, 4), rows = PAIR(3, 4);
    pair_randn(&table, 1);
    op_gather_rows(gpu, rows.gpu, table.gpu, idx.gpu);
    assert_int_not_equal(cuda_backend_last_error(gpu, msg, sizeof msg), 0);
    printf("# recorded: %s\n", msg);
    assert_non_null(strstr(msg, "gather_rows"));
    cuda_backend_clear_error(gpu);
    assert_int_equal(cuda_backend_last_error(gpu, msg, sizeof msg), 0);
    pair_free(&q), pair_free(&out), pair_free(&probs), pair_free(&idx), pair_free(&table), pair_free(&rows);
#else
    skip();
#endif
}

int main(void)
{
    rng_seed(&rng, 20240607);
    if (backend_create("cuda", &gpu) != ALBEF_OK) {
        snprintf(no_device, sizeof no_device, "%s", albef_errmsg());
        const struct CMUnitTest none[] = {cmocka_unit_test(test_no_cuda_device)};
        return cmocka_run_group_tests_name("cuda_ops", none, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_is_complete),
        cmocka_unit_test(test_uploads),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_linear_cublaslt_and_tf32),
        cmocka_unit_test(test_products_bf16),
        cmocka_unit_test(test_bf16_storage),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_add_scale_clamp_fill),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_cast),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_fill_normal),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_residual_layernorm),
        cmocka_unit_test(test_bias_gelu),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_patchify_and_vit_embed),
        cmocka_unit_test(test_l2norm_and_div_scalar),
        cmocka_unit_test(test_copy_gather_scatter_rows),
        cmocka_unit_test(test_softmax_rows),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_itm_negatives),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_reruns_are_bitwise_equal),
        cmocka_unit_test(test_errors_are_reported),
    };
    int rc = cmocka_run_group_tests_name("cuda_ops", tests, NULL, NULL);
    backend_destroy(gpu);
    return rc;
}
