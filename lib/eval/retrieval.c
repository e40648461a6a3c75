#include "eval/retrieval.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    float score;
    int index;
} scored;

/* descending by score, ties by ascending index (a fixed, documented order) */
static int by_score_desc(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->index - y->index;
}

/* position of each index in the descending order of row (n) */
static void rank_positions(const float *row, int n, scored *tmp, int *pos)
{
    for (int j = 0; j < n; j++)
        tmp[j] = (scored){row[j], j};
    qsort(tmp, (size_t)n, sizeof *tmp, by_score_desc);
    for (int r = 0; r < n; r++)
        pos[tmp[r].index] = r;
}

int retrieval_metrics_compute(const float *score_i2t, const float *score_t2i, int n_img, int n_txt,
                              const size_t *img_first, const size_t *img_count, const size_t *txt2img,
                              retrieval_metrics *out)
{
    if (n_img <= 0 || n_txt <= 0)
        return albef_error(ALBEF_ERR_INVALID, "retrieval: no images or no texts");
    int n = n_img > n_txt ? n_img : n_txt;
    scored *tmp = malloc(sizeof *tmp * (size_t)n);
    int *pos = malloc(sizeof *pos * (size_t)n);
    if (!tmp || !pos) {
        free(tmp), free(pos);
        return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    }
    int i2t[3] = {0}, t2i[3] = {0};
    const int ks[3] = {1, 5, 10};
    for (int i = 0; i < n_img; i++) {
        rank_positions(score_i2t + (size_t)i * n_txt, n_txt, tmp, pos);
        int best = n_txt;
        for (size_t c = 0; c < img_count[i]; c++) {
            int r = pos[img_first[i] + c];
            best = r < best ? r : best;
        }
        for (int k = 0; k < 3; k++)
            i2t[k] += best < ks[k];
    }
    for (int t = 0; t < n_txt; t++) {
        rank_positions(score_t2i + (size_t)t * n_img, n_img, tmp, pos);
        int r = pos[txt2img[t]];
        for (int k = 0; k < 3; k++)
            t2i[k] += r < ks[k];
    }
    free(tmp), free(pos);
    out->txt_r1 = 100.0 * i2t[0] / n_img;
    out->txt_r5 = 100.0 * i2t[1] / n_img;
    out->txt_r10 = 100.0 * i2t[2] / n_img;
    out->img_r1 = 100.0 * t2i[0] / n_txt;
    out->img_r5 = 100.0 * t2i[1] / n_txt;
    out->img_r10 = 100.0 * t2i[2] / n_txt;
    out->txt_r_mean = (out->txt_r1 + out->txt_r5 + out->txt_r10) / 3;
    out->img_r_mean = (out->img_r1 + out->img_r5 + out->img_r10) / 3;
    out->r_mean = (out->txt_r_mean + out->img_r_mean) / 2;
    return ALBEF_OK;
}

/* indices of the k largest entries of row (n) */
static void top_k(const float *row, int n, int k, scored *tmp, int *out)
{
    for (int j = 0; j < n; j++)
        tmp[j] = (scored){row[j], j};
    qsort(tmp, (size_t)n, sizeof *tmp, by_score_desc);
    for (int r = 0; r < k; r++)
        out[r] = tmp[r].index;
}

/* One (image, text) pair to score with ITM: from an image's top-k texts
 * (FROM_I2T), a text's top-k images (FROM_T2I) or both. */
enum { FROM_I2T = 1, FROM_T2I = 2 };
typedef struct {
    int text;
    int from;
} candidate;

static int by_text(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    return x->text - y->text;
}

