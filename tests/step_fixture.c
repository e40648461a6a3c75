#include "step_fixture.h"

#include "albef.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>

#define STEP "reference/step/"

int32_t *step_read_ints(safetensors_file *st, const char *name, size_t n)
{
    int64_t *v = malloc(sizeof(int64_t) * n);
    int32_t *r = malloc(sizeof(int32_t) * n);
    assert_ok(safetensors_read_raw(st, name, DTYPE_I64, v, n));
    for (size_t i = 0; i < n; i++)
        r[i] = (int32_t)v[i];
    free(v);
    return r;
}

void step_fixture_open(step_fixture *f)
{
    assert_ok(config_load(testdata_path(STEP "config.json"), &f->cfg));
    assert_ok(safetensors_open(testdata_path(STEP "weights.safetensors"), &f->w));
    assert_ok(safetensors_open(testdata_path(STEP "inputs.safetensors"), &f->in));
    const safetensors_tensor *ids_t = safetensors_find(f->in, "step0.input_ids");
    assert_non_null(ids_t);
    f->B = (int)ids_t->shape[0], f->L = (int)ids_t->shape[1];
    f->cls = atoi(safetensors_metadata_get(f->in, "cls_id"));
    f->mask_id = atoi(safetensors_metadata_get(f->in, "mask_id"));
    f->E = f->cfg.embed_dim, f->Q = f->cfg.queue_size;
    f->iq = malloc(sizeof(float) * (size_t)(f->E * f->Q)), f->tq = malloc(sizeof(float) * (size_t)(f->E * f->Q));
    assert_ok(safetensors_read_f32(f->w, "image_queue", f->iq, (size_t)(f->E * f->Q)));
    assert_ok(safetensors_read_f32(f->w, "text_queue", f->tq, (size_t)(f->E * f->Q)));
    assert_ok(safetensors_read_raw(f->w, "queue_ptr", DTYPE_I64, &f->ptr, 1));
}

void step_fixture_close(step_fixture *f)
{
    free(f->iq), free(f->tq);
    safetensors_close(f->w), safetensors_close(f->in);
}

void step_batch_read(const step_fixture *f, int k, step_batch *s)
{
    char name[320];
    size_t RES = (size_t)f->cfg.image_res, BL = (size_t)f->B * f->L;
    s->image = malloc(sizeof(float) * f->B * 3 * RES * RES);
    snprintf(name, sizeof name, "step%d.image", k);
    assert_ok(safetensors_read_f32(f->in, name, s->image, f->B * 3 * RES * RES));
#define INTS(field, n) (snprintf(name, sizeof name, "step%d." field, k), step_read_ints(f->in, name, n))
    s->ids = INTS("input_ids", BL), s->mask = INTS("attention_mask", BL);
    s->mlm_ids = INTS("mlm_input_ids", BL), s->mlm_labels = INTS("mlm_labels", BL);
    s->neg_img = INTS("neg_image_idx", (size_t)f->B), s->neg_txt = INTS("neg_text_idx", (size_t)f->B);
#undef INTS
    float alpha;
    snprintf(name, sizeof name, "step%d.alpha", k);
    assert_ok(safetensors_read_f32(f->in, name, &alpha, 1));
    snprintf(name, sizeof name, "step%d.lr", k);
    assert_ok(safetensors_read_f32(f->in, name, &s->lr, 1));
    s->ch = (pretrain_choices){.mlm_ids = s->mlm_ids, .mlm_labels = s->mlm_labels, .neg_image_idx = s->neg_img,
                               .neg_text_idx = s->neg_txt};
    s->b = (pretrain_batch){
        .images = s->image, .ids = s->ids, .mask = s->mask, .len = f->L, .alpha = alpha, .choices = &s->ch};
}

void step_batch_free(step_batch *s)
{
    free(s->image), free(s->ids), free(s->mask), free(s->mlm_ids), free(s->mlm_labels), free(s->neg_img),
        free(s->neg_txt);
}

void step_pretrainer_init(pretrainer *t, backend *be, const step_fixture *f, const pretrain_options *opt)
{
    assert_ok(pretrainer_init(t, &f->cfg, be, opt, f->cls, f->mask_id));
    load_report rep;
    assert_ok(albef_model_load(&t->online, testdata_path(STEP "weights.safetensors"), 1, &rep));
    assert_ok(albef_model_load(&t->momentum, testdata_path(STEP "weights.safetensors"), 1, &rep));
    assert_ok(pretrainer_set_queues(t, f->iq, f->tq, f->ptr));
}
