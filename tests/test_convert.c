/* model/convert: the key remaps of spec 6.5 on official names, training
 * state and known names, the configuration told from shapes, and the
 * paper's initial checkpoint from BERT and DeiT files written by torch. */
#include "albef.h"
#include "io/pth.h"
#include "model/albef_model.h"
#include "model/convert.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect(enum convert_task task, const char *name, const char *a, const char *b)
{
    convert_names out;
    convert_remap(task, 6, name, &out);
    int n = (a != NULL) + (b != NULL);
    if (out.n != n)
        fail_msg("%s --task %s: %d names (%s%s), expected %d", name, convert_task_name(task), out.n,
                 out.n ? out.name[0] : out.dropped_why, out.n > 1 ? ", ..." : "", n);
    if (a)
        assert_string_equal(out.name[0], a);
    if (b)
        assert_string_equal(out.name[1], b);
    if (!n)
        assert_non_null(out.dropped_why);
}

static void test_remaps_of_the_scripts(void **state)
{
    (void)state;
    const char *q7 = "text_encoder.bert.encoder.layer.7.crossattention.self.key.weight";
    expect(CONVERT_PRETRAIN, q7, q7, NULL);
    /* Retrieval.py / Grounding.py: "bert." stripped, no MLM head */
    expect(CONVERT_RETRIEVAL, q7, "text_encoder.encoder.layer.7.crossattention.self.key.weight", NULL);
    expect(CONVERT_RETRIEVAL, "text_encoder_m.bert.embeddings.word_embeddings.weight",
           "text_encoder_m.embeddings.word_embeddings.weight", NULL);
    expect(CONVERT_RETRIEVAL, "text_encoder.cls.predictions.bias", NULL, NULL);
    expect(CONVERT_RETRIEVAL, "visual_encoder_m.pos_embed", "visual_encoder_m.pos_embed", NULL);
    expect(CONVERT_RETRIEVAL, "image_queue", "image_queue", NULL);
    /* VQA.py: layers >= 6 also become decoder layers 0-5, embeddings go to
     * both, the MLM head to the decoder only */
    expect(CONVERT_VQA, q7, "text_encoder.encoder.layer.7.crossattention.self.key.weight",
           "text_decoder.bert.encoder.layer.1.crossattention.self.key.weight");
    expect(CONVERT_VQA, "text_encoder.bert.encoder.layer.5.output.dense.bias", "text_encoder.encoder.layer.5.output.dense.bias",
           NULL);
    expect(CONVERT_VQA, "text_encoder_m.bert.embeddings.LayerNorm.weight", "text_encoder_m.embeddings.LayerNorm.weight",
           "text_decoder_m.bert.embeddings.LayerNorm.weight");
    expect(CONVERT_VQA, "text_encoder.cls.predictions.transform.dense.weight",
           "text_decoder.cls.predictions.transform.dense.weight", NULL);
    expect(CONVERT_VQA, "vision_proj.weight", NULL, NULL);
    expect(CONVERT_VQA, "temp", NULL, NULL);
    expect(CONVERT_VQA, "itm_head.bias", NULL, NULL);
    expect(CONVERT_VQA, "visual_encoder.blocks.3.attn.qkv.weight", "visual_encoder.blocks.3.attn.qkv.weight", NULL);
    /* Pretrain_nlvr.py: layer n >= 6 becomes 2n-6 and 2n-5; no momentum model */
    expect(CONVERT_NLVR, q7, "text_encoder.encoder.layer.8.crossattention.self.key.weight",
           "text_encoder.encoder.layer.9.crossattention.self.key.weight");
    expect(CONVERT_NLVR, "text_encoder.bert.encoder.layer.11.output.LayerNorm.bias",
           "text_encoder.encoder.layer.16.output.LayerNorm.bias", "text_encoder.encoder.layer.17.output.LayerNorm.bias");
    expect(CONVERT_NLVR, "text_encoder.bert.encoder.layer.2.attention.self.query.weight",
           "text_encoder.encoder.layer.2.attention.self.query.weight", NULL);
    expect(CONVERT_NLVR, "text_encoder_m.bert.encoder.layer.2.attention.self.query.weight", NULL, NULL);
    expect(CONVERT_NLVR, "visual_encoder_m.cls_token", NULL, NULL);
    expect(CONVERT_NLVR, "vision_proj.weight", "vision_proj.weight", NULL);
    expect(CONVERT_NLVR, "temp", "temp", NULL);
    /* VE.py: as retrieval, without projections, queues and ITM head */
    expect(CONVERT_VE, q7, "text_encoder.encoder.layer.7.crossattention.self.key.weight", NULL);
    expect(CONVERT_VE, "text_proj_m.bias", NULL, NULL);
    expect(CONVERT_VE, "queue_ptr", NULL, NULL);
    assert_int_equal(convert_task_parse("vqa"), CONVERT_VQA);
    assert_int_equal(convert_task_parse("VQA"), -1);
}

static void test_name_classes(void **state)
{
    (void)state;
    assert_true(convert_is_training_state("visual_encoder_m.pos_embed"));
    assert_true(convert_is_training_state("text_proj_m.weight"));
    assert_true(convert_is_training_state("idx_queue"));
    assert_true(convert_is_training_state("optimizer.exp_avg.temp"));
    assert_false(convert_is_training_state("visual_encoder.pos_embed"));
    assert_false(convert_is_training_state("temp"));
    assert_true(convert_is_known("text_decoder_m.cls.predictions.bias"));
    assert_true(convert_is_known("cls_head.0.weight"));
    assert_true(convert_is_known("temp"));
    assert_false(convert_is_known("module.visual_encoder.pos_embed"));
    assert_false(convert_is_known("visual_encoder"));
    assert_false(convert_is_known("half"));
}

