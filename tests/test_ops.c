/* The CPU back end's ops: every backward pass against central finite
 * differences of its forward pass, on random inputs at small sizes.
 * For an op y = f(x) the check uses the scalar L = sum(y * r) with a fixed
 * random r: backward(dy = r) must give dL/dx. */
#include "albef.h"
#include "core/rng.h"
#include "ops/ops.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rng_state rng;

static float *randn(int64_t n, float std)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++)
        p[i] = std * (float)rng_normal(&rng);
    return p;
}

static float *zeros(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

static double dot(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* The scalar L(x) for the current inputs: runs the op's forward. */
typedef double (*loss_fn)(void *ctx);

/* Compares analytic gradient g of L with respect to x against central
 * differences at up to `samples` positions (all when n is small). */
static void check_grad(const char *name, float *x, int64_t n, const float *g, loss_fn f, void *ctx, float eps,
                       double tol)
{
    int64_t step = n > 64 ? n / 64 : 1;
    double max_err = 0, max_g = 1e-3;
    int64_t worst = -1;
    double worst_num = 0;
    for (int64_t i = 0; i < n; i += step)
        max_g = fabs(g[i]) > max_g ? fabs(g[i]) : max_g;
    for (int64_t i = 0; i < n; i += step) {
        float saved = x[i];
        x[i] = saved + eps;
        double lp = f(ctx);
        x[i] = saved - eps;
        double lm = f(ctx);
        x[i] = saved;
        double num = (lp - lm) / (2.0 * eps);
        double err = fabs(num - g[i]) / max_g;
        if (err > max_err) {
            max_err = err;
            worst = i;
            worst_num = num;
        }
    }
    printf("# %-28s max err %.2e (relative to max |grad| %.3g)\n", name, max_err, max_g);
    if (max_err > tol)
        fail_msg("%s: gradient [%lld] analytic %.6g vs numeric %.6g (error %.2e of max %.3g)", name, (long long)worst,
                 worst >= 0 ? g[worst] : 0.0, worst_num, max_err, max_g);
}

#define TOL 2e-3
#define EPS 1e-2f

/* ---- linear ---------------------------------------------------------------- */

typedef struct {
    int64_t m, k, n;
    float *x, *w, *b, *y, *r;
} linear_ctx;

static double linear_loss(void *p)
{
    linear_ctx *c = p;
    backend *be = backend_cpu();
    op_linear_forward(be, tensor_f32(c->y, c->m, c->n), tensor_f32(c->x, c->m, c->k), tensor_f32(c->w, c->n, c->k),
                      tensor_f32(c->b, c->n));
    return dot(c->y, c->r, c->m * c->n);
}

static void test_linear_backward(void **state)
{
    (void)state;
    linear_ctx c = {.m = 5, .k = 7, .n = 3};
    c.x = randn(c.m * c.k, 1);
    c.w = randn(c.n * c.k, 1);
    c.b = randn(c.n, 1);
    c.y = zeros(c.m * c.n);
    c.r = randn(c.m * c.n, 1);
    backend *be = backend_cpu();
    float *dx = randn(c.m * c.k, 1), *dw = zeros(c.n * c.k), *db = zeros(c.n);
    float *dx0 = malloc(sizeof(float) * (size_t)(c.m * c.k));
    memcpy(dx0, dx, sizeof(float) * (size_t)(c.m * c.k));
    linear_loss(&c);
    /* accumulate = 1 adds onto what dx held */
    op_linear_backward(be, tensor_f32(dx, c.m, c.k), 1, tensor_f32(dw, c.n, c.k), tensor_f32(db, c.n),
                       tensor_f32(c.r, c.m, c.n), tensor_f32(c.x, c.m, c.k), tensor_f32(c.w, c.n, c.k));
    for (int64_t i = 0; i < c.m * c.k; i++)
        dx[i] -= dx0[i];
    check_grad("linear dx", c.x, c.m * c.k, dx, linear_loss, &c, EPS, TOL);
    check_grad("linear dw", c.w, c.n * c.k, dw, linear_loss, &c, EPS, TOL);
    check_grad("linear db", c.b, c.n, db, linear_loss, &c, EPS, TOL);
    /* parameter gradients accumulate: a second backward doubles them */
    float db1 = db[0];
    op_linear_backward(be, tensor_none(), 0, tensor_none(), tensor_f32(db, c.n), tensor_f32(c.r, c.m, c.n),
                       tensor_f32(c.x, c.m, c.k), tensor_f32(c.w, c.n, c.k));
    assert_float_equal(db[0], 2 * db1, 1e-5);
    free(c.x), free(c.w), free(c.b), free(c.y), free(c.r), free(dx), free(dw), free(db), free(dx0);
}

/* ---- gelu, dropout ---------------------------------------------------------- */

typedef struct {
    int64_t n;
    float *x, *y, *r;
    float p;
    uint64_t seed;
} unary_ctx;

static double gelu_loss(void *p)
{
    unary_ctx *c = p;
    op_gelu_forward(backend_cpu(), tensor_f32(c->y, c->n), tensor_f32(c->x, c->n));
    return dot(c->y, c->r, c->n);
}

static void test_gelu_values_and_backward(void **state)
{
    (void)state;
    unary_ctx c = {.n = 200};
    c.x = randn(c.n, 2);
    c.y = zeros(c.n);
    c.r = randn(c.n, 1);
    float *dx = zeros(c.n);
    gelu_loss(&c);
    /* exact erf GELU, not the tanh approximation */
    for (int64_t i = 0; i < c.n; i++) {
        double v = c.x[i];
        assert_float_equal(c.y[i], 0.5 * v * (1 + erf(v / sqrt(2.0))), 1e-6);
    }
    op_gelu_backward(backend_cpu(), tensor_f32(dx, c.n), tensor_f32(c.r, c.n), tensor_f32(c.x, c.n));
    check_grad("gelu dx", c.x, c.n, dx, gelu_loss, &c, 1e-3f, TOL);
    free(c.x), free(c.y), free(c.r), free(dx);
}

static double dropout_loss(void *p)
{
    unary_ctx *c = p;
    op_dropout_forward(backend_cpu(), tensor_f32(c->y, c->n), tensor_f32(c->x, c->n), c->p, c->seed);
    return dot(c->y, c->r, c->n);
}

static void test_dropout(void **state)
{
    (void)state;
    unary_ctx c = {.n = 20000, .p = 0.1f, .seed = 1234};
    c.x = randn(c.n, 1);
    c.y = zeros(c.n);
    c.r = randn(c.n, 1);
    float *dx = zeros(c.n);
    dropout_loss(&c);
    int64_t dropped = 0;
    for (int64_t i = 0; i < c.n; i++) {
        if (c.y[i] == 0.0f)
            dropped++;
        else
            assert_float_equal(c.y[i], c.x[i] / 0.9f, 1e-6);
    }
    if (fabs(dropped / (double)c.n - 0.1) > 0.01)
        fail_msg("dropout rate %.4f, expected 0.1", dropped / (double)c.n);
    op_dropout_backward(backend_cpu(), tensor_f32(dx, c.n), tensor_f32(c.r, c.n), c.p, c.seed);
    check_grad("dropout dx", c.x, c.n, dx, dropout_loss, &c, EPS, TOL);
    /* p = 0 is the identity */
    c.p = 0;
    dropout_loss(&c);
    assert_memory_equal(c.x, c.y, sizeof(float) * (size_t)c.n);
    free(c.x), free(c.y), free(c.r), free(dx);
}

/* ---- layernorm ----------------------------------------------------------------- */

typedef struct {
    int64_t m, c;
    float *x, *w, *b, *y, *mean, *rstd, *r, eps;
} ln_ctx;

static double ln_loss(void *p)
{
    ln_ctx *c = p;
    op_layernorm_forward(backend_cpu(), tensor_f32(c->y, c->m, c->c), tensor_f32(c->mean, c->m),
                         tensor_f32(c->rstd, c->m), tensor_f32(c->x, c->m, c->c), tensor_f32(c->w, c->c),
                         tensor_f32(c->b, c->c), c->eps);
    return dot(c->y, c->r, c->m * c->c);
}

static void assert_same_bits(const char *name, const float *a, const float *b, int64_t n);

static void test_layernorm_backward(void **state)
{
    (void)state;
    for (int trial = 0; trial < 2; trial++) {
        ln_ctx c = {.m = 6, .c = trial ? 130 : 16, .eps = trial ? 1e-12f : 1e-6f};
        c.x = randn(c.m * c.c, 2);
        c.w = randn(c.c, 1);
        c.b = randn(c.c, 1);
        c.y = zeros(c.m * c.c);
        c.mean = zeros(c.m);
        c.rstd = zeros(c.m);
        c.r = randn(c.m * c.c, 1);
        float *dx = zeros(c.m * c.c), *dw = zeros(c.c), *db = zeros(c.c);
        ln_loss(&c);
        /* normalised rows: mean 0, variance 1 before the affine part */
        double s = 0;
        for (int64_t i = 0; i < c.c; i++)
            s += (c.y[i] - c.b[i]) / c.w[i];
        assert_true(fabs(s / c.c) < 1e-4);
        op_layernorm_backward(backend_cpu(), tensor_f32(dx, c.m, c.c), 0, tensor_f32(dw, c.c), tensor_f32(db, c.c),
                              tensor_f32(c.r, c.m, c.c), tensor_f32(c.x, c.m, c.c), tensor_f32(c.w, c.c),
                              tensor_f32(c.mean, c.m), tensor_f32(c.rstd, c.m));
        check_grad("layernorm dx", c.x, c.m * c.c, dx, ln_loss, &c, EPS, TOL);
        check_grad("layernorm dw", c.w, c.c, dw, ln_loss, &c, EPS, TOL);
        check_grad("layernorm db", c.b, c.c, db, ln_loss, &c, EPS, TOL);
        /* in place (din over dout): the same bits, the parameter gradients too */
        float *g = zeros(c.m * c.c), *dw2 = zeros(c.c), *db2 = zeros(c.c);
        memcpy(g, c.r, sizeof(float) * (size_t)(c.m * c.c));
        memset(dw, 0, sizeof(float) * (size_t)c.c), memset(db, 0, sizeof(float) * (size_t)c.c);
        op_layernorm_backward(backend_cpu(), tensor_f32(dx, c.m, c.c), 0, tensor_f32(dw, c.c), tensor_f32(db, c.c),
                              tensor_f32(c.r, c.m, c.c), tensor_f32(c.x, c.m, c.c), tensor_f32(c.w, c.c),
                              tensor_f32(c.mean, c.m), tensor_f32(c.rstd, c.m));
        op_layernorm_backward(backend_cpu(), tensor_f32(g, c.m, c.c), 0, tensor_f32(dw2, c.c), tensor_f32(db2, c.c),
                              tensor_f32(g, c.m, c.c), tensor_f32(c.x, c.m, c.c), tensor_f32(c.w, c.c),
                              tensor_f32(c.mean, c.m), tensor_f32(c.rstd, c.m));
        assert_same_bits("layernorm_backward in place dx", g, dx, c.m * c.c);
        assert_same_bits("layernorm_backward in place dw", dw2, dw, c.c);
        assert_same_bits("layernorm_backward in place db", db2, db, c.c);
        free(g), free(dw2), free(db2);
        free(c.x), free(c.w), free(c.b), free(c.y), free(c.mean), free(c.rstd), free(c.r), free(dx), free(dw),
            free(db);
    }
}

/* ---- fused ops: bit for bit the sequences they replace --------------------------- */

/* a and b hold the same bits; on failure, the first difference. */
static void assert_same_bits(const char *name, const float *a, const float *b, int64_t n)
{
    int64_t diff = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float))) {
            diff++;
            if (first < 0)
                first = i;
        }
    if (diff)
        fail_msg("%s: %lld of %lld elements differ; first [%lld]: fused %.9g vs unfused %.9g", name, (long long)diff,
                 (long long)n, (long long)first, a[first], b[first]);
}

