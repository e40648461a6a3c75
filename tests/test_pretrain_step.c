/* Two full training steps against the PyTorch reference
 * (scripts/reference/STEP.md), for pre-training and for the retrieval
 * fine-tuning: momentum update, teacher features, ITC with queues and soft
 * targets (retrieval: every entry of [batch | queue] of the same image is a
 * positive), enqueue (retrieval: idx_queue too), ITM with the given hard
 * negatives, MLM with distillation (pre-training only), backward, AdamW with
 * ALBEF's groups. After each step the losses, gradients, parameters,
 * momentum parameters, AdamW moments and queues must match. */
#include "albef.h"
#include "io/safetensors.h"
#include "step_fixture.h"
#include "testutil.h"
#include "train/pretrain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ALBEF_STEP_DIR=/tmp/step5 (ALBEF_RETRIEVAL_STEP_DIR for the retrieval
 * golden) runs a longer golden made with --steps 5. */
static const char *dir(enum albef_task task)
{
    const char *d = getenv(task == TASK_RETRIEVAL ? "ALBEF_RETRIEVAL_STEP_DIR" : "ALBEF_STEP_DIR");
    if (d && *d)
        return d;
    return task == TASK_RETRIEVAL ? "testdata/reference/retrieval_step" : "testdata/reference/step";
}

static const char *path_in(enum albef_task task, const char *file)
{
    static char buf[3][1024];
    static int k;
    char *b = buf[k++ % 3];
    snprintf(b, 1024, "%s/%s", dir(task), file);
    return b;
}

static safetensors_file *out_st;
/* sums of squared differences and references, for the global drift of a step */
static double *drift_diff2, *drift_ref2;

static float *read_reference(const char *name, size_t n)
{
    const safetensors_tensor *t = safetensors_find(out_st, name);
    if (!t)
        fail_msg("golden has no '%s'", name);
    if (t->numel != n)
        fail_msg("%s: %zu values, golden has %llu", name, n, (unsigned long long)t->numel);
    float *ref = malloc(sizeof(float) * n);
    assert_ok(safetensors_tensor_to_f32(out_st, t, ref));
    return ref;
}

/* |a - ref| <= rtol * max|ref| + atol at every element, except those marked
 * in `noisy` (NULL: none), which need only |a - ref| <= noisy_atol. Prints
 * the relative measure over the unmarked elements and keeps the worst in
 * *worst; the largest difference at a marked element goes to *worst_noisy. */
static double check_noisy(const char *name, const float *a, size_t n, double rtol, double atol,
                          const unsigned char *noisy, double noisy_atol, double *worst, double *worst_noisy)
{
    float *ref = read_reference(name, n);
    double max_ref = 0, max_diff = 0, max_noisy = 0;
    for (size_t i = 0; i < n; i++)
        max_ref = fabs(ref[i]) > max_ref ? fabs(ref[i]) : max_ref;
    size_t at = 0, bad_at = n;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (drift_diff2) {
            *drift_diff2 += d * d;
            *drift_ref2 += (double)ref[i] * ref[i];
        }
        int marked = noisy && noisy[i];
        if (marked)
            max_noisy = d > max_noisy ? d : max_noisy;
        else if (d > max_diff)
            max_diff = d, at = i;
        if (bad_at == n && d > (marked ? noisy_atol : rtol * max_ref + atol))
            bad_at = i;
    }
    double rel = max_ref > 0 ? max_diff / max_ref : max_diff;
    /* the summary leaves out tensors that are zero up to float noise */
    if (rel > *worst && max_ref > 100 * atol + 1e-6)
        *worst = rel;
    if (worst_noisy && max_noisy > *worst_noisy)
        *worst_noisy = max_noisy;
    int bad = bad_at < n;
    if (bad || getenv("ALBEF_VERBOSE"))
        printf("# %-72s rel %.2e%s\n", name, rel, bad ? "  <-- FAIL" : "");
    if (bad && !getenv("ALBEF_NOFAIL"))
        fail_msg("%s: [%zu] got %.9g expected %.9g%s (max diff %.3g at [%zu], max ref %.3g)", name, bad_at,
                 a[bad_at], ref[bad_at], noisy && noisy[bad_at] ? " at a float-noise element" : "", max_diff, at,
                 max_ref);
    free(ref);
    return rel;
}

/* max|a - ref| <= rtol * max|ref| + atol; prints the measure */
static double check(const char *name, const float *a, size_t n, double rtol, double atol, double *worst)
{
    return check_noisy(name, a, n, rtol, atol, NULL, 0, worst, NULL);
}

