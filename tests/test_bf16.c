/* bf16 mode on the CPU (backend_cpu_bf16, ops.h's "bf16 storage"): the
 * reference the CUDA back end's bf16 mode is compared against, and the
 * model's bf16 path, run without a GPU.
 *   - Ops that write a bf16 out give the fp32 result rounded to nearest even,
 *     bit for bit, and their other outputs unchanged.
 *   - Products read operands rounded to bf16 (a bf16 tensor or an fp32 one)
 *     and equal fp32 products of the rounded values, bit for bit; the bias
 *     gradient sums the unrounded dout.
 *   - The reference scenario and a whole pre-training step in bf16 mode stay
 *     within bf16's precision of fp32 (losses 1e-2, gradients 5e-2 over all
 *     weights), with a smaller activation arena. */
#include "albef.h"
#include "core/dtype.h"
#include "model/albef_model.h"
#include "ops/arena.h"
#include "scenario.h"
#include "step_fixture.h"
#include "testutil.h"
#include "train/pretrain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t lcg_state = 12345;

static float uniform(void)
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((lcg_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* n floats in [-scale, scale), never all zero. */
static float *random_floats(size_t n, float scale)
{
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        p[i] = scale * uniform();
    return p;
}

static float round_bf16(float x) { return bf16_to_f32(f32_to_bf16(x)); }

static float *rounded_copy(const float *x, size_t n)
{
    float *r = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        r[i] = round_bf16(x[i]);
    return r;
}

/* Expects the bf16 array to be the float array rounded, bit for bit. */
static void expect_rounded(const uint16_t *got, const float *ref, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != f32_to_bf16(ref[i]))
            fail_msg("%s[%zu]: bf16 0x%04x (%.9g), expected 0x%04x from %.9g", what, i, got[i], bf16_to_f32(got[i]),
                     f32_to_bf16(ref[i]), ref[i]);
}

#define T32(p, ...) tensor_f32((p), __VA_ARGS__)
#define T16(p, ...) tensor_make((p), DTYPE_BF16, TENSOR_NDIM(__VA_ARGS__), TENSOR_SHAPE(__VA_ARGS__))

static void test_outputs_are_rounded_fp32(void **state)
{
    (void)state;
    backend *f32 = backend_cpu(), *b16 = backend_cpu_bf16();
    const int64_t M = 37, C = 100;
    float *x = random_floats(M * C, 2.0f), *w = random_floats(C, 1.0f), *b = random_floats(C, 0.5f);
    float *res = random_floats(M * C, 1.0f), *bias = random_floats(C, 0.3f);
    float *out = malloc(sizeof(float) * M * C), *mu = malloc(sizeof(float) * M), *rs = malloc(sizeof(float) * M);
    float *mu16 = malloc(sizeof(float) * M), *rs16 = malloc(sizeof(float) * M);
    uint16_t *out16 = malloc(sizeof(uint16_t) * M * C);

    /* layer norm */
    f32->ops->layernorm_forward(f32, T32(out, M, C), T32(mu, M), T32(rs, M), T32(x, M, C), T32(w, C), T32(b, C),
                                1e-6f);
    b16->ops->layernorm_forward(b16, T16(out16, M, C), T32(mu16, M), T32(rs16, M), T32(x, M, C), T32(w, C),
                                T32(b, C), 1e-6f);
    expect_rounded(out16, out, (size_t)(M * C), "layernorm_forward out");
    assert_memory_equal(mu, mu16, sizeof(float) * M);
    assert_memory_equal(rs, rs16, sizeof(float) * M);

    /* the residual form, with dropout: sum stays fp32 and identical */
    float *sum = malloc(sizeof(float) * M * C), *sum16 = malloc(sizeof(float) * M * C);
    f32->ops->residual_layernorm_forward(f32, T32(out, M, C), T32(mu, M), T32(rs, M), T32(sum, M, C), T32(x, M, C),
                                         T32(bias, C), T32(res, M, C), T32(w, C), T32(b, C), 1e-12f, 0.1f, 99);
    b16->ops->residual_layernorm_forward(b16, T16(out16, M, C), T32(mu16, M), T32(rs16, M), T32(sum16, M, C),
                                         T32(x, M, C), T32(bias, C), T32(res, M, C), T32(w, C), T32(b, C), 1e-12f,
                                         0.1f, 99);
    expect_rounded(out16, out, (size_t)(M * C), "residual_layernorm_forward out");
    assert_memory_equal(sum, sum16, sizeof(float) * M * C);
    assert_memory_equal(mu, mu16, sizeof(float) * M);

    /* bias + GELU: pre stays fp32 */
    float *pre = malloc(sizeof(float) * M * C), *pre16 = malloc(sizeof(float) * M * C);
    f32->ops->bias_gelu_forward(f32, T32(out, M, C), T32(pre, M, C), T32(x, M, C), T32(bias, C));
    b16->ops->bias_gelu_forward(b16, T16(out16, M, C), T32(pre16, M, C), T32(x, M, C), T32(bias, C));
    expect_rounded(out16, out, (size_t)(M * C), "bias_gelu_forward out");
    assert_memory_equal(pre, pre16, sizeof(float) * M * C);

    /* attention with a mask and dropout: the probabilities stay fp32 */
    attn_params p = {.batch = 2, .heads = 3, .q_len = 7, .kv_len = 11, .head_dim = 16, .scale = 0.25f,
                     .dropout = 0.1f, .seed = 5};
    int64_t HD = 48;
    p.q_stride = p.k_stride = p.v_stride = HD;
    float *q = random_floats(2 * 7 * HD, 1.0f), *k = random_floats(2 * 11 * HD, 1.0f);
    float *v = random_floats(2 * 11 * HD, 1.0f), *mask = calloc(2 * 11, sizeof(float));
    mask[3] = mask[11 + 10] = -10000.0f;
    float *ao = malloc(sizeof(float) * 2 * 7 * HD), *probs = malloc(sizeof(float) * 2 * 3 * 7 * 11);
    float *probs16 = malloc(sizeof(float) * 2 * 3 * 7 * 11);
    uint16_t *ao16 = malloc(sizeof(uint16_t) * 2 * 7 * HD);
    f32->ops->attention_forward(f32, &p, T32(ao, 2, 7, HD), T32(probs, 2, 3, 7, 11), T32(q, 2, 7, HD),
                                T32(k, 2, 11, HD), T32(v, 2, 11, HD), T32(mask, 2, 11));
    b16->ops->attention_forward(b16, &p, T16(ao16, 2, 7, HD), T32(probs16, 2, 3, 7, 11), T32(q, 2, 7, HD),
                                T32(k, 2, 11, HD), T32(v, 2, 11, HD), T32(mask, 2, 11));
    expect_rounded(ao16, ao, (size_t)(2 * 7 * HD), "attention_forward out");
    assert_memory_equal(probs, probs16, sizeof(float) * 2 * 3 * 7 * 11);

    free(x), free(w), free(b), free(res), free(bias), free(out), free(mu), free(rs), free(mu16), free(rs16);
    free(out16), free(sum), free(sum16), free(pre), free(pre16), free(q), free(k), free(v), free(mask), free(ao);
    free(probs), free(probs16), free(ao16);
}

static void test_products_round_their_operands(void **state)
{
    (void)state;
    backend *f32 = backend_cpu(), *b16 = backend_cpu_bf16();
    const int64_t M = 29, K = 70, N = 45;
    float *x = random_floats(M * K, 1.5f), *w = random_floats(N * K, 0.2f), *bias = random_floats(N, 0.1f);
    float *dy = random_floats(M * N, 1.0f);
    float *xr = rounded_copy(x, M * K), *wr = rounded_copy(w, N * K), *dyr = rounded_copy(dy, M * N);
    uint16_t *x16 = malloc(sizeof(uint16_t) * M * K);
    f32_to_bf16_array(x16, x, (size_t)(M * K));

    /* forward: fp32 in and bf16 in both equal the fp32 product of rounded operands */
    float *ref = malloc(sizeof(float) * M * N), *got = malloc(sizeof(float) * M * N);
    f32->ops->linear_forward(f32, T32(ref, M, N), T32(xr, M, K), T32(wr, N, K), T32(bias, N));
    b16->ops->linear_forward(b16, T32(got, M, N), T32(x, M, K), T32(w, N, K), T32(bias, N));
    assert_memory_equal(ref, got, sizeof(float) * M * N);
    b16->ops->linear_forward(b16, T32(got, M, N), T16(x16, M, K), T32(w, N, K), T32(bias, N));
    assert_memory_equal(ref, got, sizeof(float) * M * N);

    /* backward: din and dw from rounded operands (dw accumulates onto a
     * start), dbias from the fp32 dout */
    float *start = random_floats(N * K, 0.01f);
    float *din_ref = malloc(sizeof(float) * M * K), *din = malloc(sizeof(float) * M * K);
    float *dw_ref = malloc(sizeof(float) * N * K), *dw = malloc(sizeof(float) * N * K);
    float *db_ref = calloc((size_t)N, sizeof(float)), *db = calloc((size_t)N, sizeof(float));
    memcpy(dw_ref, start, sizeof(float) * N * K);
    memcpy(dw, start, sizeof(float) * N * K);
    f32->ops->linear_backward(f32, T32(din_ref, M, K), 0, T32(dw_ref, N, K), tensor_none(), T32(dyr, M, N),
                              T32(xr, M, K), T32(wr, N, K));
    f32->ops->linear_backward(f32, tensor_none(), 0, tensor_none(), T32(db_ref, N), T32(dy, M, N), T32(x, M, K),
                              T32(w, N, K));
    b16->ops->linear_backward(b16, T32(din, M, K), 0, T32(dw, N, K), T32(db, N), T32(dy, M, N), T16(x16, M, K),
                              T32(w, N, K));
    assert_memory_equal(din_ref, din, sizeof(float) * M * K);
    assert_memory_equal(dw_ref, dw, sizeof(float) * N * K);
    assert_memory_equal(db_ref, db, sizeof(float) * N);

    /* matmul: c = a b^T */
    f32->ops->matmul(f32, T32(ref, M, N), T32(xr, M, K), T32(wr, N, K), 0, 1, 0.5f, 0.0f);
    b16->ops->matmul(b16, T32(got, M, N), T32(x, M, K), T32(w, N, K), 0, 1, 0.5f, 0.0f);
    assert_memory_equal(ref, got, sizeof(float) * M * N);
    /* and rounding changed something: the operands were not already bf16 */
    f32->ops->matmul(f32, T32(got, M, N), T32(x, M, K), T32(w, N, K), 0, 1, 0.5f, 0.0f);
    assert_memory_not_equal(ref, got, sizeof(float) * M * N);

    free(x), free(w), free(bias), free(dy), free(xr), free(wr), free(dyr), free(x16), free(ref), free(got);
    free(start), free(din_ref), free(din), free(dw_ref), free(dw), free(db_ref), free(db);
}

/* ---- the model ------------------------------------------------------------------ */

#define SMALL "reference/small/"

typedef struct {
    albef_model m;
    scenario_state s;
    arena ar;
    size_t arena_bytes;
} scenario_run;

static void scenario_run_once(scenario_run *r, backend *be, const albef_config *cfg, const scenario_inputs *in)
{
    albef_model_options opt = {.layout = LAYOUT_PRETRAIN, .with_grads = 1};
    assert_ok(albef_model_init(&r->m, cfg, be, &opt));
    load_report rep;
    assert_ok(albef_model_load(&r->m, testdata_path(SMALL "weights.safetensors"), 1, &rep));
    assert_ok(scenario_state_init(&r->s, &r->m));
    arena_init_measuring(&r->ar);
    dropout_ctx d = {.hidden = 0.1f, .attention = 0.1f, .seed = 77};
    scenario_forward(backend_null_for(be), &r->m, &r->ar, in, &r->s, &d);
    scenario_backward(backend_null_for(be), &r->m, &r->ar, in, &r->s);
    r->arena_bytes = r->ar.peak;
    assert_ok(arena_init(&r->ar, be, r->arena_bytes));
    params_zero_grads(&r->m.params);
    d.counter = 0;
    scenario_forward(be, &r->m, &r->ar, in, &r->s, &d);
    scenario_backward(be, &r->m, &r->ar, in, &r->s);
    assert_false(r->ar.overflow);
}

static void scenario_release(scenario_run *r)
{
    arena_free(&r->ar);
    scenario_state_free(&r->s);
    albef_model_free(&r->m);
}

/* |a - b| / |b| over n values. */
static double rel_norm(const float *a, const float *b, size_t n)
{
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) {
        d2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r2 += (double)b[i] * b[i];
    }
    return sqrt(d2 / r2);
}