/* The fused op's bias is only equal to the linear's when linear_forward
 * adds it after the product; K = 768 spans several of OpenBLAS's K-blocks. */
static void test_linear_bias_after_product(void **state)
{
    (void)state;
    int64_t m = 37, k = 768, n = 100;
    float *x = randn(m * k, 1), *w = randn(n * k, 0.05f), *b = randn(n, 1);
    float *y = zeros(m * n), *y0 = zeros(m * n);
    backend *be = backend_cpu();
    op_linear_forward(be, tensor_f32(y, m, n), tensor_f32(x, m, k), tensor_f32(w, n, k), tensor_f32(b, n));
    op_linear_forward(be, tensor_f32(y0, m, n), tensor_f32(x, m, k), tensor_f32(w, n, k), tensor_none());
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < n; c++)
            y0[r * n + c] += b[c];
    assert_same_bits("linear with bias vs without, then + bias", y, y0, m * n);
    free(x), free(w), free(b), free(y), free(y0);
}

/* dense (M, K) -> (M, C), then the residual sublayer, forward and backward,
 * through the fused ops and through the unfused sequence. */
static void check_residual_layernorm_fused(int64_t m, int64_t k, int64_t c, float p, int accumulate)
{
    backend *be = backend_cpu();
    uint64_t seed = 77 + (uint64_t)m;
    float eps = 1e-12f;
    float *x = randn(m * k, 1), *wd = randn(c * k, 0.05f), *bias = randn(c, 1), *res = randn(m * c, 1);
    float *w = randn(c, 1), *b = randn(c, 1), *dout = randn(m * c, 1), *dsum0 = randn(m * c, 1);
    tensor tx = tensor_f32(x, m, k), twd = tensor_f32(wd, c, k), tw = tensor_f32(w, c), tb = tensor_f32(b, c);
    /* unfused */
    float *pre = zeros(m * c), *out = zeros(m * c), *mean = zeros(m), *rstd = zeros(m);
    op_linear_forward(be, tensor_f32(pre, m, c), tx, twd, tensor_f32(bias, c));
    if (p > 0)
        op_dropout_forward(be, tensor_f32(pre, m, c), tensor_f32(pre, m, c), p, seed);
    op_accumulate(be, tensor_f32(pre, m, c), tensor_f32(res, m, c));
    op_layernorm_forward(be, tensor_f32(out, m, c), tensor_f32(mean, m), tensor_f32(rstd, m), tensor_f32(pre, m, c),
                         tw, tb, eps);
    /* fused: the product without its bias, written where the sum goes */
    float *sum = zeros(m * c), *out2 = zeros(m * c), *mean2 = zeros(m), *rstd2 = zeros(m);
    op_linear_forward(be, tensor_f32(sum, m, c), tx, twd, tensor_none());
    op_residual_layernorm_forward(be, tensor_f32(out2, m, c), tensor_f32(mean2, m), tensor_f32(rstd2, m),
                                  tensor_f32(sum, m, c), tensor_f32(sum, m, c), tensor_f32(bias, c),
                                  tensor_f32(res, m, c), tw, tb, eps, p, seed);
    char name[96];
    snprintf(name, sizeof name, "sum (%lld, %lld) p %.1f", (long long)m, (long long)c, p);
    assert_same_bits(name, sum, pre, m * c);
    assert_same_bits("out", out2, out, m * c);
    assert_same_bits("mean", mean2, mean, m);
    assert_same_bits("rstd", rstd2, rstd, m);

    /* backward, unfused: dres = LN'(dout) (+ what it held), dpre = dropout(dres), linear's grads */
    float *dres = malloc(sizeof(float) * (size_t)(m * c)), *dpre = zeros(m * c), *dx = zeros(m * k);
    float *dwd = zeros(c * k), *dbias = zeros(c), *dw = zeros(c), *db = zeros(c);
    memcpy(dres, dsum0, sizeof(float) * (size_t)(m * c));
    op_layernorm_backward(be, tensor_f32(dres, m, c), accumulate, tensor_f32(dw, c), tensor_f32(db, c),
                          tensor_f32(dout, m, c), tensor_f32(pre, m, c), tw, tensor_f32(mean, m),
                          tensor_f32(rstd, m));
    op_dropout_backward(be, tensor_f32(dpre, m, c), tensor_f32(dres, m, c), p, seed);
    op_linear_backward(be, tensor_f32(dx, m, k), 0, tensor_f32(dwd, c, k), tensor_f32(dbias, c),
                       tensor_f32(dpre, m, c), tx, twd);
    /* fused; without dropout d(dense) is d(sum) itself */
    float *dsum = malloc(sizeof(float) * (size_t)(m * c)), *ddense = p > 0 ? zeros(m * c) : dsum;
    float *dx2 = zeros(m * k), *dwd2 = zeros(c * k), *dbias2 = zeros(c), *dw2 = zeros(c), *db2 = zeros(c);
    memcpy(dsum, dsum0, sizeof(float) * (size_t)(m * c));
    op_residual_layernorm_backward(be, tensor_f32(dsum, m, c), accumulate, tensor_f32(ddense, m, c),
                                   tensor_f32(dbias2, c), tensor_f32(dw2, c), tensor_f32(db2, c),
                                   tensor_f32(dout, m, c), tensor_f32(sum, m, c), tw, tensor_f32(mean2, m),
                                   tensor_f32(rstd2, m), p, seed);
    op_linear_backward(be, tensor_f32(dx2, m, k), 0, tensor_f32(dwd2, c, k), tensor_none(), tensor_f32(ddense, m, c),
                       tx, twd);
    assert_same_bits("dsum = d(residual)", dsum, dres, m * c);
    assert_same_bits("d(dense)", ddense, dpre, m * c);
    assert_same_bits("dx", dx2, dx, m * k);
    assert_same_bits("d(dense weight)", dwd2, dwd, c * k);
    assert_same_bits("d(dense bias)", dbias2, dbias, c);
    assert_same_bits("d(norm weight)", dw2, dw, c);
    assert_same_bits("d(norm bias)", db2, db, c);
    if (ddense != dsum)
        free(ddense);
    free(x), free(wd), free(bias), free(res), free(w), free(b), free(dout), free(dsum0), free(pre), free(out),
        free(mean), free(rstd), free(sum), free(out2), free(mean2), free(rstd2), free(dres), free(dpre), free(dx),
        free(dwd), free(dbias), free(dw), free(db), free(dsum), free(dx2), free(dwd2), free(dbias2), free(dw2),
        free(db2);
}

