/* End to end on real photos: the seven photos of ../shared/data/real-images
 * and their fourteen captions through our whole evaluation pipeline (decode,
 * Pillow BICUBIC square resize, ToTensor, CLIP Normalize; pre_caption(30),
 * WordPiece with padding max_length 30 and truncation; ViT, text encoder,
 * ITC similarity and the ITM head on every pair) against Pillow, Hugging
 * Face's tokenizer and the PyTorch reference, as written by
 * scripts/reference/make_photo_golden.py into testdata/reference/photos/.
 *
 * The golden also holds the reference's pixels and token ids, so the model is
 * checked on those alone first (that test needs no photos): when the end-to-end
 * numbers drift, the pixel and token tests say whether preprocessing or the
 * model is to blame. */
#include "albef.h"
#include "io/image.h"
#include "io/manifest.h"
#include "io/safetensors.h"
#include "text/caption.h"
#include "text/tokenizer.h"
#include "vision/transform.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR "testdata/reference/photos/"
#define TEXT_LENGTH 30 /* ALBEF's retrieval evaluation: max_length 30 */
#define MAX_WORDS 30   /* pre_caption */
/* The bar, per tensor: max |ours - reference| / max |reference|. */
#define MODEL_REL_BOUND 1e-4
/* Decoding and resizing are bit-exact with Pillow, and ToTensor/Normalize are
 * computed as torchvision does, so the floats should be equal. */
#define PIXEL_ABS_BOUND 1e-6

typedef struct {
    albef_ctx *ctx;
    safetensors_file *golden;
    int n_img, n_txt, R, E, T, Cv, H;
    manifest *photos;  /* captions.json; NULL when the photos are absent */
} photo_fixture;

static photo_fixture fx;

static float *golden_f32(const char *name, size_t n)
{
    float *v = malloc(sizeof(float) * n);
    assert_non_null(v);
    assert_ok(safetensors_read_f32(fx.golden, name, v, n));
    return v;
}

static int32_t *golden_i64_as_i32(const char *name, size_t n)
{
    int64_t *raw = malloc(sizeof(int64_t) * n);
    int32_t *v = malloc(sizeof(int32_t) * n);
    assert_non_null(raw);
    assert_non_null(v);
    assert_ok(safetensors_read_raw(fx.golden, name, DTYPE_I64, raw, n));
    for (size_t i = 0; i < n; i++)
        v[i] = (int32_t)raw[i];
    free(raw);
    return v;
}

/* Per-tensor error as the reference README measures it; prints it always
 * and fails with the worst element when it exceeds `bound`. */
static double compare(const char *what, const float *got, const float *ref, size_t n, double bound)
{
    double max_abs = 0, scale = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (!(d <= max_abs)) { /* a NaN becomes the worst element */
            max_abs = d;
            worst = i;
        }
        if (fabs((double)ref[i]) > scale)
            scale = fabs((double)ref[i]);
    }
    double rel = scale > 0 ? max_abs / scale : max_abs;
    printf("# %-34s max abs %.3g, max abs / max |ref| %.3g (bound %.0e)\n", what, max_abs, rel, bound);
    if (!(rel <= bound))
        fail_msg("%s: max abs %.3g over max |ref| %.3g = %.3g > %.0e; worst [%zu] got %.9g expected %.9g", what,
                 max_abs, scale, rel, bound, worst, got[worst], ref[worst]);
    return rel;
}