int retrieval_scores(albef_ctx *ctx, const retrieval_options *opt, const float *image_feat, const float *image_tokens,
                     int n_img, const float *text_feat, const float *text_tokens, const int32_t *text_mask, int n_txt,
                     int len, float *score_i2t, float *score_t2i)
{
    int E = albef_embed_dim(ctx);
    if (opt->stats)
        *opt->stats = (retrieval_stats){0};
    float *sim = malloc(sizeof(float) * (size_t)n_img * n_txt);
    if (!sim)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory for a %d x %d similarity matrix", n_img, n_txt);
    albef_itc_similarity(image_feat, n_img, text_feat, n_txt, E, sim);
    int rc = ALBEF_OK;
    if (opt->itc_only) {
        memcpy(score_i2t, sim, sizeof(float) * (size_t)n_img * n_txt);
        for (int i = 0; i < n_img; i++)
            for (int t = 0; t < n_txt; t++)
                score_t2i[(size_t)t * n_img + i] = sim[(size_t)i * n_txt + t];
        free(sim);
        return ALBEF_OK;
    }
    /* The ITM logit of a pair does not depend on the direction it was
     * asked for, so the candidates of both directions are gathered by
     * image, a pair wanted twice is scored once, and each image is fused
     * with all its candidate texts in one call that computes its
     * cross-attention keys/values once per layer. */
    int T = albef_image_tokens(ctx), Cv = albef_vision_width(ctx), H = albef_text_width(ctx);
    int k_txt = opt->k_test < n_txt ? opt->k_test : n_txt, k_img = opt->k_test < n_img ? opt->k_test : n_img;
    int n = n_img > n_txt ? n_img : n_txt;
    size_t n_pairs = (size_t)n_img * k_txt + (size_t)n_txt * k_img;
    scored *tmp = malloc(sizeof *tmp * (size_t)n);
    int *idx = malloc(sizeof(int) * (size_t)(k_txt > k_img ? k_txt : k_img));
    float *col = malloc(sizeof(float) * (size_t)n_img);
    size_t *first = calloc((size_t)n_img + 1, sizeof(size_t)), *fill = calloc((size_t)n_img, sizeof(size_t));
    int *t2i_top = malloc(sizeof(int) * (size_t)n_txt * k_img);
    candidate *cand = malloc(sizeof *cand * n_pairs);
    float *tt = NULL, *logits = NULL;
    int32_t *mm = NULL;
    if (!tmp || !idx || !col || !first || !fill || !t2i_top || !cand) {
        rc = albef_error(ALBEF_ERR_NOMEM, "out of memory for re-ranking %zu candidate pairs", n_pairs);
        goto done;
    }
    /* each text's top-k images; then how many candidates each image gets */
    for (int t = 0; t < n_txt; t++) {
        for (int i = 0; i < n_img; i++)
            col[i] = sim[(size_t)i * n_txt + t];
        top_k(col, n_img, k_img, tmp, t2i_top + (size_t)t * k_img);
    }
    for (int i = 0; i < n_img; i++)
        first[i + 1] = k_txt;
    for (size_t j = 0; j < (size_t)n_txt * k_img; j++)
        first[t2i_top[j] + 1]++;
    for (int i = 0; i < n_img; i++)
        first[i + 1] += first[i];
    for (int i = 0; i < n_img; i++) {
        top_k(sim + (size_t)i * n_txt, n_txt, k_txt, tmp, idx);
        for (int r = 0; r < k_txt; r++)
            cand[first[i] + fill[i]++] = (candidate){idx[r], FROM_I2T};
    }
    for (int t = 0; t < n_txt; t++)
        for (int r = 0; r < k_img; r++) {
            int i = t2i_top[(size_t)t * k_img + r];
            cand[first[i] + fill[i]++] = (candidate){t, FROM_T2I};
        }
    /* per image: sort by text, merge the pairs both directions asked for */
    size_t most = 0;
    for (int i = 0; i < n_img; i++) {
        candidate *c = cand + first[i];
        size_t m = first[i + 1] - first[i], u = 0;
        qsort(c, m, sizeof *c, by_text);
        for (size_t j = 0; j < m; j++) {
            if (u > 0 && c[u - 1].text == c[j].text)
                c[u - 1].from |= c[j].from;
            else
                c[u++] = c[j];
        }
        fill[i] = u;
        most = u > most ? u : most;
    }
    tt = malloc(sizeof(float) * (most ? most : 1) * len * H);
    mm = malloc(sizeof(int32_t) * (most ? most : 1) * len);
    logits = malloc(sizeof(float) * 2 * (most ? most : 1));
    if (!tt || !mm || !logits) {
        rc = albef_error(ALBEF_ERR_NOMEM, "out of memory for re-ranking %zu texts against one image", most);
        goto done;
    }
    for (size_t i = 0; i < (size_t)n_img * n_txt; i++)
        score_i2t[i] = -100.0f;
    for (size_t i = 0; i < (size_t)n_txt * n_img; i++)
        score_t2i[i] = -100.0f;
    for (int i = 0; i < n_img && !rc; i++) {
        const candidate *c = cand + first[i];
        int m = (int)fill[i];
        for (int j = 0; j < m; j++) {
            memcpy(tt + (size_t)j * len * H, text_tokens + (size_t)c[j].text * len * H,
                   sizeof(float) * (size_t)len * H);
            memcpy(mm + (size_t)j * len, text_mask + (size_t)c[j].text * len, sizeof(int32_t) * (size_t)len);
        }
        if (m > 0)
            rc = albef_itm_logits_one_image(ctx, tt, mm, m, len, image_tokens + (size_t)i * T * Cv, logits);
        for (int j = 0; !rc && j < m; j++) {
            if (c[j].from & FROM_I2T)
                score_i2t[(size_t)i * n_txt + c[j].text] = logits[2 * j + 1];
            if (c[j].from & FROM_T2I)
                score_t2i[(size_t)c[j].text * n_img + i] = logits[2 * j + 1];
        }
        if (opt->stats && m > 0) {
            opt->stats->images_fused++;
            opt->stats->itm_pairs += (size_t)m;
        }
        if (opt->progress)
            opt->progress((size_t)i + 1, (size_t)n_img, opt->progress_user);
    }
    if (opt->stats)
        opt->stats->pairs_asked = n_pairs;
done:
    free(sim), free(tmp), free(idx), free(col), free(first), free(fill), free(t2i_top), free(cand), free(tt), free(mm),
        free(logits);
    return rc;
}