static void test_residual_layernorm_matches_unfused(void **state)
{
    (void)state;
    static const int64_t shapes[][3] = {{1, 64, 768}, {37, 768, 100}, {257, 100, 64}, {20, 3072, 768}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int dropout = 0; dropout < 2; dropout++)
            for (int accumulate = 0; accumulate < 2; accumulate++)
                check_residual_layernorm_fused(shapes[i][0], shapes[i][1], shapes[i][2], dropout ? 0.1f : 0.0f,
                                               accumulate);
}

static void test_bias_gelu_matches_unfused(void **state)
{
    (void)state;
    static const int64_t shapes[][3] = {{1, 64, 768}, {37, 768, 100}, {57, 768, 3072}};
    backend *be = backend_cpu();
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int64_t m = shapes[i][0], k = shapes[i][1], n = shapes[i][2];
        float *x = randn(m * k, 1), *w = randn(n * k, 0.05f), *bias = randn(n, 1), *dact = randn(m * n, 1);
        tensor tx = tensor_f32(x, m, k), tw = tensor_f32(w, n, k);
        float *pre = zeros(m * n), *act = zeros(m * n), *pre2 = zeros(m * n), *act2 = zeros(m * n);
        op_linear_forward(be, tensor_f32(pre, m, n), tx, tw, tensor_f32(bias, n));
        op_gelu_forward(be, tensor_f32(act, m, n), tensor_f32(pre, m, n));
        op_linear_forward(be, tensor_f32(pre2, m, n), tx, tw, tensor_none());
        op_bias_gelu_forward(be, tensor_f32(act2, m, n), tensor_f32(pre2, m, n), tensor_f32(pre2, m, n),
                             tensor_f32(bias, n));
        assert_same_bits("bias_gelu pre", pre2, pre, m * n);
        assert_same_bits("bias_gelu out", act2, act, m * n);
        float *dpre = zeros(m * n), *dx = zeros(m * k), *dw = zeros(n * k), *db = zeros(n);
        float *dpre2 = malloc(sizeof(float) * (size_t)(m * n)), *dx2 = zeros(m * k), *dw2 = zeros(n * k),
              *db2 = zeros(n);
        op_gelu_backward(be, tensor_f32(dpre, m, n), tensor_f32(dact, m, n), tensor_f32(pre, m, n));
        op_linear_backward(be, tensor_f32(dx, m, k), 0, tensor_f32(dw, n, k), tensor_f32(db, n),
                           tensor_f32(dpre, m, n), tx, tw);
        /* in place, as the models run it */
        memcpy(dpre2, dact, sizeof(float) * (size_t)(m * n));
        op_bias_gelu_backward(be, tensor_f32(dpre2, m, n), tensor_f32(db2, n), tensor_f32(dpre2, m, n),
                              tensor_f32(pre2, m, n));
        op_linear_backward(be, tensor_f32(dx2, m, k), 0, tensor_f32(dw2, n, k), tensor_none(),
                           tensor_f32(dpre2, m, n), tx, tw);
        assert_same_bits("bias_gelu dpre", dpre2, dpre, m * n);
        assert_same_bits("bias_gelu dbias", db2, db, n);
        assert_same_bits("bias_gelu dx", dx2, dx, m * k);
        assert_same_bits("bias_gelu dw", dw2, dw, n * k);
        free(x), free(w), free(bias), free(dact), free(pre), free(act), free(pre2), free(act2), free(dpre), free(dx),
            free(dw), free(db), free(dpre2), free(dx2), free(dw2), free(db2);
    }
}