static void test_config_from_shapes(void **state)
{
    (void)state;
    safetensors_file *st;
    assert_ok(pth_open(testdata_path("pth/albef_small.pth"), &st));
    albef_config cfg, ref;
    assert_ok(convert_infer_config(st, &cfg));
    assert_ok(config_load(testdata_path("reference/small/config.json"), &ref));
    assert_int_equal(cfg.image_res, ref.image_res);
    assert_int_equal(cfg.patch_size, ref.patch_size);
    assert_int_equal(cfg.vision_width, ref.vision_width);
    assert_int_equal(cfg.vision_depth, ref.vision_depth);
    assert_int_equal(cfg.vision_mlp_ratio, ref.vision_mlp_ratio);
    assert_int_equal(cfg.embed_dim, ref.embed_dim);
    assert_int_equal(cfg.queue_size, ref.queue_size);
    assert_int_equal(cfg.bert.vocab_size, ref.bert.vocab_size);
    assert_int_equal(cfg.bert.hidden_size, ref.bert.hidden_size);
    assert_int_equal(cfg.bert.num_hidden_layers, ref.bert.num_hidden_layers);
    assert_int_equal(cfg.bert.fusion_layer, ref.bert.fusion_layer);
    assert_int_equal(cfg.bert.intermediate_size, ref.bert.intermediate_size);
    assert_int_equal(cfg.bert.max_position_embeddings, ref.bert.max_position_embeddings);
    assert_float_equal(cfg.temp, ref.temp, 1e-7);
    safetensors_close(st);
}

/* One model tensor against a file tensor: the same floats. */
static void expect_same(const albef_model *m, const float *host, const char *param, const safetensors_file *st,
                        const char *file_name)
{
    int i = params_index(&m->params, param);
    if (i < 0)
        fail_msg("no parameter %s", param);
    const param_info *p = &m->params.items[i];
    const safetensors_tensor *t = safetensors_find(st, file_name);
    if (!t)
        fail_msg("%s: no tensor %s", safetensors_path(st), file_name);
    assert_int_equal(t->numel, p->numel);
    float *want = malloc(sizeof(float) * p->numel);
    assert_ok(safetensors_tensor_to_f32(st, t, want));
    assert_memory_equal(host + p->offset, want, sizeof(float) * p->numel);
    free(want);
}

static void test_init_from_bert_and_deit(void **state)
{
    (void)state;
    albef_config cfg;
    assert_ok(config_load(testdata_path("reference/small/config.json"), &cfg));
    albef_model m;
    albef_model_options opt = {.layout = LAYOUT_PRETRAIN};
    assert_ok(albef_model_init(&m, &cfg, backend_cpu(), &opt));
    albef_model_init_weights(&m, 42);
    float *before = albef_model_download(&m);
    load_report bert, vit;
    assert_ok(convert_load_bert_vit(&m, testdata_path("pth/bert_small.bin"), testdata_path("pth/deit_small.pth"),
                                    &bert, &vit));
    assert_int_equal(bert.unexpected, 4); /* pooler and the next-sentence head */
    assert_int_equal(vit.unexpected, 2);  /* the classifier */
    assert_int_equal(vit.interpolated, 1);
    float *host = albef_model_download(&m);
    safetensors_file *b, *v;
    assert_ok(pth_open(testdata_path("pth/bert_small.bin"), &b));
    assert_ok(pth_open(testdata_path("pth/deit_small.pth"), &v));
    expect_same(&m, host, "text_encoder.bert.encoder.layer.3.attention.self.query.weight", b,
                "bert.encoder.layer.3.attention.self.query.weight");
    expect_same(&m, host, "text_encoder.bert.encoder.layer.0.output.LayerNorm.weight", b,
                "bert.encoder.layer.0.output.LayerNorm.gamma");
    expect_same(&m, host, "text_encoder.cls.predictions.transform.LayerNorm.bias", b,
                "cls.predictions.transform.LayerNorm.beta");
    expect_same(&m, host, "text_encoder.bert.embeddings.word_embeddings.weight", b,
                "bert.embeddings.word_embeddings.weight");
    expect_same(&m, host, "visual_encoder.blocks.1.attn.qkv.weight", v, "blocks.1.attn.qkv.weight");
    expect_same(&m, host, "visual_encoder.cls_token", v, "cls_token");
    /* cross-attention, projections, ITM head and temp keep the random
     * initialisation */
    const char *kept[] = {"text_encoder.bert.encoder.layer.2.crossattention.self.key.weight", "vision_proj.weight",
                          "itm_head.weight", "temp"};
    for (int k = 0; k < 4; k++) {
        const param_info *p = &m.params.items[params_index(&m.params, kept[k])];
        assert_memory_equal(host + p->offset, before + p->offset, sizeof(float) * p->numel);
    }
    printf("# BERT: %d tensors loaded; DeiT: %d (pos_embed 197 -> %d rows)\n", bert.loaded, vit.loaded,
           1 + config_num_patches(&cfg));
    safetensors_close(b);
    safetensors_close(v);
    free(host);
    free(before);
    albef_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_remaps_of_the_scripts),
        cmocka_unit_test(test_name_classes),
        cmocka_unit_test(test_config_from_shapes),
        cmocka_unit_test(test_init_from_bert_and_deit),
    };
    return cmocka_run_group_tests_name("convert", tests, NULL, NULL);
}
