/* Pre-training checkpoints: a run saved after a step and resumed in a fresh
 * trainer continues bit for bit (weights, momentum weights, AdamW state,
 * queues, RNG for masking/negatives/dropout); the file loads as a plain
 * model; damaged files are refused with a message. */
#include "albef.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "core/file.h"
#include "train/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG "testdata/reference/step/config.json"
#define INPUTS "testdata/reference/step/inputs.safetensors"

typedef struct {
    float *image;
    int32_t ids[64], mask[64];
    int B, L;
} batch_data;

static void read_batch(int k, batch_data *d, const albef_config *cfg)
{
    safetensors_file *st;
    assert_ok(safetensors_open(INPUTS, &st));
    char name[64];
    snprintf(name, sizeof name, "step%d.input_ids", k);
    const safetensors_tensor *t = safetensors_find(st, name);
    d->B = (int)t->shape[0], d->L = (int)t->shape[1];
    int64_t tmp[64];
    assert_ok(safetensors_read_raw(st, name, DTYPE_I64, tmp, (size_t)(d->B * d->L)));
    for (int i = 0; i < d->B * d->L; i++)
        d->ids[i] = (int32_t)tmp[i];
    snprintf(name, sizeof name, "step%d.attention_mask", k);
    assert_ok(safetensors_read_raw(st, name, DTYPE_I64, tmp, (size_t)(d->B * d->L)));
    for (int i = 0; i < d->B * d->L; i++)
        d->mask[i] = (int32_t)tmp[i];
    size_t px = (size_t)d->B * 3 * cfg->image_res * cfg->image_res;
    d->image = malloc(sizeof(float) * px);
    snprintf(name, sizeof name, "step%d.image", k);
    assert_ok(safetensors_read_f32(st, name, d->image, px));
    safetensors_close(st);
}

static void make_trainer(pretrainer *t, albef_config *cfg, int B, int L)
{
    assert_ok(config_load(CFG, cfg));
    pretrain_options opt = pretrain_options_default(B);
    opt.max_len = L;
    opt.seed = 99; /* dropout on (0.1), teacher dropout on: the RNG state matters */
    assert_ok(pretrainer_init(t, cfg, backend_cpu(), &opt, 2, 4));
}

static void step(pretrainer *t, const batch_data *d)
{
    pretrain_batch b = {.images = d->image, .ids = d->ids, .mask = d->mask, .len = d->L, .alpha = 0.3f};
    pretrain_stats st;
    assert_ok(pretrainer_step(t, &b, 1e-4f, &st));
}

static void assert_same_state(const pretrainer *a, const pretrainer *b)
{
    const param_set *pa = &a->online.params, *pb = &b->online.params;
    assert_memory_equal(pa->values, pb->values, pa->numel * sizeof(float));
    assert_memory_equal(a->momentum.params.values, b->momentum.params.values, a->momentum.params.numel * sizeof(float));
    assert_memory_equal(a->adam_m, b->adam_m, pa->numel * sizeof(float));
    assert_memory_equal(a->adam_v, b->adam_v, pa->numel * sizeof(float));
    /* rows [0, B) hold the last step's teacher features, recomputed by the
     * next step; the queue is what follows */
    size_t skip = (size_t)a->opt.batch * (size_t)a->cfg.embed_dim * sizeof(float);
    assert_memory_equal((char *)a->img_all.data + skip, (char *)b->img_all.data + skip, tensor_nbytes(a->img_all) - skip);
    assert_memory_equal((char *)a->txt_all.data + skip, (char *)b->txt_all.data + skip, tensor_nbytes(a->txt_all) - skip);
    assert_int_equal(a->queue_ptr, b->queue_ptr);
}