/* Finite differences of L = sum(out * r) + sum(sum * r2): r2 is the
 * gradient arriving on sum directly (the accumulate path). */
typedef struct {
    int64_t m, c;
    float *x, *bias, *res, *w, *b, *sum, *out, *mean, *rstd, *r, *r2, p;
    uint64_t seed;
} resln_ctx;

static double resln_loss(void *p)
{
    resln_ctx *c = p;
    op_residual_layernorm_forward(backend_cpu(), tensor_f32(c->out, c->m, c->c), tensor_f32(c->mean, c->m),
                                  tensor_f32(c->rstd, c->m), tensor_f32(c->sum, c->m, c->c),
                                  tensor_f32(c->x, c->m, c->c), tensor_f32(c->bias, c->c),
                                  tensor_f32(c->res, c->m, c->c), tensor_f32(c->w, c->c), tensor_f32(c->b, c->c),
                                  1e-6f, c->p, c->seed);
    return dot(c->out, c->r, c->m * c->c) + dot(c->sum, c->r2, c->m * c->c);
}

static void test_residual_layernorm_backward(void **state)
{
    (void)state;
    resln_ctx c = {.m = 6, .c = 40, .p = 0.2f, .seed = 99};
    int64_t n = c.m * c.c;
    c.x = randn(n, 1), c.bias = randn(c.c, 1), c.res = randn(n, 1), c.w = randn(c.c, 1), c.b = randn(c.c, 1);
    c.sum = zeros(n), c.out = zeros(n), c.mean = zeros(c.m), c.rstd = zeros(c.m), c.r = randn(n, 1),
    c.r2 = randn(n, 1);
    float *dsum = malloc(sizeof(float) * (size_t)n), *dx = zeros(n), *dbias = zeros(c.c), *dw = zeros(c.c),
          *db = zeros(c.c);
    resln_loss(&c);
    memcpy(dsum, c.r2, sizeof(float) * (size_t)n);
    op_residual_layernorm_backward(backend_cpu(), tensor_f32(dsum, c.m, c.c), 1, tensor_f32(dx, c.m, c.c),
                                   tensor_f32(dbias, c.c), tensor_f32(dw, c.c), tensor_f32(db, c.c),
                                   tensor_f32(c.r, c.m, c.c), tensor_f32(c.sum, c.m, c.c), tensor_f32(c.w, c.c),
                                   tensor_f32(c.mean, c.m), tensor_f32(c.rstd, c.m), c.p, c.seed);
    check_grad("residual_layernorm dx", c.x, n, dx, resln_loss, &c, EPS, TOL);
    check_grad("residual_layernorm dresidual", c.res, n, dsum, resln_loss, &c, EPS, TOL);
    check_grad("residual_layernorm dbias", c.bias, c.c, dbias, resln_loss, &c, EPS, TOL);
    check_grad("residual_layernorm dw", c.w, c.c, dw, resln_loss, &c, EPS, TOL);
    check_grad("residual_layernorm db", c.b, c.c, db, resln_loss, &c, EPS, TOL);
    free(c.x), free(c.bias), free(c.res), free(c.w), free(c.b), free(c.sum), free(c.out), free(c.mean), free(c.rstd),
        free(c.r), free(c.r2), free(dsum), free(dx), free(dbias), free(dw), free(db);
}

