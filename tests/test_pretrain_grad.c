/* The pre-training step's gradients against finite differences of its loss
 * (itc + itm + mlm) on a small configuration, at a realistic shape: batch 8,
 * a queue of 16, padded texts shorter than the longest allowed, hard
 * negatives and masking given. The momentum rate is 1 (the teacher stays
 * fixed), so the loss is a function of the online weights alone; the queues
 * are restored after every evaluation. For each parameter tensor the
 * derivative along u = g / |g| must equal |g|. */
#include "albef.h"
#include "core/rng.h"
#include "testutil.h"
#include "train/pretrain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 8, L = 12, MAXLEN = 16 };

typedef struct {
    pretrainer t;
    float *images, *iq, *tq;
    int32_t ids[B * L], mask[B * L], mlm_ids[B * L], labels[B * L], neg_img[B], neg_txt[B];
    int64_t idx[B];
    int64_t ptr, *idx_queue;
    pretrain_choices ch;
    pretrain_batch batch;
} fd_ctx;

static double loss_of(fd_ctx *c)
{
    pretrain_stats st;
    params_zero_grads(&c->t.online.params);
    if (pretrainer_accumulate(&c->t, &c->batch, 1.0f, &st))
        fail_msg("%s", albef_errmsg());
    pretrainer_set_queues(&c->t, c->iq, c->tq, c->ptr);
    if (c->idx_queue)
        pretrainer_set_idx_queue(&c->t, c->idx_queue);
    return (double)st.loss_ita + st.loss_itm + st.loss_mlm;
}

