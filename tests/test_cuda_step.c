/* Whole training computations on the CUDA back end against the CPU back end
 * (fp32): the reference scenario (tests/scenario.c: ITC, ITM, MLM, forward
 * and backward) with dropout on, and two pre-training steps (momentum
 * update, queues, distillation, AdamW) with dropout on in the student and
 * the teacher. Dropout masks are counter-based, so both back ends drop the
 * same elements and the results must agree within float rounding: losses
 * 1e-5, gradients 1e-4 (max |d| / max |ref| per tensor), parameters after the
 * steps 1e-4 over all weights (elementwise, AdamW's allowance for gradients
 * that are float noise, as in test_pretrain_step). The CUDA scenario is then run again and must repeat itself bit
 * for bit. Last, one step in bf16 mode against the CPU in fp32 (1e-2) and its bf16 reference (2e-3).
 *
 * Without a CUDA device the program reports one skipped test. */
#include "albef.h"
#include "io/safetensors.h"
#include "model/albef_model.h"
#include "ops/arena.h"
#include "scenario.h"
#include "step_fixture.h"
#include "testutil.h"
#include "train/pretrain.h"
#ifdef ALBEF_HAVE_CUDA
#include "../cuda/cuda_backend.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static backend *gpu;
static char no_device[512];

static void expect_no_cuda_error(void)
{
#ifdef ALBEF_HAVE_CUDA
    char msg[512];
    if (gpu->kind == BACKEND_CUDA && cuda_backend_last_error(gpu, msg, sizeof msg))
        fail_msg("CUDA back end error: %s", msg);
#endif
}

static float *download(backend *be, tensor t)
{
    size_t n = (size_t)tensor_numel(t);
    float *h = malloc(sizeof(float) * (n ? n : 1));
    be->ops->download(be, h, t.data, sizeof(float) * n);
    return h;
}

/* max|got - ref| <= rtol * max|ref| + atol, with the measure printed when it
 * fails or ALBEF_VERBOSE is set; returns max|d| / max|ref|. */
static double compare(const char *name, const float *got, const float *ref, size_t n, double rtol, double atol,
                      int *ok)
{
    double max_ref = 0, max_diff = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (isnan(got[i]) != isnan(ref[i]))
            d = INFINITY;
        if (d > max_diff)
            max_diff = d, at = i;
        if (fabs(ref[i]) > max_ref)
            max_ref = fabs(ref[i]);
    }
    /* tensors that are zero in exact arithmetic (key biases' gradients)
     * are float noise on both sides: atol covers them, and the summary
     * leaves them out */
    double rel = max_ref > 100 * atol + 1e-6 ? max_diff / max_ref : 0;
    int bad = !(max_diff <= rtol * max_ref + atol);
    if (bad || getenv("ALBEF_VERBOSE"))
        printf("# %-64s max|d| %.2e (max|ref| %.3g)%s\n", name, max_diff, max_ref, bad ? "  <-- FAIL" : "");
    if (bad) {
        printf("#   [%zu] cuda %.9g cpu %.9g\n", at, got[at], ref[at]);
        *ok = 0;
    }
    return rel;
}

/* A tensor of each back end, compared after downloading the CUDA one. */
static double compare_tensors(const char *name, tensor on_gpu, tensor on_cpu, double rtol, double atol, int *ok)
{
    float *g = download(gpu, on_gpu);
    double rel = compare(name, g, on_cpu.data, (size_t)tensor_numel(on_cpu), rtol, atol, ok);
    free(g);
    return rel;
}

static void test_no_cuda_device(void **state)
{
    (void)state;
    printf("# skipped: no CUDA device (%s)\n", no_device);
    skip();
}

/* ---- the reference scenario ------------------------------------------------- */

#define SMALL "testdata/reference/small/"

typedef struct {
    backend *be;
    albef_model m;
    scenario_state s;
    arena ar;
} scenario_run;

