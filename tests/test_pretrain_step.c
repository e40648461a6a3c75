/* Two full pre-training steps against the PyTorch reference
 * (scripts/reference/STEP.md): momentum update, teacher features, ITC with
 * queues and soft targets, enqueue, ITM with the given hard negatives, MLM
 * with distillation, backward, AdamW with ALBEF's groups. After each step
 * the losses, gradients, parameters, momentum parameters, AdamW moments and
 * queues must match. */
#include "albef.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "train/pretrain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ALBEF_STEP_DIR=/tmp/step5 runs a longer golden made with --steps 5. */
static const char *dir(void)
{
    const char *d = getenv("ALBEF_STEP_DIR");
    return d && *d ? d : "testdata/reference/step";
}

static const char *path_in(const char *file)
{
    static char buf[3][1024];
    static int k;
    char *b = buf[k++ % 3];
    snprintf(b, 1024, "%s/%s", dir(), file);
    return b;
}

static safetensors_file *out_st;
/* sums of squared differences and references, for the global drift of a step */
static double *drift_diff2, *drift_ref2;

/* max|a - ref| <= rtol * max|ref| + atol; prints the measure */
static double check(const char *name, const float *a, size_t n, double rtol, double atol, double *worst)
{
    const safetensors_tensor *t = safetensors_find(out_st, name);
    if (!t)
        fail_msg("golden has no '%s'", name);
    if (t->numel != n)
        fail_msg("%s: %zu values, golden has %llu", name, n, (unsigned long long)t->numel);
    float *ref = malloc(sizeof(float) * n);
    assert_ok(safetensors_tensor_to_f32(out_st, t, ref));
    double max_ref = 0, max_diff = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (drift_diff2) {
            *drift_diff2 += d * d;
            *drift_ref2 += (double)ref[i] * ref[i];
        }
        if (d > max_diff)
            max_diff = d, at = i;
        max_ref = fabs(ref[i]) > max_ref ? fabs(ref[i]) : max_ref;
    }
    double rel = max_ref > 0 ? max_diff / max_ref : max_diff;
    /* the summary leaves out tensors that are zero up to float noise */
    if (rel > *worst && max_ref > 100 * atol + 1e-6)
        *worst = rel;
    int bad = max_diff > rtol * max_ref + atol;
    if (bad || getenv("ALBEF_VERBOSE"))
        printf("# %-72s rel %.2e%s\n", name, rel, bad ? "  <-- FAIL" : "");
    if (bad && !getenv("ALBEF_NOFAIL"))
        fail_msg("%s: [%zu] got %.9g expected %.9g (max diff %.3g, max ref %.3g)", name, at, a[at], ref[at], max_diff,
                 max_ref);
    free(ref);
    return rel;
}

static int32_t *read_ints(safetensors_file *st, const char *name, size_t n)
{
    int64_t *v = malloc(sizeof(int64_t) * n);
    int32_t *r = malloc(sizeof(int32_t) * n);
    assert_ok(safetensors_read_raw(st, name, DTYPE_I64, v, n));
    for (size_t i = 0; i < n; i++)
        r[i] = (int32_t)v[i];
    free(v);
    return r;
}

static float read_scalar(safetensors_file *st, const char *name)
{
    float v;
    assert_ok(safetensors_read_f32(st, name, &v, 1));
    return v;
}