/* ---- attention --------------------------------------------------------------------- */

typedef struct {
    attn_params p;
    float *q, *k, *v, *mask, *out, *probs, *r;
} attn_ctx;

static double attn_loss(void *ptr)
{
    attn_ctx *c = ptr;
    attn_params *p = &c->p;
    int64_t hd = (int64_t)p->heads * p->head_dim;
    op_attention_forward(backend_cpu(), p, tensor_f32(c->out, p->batch, p->q_len, hd),
                         tensor_f32(c->probs, p->batch, p->heads, p->q_len, p->kv_len),
                         tensor_f32(c->q, p->batch, p->q_len, hd), tensor_f32(c->k, p->batch, p->kv_len, hd),
                         tensor_f32(c->v, p->batch, p->kv_len, hd),
                         c->mask ? tensor_f32(c->mask, p->batch, p->kv_len) : tensor_none());
    return dot(c->out, c->r, (int64_t)p->batch * p->q_len * hd);
}

static void attention_case(const char *name, int fused, int causal, int masked, float dropout, int tq, int tk)
{
    attn_ctx c = {0};
    attn_params *p = &c.p;
    p->batch = 2, p->heads = 3, p->q_len = tq, p->kv_len = tk, p->head_dim = 4;
    int64_t hd = (int64_t)p->heads * p->head_dim;
    p->scale = 0.5f;
    p->causal = causal;
    p->causal_value = -10000.0f;
    p->dropout = dropout;
    p->seed = 99;
    float *qkv = NULL, *dqkv = NULL, *dq, *dk, *dv;
    if (fused) {
        /* q, k, v interleaved in one (B, T, 3 * hd) buffer, as the ViT's qkv */
        assert_int_equal(tq, tk);
        qkv = randn((int64_t)p->batch * tq * 3 * hd, 1);
        dqkv = zeros((int64_t)p->batch * tq * 3 * hd);
        c.q = qkv, c.k = qkv + hd, c.v = qkv + 2 * hd;
        dq = dqkv, dk = dqkv + hd, dv = dqkv + 2 * hd;
        p->q_stride = p->k_stride = p->v_stride = 3 * hd;
    } else {
        c.q = randn((int64_t)p->batch * tq * hd, 1);
        c.k = randn((int64_t)p->batch * tk * hd, 1);
        c.v = randn((int64_t)p->batch * tk * hd, 1);
        dq = zeros((int64_t)p->batch * tq * hd);
        dk = zeros((int64_t)p->batch * tk * hd);
        dv = zeros((int64_t)p->batch * tk * hd);
        p->q_stride = p->k_stride = p->v_stride = hd;
    }
    if (masked) {
        c.mask = zeros((int64_t)p->batch * tk);
        c.mask[tk - 1] = -10000.0f; /* the last key of the first sequence is padding */
    }
    c.out = zeros((int64_t)p->batch * tq * hd);
    c.probs = zeros((int64_t)p->batch * p->heads * tq * tk);
    c.r = randn((int64_t)p->batch * tq * hd, 1);
    float *scratch = zeros((int64_t)p->batch * p->heads * tq * tk);
    attn_loss(&c);
    if (masked)
        for (int i = 0; i < tq; i++)
            assert_true(c.probs[(size_t)i * tk + tk - 1] < 1e-6f);
    op_attention_backward(backend_cpu(), p, tensor_f32(dq, p->batch, tq, hd), tensor_f32(dk, p->batch, tk, hd),
                          tensor_f32(dv, p->batch, tk, hd), tensor_f32(scratch, p->batch, p->heads, tq, tk),
                          tensor_f32(c.r, p->batch, tq, hd), tensor_f32(c.out, p->batch, tq, hd),
                          tensor_f32(c.probs, p->batch, p->heads, tq, tk), tensor_f32(c.q, p->batch, tq, hd),
                          tensor_f32(c.k, p->batch, tk, hd), tensor_f32(c.v, p->batch, tk, hd),
                          c.mask ? tensor_f32(c.mask, p->batch, tk) : tensor_none());
    char label[96];
    if (fused) {
        snprintf(label, sizeof label, "%s dqkv", name);
        check_grad(label, qkv, (int64_t)p->batch * tq * 3 * hd, dqkv, attn_loss, &c, EPS, TOL);
        free(qkv), free(dqkv);
    } else {
        snprintf(label, sizeof label, "%s dq", name);
        check_grad(label, c.q, (int64_t)p->batch * tq * hd, dq, attn_loss, &c, EPS, TOL);
        snprintf(label, sizeof label, "%s dk", name);
        check_grad(label, c.k, (int64_t)p->batch * tk * hd, dk, attn_loss, &c, EPS, TOL);
        snprintf(label, sizeof label, "%s dv", name);
        check_grad(label, c.v, (int64_t)p->batch * tk * hd, dv, attn_loss, &c, EPS, TOL);
        free(c.q), free(c.k), free(c.v), free(dq), free(dk), free(dv);
    }
    free(c.mask), free(c.out), free(c.probs), free(c.r), free(scratch);
}

