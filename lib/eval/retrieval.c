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

int retrieval_scores(albef_ctx *ctx, const retrieval_options *opt, const float *image_feat, const float *image_tokens,
                     int n_img, const float *text_feat, const float *text_tokens, const int32_t *text_mask, int n_txt,
                     int len, float *score_i2t, float *score_t2i)
{
    int E = albef_embed_dim(ctx);
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
    int T = albef_image_tokens(ctx), Cv = albef_vision_width(ctx), H = albef_text_width(ctx);
    int k_txt = opt->k_test < n_txt ? opt->k_test : n_txt, k_img = opt->k_test < n_img ? opt->k_test : n_img;
    int kmax = k_txt > k_img ? k_txt : k_img, n = n_img > n_txt ? n_img : n_txt;
    scored *tmp = malloc(sizeof *tmp * (size_t)n);
    int *idx = malloc(sizeof(int) * (size_t)kmax);
    float *col = malloc(sizeof(float) * (size_t)n_img);
    float *tt = malloc(sizeof(float) * (size_t)kmax * len * H);
    float *it = malloc(sizeof(float) * (size_t)kmax * T * Cv);
    int32_t *mm = malloc(sizeof(int32_t) * (size_t)kmax * len);
    float *logits = malloc(sizeof(float) * 2 * (size_t)kmax);
    if (!tmp || !idx || !col || !tt || !it || !mm || !logits) {
        rc = albef_error(ALBEF_ERR_NOMEM, "out of memory for re-ranking %d candidates", kmax);
        goto done;
    }
    for (size_t i = 0; i < (size_t)n_img * n_txt; i++)
        score_i2t[i] = -100.0f;
    for (size_t i = 0; i < (size_t)n_txt * n_img; i++)
        score_t2i[i] = -100.0f;
    size_t total = (size_t)n_img + (size_t)n_txt, done_q = 0;
    /* image -> its top-k texts */
    for (int i = 0; i < n_img && !rc; i++) {
        top_k(sim + (size_t)i * n_txt, n_txt, k_txt, tmp, idx);
        for (int r = 0; r < k_txt; r++) {
            memcpy(tt + (size_t)r * len * H, text_tokens + (size_t)idx[r] * len * H, sizeof(float) * (size_t)len * H);
            memcpy(mm + (size_t)r * len, text_mask + (size_t)idx[r] * len, sizeof(int32_t) * (size_t)len);
        }
        /* one image against its k texts: its keys/values computed once */
        rc = albef_itm_logits_one_image(ctx, tt, mm, k_txt, len, image_tokens + (size_t)i * T * Cv, logits);
        for (int r = 0; !rc && r < k_txt; r++)
            score_i2t[(size_t)i * n_txt + idx[r]] = logits[2 * r + 1];
        if (opt->progress)
            opt->progress(++done_q, total, opt->progress_user);
    }
    /* text -> its top-k images */
    for (int t = 0; t < n_txt && !rc; t++) {
        for (int i = 0; i < n_img; i++)
            col[i] = sim[(size_t)i * n_txt + t];
        top_k(col, n_img, k_img, tmp, idx);
        for (int r = 0; r < k_img; r++) {
            memcpy(tt + (size_t)r * len * H, text_tokens + (size_t)t * len * H, sizeof(float) * (size_t)len * H);
            memcpy(mm + (size_t)r * len, text_mask + (size_t)t * len, sizeof(int32_t) * (size_t)len);
            memcpy(it + (size_t)r * T * Cv, image_tokens + (size_t)idx[r] * T * Cv, sizeof(float) * (size_t)T * Cv);
        }
        rc = albef_itm_logits(ctx, tt, mm, k_img, len, it, logits);
        for (int r = 0; !rc && r < k_img; r++)
            score_t2i[(size_t)t * n_img + idx[r]] = logits[2 * r + 1];
        if (opt->progress)
            opt->progress(++done_q, total, opt->progress_user);
    }
done:
    free(sim), free(tmp), free(idx), free(col), free(tt), free(it), free(mm), free(logits);
    return rc;
}
