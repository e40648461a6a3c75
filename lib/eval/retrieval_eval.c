/* The retrieval evaluation of a test file, end to end (eval/retrieval.h). */
#include "eval/retrieval.h"

#include "io/image.h"
#include "io/manifest.h"
#include "text/caption.h"
#include "text/tokenizer.h"
#include "vision/transform.h"

#include <stdlib.h>
#include <string.h>

int retrieval_evaluate(albef_ctx *ctx, const bert_tokenizer *tok, const manifest *m,
                       const retrieval_eval_options *o, retrieval_metrics *out)
{
    int n_img = (int)manifest_count(m), n_txt = (int)manifest_text_total(m), L = o->max_tokens;
    int R = albef_image_res(ctx), T = albef_image_tokens(ctx), Cv = albef_vision_width(ctx);
    int H = albef_text_width(ctx), E = albef_embed_dim(ctx), batch = o->batch;
    if (!n_img || !n_txt)
        return albef_error(ALBEF_ERR_INVALID, "retrieval: the test set has no images or no captions");
    if (batch <= 0 || L <= 0)
        return albef_error(ALBEF_ERR_INVALID, "retrieval: batch and max_tokens must be positive");
    float *img_feat = malloc(sizeof(float) * (size_t)n_img * E);
    float *img_tok = malloc(sizeof(float) * (size_t)n_img * T * Cv);
    float *txt_feat = malloc(sizeof(float) * (size_t)n_txt * E);
    float *txt_tok = malloc(sizeof(float) * (size_t)n_txt * L * H);
    float *pixels = malloc(sizeof(float) * (size_t)batch * 3 * R * R);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n_txt * L);
    int32_t *mask = malloc(sizeof(int32_t) * (size_t)n_txt * L);
    int32_t *lengths = malloc(sizeof(int32_t) * (size_t)n_txt);
    char **texts = calloc((size_t)n_txt, sizeof(char *));
    size_t *first = malloc(sizeof(size_t) * (size_t)n_img);
    size_t *count = malloc(sizeof(size_t) * (size_t)n_img);
    size_t *owner = malloc(sizeof(size_t) * (size_t)n_txt);
    float *s_i2t = malloc(sizeof(float) * (size_t)n_img * n_txt);
    float *s_t2i = malloc(sizeof(float) * (size_t)n_img * n_txt);
    int rc = ALBEF_OK;
    if (!img_feat || !img_tok || !txt_feat || !txt_tok || !pixels || !ids || !mask || !lengths || !texts || !first ||
        !count || !owner || !s_i2t || !s_t2i) {
        rc = albef_error(ALBEF_ERR_NOMEM, "out of memory for %d images and %d texts", n_img, n_txt);
        goto done;
    }
    /* texts: pre_caption, then padded and truncated to max_tokens */
    for (int t = 0; t < n_txt && !rc; t++) {
        const char *c = manifest_text_by_id(m, (size_t)t);
        rc = pre_caption_alloc(c, strlen(c), o->max_words, &texts[t], NULL);
        owner[t] = manifest_text_item(m, (size_t)t);
    }
    for (int i = 0; i < n_img; i++) {
        first[i] = manifest_text_first(m, (size_t)i);
        count[i] = manifest_text_count(m, (size_t)i);
    }
    bert_encode_options eo = bert_encode_options_default();
    eo.padding = BERT_PADDING_MAX_LENGTH;
    eo.truncation = 1;
    eo.max_length = (size_t)L;
    size_t len = 0;
    rc = rc ? rc
            : bert_tokenizer_encode_batch(tok, (const char *const *)texts, NULL, (size_t)n_txt, &eo, (size_t)L, ids,
                                          mask, lengths, &len);
    for (int t = 0; !rc && t < n_txt * L; t++)
        if (ids[t] >= albef_vocab_size(ctx))
            rc = albef_error(ALBEF_ERR_INVALID, "the vocabulary has more tokens than the model (%d)",
                             albef_vocab_size(ctx));
    if (rc)
        goto done;
    /* images: decoded, square-resized (BICUBIC), normalised, in batches */
    transform_params tp = transform_params_test(R);
    char path[4096];
    for (int i = 0; i < n_img && !rc; i += batch) {
        int b = n_img - i < batch ? n_img - i : batch;
        for (int j = 0; j < b && !rc; j++) {
            image_u8 img = {0};
            rc = manifest_join_path(path, sizeof path, o->image_root, manifest_image(m, (size_t)(i + j)));
            rc = rc ? rc : image_load(path, &img);
            rc = rc ? rc : transform_apply(&tp, &img, NULL, pixels + (size_t)j * 3 * R * R);
            image_free(&img);
        }
        rc = rc ? rc : albef_embed_images(ctx, pixels, b, img_feat + (size_t)i * E, img_tok + (size_t)i * T * Cv);
        if (o->progress)
            o->progress((size_t)(i + b), (size_t)n_img, o->progress_user);
    }
    rc = rc ? rc : albef_embed_texts(ctx, ids, mask, n_txt, L, txt_feat, txt_tok);
    rc = rc ? rc
            : retrieval_scores(ctx, &o->rank, img_feat, img_tok, n_img, txt_feat, txt_tok, mask, n_txt, L, s_i2t,
                               s_t2i);
    rc = rc ? rc : retrieval_metrics_compute(s_i2t, s_t2i, n_img, n_txt, first, count, owner, out);
done:
    for (int t = 0; texts && t < n_txt; t++)
        free(texts[t]);
    free(texts), free(img_feat), free(img_tok), free(txt_feat), free(txt_tok), free(pixels), free(ids), free(mask),
        free(lengths), free(first), free(count), free(owner), free(s_i2t), free(s_t2i);
    return rc;
}