static void test_scenario_in_bf16(void **state)
{
    (void)state;
    albef_config cfg;
    assert_ok(config_load(testdata_path(SMALL "config.json"), &cfg));
    scenario_inputs in;
    assert_ok(scenario_load_inputs(testdata_path(SMALL "inputs.safetensors"), &cfg, &in));
    scenario_run f, h;
    scenario_run_once(&f, backend_cpu(), &cfg, &in);
    scenario_run_once(&h, backend_cpu_bf16(), &cfg, &in);
    const float *lf = f.s.losses.data, *lh = h.s.losses.data;
    const char *names[4] = {"loss_i2t/2", "loss_t2i/2", "loss_itm", "loss_mlm"};
    for (int i = 0; i < 4; i++) {
        double rel = fabs((double)lh[i] - lf[i]) / fabs(lf[i]);
        printf("# %-10s fp32 %.6f bf16 %.6f (|d|/|fp32| %.1e)\n", names[i], lf[i], lh[i], rel);
        assert_true(rel <= 1e-2);
    }
    double g = rel_norm(h.m.params.grads, f.m.params.grads, f.m.params.numel);
    printf("# gradients: |bf16 - fp32| / |fp32| = %.2e over %zu values\n", g, f.m.params.numel);
    assert_true(g <= 5e-2);
    assert_true(g > 0); /* the rounding happened */
    printf("# activation arena: fp32 %zu bytes, bf16 %zu (%.1f %%)\n", f.arena_bytes, h.arena_bytes,
           100.0 * (double)h.arena_bytes / (double)f.arena_bytes);
    assert_true(h.arena_bytes < f.arena_bytes);
    scenario_release(&f);
    scenario_release(&h);
    scenario_free_inputs(&in);
}

