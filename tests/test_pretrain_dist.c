/* The data-parallel hooks of the pre-training step, with a stand-in for a
 * second rank that sees the same batch: gradients are averaged (so the
 * update equals one process's) and every rank's momentum features go into
 * the queue in rank order (ALBEF's concat_all_gather), the pointer moving
 * by world x batch. Also the step's choice of ITM negatives: uniform over
 * the other samples on request, else the in-batch softmax; and the ITM
 * head, which starts at zero and whose two rows stay opposite in training. */
#include "albef.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "train/pretrain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DIR "testdata/reference/step/"

/* two ranks with identical data: gather = two copies, sum = twice */
static int twin_all_gather(comm *c, backend *be, float *dst, const float *src, size_t n)
{
    (void)c;
    be->ops->copy(be, dst, src, n * sizeof(float));
    be->ops->copy(be, dst + n, src, n * sizeof(float));
    return ALBEF_OK;
}

static int twin_all_reduce_sum(comm *c, backend *be, float *data, size_t n)
{
    (void)c;
    op_scale(be, tensor_f32(data, (int64_t)n), 2.0f);
    return ALBEF_OK;
}

static int twin_broadcast(comm *c, backend *be, float *data, size_t n)
{
    (void)c, (void)be, (void)data, (void)n;
    return ALBEF_OK;
}

static const struct comm_ops twin_ops = {twin_all_gather, twin_all_reduce_sum, twin_broadcast};

/* The first step's batch of the pre-training golden. */
typedef struct {
    albef_config cfg;
    int B, L;
    float *image;
    int32_t ids[64], mask[64];
} golden_batch;

static void load_batch(golden_batch *g)
{
    assert_ok(config_load(DIR "config.json", &g->cfg));
    safetensors_file *in;
    assert_ok(safetensors_open(DIR "inputs.safetensors", &in));
    const safetensors_tensor *ids_t = safetensors_find(in, "step0.input_ids");
    g->B = (int)ids_t->shape[0], g->L = (int)ids_t->shape[1];
    assert_true(g->B * g->L <= 64);
    size_t px = (size_t)g->B * 3 * g->cfg.image_res * g->cfg.image_res;
    g->image = malloc(sizeof(float) * px);
    int64_t tmp[64];
    assert_ok(safetensors_read_f32(in, "step0.image", g->image, px));
    assert_ok(safetensors_read_raw(in, "step0.input_ids", DTYPE_I64, tmp, (size_t)(g->B * g->L)));
    for (int i = 0; i < g->B * g->L; i++)
        g->ids[i] = (int32_t)tmp[i];
    assert_ok(safetensors_read_raw(in, "step0.attention_mask", DTYPE_I64, tmp, (size_t)(g->B * g->L)));
    for (int i = 0; i < g->B * g->L; i++)
        g->mask[i] = (int32_t)tmp[i];
    safetensors_close(in);
}

static void test_two_ranks_same_batch(void **state)
{
    (void)state;
    golden_batch g;
    load_batch(&g);
    albef_config cfg = g.cfg;
    cfg.queue_size = 12; /* a multiple of world x batch = 2 x 3 */
    int B = g.B, L = g.L;
    float *image = g.image;
    int32_t *ids = g.ids, *mask = g.mask;

    comm twin = {&twin_ops, 0, 2, NULL};
    pretrainer one, two;
    pretrain_options opt = pretrain_options_default(B);
    opt.max_len = L;
    opt.hidden_dropout = opt.attention_dropout = 0;
    opt.teacher_dropout = 0;
    assert_ok(pretrainer_init(&one, &cfg, backend_cpu(), &opt, 2, 4));
    opt.comm = &twin;
    assert_ok(pretrainer_init(&two, &cfg, backend_cpu(), &opt, 2, 4));
    albef_model_init_weights(&one.online, 3);
    albef_model_init_weights(&two.online, 3);
    pretrainer_sync_momentum(&one);
    pretrainer_sync_momentum(&two);
    pretrain_batch b = {.images = image, .ids = ids, .mask = mask, .len = L, .alpha = 0.4f};
    pretrain_stats s1, s2;
    assert_ok(pretrainer_step(&one, &b, 1e-4f, &s1));
    assert_ok(pretrainer_step(&two, &b, 1e-4f, &s2));
    assert_float_equal(s1.loss_ita, s2.loss_ita, 0);
    assert_memory_equal(one.online.params.values, two.online.params.values, one.online.params.numel * sizeof(float));
    assert_int_equal(one.queue_ptr, B);
    assert_int_equal(two.queue_ptr, 2 * B);
    /* both ranks' features (here equal) are in the queue, one after the other */
    int64_t E = cfg.embed_dim;
    const float *q = (const float *)two.img_all.data + (size_t)B * E; /* queue row 0 */
    assert_memory_equal(q, q + (size_t)B * E, sizeof(float) * (size_t)(B * E));
    assert_memory_equal(q, (const float *)one.img_all.data + (size_t)B * E, sizeof(float) * (size_t)(B * E));
    /* the queue must hold whole gathers */
    pretrainer bad;
    cfg.queue_size = 9;
    assert_error(pretrainer_init(&bad, &cfg, backend_cpu(), &opt, 2, 4), ALBEF_ERR_INVALID, "processes");
    pretrainer_free(&bad);
    pretrainer_free(&one);
    pretrainer_free(&two);
    free(image);
}

