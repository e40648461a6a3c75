/* Model pieces checked outside the reference scenario: the position
 * embedding resize against PyTorch's F.interpolate, the NLVR2 layout (tied
 * cross-attention keys/values, images alternating by layer), the answer
 * decoder layout (causal, every layer cross-attending), and the inference
 * passes (buffers reused across layers) against the training passes. */
#include "albef.h"
#include "io/safetensors.h"
#include "model/bert.h"
#include "model/pos_embed.h"
#include "model/vit.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_pos_embed_matches_pytorch(void **state)
{
    (void)state;
    safetensors_file *st;
    assert_ok(safetensors_open("testdata/pos_embed/golden.safetensors", &st));
    const int C = 12;
    for (int src = 4; src <= 5; src++) {
        char name[32];
        snprintf(name, sizeof name, "src%d", src);
        float in[(1 + 25) * 12];
        assert_ok(safetensors_read_f32(st, name, in, (size_t)(1 + src * src) * C));
        const int dsts[4] = {3, 4, 6, 7};
        for (int k = 0; k < 4; k++) {
            int dst = dsts[k];
            float out[(1 + 49) * 12], ref[(1 + 49) * 12];
            snprintf(name, sizeof name, "src%d_to%d", src, dst);
            assert_ok(safetensors_read_f32(st, name, ref, (size_t)(1 + dst * dst) * C));
            assert_ok(pos_embed_interpolate(in, 1 + src * src, out, 1 + dst * dst, C));
            assert_close_f32(out, ref, (size_t)(1 + dst * dst) * C, 1e-5, 1e-5, name);
        }
    }
    float x[12 * 10];
    assert_error(pos_embed_interpolate(x, 11, x, 17, 12), ALBEF_ERR_INVALID, "square");
    safetensors_close(st);
}

static bert_config small_bert(int layers, int fusion)
{
    bert_config c = {.vocab_size = 20, .hidden_size = 8, .num_hidden_layers = layers, .num_attention_heads = 2,
                     .intermediate_size = 16, .max_position_embeddings = 8, .type_vocab_size = 2,
                     .fusion_layer = fusion, .encoder_width = 8, .layer_norm_eps = 1e-12f};
    return c;
}

static void test_nlvr_layout(void **state)
{
    (void)state;
    /* 18 layers as NLVR2: layers 6..17 fuse, each pair shares key/value */
    bert_config c = small_bert(18, 6);
    param_set ps;
    params_init(&ps);
    bert_model m;
    bert_options opt = {.prefix = "text_encoder", .tie_cross_kv = 1, .with_grads = 0};
    assert_ok(bert_init(&m, &c, &ps, &opt));
    assert_ok(params_alloc(&ps, backend_cpu(), 0));
    int a = params_index(&ps, "text_encoder.encoder.layer.6.crossattention.self.key.weight");
    int b = params_index(&ps, "text_encoder.encoder.layer.7.crossattention.self.key.weight");
    int q6 = params_index(&ps, "text_encoder.encoder.layer.6.crossattention.self.query.weight");
    int q7 = params_index(&ps, "text_encoder.encoder.layer.7.crossattention.self.query.weight");
    assert_true(a >= 0 && b >= 0 && q6 >= 0 && q7 >= 0);
    assert_int_equal(ps.items[b].alias_of, a);   /* key/value tied within the pair */
    assert_int_equal(ps.items[q7].alias_of, -1); /* query not */
    assert_ptr_equal(m.w.layers[6].cross.value.weight.data, m.w.layers[7].cross.value.weight.data);
    assert_ptr_not_equal(m.w.layers[8].cross.value.weight.data, m.w.layers[7].cross.value.weight.data);
    /* a forward with two images: fusion layers alternate image 0, image 1 */
    for (size_t i = 0; i < ps.numel; i++)
        ps.values[i] = 0.1f * (float)((i * 2654435761u) % 1000) / 1000.0f - 0.05f;
    int32_t ids[4] = {2, 5, 6, 7};
    float img0[1 * 3 * 8], img1[1 * 3 * 8];
    for (int i = 0; i < 24; i++)
        img0[i] = 0.1f * (float)i, img1[i] = -0.2f * (float)i;
    arena ar;
    arena_init_measuring(&ar);
    bert_acts acts;
    assert_ok(bert_acts_init(&acts, &m));
    bert_inputs in = {.mode = BERT_MULTI_MODAL,
                      .ids = tensor_make(ids, DTYPE_I32, 2, TENSOR_SHAPE(1, 4)),
                      .enc = {tensor_f32(img0, 1, 3, 8), tensor_f32(img1, 1, 3, 8)},
                      .n_enc = 2};
    float mask[4] = {0};
    in.text_mask = tensor_f32(mask, 1, 4);
    bert_forward(backend_null(), &m, &acts, &ar, &in, NULL);
    size_t need = ar.peak;
    assert_ok(arena_init(&ar, backend_cpu(), need));
    bert_forward(backend_cpu(), &m, &acts, &ar, &in, NULL);
    for (int i = 6; i < 18; i++)
        assert_ptr_equal(acts.layers[i].enc.data, (i - 6) % 2 ? (void *)img1 : (void *)img0);
    arena_free(&ar);
    bert_acts_free(&acts);
    bert_free(&m);
    params_free(&ps);
}