/* One pre-training step (momentum model, queues, distillation, AdamW) on the
 * recorded reference batch in both modes. */
static void test_pretrain_step_in_bf16(void **state)
{
    (void)state;
    step_fixture f;
    step_fixture_open(&f);
    step_batch sb;
    step_batch_read(&f, 0, &sb);
    pretrain_options opt = pretrain_options_default(f.B);
    opt.max_len = f.L;
    pretrainer t[2];
    pretrain_stats st[2];
    backend *be[2] = {backend_cpu(), backend_cpu_bf16()};
    for (int k = 0; k < 2; k++) {
        step_pretrainer_init(&t[k], be[k], &f, &opt);
        assert_ok(pretrainer_step(&t[k], &sb.b, sb.lr, &st[k]));
        printf("# %s: itc %.6f itm %.6f mlm %.6f grad norm %.5f\n", k ? "bf16" : "fp32", st[k].loss_ita,
               st[k].loss_itm, st[k].loss_mlm, st[k].grad_norm);
    }
    double d[4] = {fabs(st[1].loss_ita - st[0].loss_ita) / st[0].loss_ita,
                   fabs(st[1].loss_itm - st[0].loss_itm) / st[0].loss_itm,
                   fabs(st[1].loss_mlm - st[0].loss_mlm) / st[0].loss_mlm,
                   fabs(st[1].grad_norm - st[0].grad_norm) / st[0].grad_norm};
    printf("# |bf16 - fp32| / |fp32|: itc %.1e itm %.1e mlm %.1e grad norm %.1e\n", d[0], d[1], d[2], d[3]);
    for (int i = 0; i < 4; i++)
        assert_true(d[i] <= 1e-2);
    assert_int_equal(st[0].masked_tokens, st[1].masked_tokens);
    for (int k = 0; k < 2; k++)
        pretrainer_free(&t[k]);
    step_batch_free(&sb);
    step_fixture_close(&f);
}

