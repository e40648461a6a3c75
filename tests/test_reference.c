/* The model against the PyTorch reference (scripts/reference/): the same
 * config, weights and inputs must give the same outputs, losses and
 * gradients of every parameter, fp32.
 *
 * The scenario (scripts/reference/README.md): ITC in batch, ITM over 2B rows
 * with fixed negatives (image b+1 for text b), MLM over the labelled
 * positions; loss = itc + itm + mlm, then backward.
 *
 * ALBEF_REFERENCE_DIR=/tmp/albef-ref-base runs it on another golden set (the
 * albef-base comparison, made by the documented command). */
#include "albef.h"
#include "io/safetensors.h"
#include "model/albef_model.h"
#include "ops/arena.h"
#include "scenario.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- loading the golden set ------------------------------------------------ */

static const char *ref_dir(void)
{
    const char *d = getenv("ALBEF_REFERENCE_DIR");
    return d && *d ? d : "testdata/reference/small";
}

static char *ref_path(const char *file)
{
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 1024, "%s/%s", ref_dir(), file);
    return b;
}

/* max|a - ref| / max|ref|, the per-tensor measure; tensors whose reference
 * is (numerically) zero are held to an absolute bound instead. */
static double compare(const char *name, const float *a, const float *ref, size_t n, double tol, double *worst)
{
    double max_ref = 0, max_diff = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (d > max_diff)
            max_diff = d, at = i;
        if (fabs(ref[i]) > max_ref)
            max_ref = fabs(ref[i]);
    }
    double err = max_ref > 1e-7 ? max_diff / max_ref : max_diff;
    if (err > *worst)
        *worst = err;
    if (err > tol || getenv("ALBEF_VERBOSE"))
        printf("# %-64s rel %.2e (max|ref| %.3g)%s\n", name, err, max_ref, err > tol ? "  <-- FAIL" : "");
    if (err > tol)
        printf("#   [%zu] got %.9g expected %.9g\n", at, a[at], ref[at]);
    return err;
}

static int check_output(safetensors_file *st, const char *name, tensor t, double tol, double *worst)
{
    const safetensors_tensor *r = safetensors_find(st, name);
    if (!r)
        fail_msg("golden has no '%s'", name);
    size_t n = (size_t)tensor_numel(t);
    if (r->numel != n)
        fail_msg("%s: %zu values, golden has %llu", name, n, (unsigned long long)r->numel);
    float *ref = malloc(sizeof(float) * n);
    assert_ok(safetensors_tensor_to_f32(st, r, ref));
    double e = compare(name, t.data, ref, n, tol, worst);
    free(ref);
    return e <= tol;
}

static void test_reference_forward_and_gradients(void **state)
{
    (void)state;
    albef_config cfg;
    assert_ok(config_load(ref_path("config.json"), &cfg));
    cfg.bert.hidden_dropout_prob = cfg.bert.attention_probs_dropout_prob = 0;
    backend *be = backend_cpu();
    albef_model m;
    albef_model_options opt = {.layout = LAYOUT_PRETRAIN, .with_grads = 1};
    assert_ok(albef_model_init(&m, &cfg, be, &opt));
    load_report rep;
    assert_ok(albef_model_load(&m, ref_path("weights.safetensors"), 1, &rep));
    assert_int_equal(rep.missing, 0);
    assert_int_equal(rep.unexpected, 0);

    scenario_inputs in;
    assert_ok(scenario_load_inputs(ref_path("inputs.safetensors"), &cfg, &in));
    scenario_state s;
    assert_ok(scenario_state_init(&s, &m));

    /* size the arena by running the scenario on the null back end */
    arena ar;
    arena_init_measuring(&ar);
    scenario_forward(backend_null(), &m, &ar, &in, &s, NULL);
    scenario_backward(backend_null(), &m, &ar, &in, &s);
    size_t need = ar.peak;
    printf("# activation arena: %.2f MiB for B=%d, L=%d\n", need / 1048576.0, in.B, in.L);
    assert_ok(arena_init(&ar, be, need));
    scenario_forward(be, &m, &ar, &in, &s, NULL);
    scenario_backward(be, &m, &ar, &in, &s);
    assert_false(ar.overflow);
    assert_int_equal(ar.peak, need);

    safetensors_file *out;
    assert_ok(safetensors_open(ref_path("outputs.safetensors"), &out));
    double worst_fwd = 0, worst_grad = 0;
    int ok = 1;
    const double ftol = 1e-5, gtol = 1e-4;
    ok &= check_output(out, "vit_out", s.vit.out, ftol, &worst_fwd);
    ok &= check_output(out, "text_out", s.text.out, ftol, &worst_fwd);
    ok &= check_output(out, "image_feat", s.image_feat, ftol, &worst_fwd);
    ok &= check_output(out, "text_feat", s.text_feat, ftol, &worst_fwd);
    ok &= check_output(out, "sim_i2t", s.sim_i2t, ftol, &worst_fwd);
    ok &= check_output(out, "fusion_out", s.fusion.out, ftol, &worst_fwd);
    ok &= check_output(out, "itm_logits", s.itm_logits, ftol, &worst_fwd);
    ok &= check_output(out, "mlm_logits", s.head.logits, ftol, &worst_fwd);
    float *l = s.losses.data;
    float itc = l[0] + l[1], losses[4] = {itc, l[2], l[3], itc + l[2] + l[3]};
    const char *lname[4] = {"loss_itc", "loss_itm", "loss_mlm", "loss"};
    for (int i = 0; i < 4; i++)
        ok &= check_output(out, lname[i], tensor_f32(&losses[i], 1), ftol, &worst_fwd);
    printf("# losses: itc %.6f itm %.6f mlm %.6f total %.6f\n", losses[0], losses[1], losses[2], losses[3]);

    int ngrads = 0;
    for (int i = 0; i < m.params.count; i++) {
        const param_info *p = &m.params.items[i];
        if (p->alias_of >= 0)
            continue;
        char name[300];
        snprintf(name, sizeof name, "grad.%s", p->name);
        ok &= check_output(out, name, params_grad(&m.params, i), gtol, &worst_grad);
        ngrads++;
    }
    printf("# forward: worst relative error %.2e over 12 tensors (tolerance %.0e)\n", worst_fwd, ftol);
    printf("# gradients: worst relative error %.2e over %d parameters (tolerance %.0e)\n", worst_grad, ngrads, gtol);
    assert_true(ok);

    safetensors_close(out);
    arena_free(&ar);
    scenario_state_free(&s);
    scenario_free_inputs(&in);
    albef_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_forward_and_gradients),
    };
    return cmocka_run_group_tests_name("reference", tests, NULL, NULL);
}
