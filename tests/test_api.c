/* The public API (albef.h) against the reference golden set: features,
 * ITM logits and MLM logits through albef_load / albef_embed_* / albef_*_logits. */
#include "albef.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "scenario.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR "testdata/reference/small/"

static float *golden(safetensors_file *st, const char *name, size_t *n)
{
    const safetensors_tensor *t = safetensors_find(st, name);
    assert_non_null(t);
    float *v = malloc(sizeof(float) * t->numel);
    assert_ok(safetensors_tensor_to_f32(st, t, v));
    if (n)
        *n = t->numel;
    return v;
}

static void test_api_matches_reference(void **state)
{
    (void)state;
    albef_params p = albef_params_default();
    p.max_batch = 2; /* exercise the chunking: the golden batch is 3 */
    albef_ctx *ctx;
    assert_ok(albef_load(DIR "weights.safetensors", &p, &ctx));
    assert_int_equal(albef_image_res(ctx), 32);
    assert_int_equal(albef_image_tokens(ctx), 5);
    assert_true(albef_bytes_per_image(ctx) > 0);
    assert_float_equal(albef_temp(ctx), 0.07f, 1e-7);

    albef_config cfg;
    assert_ok(config_load(DIR "config.json", &cfg));
    scenario_inputs in;
    assert_ok(scenario_load_inputs(DIR "inputs.safetensors", &cfg, &in));
    int B = in.B, L = in.L, E = albef_embed_dim(ctx), T = albef_image_tokens(ctx), H = albef_text_width(ctx);
    int Cv = albef_vision_width(ctx), V = albef_vocab_size(ctx);
    int32_t *mask = malloc(sizeof(int32_t) * B * L);
    for (int i = 0; i < B * L; i++)
        mask[i] = in.mask_add[i] == 0.0f;

    float *img_feat = malloc(sizeof(float) * B * E), *img_tok = malloc(sizeof(float) * B * T * Cv);
    float *txt_feat = malloc(sizeof(float) * B * E), *txt_tok = malloc(sizeof(float) * B * L * H);
    assert_ok(albef_embed_images(ctx, in.image, B, img_feat, img_tok));
    assert_ok(albef_embed_texts(ctx, in.ids, mask, B, L, txt_feat, txt_tok));

    safetensors_file *out;
    assert_ok(safetensors_open(DIR "outputs.safetensors", &out));
    float *g_img = golden(out, "image_feat", NULL), *g_txt = golden(out, "text_feat", NULL);
    float *g_vit = golden(out, "vit_out", NULL), *g_text = golden(out, "text_out", NULL);
    assert_close_f32(img_feat, g_img, (size_t)B * E, 1e-6, 1e-5, "image_feat");
    assert_close_f32(txt_feat, g_txt, (size_t)B * E, 1e-6, 1e-5, "text_feat");
    assert_close_f32(img_tok, g_vit, (size_t)B * T * Cv, 1e-5, 1e-5, "image tokens");
    assert_close_f32(txt_tok, g_text, (size_t)B * L * H, 1e-5, 1e-5, "text tokens");

    /* cosine similarity; the golden sim_i2t is divided by temp */
    float *sim = malloc(sizeof(float) * B * B), *g_sim = golden(out, "sim_i2t", NULL);
    albef_itc_similarity(img_feat, B, txt_feat, B, E, sim);
    for (int i = 0; i < B * B; i++)
        g_sim[i] *= 0.07f;
    assert_close_f32(sim, g_sim, (size_t)B * B, 1e-6, 1e-5, "cosine similarity");

    /* ITM: the golden's first B rows are the matching pairs */
    float *logits = malloc(sizeof(float) * B * 2), *g_itm = golden(out, "itm_logits", NULL);
    assert_ok(albef_itm_logits(ctx, txt_tok, mask, B, L, img_tok, logits));
    assert_close_f32(logits, g_itm, (size_t)B * 2, 1e-5, 1e-5, "itm logits");

    /* one image against every text, keys/values shared: the same logits as
     * the image repeated (the fast re-ranking path of retrieval) */
    float *rep = malloc(sizeof(float) * (size_t)B * T * Cv), *l_rep = malloc(sizeof(float) * B * 2);
    float *l_one = malloc(sizeof(float) * B * 2);
    for (int b = 0; b < B; b++)
        memcpy(rep + (size_t)b * T * Cv, img_tok + (size_t)1 * T * Cv, sizeof(float) * (size_t)T * Cv);
    assert_ok(albef_itm_logits(ctx, txt_tok, mask, B, L, rep, l_rep));
    assert_ok(albef_itm_logits_one_image(ctx, txt_tok, mask, B, L, img_tok + (size_t)1 * T * Cv, l_one));
    assert_close_f32(l_one, l_rep, (size_t)B * 2, 1e-6, 1e-5, "itm logits, shared image");
    free(rep), free(l_rep), free(l_one);

    /* MLM: compare the labelled rows */
    float *mlm = malloc(sizeof(float) * B * L * V), *g_mlm = golden(out, "mlm_logits", NULL);
    assert_ok(albef_mlm_logits(ctx, in.mlm_ids, mask, B, L, img_tok, mlm));
    for (int r = 0; r < in.n_masked; r++)
        assert_close_f32(mlm + (size_t)in.masked_rows[r] * V, g_mlm + (size_t)r * V, (size_t)V, 1e-5, 1e-5,
                         "mlm logits");

    /* bad input is refused, not crashed on */
    int32_t bad_ids[2] = {2, 100000};
    assert_error(albef_embed_texts(ctx, bad_ids, NULL, 1, 2, txt_feat, NULL), ALBEF_ERR_INVALID, "vocabulary");
    assert_error(albef_embed_texts(ctx, in.ids, NULL, 1, 1000, txt_feat, NULL), ALBEF_ERR_INVALID, "text length");

    safetensors_close(out);
    free(mask), free(img_feat), free(img_tok), free(txt_feat), free(txt_tok), free(g_img), free(g_txt), free(g_vit),
        free(g_text), free(sim), free(g_sim), free(logits), free(g_itm), free(mlm), free(g_mlm);
    scenario_free_inputs(&in);
    albef_free(ctx);
}

static void test_load_errors(void **state)
{
    (void)state;
    albef_ctx *ctx;
    assert_error(albef_load("/nonexistent/model.safetensors", NULL, &ctx), ALBEF_ERR_IO, "model.safetensors");
    const char *junk = write_tmp_file("junk.safetensors", "not a checkpoint at all", 23);
    assert_error(albef_load(junk, NULL, &ctx), ALBEF_ERR_INVALID, "junk.safetensors");
    albef_params p = albef_params_default();
    p.device = "cuda";
    int rc = albef_load(DIR "weights.safetensors", &p, &ctx);
    if (rc == 0)
        albef_free(ctx);
    else
        assert_non_null(strstr(albef_errmsg(), "--device cuda"));
}

int main(void)
{
    albef_log_set_level(ALBEF_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_matches_reference),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}