static void test_resume_continues_bit_for_bit(void **state)
{
    (void)state;
    albef_config cfg;
    batch_data d0, d1;
    assert_ok(config_load(CFG, &cfg));
    read_batch(0, &d0, &cfg);
    read_batch(1, &d1, &cfg);
    pretrainer a, b;
    make_trainer(&a, &cfg, d0.B, d0.L);
    albef_model_init_weights(&a.online, 1);
    pretrainer_sync_momentum(&a);
    step(&a, &d0);

    const char *path = tmp_path("step1.safetensors");
    train_position pos = {.epoch = 0, .batch = 1, .step = 1}, back;
    assert_ok(pretrain_checkpoint_save(&a, path, &pos));
    make_trainer(&b, &cfg, d0.B, d0.L);
    assert_ok(pretrain_checkpoint_resume(&b, path, &back));
    assert_int_equal(back.batch, 1);
    assert_int_equal(back.step, 1);
    assert_same_state(&a, &b);

    step(&a, &d1);
    step(&b, &d1);
    assert_same_state(&a, &b);

    /* the checkpoint is also a plain model for inference */
    albef_ctx *ctx;
    assert_ok(albef_load(path, NULL, &ctx));
    albef_free(ctx);

    pretrainer_free(&a);
    pretrainer_free(&b);
    free(d0.image), free(d1.image);
}

static void test_init_from_weights_only(void **state)
{
    (void)state;
    albef_config cfg;
    batch_data d0;
    assert_ok(config_load(CFG, &cfg));
    read_batch(0, &d0, &cfg);
    pretrainer a;
    make_trainer(&a, &cfg, d0.B, d0.L);
    albef_model_init_weights(&a.online, 3);
    const char *path = tmp_path("weights.safetensors");
    assert_ok(albef_model_save(&a.online, path));
    pretrainer b;
    make_trainer(&b, &cfg, d0.B, d0.L);
    assert_ok(pretrain_checkpoint_init(&b, path));
    /* no momentum weights in the file: the teacher starts as a copy */
    assert_memory_equal(b.momentum.params.values, b.online.params.values, b.momentum.params.numel * sizeof(float));
    assert_memory_equal(a.online.params.values, b.online.params.values, a.online.params.numel * sizeof(float));
    /* a weights-only file cannot resume a run */
    train_position pos;
    assert_error(pretrain_checkpoint_resume(&b, path, &pos), ALBEF_ERR_INVALID, "train.epoch");
    pretrainer_free(&a);
    pretrainer_free(&b);
    free(d0.image);
}

static void test_damaged_checkpoints_are_refused(void **state)
{
    (void)state;
    albef_config cfg;
    batch_data d0;
    assert_ok(config_load(CFG, &cfg));
    read_batch(0, &d0, &cfg);
    pretrainer a;
    make_trainer(&a, &cfg, d0.B, d0.L);
    albef_model_init_weights(&a.online, 1);
    pretrainer_sync_momentum(&a);
    const char *path = tmp_path("full.safetensors");
    train_position pos = {0};
    assert_ok(pretrain_checkpoint_save(&a, path, &pos));
    /* truncated */
    char *data;
    size_t n;
    assert_ok(file_read_all(path, &data, &n));
    const char *cut = write_tmp_file("cut.safetensors", data, n / 2);
    assert_error(pretrain_checkpoint_resume(&a, cut, &pos), ALBEF_ERR_INVALID, "cut.safetensors");
    free(data);
    /* another batch size */
    pretrainer c;
    make_trainer(&c, &cfg, d0.B * 3, d0.L);
    assert_error(pretrain_checkpoint_resume(&c, path, &pos), ALBEF_ERR_INVALID, "batch size");
    pretrainer_free(&c);
    pretrainer_free(&a);
    free(d0.image);
}

int main(void)
{
    albef_log_set_level(ALBEF_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_continues_bit_for_bit),
        cmocka_unit_test(test_init_from_weights_only),
        cmocka_unit_test(test_damaged_checkpoints_are_refused),
    };
    return cmocka_run_group_tests_name("checkpoint", tests, NULL, NULL);
}