static void test_attention_backward(void **state)
{
    (void)state;
    attention_case("self-attn fused qkv", 1, 0, 0, 0.0f, 5, 5);
    attention_case("self-attn masked", 0, 0, 1, 0.0f, 4, 4);
    attention_case("cross-attn", 0, 0, 0, 0.0f, 3, 7);
    attention_case("causal", 0, 1, 1, 0.0f, 6, 6);
    attention_case("dropout", 0, 0, 1, 0.3f, 4, 5);
}

/* ---- embeddings ---------------------------------------------------------------- */

typedef struct {
    int64_t b, t, v, c, p;
    int32_t *ids;
    float *word, *pos, *type, *out, *r;
} emb_ctx;

static double emb_loss(void *ptr)
{
    emb_ctx *c = ptr;
    tensor ids = tensor_make(c->ids, DTYPE_I32, 2, TENSOR_SHAPE(c->b, c->t));
    op_embedding_forward(backend_cpu(), tensor_f32(c->out, c->b, c->t, c->c), ids, tensor_f32(c->word, c->v, c->c),
                         tensor_f32(c->pos, c->p, c->c), tensor_f32(c->type, c->c));
    return dot(c->out, c->r, c->b * c->t * c->c);
}

static void test_embedding_backward(void **state)
{
    (void)state;
    emb_ctx c = {.b = 2, .t = 5, .v = 11, .c = 6, .p = 8};
    int32_t ids[10] = {1, 4, 4, 9, 0, 1, 2, 3, 10, 4}; /* repeats: the scatter must add */
    c.ids = ids;
    c.word = randn(c.v * c.c, 1), c.pos = randn(c.p * c.c, 1), c.type = randn(c.c, 1);
    c.out = zeros(c.b * c.t * c.c), c.r = randn(c.b * c.t * c.c, 1);
    float *dword = zeros(c.v * c.c), *dpos = zeros(c.p * c.c), *dtype_row = zeros(c.c);
    emb_loss(&c);
    tensor tids = tensor_make(ids, DTYPE_I32, 2, TENSOR_SHAPE(c.b, c.t));
    op_embedding_backward(backend_cpu(), tensor_f32(dword, c.v, c.c), tensor_f32(dpos, c.p, c.c),
                          tensor_f32(dtype_row, c.c), tensor_f32(c.r, c.b, c.t, c.c), tids);
    check_grad("embedding dword", c.word, c.v * c.c, dword, emb_loss, &c, EPS, TOL);
    check_grad("embedding dpos", c.pos, c.p * c.c, dpos, emb_loss, &c, EPS, TOL);
    check_grad("embedding dtype", c.type, c.c, dtype_row, emb_loss, &c, EPS, TOL);
    free(c.word), free(c.pos), free(c.type), free(c.out), free(c.r), free(dword), free(dpos), free(dtype_row);
}

/* ---- ViT input ----------------------------------------------------------------------- */

typedef struct {
    int64_t b, n, c;
    float *patch, *cls, *pos, *out, *r;
} vit_ctx;

static double vit_embed_loss(void *ptr)
{
    vit_ctx *c = ptr;
    op_vit_embed_forward(backend_cpu(), tensor_f32(c->out, c->b, c->n + 1, c->c), tensor_f32(c->patch, c->b, c->n, c->c),
                         tensor_f32(c->cls, c->c), tensor_f32(c->pos, c->n + 1, c->c));
    return dot(c->out, c->r, c->b * (c->n + 1) * c->c);
}

static void test_vit_embed_backward_and_patchify(void **state)
{
    (void)state;
    vit_ctx c = {.b = 2, .n = 4, .c = 5};
    c.patch = randn(c.b * c.n * c.c, 1), c.cls = randn(c.c, 1), c.pos = randn((c.n + 1) * c.c, 1);
    c.out = zeros(c.b * (c.n + 1) * c.c), c.r = randn(c.b * (c.n + 1) * c.c, 1);
    float *dpatch = zeros(c.b * c.n * c.c), *dcls = zeros(c.c), *dpos = zeros((c.n + 1) * c.c);
    vit_embed_loss(&c);
    op_vit_embed_backward(backend_cpu(), tensor_f32(dpatch, c.b, c.n, c.c), tensor_f32(dcls, c.c),
                          tensor_f32(dpos, c.n + 1, c.c), tensor_f32(c.r, c.b, c.n + 1, c.c));
    check_grad("vit_embed dpatch", c.patch, c.b * c.n * c.c, dpatch, vit_embed_loss, &c, EPS, TOL);
    check_grad("vit_embed dcls", c.cls, c.c, dcls, vit_embed_loss, &c, EPS, TOL);
    check_grad("vit_embed dpos", c.pos, (c.n + 1) * c.c, dpos, vit_embed_loss, &c, EPS, TOL);

    /* patchify: image (1, 3, 4, 6) with patch 2 -> 6 patches of (3, 2, 2), y-major */
    float img[72], patches[72];
    for (int i = 0; i < 72; i++)
        img[i] = (float)i;
    op_patchify(backend_cpu(), tensor_f32(patches, 6, 12), tensor_f32(img, 1, 3, 4, 6), 2);
    /* patch 4 = grid (y 1, x 1); channel 2, row 1, col 0 -> pixel (c 2, y 3, x 2) */
    assert_float_equal(patches[4 * 12 + 2 * 4 + 1 * 2 + 0], img[(2 * 4 + 3) * 6 + 2], 0);
    free(c.patch), free(c.cls), free(c.pos), free(c.out), free(c.r), free(dpatch), free(dcls), free(dpos);
}

/* ---- L2 normalisation, division by a scalar ---------------------------------------- */

typedef struct {
    int64_t m, c;
    float *x, *y, *norms, *r, *s;
} row_ctx;

static double l2_loss(void *ptr)
{
    row_ctx *c = ptr;
    op_l2norm_forward(backend_cpu(), tensor_f32(c->y, c->m, c->c), tensor_f32(c->norms, c->m),
                      tensor_f32(c->x, c->m, c->c));
    return dot(c->y, c->r, c->m * c->c);
}

static double div_loss(void *ptr)
{
    row_ctx *c = ptr;
    op_div_scalar_forward(backend_cpu(), tensor_f32(c->y, c->m, c->c), tensor_f32(c->x, c->m, c->c),
                          tensor_f32(c->s, 1));
    return dot(c->y, c->r, c->m * c->c);
}