static void test_two_steps_match_reference(void **state)
{
    (void)state;
    albef_config cfg;
    assert_ok(config_load(path_in("config.json"), &cfg));
    safetensors_file *w, *in;
    assert_ok(safetensors_open(path_in("weights.safetensors"), &w));
    assert_ok(safetensors_open(path_in("inputs.safetensors"), &in));
    assert_ok(safetensors_open(path_in("outputs.safetensors"), &out_st));
    const safetensors_tensor *ids_t = safetensors_find(in, "step0.input_ids");
    int B = (int)ids_t->shape[0], L = (int)ids_t->shape[1];
    int cls = atoi(safetensors_metadata_get(in, "cls_id")), mask_id = atoi(safetensors_metadata_get(in, "mask_id"));

    pretrain_options opt = pretrain_options_default(B);
    opt.max_len = L;
    opt.hidden_dropout = opt.attention_dropout = 0;
    opt.teacher_dropout = 0;
    pretrainer t;
    assert_ok(pretrainer_init(&t, &cfg, backend_cpu(), &opt, cls, mask_id));
    load_report rep;
    assert_ok(albef_model_load(&t.online, path_in("weights.safetensors"), 1, &rep));
    assert_ok(albef_model_load(&t.momentum, path_in("weights.safetensors"), 1, &rep));
    int64_t E = cfg.embed_dim, Q = cfg.queue_size, ptr;
    float *iq = malloc(sizeof(float) * (size_t)(E * Q)), *tq = malloc(sizeof(float) * (size_t)(E * Q));
    assert_ok(safetensors_read_f32(w, "image_queue", iq, (size_t)(E * Q)));
    assert_ok(safetensors_read_f32(w, "text_queue", tq, (size_t)(E * Q)));
    assert_ok(safetensors_read_raw(w, "queue_ptr", DTYPE_I64, &ptr, 1));
    assert_ok(pretrainer_set_queues(&t, iq, tq, ptr));

    double worst_loss = 0, worst_grad = 0, worst_param = 0, worst_m = 0, worst_adam = 0, worst_q = 0;
    param_set *ps = &t.online.params;
    int steps = 0;
    for (char name[32]; snprintf(name, sizeof name, "step%d.image", steps), safetensors_find(in, name);)
        steps++;
    for (int k = 0; k < steps; k++) {
        char name[320];
        size_t RES = (size_t)cfg.image_res, BL = (size_t)B * L;
        float *image = malloc(sizeof(float) * B * 3 * RES * RES);
        snprintf(name, sizeof name, "step%d.image", k);
        assert_ok(safetensors_read_f32(in, name, image, B * 3 * RES * RES));
#define INTS(field, n) (snprintf(name, sizeof name, "step%d." field, k), read_ints(in, name, n))
        int32_t *ids = INTS("input_ids", BL), *mask = INTS("attention_mask", BL);
        int32_t *mlm_ids = INTS("mlm_input_ids", BL), *mlm_labels = INTS("mlm_labels", BL);
        int32_t *neg_img = INTS("neg_image_idx", (size_t)B), *neg_txt = INTS("neg_text_idx", (size_t)B);
        snprintf(name, sizeof name, "step%d.alpha", k);
        float alpha = read_scalar(in, name);
        snprintf(name, sizeof name, "step%d.lr", k);
        float lr = read_scalar(in, name);

        pretrain_choices ch = {.mlm_ids = mlm_ids, .mlm_labels = mlm_labels, .neg_image_idx = neg_img,
                               .neg_text_idx = neg_txt};
        pretrain_batch b = {.images = image, .ids = ids, .mask = mask, .len = L, .alpha = alpha, .choices = &ch};
        pretrain_stats st;
        assert_ok(pretrainer_accumulate(&t, &b, 1.0f, &st));
        /* the gradients of this step, before the update clears them */
        float *grads = malloc(sizeof(float) * ps->numel);
        memcpy(grads, ps->grads, sizeof(float) * ps->numel);
        assert_ok(pretrainer_update(&t, lr, &st.grad_norm));
        printf("# step %d: loss itc %.6f itm %.6f mlm %.6f, grad norm %.4f, temp %.6f\n", k, st.loss_ita, st.loss_itm,
               st.loss_mlm, st.grad_norm, st.temp);
        double p_d2 = 0, p_r2 = 0, m_d2 = 0, m_r2 = 0;

        snprintf(name, sizeof name, "step%d.loss_ita", k);
        check(name, &st.loss_ita, 1, 1e-5, 0, &worst_loss);
        snprintf(name, sizeof name, "step%d.loss_itm", k);
        check(name, &st.loss_itm, 1, 1e-5, 0, &worst_loss);
        snprintf(name, sizeof name, "step%d.loss_mlm", k);
        check(name, &st.loss_mlm, 1, 1e-5, 0, &worst_loss);
        snprintf(name, sizeof name, "step%d.sim_i2t", k);
        check(name, pretrainer_last_sim_i2t(&t).data, (size_t)B * (B + Q), 1e-5, 0, &worst_loss);

        /* every gradient (before the update), parameter and moment after it */
        for (int i = 0; i < ps->count; i++) {
            const param_info *p = &ps->items[i];
            if (p->alias_of >= 0)
                continue;
            snprintf(name, sizeof name, "step%d.grad.%s", k, p->name);
            check(name, grads + p->offset, p->numel, 1e-4, 1e-7, &worst_grad);
            /* elements whose gradient is zero in exact arithmetic are float
             * noise in both, which AdamW turns into steps of up to lr */
            snprintf(name, sizeof name, "step%d.param.%s", k, p->name);
            drift_diff2 = &p_d2, drift_ref2 = &p_r2;
            check(name, ps->values + p->offset, p->numel, 1e-5, 3.0 * lr * (k + 1), &worst_param);
            drift_diff2 = drift_ref2 = NULL;
            snprintf(name, sizeof name, "step%d.exp_avg.%s", k, p->name);
            check(name, t.adam_m + p->offset, p->numel, 1e-4, 1e-7, &worst_adam);
            snprintf(name, sizeof name, "step%d.exp_avg_sq.%s", k, p->name);
            check(name, t.adam_v + p->offset, p->numel, 1e-4, 1e-12, &worst_adam);
        }
        param_set *pm = &t.momentum.params;
        for (int i = 0; i < pm->count; i++) {
            const param_info *p = &pm->items[i];
            if (p->alias_of >= 0)
                continue;
            /* golden names drop the "_m" of the module prefix */
            char online[256];
            const char *m_at = strstr(p->name, "_m.");
            snprintf(online, sizeof online, "%.*s%s", (int)(m_at - p->name), p->name, m_at + 2);
            snprintf(name, sizeof name, "step%d.param_m.%s", k, online);
            drift_diff2 = &m_d2, drift_ref2 = &m_r2;
            check(name, pm->values + p->offset, p->numel, 1e-5, 0.3 * lr * (k + 1), &worst_m);
            drift_diff2 = drift_ref2 = NULL;
        }
        float *iq2 = malloc(sizeof(float) * (size_t)(E * Q)), *tq2 = malloc(sizeof(float) * (size_t)(E * Q));
        assert_ok(pretrainer_get_queues(&t, iq2, tq2, &ptr));
        snprintf(name, sizeof name, "step%d.image_queue", k);
        check(name, iq2, (size_t)(E * Q), 1e-5, 0, &worst_q);
        snprintf(name, sizeof name, "step%d.text_queue", k);
        check(name, tq2, (size_t)(E * Q), 1e-5, 0, &worst_q);
        int64_t ref_ptr;
        snprintf(name, sizeof name, "step%d.queue_ptr", k);
        assert_ok(safetensors_read_raw(out_st, name, DTYPE_I64, &ref_ptr, 1));
        assert_int_equal(ptr, ref_ptr);
        printf("# step %d drift |ours - ref| / |ref| over all weights: parameters %.2e, momentum parameters %.2e\n", k,
               sqrt(p_d2 / p_r2), sqrt(m_d2 / m_r2));
        free(grads);
        free(iq2), free(tq2), free(image), free(ids), free(mask), free(mlm_ids), free(mlm_labels), free(neg_img),
            free(neg_txt);
    }
    printf("# worst relative errors: losses/sims %.1e, gradients %.1e, parameters %.1e, momentum parameters %.1e, "
           "AdamW moments %.1e, queues %.1e\n",
           worst_loss, worst_grad, worst_param, worst_m, worst_adam, worst_q);
    free(iq), free(tq);
    safetensors_close(w), safetensors_close(in), safetensors_close(out_st);
    pretrainer_free(&t);
}

int main(void)
{
    albef_log_set_level(ALBEF_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_steps_match_reference),
    };
    return cmocka_run_group_tests_name("pretrain_step", tests, NULL, NULL);
}
