/* albef: ALBEF (Align before Fuse) vision-language models in C.
 *
 * The public API used by the albef-* programs and by anyone embedding the
 * model: load a checkpoint, embed images and texts, score them.
 *
 *   albef_params p = albef_params_default();
 *   albef_ctx *ctx;
 *   if (albef_load("model.safetensors", &p, &ctx) != 0)
 *       fprintf(stderr, "%s\n", albef_errmsg());
 *   albef_embed_images(ctx, pixels, n, feats, NULL);
 *
 * Every function returns 0 or an error code (core/error.h) with a message
 * from albef_errmsg(). Arrays are row-major host memory; shapes are given
 * in the comments. A context is not thread-safe: use one per thread. */
#ifndef ALBEF_H
#define ALBEF_H

#define ALBEF_VERSION "0.1.0"

#include "core/error.h"
#include "core/log.h"

#include <stddef.h>
#include <stdint.h>

const char *albef_version(void);

typedef struct albef_ctx albef_ctx;

typedef struct {
    const char *device; /* "cpu" (default) or "cuda" */
    const char *config; /* preset or JSON path, for checkpoints without a "config" entry; NULL otherwise */
    int max_batch;      /* images, texts or pairs per internal pass (default 32) */
    int max_text_len;   /* longest token sequence accepted (default 40) */
} albef_params;

albef_params albef_params_default(void);

/* Loads a safetensors checkpoint with official ALBEF names (pre-training or
 * retrieval layout). The activation memory is sized here, once, and logged. */
int albef_load(const char *checkpoint, const albef_params *params, albef_ctx **out);
void albef_free(albef_ctx *ctx);

/* Shapes of this model. */
int albef_image_res(const albef_ctx *ctx);      /* R: images are (3, R, R) */
int albef_image_tokens(const albef_ctx *ctx);   /* T = 1 + (R / patch)^2 */
int albef_vision_width(const albef_ctx *ctx);   /* Cv */
int albef_text_width(const albef_ctx *ctx);     /* H */
int albef_embed_dim(const albef_ctx *ctx);      /* E */
int albef_vocab_size(const albef_ctx *ctx);     /* V */
float albef_temp(const albef_ctx *ctx);
/* Bytes of activation memory per image / per text / per ITM pair at the
 * given text length, for choosing batch sizes. */
size_t albef_bytes_per_image(const albef_ctx *ctx);

/* images (n, 3, R, R), normalised (CLIP mean/std) ->
 *   feat (n, E): L2-normalised vision_proj([CLS]), may be NULL;
 *   tokens (n, T, Cv): every ViT output token (for ITM), may be NULL. */
int albef_embed_images(albef_ctx *ctx, const float *images, int n, float *feat, float *tokens);

/* ids, mask (n, len) -> the text encoder (layers below fusion_layer):
 *   feat (n, E): L2-normalised text_proj([CLS]), may be NULL;
 *   tokens (n, len, H): the text-mode hidden states (for ITM), may be NULL. */
int albef_embed_texts(albef_ctx *ctx, const int32_t *ids, const int32_t *mask, int n, int len, float *feat,
                      float *tokens);

/* sim (n_img, n_txt) = img_feat (n_img, dim) . txt_feat (n_txt, dim)^T: the
 * raw cosine of normalised features (retrieval ranks by it). */
void albef_itc_similarity(const float *img_feat, int n_img, const float *txt_feat, int n_txt, int dim, float *sim);

/* ITM logits (n, 2) for n pairs: text tokens (n, len, H) with mask (n, len),
 * image tokens (n, T, Cv). Column 1 is "match". */
int albef_itm_logits(albef_ctx *ctx, const float *text_tokens, const int32_t *mask, int n, int len,
                     const float *image_tokens, float *logits);

/* The same for n texts against ONE image (T, Cv): the image's cross-attention
 * keys and values are computed once per layer for all n texts, which is
 * what re-ranking an image's candidate captions needs. */
int albef_itm_logits_one_image(albef_ctx *ctx, const float *text_tokens, const int32_t *mask, int n, int len,
                               const float *image_tokens, float *logits);

/* MLM logits (n, len, V): every layer on ids with cross-attention to the
 * image tokens (n, T, Cv), then the MLM head. Pre-training checkpoints only. */
int albef_mlm_logits(albef_ctx *ctx, const int32_t *ids, const int32_t *mask, int n, int len,
                     const float *image_tokens, float *logits);

#endif