static void test_l2norm_and_div_scalar_backward(void **state)
{
    (void)state;
    row_ctx c = {.m = 4, .c = 9};
    c.x = randn(c.m * c.c, 1), c.y = zeros(c.m * c.c), c.norms = zeros(c.m), c.r = randn(c.m * c.c, 1);
    float *dx = zeros(c.m * c.c);
    l2_loss(&c);
    assert_float_equal(dot(c.y, c.y, c.c), 1.0, 1e-5);
    op_l2norm_backward(backend_cpu(), tensor_f32(dx, c.m, c.c), tensor_f32(c.r, c.m, c.c), tensor_f32(c.y, c.m, c.c),
                       tensor_f32(c.norms, c.m));
    check_grad("l2norm dx", c.x, c.m * c.c, dx, l2_loss, &c, EPS, TOL);

    float temp = 0.07f, dtemp = 0.0f;
    c.s = &temp;
    div_loss(&c);
    op_div_scalar_backward(backend_cpu(), tensor_f32(dx, c.m, c.c), tensor_f32(&dtemp, 1), tensor_f32(c.r, c.m, c.c),
                           tensor_f32(c.y, c.m, c.c), tensor_f32(&temp, 1));
    check_grad("div_scalar dx", c.x, c.m * c.c, dx, div_loss, &c, 1e-3f, TOL);
    check_grad("div_scalar dtemp", &temp, 1, &dtemp, div_loss, &c, 1e-4f, TOL);
    free(c.x), free(c.y), free(c.norms), free(c.r), free(dx);
}

/* ---- cross-entropy ------------------------------------------------------------------------ */

typedef struct {
    int64_t m, c;
    float *logits, *soft, *loss;
    int32_t *labels;
    xent_params p;
} xent_ctx;

static double xent_loss(void *ptr)
{
    xent_ctx *c = ptr;
    op_softmax_xent(backend_cpu(), &c->p, tensor_f32(c->loss, c->m), tensor_none(),
                    tensor_f32(c->logits, c->m, c->c),
                    c->labels ? tensor_make(c->labels, DTYPE_I32, 1, TENSOR_SHAPE(c->m)) : tensor_none(),
                    c->soft ? tensor_f32(c->soft, c->m, c->c) : tensor_none());
    double s = 0;
    for (int64_t i = 0; i < c->m; i++)
        s += c->loss[i];
    return s * c->p.grad_scale;
}

static void test_softmax_xent(void **state)
{
    (void)state;
    xent_ctx c = {.m = 4, .c = 6};
    c.logits = randn(c.m * c.c, 2);
    c.loss = zeros(c.m);
    int32_t labels[4] = {2, -100, 5, 0};
    c.labels = labels;
    /* soft targets: a distribution per row, mixed with the one-hot as in
     * momentum distillation: 0.6 * onehot + 0.4 * soft */
    c.soft = zeros(c.m * c.c);
    for (int64_t r = 0; r < c.m; r++) {
        double s = 0;
        for (int64_t i = 0; i < c.c; i++)
            s += c.soft[r * c.c + i] = (float)rng_uniform(&rng);
        for (int64_t i = 0; i < c.c; i++)
            c.soft[r * c.c + i] /= (float)s;
    }
    c.p = (xent_params){.hard_weight = 0.6f, .soft_weight = 0.4f, .grad_scale = 1.0f / 3};
    float *dlogits = zeros(c.m * c.c);
    op_softmax_xent(backend_cpu(), &c.p, tensor_f32(c.loss, c.m), tensor_f32(dlogits, c.m, c.c),
                    tensor_f32(c.logits, c.m, c.c), tensor_make(labels, DTYPE_I32, 1, TENSOR_SHAPE(c.m)),
                    tensor_f32(c.soft, c.m, c.c));
    assert_float_equal(c.loss[1], 0.0f, 0);
    for (int64_t i = 0; i < c.c; i++)
        assert_float_equal(dlogits[c.c + i], 0.0f, 0);
    /* row 0 by hand */
    double mx = -1e30, se = 0;
    for (int i = 0; i < 6; i++)
        mx = c.logits[i] > mx ? c.logits[i] : mx;
    for (int i = 0; i < 6; i++)
        se += exp(c.logits[i] - mx);
    double expect = 0;
    for (int i = 0; i < 6; i++)
        expect -= (0.4 * c.soft[i] + (i == 2 ? 0.6 : 0)) * (c.logits[i] - mx - log(se));
    assert_float_equal(c.loss[0], expect, 1e-5);
    check_grad("softmax_xent mixed", c.logits, c.m * c.c, dlogits, xent_loss, &c, 1e-2f, TOL);
    /* hard labels only, mean over counted rows */
    free(c.soft);
    c.soft = NULL;
    c.p = (xent_params){.hard_weight = 1, .soft_weight = 0, .grad_scale = 1.0f / 3};
    op_softmax_xent(backend_cpu(), &c.p, tensor_f32(c.loss, c.m), tensor_f32(dlogits, c.m, c.c),
                    tensor_f32(c.logits, c.m, c.c), tensor_make(labels, DTYPE_I32, 1, TENSOR_SHAPE(c.m)),
                    tensor_none());
    check_grad("softmax_xent hard", c.logits, c.m * c.c, dlogits, xent_loss, &c, 1e-2f, TOL);
    free(c.logits), free(c.loss), free(dlogits);
}

/* ---- gathers and copies: each backward is the adjoint of its forward --------------------- */