/* --random-negatives-steps: ITM negatives drawn uniformly from the other
 * samples; otherwise from the in-batch softmax (diagonal zeroed). */
static void test_random_negatives(void **state)
{
    (void)state;
    golden_batch g;
    load_batch(&g);
    int B = g.B;
    pretrainer t;
    pretrain_options opt = pretrain_options_default(B);
    opt.max_len = g.L;
    opt.hidden_dropout = opt.attention_dropout = 0;
    assert_ok(pretrainer_init(&t, &g.cfg, backend_cpu(), &opt, 2, 4));
    albef_model_init_weights(&t.online, 3);
    pretrainer_sync_momentum(&t);
    pretrain_batch b = {.images = g.image, .ids = g.ids, .mask = g.mask, .len = g.L, .alpha = 0.4f,
                        .random_negatives = 1};
    pretrain_stats s;
    const float *w[2];
    assert_ok(pretrainer_step(&t, &b, 1e-4f, &s));
    pretrainer_last_itm_weights(&t, &w[0], &w[1]);
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < B; i++)
            for (int j = 0; j < B; j++)
                assert_float_equal(w[d][i * B + j], i == j ? 0.0f : 1.0f, 0);
    b.random_negatives = 0;
    assert_ok(pretrainer_step(&t, &b, 1e-4f, &s));
    pretrainer_last_itm_weights(&t, &w[0], &w[1]);
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < B; i++) {
            double sum = 0;
            for (int j = 0; j < B; j++) {
                assert_true(i == j ? w[d][i * B + j] == 0.0f : w[d][i * B + j] > 0.0f);
                sum += w[d][i * B + j];
            }
            assert_true(sum < 1.0); /* a softmax less its diagonal */
        }
    pretrainer_free(&t);
    free(g.image);
}

/* The ITM head starts at zero, and the loss moves its two rows by opposite
 * amounts, so w0 + w1 stays at zero (to float rounding) while w1 - w0
 * learns: the raw match logit that retrieval ranks by is then half the
 * log-odds plus a constant. */
static void test_itm_head_rows_stay_opposite(void **state)
{
    (void)state;
    golden_batch g;
    load_batch(&g);
    pretrainer t;
    pretrain_options opt = pretrain_options_default(g.B);
    opt.max_len = g.L;
    opt.hidden_dropout = opt.attention_dropout = 0;
    assert_ok(pretrainer_init(&t, &g.cfg, backend_cpu(), &opt, 2, 4));
    albef_model_init_weights(&t.online, 3);
    pretrainer_sync_momentum(&t);
    const param_set *ps = &t.online.params;
    const param_info *pi = &ps->items[params_index(ps, "itm_head.weight")];
    const float *w = ps->values + pi->offset;
    int64_t C = pi->shape[1];
    for (int64_t i = 0; i < 2 * C; i++)
        assert_float_equal(w[i], 0.0f, 0);
    pretrain_batch b = {.images = g.image, .ids = g.ids, .mask = g.mask, .len = g.L, .alpha = 0.4f};
    pretrain_stats s;
    for (int step = 0; step < 4; step++)
        assert_ok(pretrainer_step(&t, &b, 1e-3f, &s));
    double sum = 0, diff = 0;
    for (int64_t i = 0; i < C; i++) {
        sum += ((double)w[i] + w[C + i]) * ((double)w[i] + w[C + i]);
        diff += ((double)w[C + i] - w[i]) * ((double)w[C + i] - w[i]);
    }
    print_message("itm_head after 4 steps: |w0 + w1| %.3g, |w1 - w0| %.3g\n", sqrt(sum), sqrt(diff));
    assert_true(diff > 1e-6);
    assert_true(sqrt(sum) <= 1e-4 * sqrt(diff));
    pretrainer_free(&t);
    free(g.image);
}

int main(void)
{
    albef_log_set_level(ALBEF_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_ranks_same_batch),
        cmocka_unit_test(test_random_negatives),
        cmocka_unit_test(test_itm_head_rows_stay_opposite),
    };
    return cmocka_run_group_tests_name("pretrain_dist", tests, NULL, NULL);
}