static void scenario_setup(scenario_run *r, backend *be, const albef_config *cfg, const scenario_inputs *in)
{
    r->be = be;
    albef_model_options opt = {.layout = LAYOUT_PRETRAIN, .with_grads = 1};
    assert_ok(albef_model_init(&r->m, cfg, be, &opt));
    load_report rep;
    assert_ok(albef_model_load(&r->m, SMALL "weights.safetensors", 1, &rep));
    assert_ok(scenario_state_init(&r->s, &r->m));
    arena_init_measuring(&r->ar);
    dropout_ctx d = {.hidden = cfg->bert.hidden_dropout_prob, .attention = cfg->bert.attention_probs_dropout_prob,
                     .seed = 77};
    scenario_forward(backend_null_for(be), &r->m, &r->ar, in, &r->s, &d);
    scenario_backward(backend_null_for(be), &r->m, &r->ar, in, &r->s);
    size_t need = r->ar.peak;
    assert_ok(arena_init(&r->ar, be, need));
}

static void scenario_step(scenario_run *r, const scenario_inputs *in)
{
    const albef_config *cfg = &r->m.cfg;
    arena_reset(&r->ar, 0);
    params_zero_grads(&r->m.params);
    dropout_ctx d = {.hidden = cfg->bert.hidden_dropout_prob, .attention = cfg->bert.attention_probs_dropout_prob,
                     .seed = 77};
    scenario_forward(r->be, &r->m, &r->ar, in, &r->s, &d);
    scenario_backward(r->be, &r->m, &r->ar, in, &r->s);
    r->be->ops->synchronize(r->be);
    assert_false(r->ar.overflow);
}

static void scenario_release(scenario_run *r)
{
    arena_free(&r->ar);
    scenario_state_free(&r->s);
    albef_model_free(&r->m);
}

static void test_scenario_matches_cpu(void **state)
{
    (void)state;
    albef_config cfg;
    assert_ok(config_load(SMALL "config.json", &cfg));
    printf("# dropout: hidden %.2f, attention %.2f\n", cfg.bert.hidden_dropout_prob,
           cfg.bert.attention_probs_dropout_prob);
    scenario_inputs in;
    assert_ok(scenario_load_inputs(SMALL "inputs.safetensors", &cfg, &in));
    scenario_run cpu, cuda;
    scenario_setup(&cpu, backend_cpu(), &cfg, &in);
    scenario_setup(&cuda, gpu, &cfg, &in);
    scenario_step(&cpu, &in);
    scenario_step(&cuda, &in);
    expect_no_cuda_error();

    int ok = 1;
    double worst_fwd = 0, worst_grad = 0, e;
    const char *lname[4] = {"loss_i2t/2", "loss_t2i/2", "loss_itm", "loss_mlm"};
    float *losses = download(gpu, cuda.s.losses);
    for (int i = 0; i < 4; i++) {
        e = compare(lname[i], &losses[i], (float *)cpu.s.losses.data + i, 1, 1e-5, 0, &ok);
        worst_fwd = e > worst_fwd ? e : worst_fwd;
    }
    printf("# losses cuda: itc %.6f itm %.6f mlm %.6f; cpu: itc %.6f itm %.6f mlm %.6f\n", losses[0] + losses[1],
           losses[2], losses[3], ((float *)cpu.s.losses.data)[0] + ((float *)cpu.s.losses.data)[1],
           ((float *)cpu.s.losses.data)[2], ((float *)cpu.s.losses.data)[3]);
    free(losses);
    struct {
        const char *name;
        tensor g, c;
    } outs[] = {
        {"vit_out", cuda.s.vit.out, cpu.s.vit.out},           {"text_out", cuda.s.text.out, cpu.s.text.out},
        {"sim_i2t", cuda.s.sim_i2t, cpu.s.sim_i2t},           {"fusion_out", cuda.s.fusion.out, cpu.s.fusion.out},
        {"itm_logits", cuda.s.itm_logits, cpu.s.itm_logits}, {"mlm_logits", cuda.s.head.logits, cpu.s.head.logits},
    };
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        e = compare_tensors(outs[i].name, outs[i].g, outs[i].c, 1e-5, 0, &ok);
        worst_fwd = e > worst_fwd ? e : worst_fwd;
    }
    int ngrads = 0;
    for (int i = 0; i < cpu.m.params.count; i++) {
        const param_info *p = &cpu.m.params.items[i];
        if (p->alias_of >= 0)
            continue;
        char name[300];
        snprintf(name, sizeof name, "grad.%s", p->name);
        e = compare_tensors(name, params_grad(&cuda.m.params, i), params_grad(&cpu.m.params, i), 1e-4, 1e-7, &ok);
        worst_grad = e > worst_grad ? e : worst_grad;
        ngrads++;
    }
    printf("# forward: worst max|d|/max|ref| %.2e (tolerance 1e-5); gradients: worst %.2e over %d parameters "
           "(tolerance 1e-4)\n",
           worst_fwd, worst_grad, ngrads);
    assert_true(ok);

    /* a second CUDA run repeats the first bit for bit */
    size_t n = cuda.m.params.numel;
    float *grads1 = malloc(sizeof(float) * n), *grads2 = malloc(sizeof(float) * n);
    float l1[4], l2[4];
    gpu->ops->download(gpu, grads1, cuda.m.params.grads, sizeof(float) * n);
    gpu->ops->download(gpu, l1, cuda.s.losses.data, sizeof l1);
    scenario_step(&cuda, &in);
    expect_no_cuda_error();
    gpu->ops->download(gpu, grads2, cuda.m.params.grads, sizeof(float) * n);
    gpu->ops->download(gpu, l2, cuda.s.losses.data, sizeof l2);
    assert_memory_equal(l1, l2, sizeof l1);
    size_t differ = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&grads1[i], &grads2[i], sizeof(float)) && !differ++)
            first = i;
    if (differ)
        fail_msg("rerun: %zu of %zu gradient values differ, first [%zu]: %.9g vs %.9g", differ, n, first,
                 grads1[first], grads2[first]);
    printf("# rerun: losses and %zu gradient values bitwise equal\n", n);
    free(grads1), free(grads2);
    scenario_release(&cpu);
    scenario_release(&cuda);
    scenario_free_inputs(&in);
}