static void test_gather_scatter_copy_rows_adjoint(void **state)
{
    (void)state;
    backend *be = backend_cpu();
    int32_t idx[5] = {3, 0, 3, 1, 2};
    float *x = randn(4 * 6, 1), *y = randn(5 * 6, 1), *gx = zeros(5 * 6), *sy = zeros(4 * 6);
    tensor tidx = tensor_make(idx, DTYPE_I32, 1, TENSOR_SHAPE(5));
    op_gather_rows(be, tensor_f32(gx, 5, 6), tensor_f32(x, 4, 6), tidx);
    op_scatter_add_rows(be, tensor_f32(sy, 4, 6), tensor_f32(y, 5, 6), tidx);
    assert_float_equal(dot(gx, y, 30), dot(x, sy, 24), 1e-4);

    /* copy_rows picks token 0 of each (T=3, C=4) sequence; accumulate adds back */
    float *seq = randn(2 * 3 * 4, 1), cls[8], back[24] = {0};
    op_copy_rows(be, tensor_f32(cls, 2, 4), 4, tensor_f32(seq, 2, 3, 4), 12, 2, 4, 0);
    assert_memory_equal(cls + 4, seq + 12, 4 * sizeof(float));
    op_copy_rows(be, tensor_f32(back, 2, 3, 4), 12, tensor_f32(cls, 2, 4), 4, 2, 4, 1);
    op_copy_rows(be, tensor_f32(back, 2, 3, 4), 12, tensor_f32(cls, 2, 4), 4, 2, 4, 1);
    assert_float_equal(back[12], 2 * seq[12], 1e-6);
    assert_float_equal(back[13 + 4], 0, 0);
    free(x), free(y), free(gx), free(sy), free(seq);
}

/* ---- optimiser and momentum update ---------------------------------------------------------- */

/* One AdamW pass over an arena with per-element decay flags is bit for bit
 * the per-tensor passes it replaces: weight_decay where the flag is set, 0
 * where it is not. */
static void test_adamw_decay_flags_match_per_tensor_calls(void **state)
{
    (void)state;
    enum { N = 1000 };
    const int64_t bounds[] = {0, 7, 300, 301, 640, 999, N}; /* segments; odd ones without decay */
    float w1[N], w2[N], m1[N] = {0}, m2[N] = {0}, v1[N] = {0}, v2[N] = {0}, g[N];
    uint8_t flags[N];
    rng_state r;
    rng_seed(&r, 7);
    for (int i = 0; i < N; i++)
        w1[i] = w2[i] = (float)rng_normal(&r);
    for (int s = 0; s + 1 < (int)(sizeof bounds / sizeof bounds[0]); s++)
        memset(flags + bounds[s], !(s & 1), (size_t)(bounds[s + 1] - bounds[s]));
    for (int step = 1; step <= 3; step++) {
        for (int i = 0; i < N; i++)
            g[i] = (float)rng_normal(&r);
        float lr = 1e-3f * (float)step;
        op_adamw(backend_cpu(), tensor_f32(w1, N), tensor_f32(g, N), tensor_f32(m1, N), tensor_f32(v1, N),
                 tensor_make(flags, DTYPE_U8, 1, TENSOR_SHAPE(N)), lr, 0.9f, 0.999f, 1e-8f, 0.02f, step);
        for (int s = 0; s + 1 < (int)(sizeof bounds / sizeof bounds[0]); s++) {
            int64_t a = bounds[s], n = bounds[s + 1] - bounds[s];
            op_adamw(backend_cpu(), tensor_f32(w2 + a, n), tensor_f32(g + a, n), tensor_f32(m2 + a, n),
                     tensor_f32(v2 + a, n), tensor_none(), lr, 0.9f, 0.999f, 1e-8f, (s & 1) ? 0.0f : 0.02f, step);
        }
    }
    for (int i = 0; i < N; i++)
        if (memcmp(&w1[i], &w2[i], sizeof(float)) || memcmp(&m1[i], &m2[i], sizeof(float)) ||
            memcmp(&v1[i], &v2[i], sizeof(float)))
            fail_msg("element %d: one pass gives w %.9g m %.9g v %.9g, per tensor w %.9g m %.9g v %.9g", i, w1[i],
                     m1[i], v1[i], w2[i], m2[i], v2[i]);
}

static void test_adamw_matches_reference_arithmetic(void **state)
{
    (void)state;
    float w[3] = {0.5f, -1.0f, 2.0f}, g[3] = {0.1f, -0.2f, 0.3f}, m[3] = {0}, v[3] = {0};
    for (int step = 1; step <= 3; step++)
        op_adamw(backend_cpu(), tensor_f32(w, 3), tensor_f32(g, 3), tensor_f32(m, 3), tensor_f32(v, 3), tensor_none(),
                 1e-3f, 0.9f, 0.999f, 1e-8f, 0.02f, step);
    /* torch.optim.AdamW(lr=1e-3, weight_decay=0.02), three steps, constant grad */
    const float expect[3] = {4.96970057e-01f, -9.96940017e-01f, 1.99687970e+00f};
    assert_float_equal(w[0], expect[0], 2e-6);
    assert_float_equal(w[1], expect[1], 2e-6);
    assert_float_equal(w[2], expect[2], 2e-6);

    float t[2] = {1.0f, 2.0f}, s[2] = {3.0f, -2.0f};
    op_ema(backend_cpu(), tensor_f32(t, 2), tensor_f32(s, 2), 0.995f);
    assert_float_equal(t[0], 1.0f * 0.995f + 3.0f * 0.005f, 1e-7);
    assert_float_equal(t[1], 2.0f * 0.995f - 2.0f * 0.005f, 1e-7);
}

int main(void)
{
    rng_seed(&rng, 2024);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_backward),
        cmocka_unit_test(test_gelu_values_and_backward),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_layernorm_backward),
        cmocka_unit_test(test_linear_bias_after_product),
        cmocka_unit_test(test_residual_layernorm_matches_unfused),
        cmocka_unit_test(test_bias_gelu_matches_unfused),
        cmocka_unit_test(test_residual_layernorm_backward),
        cmocka_unit_test(test_attention_backward),
        cmocka_unit_test(test_embedding_backward),
        cmocka_unit_test(test_vit_embed_backward_and_patchify),
        cmocka_unit_test(test_l2norm_and_div_scalar_backward),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_gather_scatter_copy_rows_adjoint),
        cmocka_unit_test(test_adamw_matches_reference_arithmetic),
        cmocka_unit_test(test_adamw_decay_flags_match_per_tensor_calls),
    };
    return cmocka_run_group_tests_name("ops", tests, NULL, NULL);
}