/* Marks the elements whose gradient is float noise on both sides: those that
 * are zero in exact arithmetic (the attention key biases: softmax ignores a
 * per-row constant), where the two sums round differently and disagree
 * completely. AdamW divides each gradient by its own magnitude, so noise
 * there becomes a parameter step of up to lr, different on each side. */
static void mark_noise(const char *grad_name, const float *g, size_t n, unsigned char *noisy)
{
    float *ref = read_reference(grad_name, n);
    for (size_t i = 0; i < n; i++)
        if (fabs((double)g[i] - ref[i]) > 1e-3 * fabs(ref[i]))
            noisy[i] = 1;
    free(ref);
}

static int64_t *read_int64s(safetensors_file *st, const char *name, size_t n)
{
    int64_t *v = malloc(sizeof(int64_t) * n);
    assert_ok(safetensors_read_raw(st, name, DTYPE_I64, v, n));
    return v;
}

static float read_scalar(safetensors_file *st, const char *name)
{
    float v;
    assert_ok(safetensors_read_f32(st, name, &v, 1));
    return v;
}

/* the worst relative error of each kind of value in one step */
typedef struct {
    double loss, grad, param, param_m, adam, queue;
    double noisy_param, noisy_param_m; /* largest absolute difference at the float-noise elements */
} worst_errors;