/* ---- two pre-training steps -------------------------------------------------------- */

static void compare_param_set(const char *what, int k, const param_set *g, const param_set *c, double atol, int *ok,
                              double *worst, double *drift)
{
    float *gv = malloc(sizeof(float) * g->numel);
    gpu->ops->download(gpu, gv, g->values, sizeof(float) * g->numel);
    double d2 = 0, r2 = 0;
    for (int i = 0; i < c->count; i++) {
        const param_info *p = &c->items[i];
        if (p->alias_of >= 0)
            continue;
        char name[320];
        snprintf(name, sizeof name, "step%d.%s.%s", k, what, p->name);
        const float *a = gv + p->offset, *r = c->values + p->offset;
        double e = compare(name, a, r, p->numel, 1e-4, atol, ok);
        *worst = e > *worst ? e : *worst;
        for (size_t j = 0; j < p->numel; j++) {
            d2 += ((double)a[j] - r[j]) * ((double)a[j] - r[j]);
            r2 += (double)r[j] * r[j];
        }
    }
    *drift = sqrt(d2 / r2);
    free(gv);
}

static void test_two_pretrain_steps_match_cpu(void **state)
{
    (void)state;
    step_fixture f;
    step_fixture_open(&f);
    int B = f.B;
    int64_t E = f.E, Q = f.Q;

    /* dropout on, in the student and in the teacher (the official setting) */
    pretrain_options opt = pretrain_options_default(B);
    opt.max_len = f.L;
    printf("# dropout: hidden %.2f, attention %.2f, teacher %s\n", opt.hidden_dropout, opt.attention_dropout,
           opt.teacher_dropout ? "on" : "off");
    pretrainer cpu, cuda;
    step_pretrainer_init(&cpu, backend_cpu(), &f, &opt);
    step_pretrainer_init(&cuda, gpu, &f, &opt);

    int ok = 1;
    double worst_loss = 0, worst_param = 0, worst_m = 0, worst_q = 0;
    for (int k = 0; k < 2; k++) {
        char name[320];
        step_batch sb;
        step_batch_read(&f, k, &sb);
        float lr = sb.lr;
        pretrain_stats sc, sg;
        assert_ok(pretrainer_step(&cpu, &sb.b, lr, &sc));
        assert_ok(pretrainer_step(&cuda, &sb.b, lr, &sg));
        expect_no_cuda_error();
        printf("# step %d cpu:  itc %.6f itm %.6f mlm %.6f grad norm %.5f\n", k, sc.loss_ita, sc.loss_itm,
               sc.loss_mlm, sc.grad_norm);
        printf("# step %d cuda: itc %.6f itm %.6f mlm %.6f grad norm %.5f\n", k, sg.loss_ita, sg.loss_itm,
               sg.loss_mlm, sg.grad_norm);
        double e;
        snprintf(name, sizeof name, "step%d.loss_ita", k);
        e = compare(name, &sg.loss_ita, &sc.loss_ita, 1, 1e-5, 0, &ok);
        worst_loss = e > worst_loss ? e : worst_loss;
        snprintf(name, sizeof name, "step%d.loss_itm", k);
        e = compare(name, &sg.loss_itm, &sc.loss_itm, 1, 1e-5, 0, &ok);
        worst_loss = e > worst_loss ? e : worst_loss;
        snprintf(name, sizeof name, "step%d.loss_mlm", k);
        e = compare(name, &sg.loss_mlm, &sc.loss_mlm, 1, 1e-5, 0, &ok);
        worst_loss = e > worst_loss ? e : worst_loss;
        snprintf(name, sizeof name, "step%d.grad_norm", k);
        compare(name, &sg.grad_norm, &sc.grad_norm, 1, 1e-4, 0, &ok);
        assert_int_equal(sg.masked_tokens, sc.masked_tokens);

        /* Elements whose gradient is zero in exact arithmetic are float noise
         * on both sides, which AdamW turns into steps of up to lr: the same
         * allowance as the PyTorch step comparison (test_pretrain_step). */
        double drift, drift_m;
        compare_param_set("param", k, &cuda.online.params, &cpu.online.params, 3.0 * lr * (k + 1), &ok, &worst_param,
                          &drift);
        compare_param_set("param_m", k, &cuda.momentum.params, &cpu.momentum.params, 0.3 * lr * (k + 1), &ok,
                          &worst_m, &drift_m);
        float *iq_c = malloc(sizeof(float) * (size_t)(E * Q)), *tq_c = malloc(sizeof(float) * (size_t)(E * Q));
        float *iq_g = malloc(sizeof(float) * (size_t)(E * Q)), *tq_g = malloc(sizeof(float) * (size_t)(E * Q));
        int64_t ptr_c, ptr_g;
        assert_ok(pretrainer_get_queues(&cpu, iq_c, tq_c, &ptr_c));
        assert_ok(pretrainer_get_queues(&cuda, iq_g, tq_g, &ptr_g));
        assert_int_equal(ptr_c, ptr_g);
        snprintf(name, sizeof name, "step%d.image_queue", k);
        e = compare(name, iq_g, iq_c, (size_t)(E * Q), 1e-5, 0, &ok);
        worst_q = e > worst_q ? e : worst_q;
        snprintf(name, sizeof name, "step%d.text_queue", k);
        e = compare(name, tq_g, tq_c, (size_t)(E * Q), 1e-5, 0, &ok);
        worst_q = e > worst_q ? e : worst_q;
        printf("# step %d: |cuda - cpu| / |cpu| over all weights: parameters %.2e, momentum parameters %.2e "
               "(tolerance 1e-4)\n",
               k, drift, drift_m);
        if (!(drift <= 1e-4 && drift_m <= 1e-4))
            ok = 0;
        free(iq_c), free(tq_c), free(iq_g), free(tq_g);
        step_batch_free(&sb);
    }
    printf("# worst max|d|/max|ref|: losses %.1e, parameters %.1e, momentum parameters %.1e, queues %.1e\n",
           worst_loss, worst_param, worst_m, worst_q);
    assert_true(ok);
    step_fixture_close(&f);
    pretrainer_free(&cpu);
    pretrainer_free(&cuda);
}

