/* Image-text retrieval evaluation, ALBEF's protocol (spec 5.1).
 *
 * Rank by the raw cosine of the normalised ITC features; then, unless
 * ITC-only, re-rank each image's top-k texts and each text's top-k images
 * by the ITM "match" logit (column 1, no softmax, no ITC term), the rest of
 * the row scoring -100. Recall@K: an image counts when any of its captions
 * ranks below K; a text when its image does. */
#ifndef ALBEF_EVAL_RETRIEVAL_H
#define ALBEF_EVAL_RETRIEVAL_H

#include "albef.h"

#include <stddef.h>

typedef struct {
    double txt_r1, txt_r5, txt_r10, txt_r_mean; /* image -> text */
    double img_r1, img_r5, img_r10, img_r_mean; /* text -> image */
    double r_mean;
} retrieval_metrics;

/* score_i2t (n_img, n_txt), score_t2i (n_txt, n_img); the captions of image
 * i are texts img_first[i] .. img_first[i] + img_count[i] - 1 (the Karpathy
 * test files list them so); txt2img[t] is the image of text t. */
int retrieval_metrics_compute(const float *score_i2t, const float *score_t2i, int n_img, int n_txt,
                              const size_t *img_first, const size_t *img_count, const size_t *txt2img,
                              retrieval_metrics *out);

/* What the ITM re-ranking did: the pairs the protocol asks for (k per
 * image and k per text), the distinct pairs scored (a pair asked for by
 * both directions is scored once) and the images fused with their
 * candidates (one call each, keys/values computed once per layer). */
typedef struct {
    size_t pairs_asked, itm_pairs, images_fused;
} retrieval_stats;

typedef struct {
    int k_test;    /* candidates re-ranked per query (ALBEF: 256 COCO, 128 Flickr) */
    int itc_only;  /* rank by the cosine alone */
    retrieval_stats *stats; /* filled when set */
    void (*progress)(size_t done, size_t total, void *user);
    void *progress_user;
} retrieval_options;

/* Fills score_i2t / score_t2i from embedded images and texts:
 * image_feat (n_img, E), image_tokens (n_img, T, Cv), text_feat (n_txt, E),
 * text_tokens (n_txt, len, H), text_mask (n_txt, len). */
int retrieval_scores(albef_ctx *ctx, const retrieval_options *opt, const float *image_feat, const float *image_tokens,
                     int n_img, const float *text_feat, const float *text_tokens, const int32_t *text_mask, int n_txt,
                     int len, float *score_i2t, float *score_t2i);

/* The whole evaluation of a retrieval test file (ALBEF's
 * [{"image", "caption": [texts]}] format): captions through pre_caption and
 * the tokenizer (padded to max_tokens), images decoded and resized for the
 * test transform in batches, embedded, scored and ranked. */
struct bert_tokenizer;
struct manifest;
typedef struct {
    const char *image_root;  /* relative image paths are under it (NULL: as written) */
    int batch;               /* images per embedding pass (the context's max_batch at most) */
    int max_words;           /* pre_caption's limit (ALBEF: 30) */
    int max_tokens;          /* padded text length (ALBEF: 30 at test time) */
    retrieval_options rank;
    /* progress of the image pass, when set */
    void (*progress)(size_t done, size_t total, void *user);
    void *progress_user;
} retrieval_eval_options;

int retrieval_evaluate(albef_ctx *ctx, const struct bert_tokenizer *tok, const struct manifest *m,
                       const retrieval_eval_options *opt, retrieval_metrics *out);

#endif
