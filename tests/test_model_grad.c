/* Every layer type's backward pass against finite differences of the whole
 * model's loss, with dropout on (fixed seeds make the loss a deterministic
 * function of the weights). For each parameter tensor t with gradient g_t,
 * the directional derivative along u = g_t / |g_t| must equal |g_t|:
 *   (L(w + eps u) - L(w - eps u)) / (2 eps)  ~  |g_t|.
 * Weights are drawn larger than at initialisation (std 0.1) so that every
 * path, attention scores included, carries a measurable gradient. */
#include "albef.h"
#include "core/rng.h"
#include "model/albef_model.h"
#include "scenario.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    albef_model m;
    scenario_inputs in;
    scenario_state s;
    arena ar;
    dropout_ctx drop;
} fd_ctx;

static double total_loss(fd_ctx *c)
{
    arena_reset(&c->ar, 0);
    c->drop.counter = 0;
    scenario_forward(backend_cpu(), &c->m, &c->ar, &c->in, &c->s, &c->drop);
    const float *l = c->s.losses.data;
    return (double)l[0] + l[1] + l[2] + l[3];
}

static void test_every_parameter_against_finite_differences(void **state)
{
    (void)state;
    fd_ctx c;
    albef_config cfg;
    assert_ok(config_load("testdata/reference/small/config.json", &cfg));
    albef_model_options opt = {.layout = LAYOUT_PRETRAIN, .with_grads = 1};
    assert_ok(albef_model_init(&c.m, &cfg, backend_cpu(), &opt));
    /* weights ~ N(0, 0.1), LayerNorm 1 + N(0, 0.1), temp 0.07 */
    rng_state r;
    rng_seed(&r, 5);
    param_set *ps = &c.m.params;
    for (int i = 0; i < ps->count; i++) {
        const param_info *p = &ps->items[i];
        if (p->alias_of >= 0)
            continue;
        float *v = ps->values + p->offset;
        int is_norm = p->ndim == 1 && strstr(p->name, ".bias") == NULL;
        for (size_t k = 0; k < p->numel; k++)
            v[k] = (is_norm ? 1.0f : 0.0f) + 0.1f * (float)rng_normal(&r);
        if (!strcmp(p->name, "temp"))
            v[0] = 0.07f;
    }
    assert_ok(scenario_load_inputs("testdata/reference/small/inputs.safetensors", &cfg, &c.in));
    assert_ok(scenario_state_init(&c.s, &c.m));
    c.drop = (dropout_ctx){.hidden = 0.1f, .attention = 0.1f, .seed = 77};

    arena_init_measuring(&c.ar);
    scenario_forward(backend_null(), &c.m, &c.ar, &c.in, &c.s, &c.drop);
    scenario_backward(backend_null(), &c.m, &c.ar, &c.in, &c.s);
    size_t need = c.ar.peak;
    assert_ok(arena_init(&c.ar, backend_cpu(), need));

    double l0 = total_loss(&c);
    scenario_backward(backend_cpu(), &c.m, &c.ar, &c.in, &c.s);
    printf("# loss with dropout: %.6f\n", l0);
    /* the same seeds give the same loss */
    assert_float_equal(total_loss(&c), l0, 0);

    float *grads = malloc(sizeof(float) * ps->numel);
    memcpy(grads, ps->grads, sizeof(float) * ps->numel);
    double worst = 0;
    int checked = 0, zero = 0;
    for (int i = 0; i < ps->count; i++) {
        const param_info *p = &ps->items[i];
        if (p->alias_of >= 0)
            continue;
        float *w = ps->values + p->offset, *g = grads + p->offset;
        double gn = 0, wn = 0;
        for (size_t k = 0; k < p->numel; k++)
            gn += (double)g[k] * g[k], wn += (double)w[k] * w[k];
        gn = sqrt(gn);
        wn = sqrt(wn);
        if (gn < 1e-7) {
            /* key biases (softmax is shift-invariant) and unused token-type rows */
            zero++;
            continue;
        }
        double eps = 1e-2 * (wn > 1e-3 ? wn : 1.0) / sqrt((double)p->numel);
        float *saved = malloc(sizeof(float) * p->numel);
        memcpy(saved, w, sizeof(float) * p->numel);
        for (size_t k = 0; k < p->numel; k++)
            w[k] = saved[k] + (float)(eps * g[k] / gn);
        double lp = total_loss(&c);
        for (size_t k = 0; k < p->numel; k++)
            w[k] = saved[k] - (float)(eps * g[k] / gn);
        double lm = total_loss(&c);
        memcpy(w, saved, sizeof(float) * p->numel);
        free(saved);
        double fd = (lp - lm) / (2 * eps), err = fabs(fd - gn) / gn;
        if (err > worst)
            worst = err;
        if (err > 2e-2 || getenv("ALBEF_VERBOSE"))
            printf("# %-64s |g| %.3e  fd %.3e  rel err %.2e\n", p->name, gn, fd, err);
        if (err > 2e-2)
            fail_msg("%s: directional derivative %.6g, |g| %.6g", p->name, fd, gn);
        checked++;
    }
    printf("# %d parameter tensors checked, worst relative error %.2e; %d with zero gradient\n", checked, worst, zero);
    assert_true(checked > 100);

    free(grads);
    arena_free(&c.ar);
    scenario_state_free(&c.s);
    scenario_free_inputs(&c.in);
    albef_model_free(&c.m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_parameter_against_finite_differences),
    };
    return cmocka_run_group_tests_name("model_grad", tests, NULL, NULL);
}