static void run_golden(enum albef_task task)
{
    int retrieval = task == TASK_RETRIEVAL;
    albef_config cfg;
    assert_ok(config_load(path_in(task, "config.json"), &cfg));
    safetensors_file *w, *in;
    assert_ok(safetensors_open(path_in(task, "weights.safetensors"), &w));
    assert_ok(safetensors_open(path_in(task, "inputs.safetensors"), &in));
    assert_ok(safetensors_open(path_in(task, "outputs.safetensors"), &out_st));
    const safetensors_tensor *ids_t = safetensors_find(in, "step0.input_ids");
    int B = (int)ids_t->shape[0], L = (int)ids_t->shape[1];
    int cls = atoi(safetensors_metadata_get(in, "cls_id")), mask_id = atoi(safetensors_metadata_get(in, "mask_id"));

    pretrain_options opt = pretrain_options_default(B);
    opt.task = task;
    opt.max_len = L;
    opt.hidden_dropout = opt.attention_dropout = 0;
    opt.teacher_dropout = 0;
    pretrainer t;
    assert_ok(pretrainer_init(&t, &cfg, backend_cpu(), &opt, cls, mask_id));
    load_report rep;
    assert_ok(albef_model_load(&t.online, path_in(task, "weights.safetensors"), 1, &rep));
    assert_ok(albef_model_load(&t.momentum, path_in(task, "weights.safetensors"), 1, &rep));
    int64_t E = cfg.embed_dim, Q = cfg.queue_size, ptr;
    float *iq = malloc(sizeof(float) * (size_t)(E * Q)), *tq = malloc(sizeof(float) * (size_t)(E * Q));
    assert_ok(safetensors_read_f32(w, "image_queue", iq, (size_t)(E * Q)));
    assert_ok(safetensors_read_f32(w, "text_queue", tq, (size_t)(E * Q)));
    assert_ok(safetensors_read_raw(w, "queue_ptr", DTYPE_I64, &ptr, 1));
    assert_ok(pretrainer_set_queues(&t, iq, tq, ptr));
    if (retrieval) {
        int64_t *idx_queue = read_int64s(w, "idx_queue", (size_t)Q);
        assert_ok(pretrainer_set_idx_queue(&t, idx_queue));
        free(idx_queue);
    }

    worst_errors all = {0};
    param_set *ps = &t.online.params;
    /* the float-noise elements of any step so far, in the online layout
     * (the momentum layout is its prefix) */
    unsigned char *noisy = calloc(ps->numel, 1);
    int steps = 0;
    for (char name[32]; snprintf(name, sizeof name, "step%d.image", steps), safetensors_find(in, name);)
        steps++;
    for (int k = 0; k < steps; k++) {
        char name[320];
        size_t RES = (size_t)cfg.image_res, BL = (size_t)B * L;
        float *image = malloc(sizeof(float) * B * 3 * RES * RES);
        snprintf(name, sizeof name, "step%d.image", k);
        assert_ok(safetensors_read_f32(in, name, image, B * 3 * RES * RES));
#define INTS(field, n) (snprintf(name, sizeof name, "step%d." field, k), step_read_ints(in, name, n))
        int32_t *ids = INTS("input_ids", BL), *mask = INTS("attention_mask", BL);
        int32_t *mlm_ids = retrieval ? NULL : INTS("mlm_input_ids", BL);
        int32_t *mlm_labels = retrieval ? NULL : INTS("mlm_labels", BL);
        int32_t *neg_img = INTS("neg_image_idx", (size_t)B), *neg_txt = INTS("neg_text_idx", (size_t)B);
        int64_t *idx = NULL;
        if (retrieval) {
            snprintf(name, sizeof name, "step%d.idx", k);
            idx = read_int64s(in, name, (size_t)B);
        }
        snprintf(name, sizeof name, "step%d.alpha", k);
        float alpha = read_scalar(in, name);
        snprintf(name, sizeof name, "step%d.lr", k);
        float lr = read_scalar(in, name);

        pretrain_choices ch = {.mlm_ids = mlm_ids, .mlm_labels = mlm_labels, .neg_image_idx = neg_img,
                               .neg_text_idx = neg_txt};
        pretrain_batch b = {.images = image, .ids = ids, .mask = mask, .len = L, .alpha = alpha, .choices = &ch,
                            .idx = idx};
        pretrain_stats st;
        assert_ok(pretrainer_accumulate(&t, &b, 1.0f, &st));
        /* the gradients of this step, before the update clears them */
        float *grads = malloc(sizeof(float) * ps->numel);
        memcpy(grads, ps->grads, sizeof(float) * ps->numel);
        assert_ok(pretrainer_update(&t, lr, &st.grad_norm));
        printf("# step %d: loss itc %.6f itm %.6f mlm %.6f, grad norm %.4f, temp %.6f\n", k, st.loss_ita, st.loss_itm,
               st.loss_mlm, st.grad_norm, st.temp);
        worst_errors wk = {0};
        double p_d2 = 0, p_r2 = 0, m_d2 = 0, m_r2 = 0;

        snprintf(name, sizeof name, "step%d.loss_ita", k);
        check(name, &st.loss_ita, 1, 1e-5, 0, &wk.loss);
        snprintf(name, sizeof name, "step%d.loss_itm", k);
        check(name, &st.loss_itm, 1, 1e-5, 0, &wk.loss);
        if (!retrieval) {
            snprintf(name, sizeof name, "step%d.loss_mlm", k);
            check(name, &st.loss_mlm, 1, 1e-5, 0, &wk.loss);
        }
        snprintf(name, sizeof name, "step%d.loss", k);
        float total = st.loss_ita + st.loss_itm + st.loss_mlm;
        check(name, &total, 1, 1e-5, 0, &wk.loss);
        tensor sims[2] = {pretrainer_last_sim_i2t(&t), pretrainer_last_sim_t2i(&t)};
        for (int d = 0; d < 2; d++) {
            float *host = malloc(tensor_nbytes(sims[d]));
            t.be->ops->download(t.be, host, sims[d].data, tensor_nbytes(sims[d]));
            snprintf(name, sizeof name, "step%d.%s", k, d ? "sim_t2i" : "sim_i2t");
            check(name, host, (size_t)B * (B + Q), 1e-5, 0, &wk.loss);
            free(host);
        }

        /* the ITM sampling weights (the negatives themselves are given) */
        const float *w_itm[2];
        pretrainer_last_itm_weights(&t, &w_itm[0], &w_itm[1]);
        for (int d = 0; d < 2; d++) {
            snprintf(name, sizeof name, "step%d.%s", k, d ? "w_t2i" : "w_i2t");
            check(name, w_itm[d], (size_t)B * B, 1e-5, 0, &wk.loss);
        }

        /* every gradient (before the update), parameter and moment after it */
        for (int i = 0; i < ps->count; i++) {
            const param_info *p = &ps->items[i];
            if (p->alias_of >= 0)
                continue;
            snprintf(name, sizeof name, "step%d.grad.%s", k, p->name);
            check(name, grads + p->offset, p->numel, 1e-4, 1e-7, &wk.grad);
            mark_noise(name, grads + p->offset, p->numel, noisy + p->offset);
            /* at the float-noise elements AdamW steps by up to lr, differently
             * on each side; elsewhere the parameters agree to rounding */
            snprintf(name, sizeof name, "step%d.param.%s", k, p->name);
            drift_diff2 = &p_d2, drift_ref2 = &p_r2;
            check_noisy(name, ps->values + p->offset, p->numel, 1e-6, 0, noisy + p->offset, 3.0 * lr * (k + 1),
                        &wk.param, &wk.noisy_param);
            drift_diff2 = drift_ref2 = NULL;
            snprintf(name, sizeof name, "step%d.exp_avg.%s", k, p->name);
            check(name, t.adam_m + p->offset, p->numel, 1e-4, 1e-7, &wk.adam);
            snprintf(name, sizeof name, "step%d.exp_avg_sq.%s", k, p->name);
            check(name, t.adam_v + p->offset, p->numel, 1e-4, 1e-12, &wk.adam);
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
            check_noisy(name, pm->values + p->offset, p->numel, 1e-6, 0, noisy + p->offset, 0.3 * lr * (k + 1),
                        &wk.param_m, &wk.noisy_param_m);
            drift_diff2 = drift_ref2 = NULL;
        }
        float *iq2 = malloc(sizeof(float) * (size_t)(E * Q)), *tq2 = malloc(sizeof(float) * (size_t)(E * Q));
        assert_ok(pretrainer_get_queues(&t, iq2, tq2, &ptr));
        snprintf(name, sizeof name, "step%d.image_queue", k);
        check(name, iq2, (size_t)(E * Q), 1e-5, 0, &wk.queue);
        snprintf(name, sizeof name, "step%d.text_queue", k);
        check(name, tq2, (size_t)(E * Q), 1e-5, 0, &wk.queue);
        int64_t ref_ptr;
        snprintf(name, sizeof name, "step%d.queue_ptr", k);
        assert_ok(safetensors_read_raw(out_st, name, DTYPE_I64, &ref_ptr, 1));
        assert_int_equal(ptr, ref_ptr);
        if (retrieval) {
            snprintf(name, sizeof name, "step%d.idx_queue", k);
            int64_t *ref_idx = read_int64s(out_st, name, (size_t)Q);
            for (int64_t q = 0; q < Q; q++)
                if (t.idx_queue[q] != ref_idx[q])
                    fail_msg("%s[%lld]: got %lld expected %lld", name, (long long)q, (long long)t.idx_queue[q],
                             (long long)ref_idx[q]);
            free(ref_idx);
        }
        printf("# step %d drift |ours - ref| / |ref| over all weights: parameters %.2e, momentum parameters %.2e\n", k,
               sqrt(p_d2 / p_r2), sqrt(m_d2 / m_r2));
        size_t n_noisy = 0;
        for (size_t i = 0; i < ps->numel; i++)
            n_noisy += noisy[i];
        printf("# step %d worst relative errors: losses/sims/ITM weights %.1e, gradients %.1e, parameters %.1e, "
               "momentum parameters %.1e, AdamW moments %.1e, queues %.1e\n",
               k, wk.loss, wk.grad, wk.param, wk.param_m, wk.adam, wk.queue);
        printf("# step %d at the %zu float-noise gradient elements so far: parameters differ by up to %.2e, "
               "momentum parameters by %.2e (lr %.1e)\n",
               k, n_noisy, wk.noisy_param, wk.noisy_param_m, lr);
#define WORSE(f) all.f = wk.f > all.f ? wk.f : all.f
        WORSE(loss), WORSE(grad), WORSE(param), WORSE(param_m), WORSE(adam), WORSE(queue);
#undef WORSE
        free(grads);
        free(iq2), free(tq2), free(image), free(ids), free(mask), free(mlm_ids), free(mlm_labels), free(neg_img),
            free(neg_txt), free(idx);
    }
    printf("# worst relative errors: losses/sims/ITM weights %.1e, gradients %.1e, parameters %.1e, "
           "momentum parameters %.1e, AdamW moments %.1e, queues %.1e\n",
           all.loss, all.grad, all.param, all.param_m, all.adam, all.queue);
    free(iq), free(tq), free(noisy);
    safetensors_close(w), safetensors_close(in), safetensors_close(out_st);
    pretrainer_free(&t);
}

static void test_two_steps_match_reference(void **state)
{
    (void)state;
    run_golden(TASK_PRETRAIN);
}

static void test_two_retrieval_steps_match_reference(void **state)
{
    (void)state;
    run_golden(TASK_RETRIEVAL);
}

int main(void)
{
    albef_log_set_level(ALBEF_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_steps_match_reference),
        cmocka_unit_test(test_two_retrieval_steps_match_reference),
    };
    return cmocka_run_group_tests_name("pretrain_step", tests, NULL, NULL);
}