/* The activation memory of a pre-training step of albef-base at 256 px as
 * the CUDA back end lays it out (flash attention state), fp32 and bf16. */
static void test_bf16_shrinks_albef_base_step(void **state)
{
    (void)state;
    albef_config cfg;
    assert_ok(config_preset("albef-base", &cfg));
    backend cuda_like[2] = {{.attn_layout = ATTN_LAYOUT_LSE, .act_dtype = DTYPE_F32},
                            {.attn_layout = ATTN_LAYOUT_LSE, .act_dtype = DTYPE_BF16}};
    size_t per[2];
    for (int k = 0; k < 2; k++)
        per[k] = pretrainer_bytes_per_sample(&cuda_like[k], &cfg, 30);
    printf("# albef-base, 256 px, text length 30, per sample: fp32 %.1f MiB, bf16 %.1f MiB (%.1f %%); "
           "batch 64: %.1f / %.1f GiB\n",
           per[0] / 1048576.0, per[1] / 1048576.0, 100.0 * (double)per[1] / (double)per[0],
           64.0 * per[0] / 1073741824.0, 64.0 * per[1] / 1073741824.0);
    assert_true(per[0] > 0 && per[1] > 0 && per[1] < per[0]);
}

int main(void)
{
    albef_log_set_level(ALBEF_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outputs_are_rounded_fp32),
        cmocka_unit_test(test_products_round_their_operands),
        cmocka_unit_test(test_scenario_in_bf16),
        cmocka_unit_test(test_pretrain_step_in_bf16),
        cmocka_unit_test(test_bf16_shrinks_albef_base_step),
    };
    return cmocka_run_group_tests_name("bf16", tests, NULL, NULL);
}