static int setup(void **state)
{
    (void)state;
    albef_params p = albef_params_default();
    p.max_batch = 16;
    if (albef_load(DIR "weights.safetensors", &p, &fx.ctx) != 0 ||
        safetensors_open(DIR "outputs.safetensors", &fx.golden) != 0) {
        fprintf(stderr, "# %s\n", albef_errmsg());
        return -1;
    }
    const safetensors_tensor *px = safetensors_find(fx.golden, "pixels");
    const safetensors_tensor *ids = safetensors_find(fx.golden, "input_ids");
    if (!px || px->ndim != 4 || !ids || ids->ndim != 2 || ids->shape[1] != TEXT_LENGTH) {
        fprintf(stderr, "# %soutputs.safetensors: 'pixels' (n, 3, R, R) or 'input_ids' (n, %d) missing\n", DIR,
                TEXT_LENGTH);
        return -1;
    }
    fx.n_img = (int)px->shape[0];
    fx.R = (int)px->shape[2];
    fx.n_txt = (int)ids->shape[0];
    fx.E = albef_embed_dim(fx.ctx);
    fx.T = albef_image_tokens(fx.ctx);
    fx.Cv = albef_vision_width(fx.ctx);
    fx.H = albef_text_width(fx.ctx);

    const char *captions = shared_data_path("real-images/captions.json");
    FILE *f = fopen(captions, "rb");
    if (!f) {
        /* First, so that the test runner quotes it as the reason for the skips. */
        printf("# skipped: %s not found; only the model is checked\n", captions);
        return 0;
    }
    fclose(f);
    if (manifest_load(&fx.photos, MANIFEST_RETRIEVAL_EVAL, &captions, 1) != 0) {
        fprintf(stderr, "# %s\n", albef_errmsg());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    manifest_free(fx.photos);
    safetensors_close(fx.golden);
    albef_free(fx.ctx);
    return 0;
}

#define NEED_PHOTOS()                                                                                      \
    do {                                                                                                   \
        if (!fx.photos)                                                                                    \
            skip();                                                                                        \
    } while (0)

/* image_feat, text_feat, sim and ITM logits on every (image, caption) pair
 * from the given pixels and token ids, checked against the golden. `label`
 * says which inputs were used. */
static void check_model(const char *label, const float *pixels, const int32_t *ids, const int32_t *mask)
{
    int ni = fx.n_img, nt = fx.n_txt, L = TEXT_LENGTH, E = fx.E, T = fx.T, Cv = fx.Cv, H = fx.H;
    size_t pairs = (size_t)ni * nt;
    float *img_feat = malloc(sizeof(float) * ni * E), *img_tok = malloc(sizeof(float) * ni * T * Cv);
    float *txt_feat = malloc(sizeof(float) * nt * E), *txt_tok = malloc(sizeof(float) * nt * L * H);
    float *sim = malloc(sizeof(float) * ni * nt), *logits = malloc(sizeof(float) * pairs * 2);
    float *pair_txt = malloc(sizeof(float) * pairs * L * H), *pair_img = malloc(sizeof(float) * pairs * T * Cv);
    int32_t *pair_mask = malloc(sizeof(int32_t) * pairs * L);
    assert_true(img_feat && img_tok && txt_feat && txt_tok && sim && logits && pair_txt && pair_img && pair_mask);

    assert_ok(albef_embed_images(fx.ctx, pixels, ni, img_feat, img_tok));
    assert_ok(albef_embed_texts(fx.ctx, ids, mask, nt, L, txt_feat, txt_tok));
    albef_itc_similarity(img_feat, ni, txt_feat, nt, E, sim);
    /* Pairs image-major, as the golden: row i * nt + t is (image i, caption t). */
    for (int i = 0; i < ni; i++)
        for (int t = 0; t < nt; t++) {
            size_t r = (size_t)i * nt + t;
            memcpy(pair_txt + r * L * H, txt_tok + (size_t)t * L * H, sizeof(float) * L * H);
            memcpy(pair_mask + r * L, mask + (size_t)t * L, sizeof(int32_t) * L);
            memcpy(pair_img + r * T * Cv, img_tok + (size_t)i * T * Cv, sizeof(float) * T * Cv);
        }
    assert_ok(albef_itm_logits(fx.ctx, pair_txt, pair_mask, (int)pairs, L, pair_img, logits));

    struct {
        const char *name;
        const float *got;
        size_t n;
    } outputs[] = {
        {"image_tokens", img_tok, (size_t)ni * T * Cv},
        {"text_tokens", txt_tok, (size_t)nt * L * H},
        {"image_feat", img_feat, (size_t)ni * E},
        {"text_feat", txt_feat, (size_t)nt * E},
        {"sim", sim, (size_t)ni * nt},
        {"itm_logits", logits, pairs * 2},
    };
    for (size_t k = 0; k < sizeof outputs / sizeof outputs[0]; k++) {
        float *ref = golden_f32(outputs[k].name, outputs[k].n);
        char what[96];
        snprintf(what, sizeof what, "%s, %s:", label, outputs[k].name);
        compare(what, outputs[k].got, ref, outputs[k].n, MODEL_REL_BOUND);
        free(ref);
    }
    free(img_feat), free(img_tok), free(txt_feat), free(txt_tok), free(sim), free(logits), free(pair_txt),
        free(pair_img), free(pair_mask);
}

static void test_checkpoint_shapes(void **state)
{
    (void)state;
    assert_int_equal(albef_image_res(fx.ctx), fx.R);
    assert_int_equal(albef_image_tokens(fx.ctx), 1 + (fx.R / 16) * (fx.R / 16));
    bert_tokenizer *tok;
    assert_ok(bert_tokenizer_load(DIR "vocab.txt", &tok));
    assert_int_equal(bert_tokenizer_vocab_size(tok), albef_vocab_size(fx.ctx));
    bert_tokenizer_free(tok);
}

/* The model alone, on the reference's own pixels and ids. Needs no photos. */
static void test_model_on_reference_inputs(void **state)
{
    (void)state;
    size_t n_px = (size_t)fx.n_img * 3 * fx.R * fx.R, n_ids = (size_t)fx.n_txt * TEXT_LENGTH;
    float *pixels = golden_f32("pixels", n_px);
    int32_t *ids = golden_i64_as_i32("input_ids", n_ids), *mask = golden_i64_as_i32("attention_mask", n_ids);
    check_model("reference inputs", pixels, ids, mask);
    free(pixels), free(ids), free(mask);
}

/* Photos -> image_load -> test transform equals PIL open/convert/resize,
 * ToTensor, Normalize. */
static void test_pixels_match_pillow(void **state)
{
    (void)state;
    NEED_PHOTOS();
    assert_int_equal(manifest_count(fx.photos), fx.n_img);
    size_t per = (size_t)3 * fx.R * fx.R;
    float *ours = malloc(sizeof(float) * per), *ref = golden_f32("pixels", per * fx.n_img);
    transform_params tp = transform_params_test(fx.R);
    for (int i = 0; i < fx.n_img; i++) {
        char path[1024];
        assert_ok(manifest_join_path(path, sizeof path, shared_data_path("real-images"), manifest_image(fx.photos, i)));
        image_u8 img;
        assert_ok(image_load(path, &img));
        assert_ok(transform_apply(&tp, &img, NULL, ours));
        size_t equal = 0;
        for (size_t k = 0; k < per; k++)
            equal += ours[k] == ref[(size_t)i * per + k];
        char what[96];
        snprintf(what, sizeof what, "pixels %s (%dx%d, %zu/%zu equal):", manifest_image(fx.photos, i), img.width,
                 img.height, equal, per);
        double max_abs = 0;
        for (size_t k = 0; k < per; k++)
            max_abs = fmax(max_abs, fabs((double)ours[k] - (double)ref[(size_t)i * per + k]));
        printf("# %-34s max abs %.3g (bound %.0e)\n", what, max_abs, PIXEL_ABS_BOUND);
        assert_close_f32(ours, ref + (size_t)i * per, per, PIXEL_ABS_BOUND, 0, manifest_image(fx.photos, i));
        image_free(&img);
    }
    free(ours), free(ref);
}

/* The captions through our pipeline: pre_caption(30), then the tokenizer with
 * padding max_length 30 and truncation. Fills out_ids/out_mask (n_txt, 30). */
static void tokenize_captions(int32_t *out_ids, int32_t *out_mask)
{
    bert_tokenizer *tok;
    assert_ok(bert_tokenizer_load(DIR "vocab.txt", &tok));
    size_t n = manifest_text_total(fx.photos);
    assert_int_equal(n, fx.n_txt);
    char **texts = calloc(n, sizeof *texts);
    assert_non_null(texts);
    for (size_t t = 0; t < n; t++) {
        const char *raw = manifest_text_by_id(fx.photos, t);
        assert_ok(pre_caption_alloc(raw, strlen(raw), MAX_WORDS, &texts[t], NULL));
    }
    bert_encode_options opt = {.padding = BERT_PADDING_MAX_LENGTH, .truncation = 1, .max_length = TEXT_LENGTH};
    bert_batch b;
    assert_ok(bert_tokenizer_encode_batch_alloc(tok, (const char *const *)texts, NULL, n, &opt, &b));
    assert_int_equal(b.length, TEXT_LENGTH);
    memcpy(out_ids, b.ids, sizeof(int32_t) * n * TEXT_LENGTH);
    memcpy(out_mask, b.mask, sizeof(int32_t) * n * TEXT_LENGTH);
    bert_batch_free(&b);
    for (size_t t = 0; t < n; t++)
        free(texts[t]);
    free(texts);
    bert_tokenizer_free(tok);
}

static void test_captions_tokenize_as_hugging_face(void **state)
{
    (void)state;
    NEED_PHOTOS();
    size_t n = (size_t)fx.n_txt * TEXT_LENGTH;
    int32_t *ids = malloc(sizeof(int32_t) * n), *mask = malloc(sizeof(int32_t) * n);
    int32_t *ref_ids = golden_i64_as_i32("input_ids", n), *ref_mask = golden_i64_as_i32("attention_mask", n);
    tokenize_captions(ids, mask);
    int truncated = 0;
    for (int t = 0; t < fx.n_txt; t++) {
        for (int k = 0; k < TEXT_LENGTH; k++) {
            size_t i = (size_t)t * TEXT_LENGTH + k;
            if (ids[i] != ref_ids[i] || mask[i] != ref_mask[i])
                fail_msg("caption %d ('%s'), token %d: id %d mask %d; Hugging Face id %d mask %d", t,
                         manifest_text_by_id(fx.photos, t), k, ids[i], mask[i], ref_ids[i], ref_mask[i]);
        }
        truncated += mask[(size_t)t * TEXT_LENGTH + TEXT_LENGTH - 1];
    }
    printf("# %d captions: ids and masks equal to Hugging Face's; %d fill all %d tokens\n", fx.n_txt, truncated,
           TEXT_LENGTH);
    free(ids), free(mask), free(ref_ids), free(ref_mask);
}

/* Everything from files: photos and captions.json in, scores out. */
static void test_photos_end_to_end(void **state)
{
    (void)state;
    NEED_PHOTOS();
    size_t per = (size_t)3 * fx.R * fx.R, n_ids = (size_t)fx.n_txt * TEXT_LENGTH;
    float *pixels = malloc(sizeof(float) * per * fx.n_img);
    int32_t *ids = malloc(sizeof(int32_t) * n_ids), *mask = malloc(sizeof(int32_t) * n_ids);
    assert_true(pixels && ids && mask);
    transform_params tp = transform_params_test(albef_image_res(fx.ctx));
    for (int i = 0; i < fx.n_img; i++) {
        char path[1024];
        assert_ok(manifest_join_path(path, sizeof path, shared_data_path("real-images"), manifest_image(fx.photos, i)));
        image_u8 img;
        assert_ok(image_load(path, &img));
        assert_ok(transform_apply(&tp, &img, NULL, pixels + (size_t)i * per));
        image_free(&img);
    }
    tokenize_captions(ids, mask);
    check_model("photos", pixels, ids, mask);
    free(pixels), free(ids), free(mask);
}

int main(void)
{
    albef_log_set_level(ALBEF_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_shapes),
        cmocka_unit_test(test_model_on_reference_inputs),
        cmocka_unit_test(test_pixels_match_pillow),
        cmocka_unit_test(test_captions_tokenize_as_hugging_face),
        cmocka_unit_test(test_photos_end_to_end),
    };
    return cmocka_run_group_tests_name("photos", tests, setup, teardown);
}