static void test_decoder_layout(void **state)
{
    (void)state;
    /* the VQA answer decoder: 6 layers, fusion_layer 0, causal, MLM head */
    bert_config c = small_bert(6, 0);
    param_set ps;
    params_init(&ps);
    bert_model m;
    bert_options opt = {.prefix = "text_decoder", .bert_prefix = 1, .mlm_head = 1, .causal = 1};
    assert_ok(bert_init(&m, &c, &ps, &opt));
    assert_true(params_index(&ps, "text_decoder.bert.encoder.layer.0.crossattention.self.query.weight") >= 0);
    assert_true(params_index(&ps, "text_decoder.cls.predictions.decoder.weight") >= 0);
    assert_int_equal(m.causal, 1);
    bert_free(&m);
    params_free(&ps);
}

/* Runs a pass on a fresh arena sized on the null back end. */
typedef void (*pass_fn)(backend *be, arena *ar, void *ctx);
static void run_sized(pass_fn pass, void *ctx, arena *ar)
{
    arena_init_measuring(ar);
    pass(backend_null(), ar, ctx);
    assert_ok(arena_init(ar, backend_cpu(), ar->peak));
    pass(backend_cpu(), ar, ctx);
}

static void fill_values(float *v, size_t n, unsigned salt)
{
    for (size_t i = 0; i < n; i++)
        v[i] = 0.2f * (float)(((i + salt) * 2654435761u) % 1000) / 1000.0f - 0.1f;
}

typedef struct {
    vit_model *m;
    vit_acts *a;
    tensor images;
} vit_pass;

static void vit_run(backend *be, arena *ar, void *ctx)
{
    vit_pass *p = ctx;
    vit_forward(be, p->m, p->a, ar, p->images);
}

typedef struct {
    bert_model *m;
    bert_acts *a;
    bert_inputs *in;
} bert_pass;

static void bert_run(backend *be, arena *ar, void *ctx)
{
    bert_pass *p = ctx;
    bert_forward(be, p->m, p->a, ar, p->in, NULL);
}

/* Inference passes reuse buffers across layers (the residual stream, ViT's
 * norm1 outputs written by the block before): the same bits as a training
 * pass, which keeps every layer's. */
static void test_inference_passes_match_training_passes(void **state)
{
    (void)state;
    albef_config cfg;
    assert_ok(config_load("testdata/reference/small/config.json", &cfg));
    param_set ps;
    params_init(&ps);
    vit_model vm;
    bert_model bm;
    bert_config bc = small_bert(4, 2);
    bert_options bo = {.prefix = "text_encoder"};
    assert_ok(vit_init(&vm, &cfg, &ps, "visual_encoder", 0));
    assert_ok(bert_init(&bm, &bc, &ps, &bo));
    assert_ok(params_alloc(&ps, backend_cpu(), 0));
    fill_values(ps.values, ps.numel, 7);
    int64_t B = 2, R = cfg.image_res, T = vm.num_patches + 1, C = vm.width, L = 5;
    float *images = malloc(sizeof(float) * (size_t)(B * 3 * R * R)), *enc = malloc(sizeof(float) * (size_t)(B * 3 * 8));
    fill_values(images, (size_t)(B * 3 * R * R), 11);
    fill_values(enc, (size_t)(B * 3 * 8), 13);
    int32_t ids[10] = {1, 5, 6, 7, 2, 1, 9, 3, 2, 0};
    float mask[10] = {0, 0, 0, 0, 0, 0, 0, 0, 0, -10000};
    bert_inputs in = {.mode = BERT_MULTI_MODAL,
                      .ids = tensor_make(ids, DTYPE_I32, 2, TENSOR_SHAPE(B, L)),
                      .text_mask = tensor_f32(mask, B, L),
                      .enc = {tensor_f32(enc, B, 3, 8)},
                      .n_enc = 1};
    float *out[2][2];
    for (int inference = 0; inference < 2; inference++) {
        vit_acts va;
        bert_acts ba;
        assert_ok(vit_acts_init(&va, &vm));
        assert_ok(bert_acts_init(&ba, &bm));
        va.inference = ba.inference = inference;
        arena ar;
        vit_pass vp = {&vm, &va, tensor_f32(images, B, 3, R, R)};
        run_sized(vit_run, &vp, &ar);
        out[0][inference] = malloc(tensor_nbytes(va.out));
        memcpy(out[0][inference], va.out.data, tensor_nbytes(va.out));
        arena_free(&ar);
        bert_pass bp = {&bm, &ba, &in};
        run_sized(bert_run, &bp, &ar);
        out[1][inference] = malloc(tensor_nbytes(ba.out));
        memcpy(out[1][inference], ba.out.data, tensor_nbytes(ba.out));
        arena_free(&ar);
        vit_acts_free(&va);
        bert_acts_free(&ba);
    }
    assert_memory_equal(out[0][1], out[0][0], sizeof(float) * (size_t)(B * T * C));
    assert_memory_equal(out[1][1], out[1][0], sizeof(float) * (size_t)(B * L * bc.hidden_size));
    for (int i = 0; i < 2; i++)
        free(out[i][0]), free(out[i][1]);
    free(images), free(enc);
    vit_free(&vm);
    bert_free(&bm);
    params_free(&ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pos_embed_matches_pytorch),
        cmocka_unit_test(test_nlvr_layout),
        cmocka_unit_test(test_decoder_layout),
        cmocka_unit_test(test_inference_passes_match_training_passes),
    };
    return cmocka_run_group_tests_name("model_layouts", tests, NULL, NULL);
}