static void run_case(float alpha, enum albef_task task)
{
    fd_ctx *c = calloc(1, sizeof *c);
    albef_config cfg;
    assert_ok(config_load("testdata/reference/step/config.json", &cfg));
    cfg.queue_size = 16;
    cfg.momentum = 1.0f;
    pretrain_options opt = pretrain_options_default(B);
    opt.task = task;
    opt.max_len = MAXLEN;
    opt.hidden_dropout = opt.attention_dropout = 0;
    opt.teacher_dropout = 0;
    assert_ok(pretrainer_init(&c->t, &cfg, backend_cpu(), &opt, 2, 4));
    albef_model_init_weights(&c->t.online, 11);
    albef_model_init_weights(&c->t.momentum, 12);
    /* weights well away from initialisation, so every path carries gradient */
    param_set *ps = &c->t.online.params;
    rng_state r;
    rng_seed(&r, 13);
    for (size_t i = 0; i < ps->numel; i++)
        ps->values[i] += 0.05f * (float)rng_normal(&r);
    ps->values[ps->items[params_index(ps, "temp")].offset] = 0.1f;
    size_t px = (size_t)B * 3 * cfg.image_res * cfg.image_res;
    c->images = malloc(sizeof(float) * px);
    for (size_t i = 0; i < px; i++)
        c->images[i] = (float)rng_normal(&r);
    for (int b = 0; b < B; b++) {
        int len = b == 0 ? L : 4 + (int)rng_below(&r, L - 4);
        for (int i = 0; i < L; i++) {
            int k = b * L + i;
            c->ids[k] = i == 0 ? 2 : i < len ? 5 + (int)rng_below(&r, 59) : 0;
            c->mask[k] = i < len;
            c->mlm_ids[k] = c->ids[k];
            c->labels[k] = -100;
            if (i > 0 && i < len && rng_bernoulli(&r, 0.25)) {
                c->labels[k] = c->ids[k];
                c->mlm_ids[k] = rng_bernoulli(&r, 0.5) ? 4 : 5 + (int)rng_below(&r, 59);
            }
        }
        if (c->labels[b * L + 1] == -100) { /* at least one masked token per text */
            c->labels[b * L + 1] = c->ids[b * L + 1];
            c->mlm_ids[b * L + 1] = 4;
        }
        c->neg_img[b] = (b + 1 + (int)rng_below(&r, B - 1)) % B;
        c->neg_txt[b] = (b + 1 + (int)rng_below(&r, B - 1)) % B;
    }
    /* retrieval: samples 0/3 and 1/5 are captions of the same image */
    for (int b = 0; b < B; b++)
        c->idx[b] = b == 3 ? 0 : b == 5 ? 1 : b;
    if (task == TASK_RETRIEVAL)
        for (int b = 0; b < B; b++) /* negatives never share the image */
            while (c->idx[c->neg_img[b]] == c->idx[b] || c->idx[c->neg_txt[b]] == c->idx[b])
                c->neg_img[b] = c->neg_txt[b] = (c->neg_img[b] + 1) % B;
    c->ch = (pretrain_choices){c->mlm_ids, c->labels, c->neg_img, c->neg_txt};
    c->batch = (pretrain_batch){.images = c->images, .ids = c->ids, .mask = c->mask, .len = L, .alpha = alpha,
                                .choices = &c->ch, .idx = c->idx};
    int64_t E = cfg.embed_dim, Q = cfg.queue_size;
    c->iq = malloc(sizeof(float) * (size_t)(E * Q));
    c->tq = malloc(sizeof(float) * (size_t)(E * Q));
    assert_ok(pretrainer_get_queues(&c->t, c->iq, c->tq, &c->ptr));
    if (task == TASK_RETRIEVAL) {
        /* a queue holding earlier captions of images 0 and 2: more positives */
        c->idx_queue = malloc(sizeof(int64_t) * (size_t)Q);
        for (int64_t q = 0; q < Q; q++)
            c->idx_queue[q] = q % 4 == 0 ? 0 : q % 4 == 1 ? 2 : 100 + q;
        assert_ok(pretrainer_set_idx_queue(&c->t, c->idx_queue));
    }

    double l0 = loss_of(c);
    if (task == TASK_RETRIEVAL && alpha == 0.0f) {
        /* ITC by hand: the target of row i spreads evenly over every entry of
         * [batch | queue] of the same image (Retrieval.py's pos / pos.sum) */
        tensor s_i2t = pretrainer_last_sim_i2t(&c->t), s_t2i = pretrainer_last_sim_t2i(&c->t);
        int64_t NC = s_i2t.shape[1];
        double itc = 0;
        for (int d = 0; d < 2; d++) {
            const float *sim = (const float *)(d ? s_t2i.data : s_i2t.data);
            for (int i = 0; i < B; i++) {
                const float *row = sim + (size_t)i * NC;
                double mx = -1e30, se = 0, tgt = 0;
                int npos = 0;
                for (int64_t j = 0; j < NC; j++)
                    mx = row[j] > mx ? row[j] : mx;
                for (int64_t j = 0; j < NC; j++)
                    se += exp(row[j] - mx);
                for (int64_t j = 0; j < NC; j++) {
                    int64_t other = j < B ? c->idx[j] : c->idx_queue[j - B];
                    if (other == c->idx[i]) {
                        tgt -= row[j] - mx - log(se);
                        npos++;
                    }
                }
                itc += tgt / npos / B / 2;
            }
        }
        pretrain_stats st;
        params_zero_grads(ps);
        assert_ok(pretrainer_accumulate(&c->t, &c->batch, 1.0f, &st));
        pretrainer_set_queues(&c->t, c->iq, c->tq, c->ptr);
        pretrainer_set_idx_queue(&c->t, c->idx_queue);
        assert_float_equal(st.loss_ita, itc, 1e-4);
        printf("# retrieval ITC with same-image positives: %.6f, by hand %.6f\n", st.loss_ita, itc);
    }
    float *g = malloc(sizeof(float) * ps->numel);
    memcpy(g, ps->grads, sizeof(float) * ps->numel);
    assert_float_equal(loss_of(c), l0, 1e-6); /* evaluations repeat exactly */
    double worst = 0;
    int checked = 0;
    for (int i = 0; i < ps->count; i++) {
        const param_info *p = &ps->items[i];
        if (p->alias_of >= 0)
            continue;
        float *w = ps->values + p->offset, *gi = g + p->offset;
        double gn = 0, wn = 0;
        for (size_t k = 0; k < p->numel; k++)
            gn += (double)gi[k] * gi[k], wn += (double)w[k] * w[k];
        gn = sqrt(gn), wn = sqrt(wn);
        if (gn < 1e-6)
            continue;
        /* with distillation the targets depend on temp through the teacher's
         * softmax, which the official step holds constant (no_grad): finite
         * differences see that path, the gradient rightly does not */
        if (alpha > 0 && !strcmp(p->name, "temp"))
            continue;
        double eps = 1e-2 * (wn > 1e-3 ? wn : 1.0) / sqrt((double)p->numel);
        float *saved = malloc(sizeof(float) * p->numel);
        memcpy(saved, w, sizeof(float) * p->numel);
        for (size_t k = 0; k < p->numel; k++)
            w[k] = saved[k] + (float)(eps * gi[k] / gn);
        double lp = loss_of(c);
        for (size_t k = 0; k < p->numel; k++)
            w[k] = saved[k] - (float)(eps * gi[k] / gn);
        double lm = loss_of(c);
        memcpy(w, saved, sizeof(float) * p->numel);
        free(saved);
        /* float32 evaluations of a loss near 10 carry ~1e-6 of noise, i.e.
         * ~1e-6 / eps in the difference quotient: a floor for small gradients */
        double fd = (lp - lm) / (2 * eps), err = fabs(fd - gn) / gn, noise = 4e-6 / eps;
        int bad = fabs(fd - gn) > 2e-2 * gn + noise;
        if (gn > 100 * noise)
            worst = err > worst ? err : worst;
        if (bad || getenv("ALBEF_VERBOSE"))
            printf("# %-60s |g| %.3e fd %.3e rel %.2e\n", p->name, gn, fd, err);
        if (bad)
            fail_msg("alpha %.1f: %s: directional derivative %.6g, |g| %.6g", alpha, p->name, fd, gn);
        checked++;
    }
    printf("# %s, alpha %.1f: loss %.4f, %d tensors, worst relative error %.2e (gradients well above float noise)\n",
           task == TASK_RETRIEVAL ? "retrieval" : "pre-training", alpha, l0, checked, worst);
    assert_true(checked > 100);
    free(g), free(c->images), free(c->iq), free(c->tq), free(c->idx_queue);
    pretrainer_free(&c->t);
    free(c);
}

static void test_step_gradients_without_distillation(void **state)
{
    (void)state;
    run_case(0.0f, TASK_PRETRAIN);
}

static void test_step_gradients_with_distillation(void **state)
{
    (void)state;
    run_case(0.4f, TASK_PRETRAIN);
}

static void test_retrieval_step_gradients(void **state)
{
    (void)state;
    run_case(0.0f, TASK_RETRIEVAL);
    run_case(0.4f, TASK_RETRIEVAL);
}

int main(void)
{
    albef_log_set_level(ALBEF_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_gradients_without_distillation),
        cmocka_unit_test(test_step_gradients_with_distillation),
        cmocka_unit_test(test_retrieval_step_gradients),
    };
    return cmocka_run_group_tests_name("pretrain_grad", tests, NULL, NULL);
}