/* bf16 mode (products on bf16 inputs, fp32 accumulation, bf16 storage of
 * the activations only products read): one pre-training step's losses and
 * gradient norm within 1e-2 of the fp32 CPU's, and within 2e-3 of the CPU's
 * bf16 reference (backend_cpu_bf16: the same roundings, so only the order of
 * fp32 sums and the odd bf16 rounding of a value that sits on a boundary
 * differ), on the same batch and recorded choices. */
static void test_pretrain_step_bf16(void **state)
{
    (void)state;
    step_fixture f;
    step_fixture_open(&f);
    pretrain_options opt = pretrain_options_default(f.B);
    opt.max_len = f.L;
    pretrainer cpu, cpu16, cuda;
    /* before the set-up: the activation arena is sized for bf16 storage */
    assert_ok(backend_set_precision(gpu, "bf16"));
    step_pretrainer_init(&cpu, backend_cpu(), &f, &opt);
    step_pretrainer_init(&cpu16, backend_cpu_bf16(), &f, &opt);
    step_pretrainer_init(&cuda, gpu, &f, &opt);
    step_batch sb;
    step_batch_read(&f, 0, &sb);
    pretrain_stats sc, s16, sg;
    assert_ok(pretrainer_step(&cpu, &sb.b, sb.lr, &sc));
    assert_ok(pretrainer_step(&cpu16, &sb.b, sb.lr, &s16));
    assert_ok(pretrainer_step(&cuda, &sb.b, sb.lr, &sg));
    expect_no_cuda_error();
    assert_ok(backend_set_precision(gpu, "fp32"));
    printf("# cpu fp32:  itc %.6f itm %.6f mlm %.6f grad norm %.5f\n", sc.loss_ita, sc.loss_itm, sc.loss_mlm,
           sc.grad_norm);
    printf("# cpu bf16:  itc %.6f itm %.6f mlm %.6f grad norm %.5f\n", s16.loss_ita, s16.loss_itm, s16.loss_mlm,
           s16.grad_norm);
    printf("# cuda bf16: itc %.6f itm %.6f mlm %.6f grad norm %.5f (|d|/|cpu| %.2e, |d|/|cpu bf16| %.2e)\n",
           sg.loss_ita, sg.loss_itm, sg.loss_mlm, sg.grad_norm,
           fabs((double)sg.grad_norm - sc.grad_norm) / sc.grad_norm,
           fabs((double)sg.grad_norm - s16.grad_norm) / s16.grad_norm);
    int ok = 1;
    compare("bf16 loss_ita vs fp32", &sg.loss_ita, &sc.loss_ita, 1, 1e-2, 0, &ok);
    compare("bf16 loss_itm vs fp32", &sg.loss_itm, &sc.loss_itm, 1, 1e-2, 0, &ok);
    compare("bf16 loss_mlm vs fp32", &sg.loss_mlm, &sc.loss_mlm, 1, 1e-2, 0, &ok);
    compare("bf16 grad_norm vs fp32", &sg.grad_norm, &sc.grad_norm, 1, 1e-2, 0, &ok);
    compare("bf16 loss_ita vs cpu bf16", &sg.loss_ita, &s16.loss_ita, 1, 2e-3, 0, &ok);
    compare("bf16 loss_itm vs cpu bf16", &sg.loss_itm, &s16.loss_itm, 1, 2e-3, 0, &ok);
    compare("bf16 loss_mlm vs cpu bf16", &sg.loss_mlm, &s16.loss_mlm, 1, 2e-3, 0, &ok);
    compare("bf16 grad_norm vs cpu bf16", &sg.grad_norm, &s16.grad_norm, 1, 2e-3, 0, &ok);
    assert_int_equal(sg.masked_tokens, sc.masked_tokens);
    assert_true(ok);
    step_batch_free(&sb);
    step_fixture_close(&f);
    pretrainer_free(&cpu);
    pretrainer_free(&cpu16);
    pretrainer_free(&cuda);
}

int main(void)
{
    albef_log_set_level(ALBEF_LOG_WARN);
    if (backend_create("cuda", &gpu) != ALBEF_OK) {
        snprintf(no_device, sizeof no_device, "%s", albef_errmsg());
        const struct CMUnitTest none[] = {cmocka_unit_test(test_no_cuda_device)};
        return cmocka_run_group_tests_name("cuda_step", none, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenario_matches_cpu),
        cmocka_unit_test(test_two_pretrain_steps_match_cpu),
        cmocka_unit_test(test_pretrain_step_bf16),
    };
    int rc = cmocka_run_group_tests_name("cuda_step", tests, NULL, NULL);
    backend_destroy(gpu);
    return rc;
}
