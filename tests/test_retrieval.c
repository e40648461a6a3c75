/* Retrieval recall@K against hand-computed cases: images with several
 * captions (more than 5 included), ties, the -100 filler of re-ranking;
 * the grouped ITM re-ranking of retrieval_scores against the plain
 * protocol (every query's k candidates fused as separate pairs). */
#include "albef.h"
#include "eval/retrieval.h"
#include "core/rng.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_recall_hand_computed(void **state)
{
    (void)state;
    /* 3 images; image 0 has texts 0-1, image 1 has texts 2-8 (seven captions),
     * image 2 has text 9 */
    enum { NI = 3, NT = 10 };
    size_t first[NI] = {0, 2, 9}, count[NI] = {2, 7, 1};
    size_t owner[NT] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 2};
    float i2t[NI][NT], t2i[NT][NI];
    for (int i = 0; i < NI; i++)
        for (int t = 0; t < NT; t++)
            i2t[i][t] = -100.0f;
    /* image 0: its caption 1 is ranked second (behind text 9): rank 1 */
    i2t[0][9] = 5.0f, i2t[0][1] = 4.0f, i2t[0][0] = 1.0f;
    /* image 1: caption 8 ranked first: rank 0 */
    i2t[1][8] = 3.0f, i2t[1][0] = 2.0f;
    /* image 2: its only caption at rank 6 (texts 0..5 above it) */
    for (int t = 0; t < 6; t++)
        i2t[2][t] = 10.0f - t;
    i2t[2][9] = 1.0f;
    /* texts: t2i rank of the right image */
    for (int t = 0; t < NT; t++)
        for (int i = 0; i < NI; i++)
            t2i[t][i] = (i == (int)owner[t]) ? 1.0f : 0.0f; /* every text right at rank 0 ... */
    t2i[3][0] = 2.0f;                                      /* ... except text 3 (image 1 at rank 1) */
    t2i[9][0] = 3.0f, t2i[9][1] = 2.0f;                    /* and text 9 (image 2 at rank 2) */
    retrieval_metrics r;
    assert_ok(retrieval_metrics_compute(&i2t[0][0], &t2i[0][0], NI, NT, first, count, owner, &r));
    /* image ranks 1, 0, 6: R@1 = 1/3, R@5 = 2/3, R@10 = 3/3 */
    assert_float_equal(r.txt_r1, 100.0 / 3, 1e-9);
    assert_float_equal(r.txt_r5, 200.0 / 3, 1e-9);
    assert_float_equal(r.txt_r10, 100.0, 1e-9);
    /* text ranks: eight 0s, one 1, one 2: R@1 = 80, R@5 = R@10 = 100 */
    assert_float_equal(r.img_r1, 80.0, 1e-9);
    assert_float_equal(r.img_r5, 100.0, 1e-9);
    assert_float_equal(r.img_r10, 100.0, 1e-9);
    assert_float_equal(r.txt_r_mean, (100.0 / 3 + 200.0 / 3 + 100.0) / 3, 1e-9);
    assert_float_equal(r.r_mean, (r.txt_r_mean + r.img_r_mean) / 2, 1e-9);
}

static void test_ties_rank_by_index(void **state)
{
    (void)state;
    /* all scores equal: ties go to the lower index, so image 0's captions
     * (texts 0, 1) come first and image 1's (text 2) is at rank 2 */
    size_t first[2] = {0, 2}, count[2] = {2, 1}, owner[3] = {0, 0, 1};
    float i2t[6] = {0}, t2i[6] = {0};
    retrieval_metrics r;
    assert_ok(retrieval_metrics_compute(i2t, t2i, 2, 3, first, count, owner, &r));
    assert_float_equal(r.txt_r1, 50.0, 1e-9);
    assert_float_equal(r.txt_r5, 100.0, 1e-9);
    /* texts 0, 1 find image 0 at rank 0; text 2 finds image 1 at rank 1 */
    assert_float_equal(r.img_r1, 200.0 / 3, 1e-9);
    assert_error(retrieval_metrics_compute(i2t, t2i, 0, 3, first, count, owner, &r), ALBEF_ERR_INVALID, "no images");
}

/* The k best of row (n) by score, ties to the lower index. */
static void plain_top_k(const float *row, int n, int k, int *out)
{
    char *taken = calloc((size_t)n, 1);
    for (int r = 0; r < k; r++) {
        int best = -1;
        for (int j = 0; j < n; j++)
            if (!taken[j] && (best < 0 || row[j] > row[best]))
                best = j;
        taken[best] = 1;
        out[r] = best;
    }
    free(taken);
}

static void test_rerank_matches_plain_protocol(void **state)
{
    (void)state;
    albef_params p = albef_params_default();
    p.max_batch = 3; /* candidates go through in several chunks */
    p.max_text_len = 12;
    albef_ctx *ctx;
    assert_ok(albef_load("testdata/reference/small/weights.safetensors", &p, &ctx));
    enum { NI = 7, NT = 17, L = 12, K = 4 };
    int R = albef_image_res(ctx), T = albef_image_tokens(ctx), Cv = albef_vision_width(ctx);
    int H = albef_text_width(ctx), E = albef_embed_dim(ctx), V = albef_vocab_size(ctx);
    rng_state r;
    rng_seed(&r, 11);
    float *pix = malloc(sizeof(float) * NI * 3 * R * R);
    for (int i = 0; i < NI * 3 * R * R; i++)
        pix[i] = (float)rng_normal(&r);
    int32_t ids[NT * L], mask[NT * L];
    for (int t = 0; t < NT; t++) {
        int len = 3 + (int)rng_below(&r, L - 3);
        for (int j = 0; j < L; j++) {
            ids[t * L + j] = j == 0 ? 1 : j < len ? 2 + (int)rng_below(&r, (uint64_t)V - 2) : 0;
            mask[t * L + j] = j < len;
        }
    }
    float *ifeat = malloc(sizeof(float) * NI * E), *itok = malloc(sizeof(float) * NI * T * Cv);
    float *tfeat = malloc(sizeof(float) * NT * E), *ttok = malloc(sizeof(float) * NT * L * H);
    assert_ok(albef_embed_images(ctx, pix, NI, ifeat, itok));
    assert_ok(albef_embed_texts(ctx, ids, mask, NT, L, tfeat, ttok));

    float s_i2t[NI * NT], s_t2i[NT * NI];
    retrieval_stats st;
    retrieval_options o = {.k_test = K, .stats = &st};
    assert_ok(retrieval_scores(ctx, &o, ifeat, itok, NI, tfeat, ttok, mask, NT, L, s_i2t, s_t2i));

    /* the plain protocol: image -> its K texts, text -> its K images */
    float sim[NI * NT], col[NI], want_i2t[NI * NT], want_t2i[NT * NI], lg[2 * K];
    float *rep = malloc(sizeof(float) * K * T * Cv), *tk = malloc(sizeof(float) * K * L * H);
    int32_t mk[K * L];
    int top[K];
    albef_itc_similarity(ifeat, NI, tfeat, NT, E, sim);
    for (int i = 0; i < NI * NT; i++)
        want_i2t[i] = want_t2i[i] = -100.0f;
    char asked[NI][NT];
    memset(asked, 0, sizeof asked);
    for (int i = 0; i < NI; i++) {
        plain_top_k(sim + i * NT, NT, K, top);
        for (int c = 0; c < K; c++) {
            memcpy(rep + (size_t)c * T * Cv, itok + (size_t)i * T * Cv, sizeof(float) * T * Cv);
            memcpy(tk + (size_t)c * L * H, ttok + (size_t)top[c] * L * H, sizeof(float) * L * H);
            memcpy(mk + c * L, mask + top[c] * L, sizeof(int32_t) * L);
            asked[i][top[c]] = 1;
        }
        assert_ok(albef_itm_logits(ctx, tk, mk, K, L, rep, lg));
        for (int c = 0; c < K; c++)
            want_i2t[i * NT + top[c]] = lg[2 * c + 1];
    }
    for (int t = 0; t < NT; t++) {
        for (int i = 0; i < NI; i++)
            col[i] = sim[i * NT + t];
        plain_top_k(col, NI, K, top);
        for (int c = 0; c < K; c++) {
            memcpy(rep + (size_t)c * T * Cv, itok + (size_t)top[c] * T * Cv, sizeof(float) * T * Cv);
            memcpy(tk + (size_t)c * L * H, ttok + (size_t)t * L * H, sizeof(float) * L * H);
            memcpy(mk + c * L, mask + t * L, sizeof(int32_t) * L);
            asked[top[c]][t] = 1;
        }
        assert_ok(albef_itm_logits(ctx, tk, mk, K, L, rep, lg));
        for (int c = 0; c < K; c++)
            want_t2i[t * NI + top[c]] = lg[2 * c + 1];
    }
    for (int i = 0; i < NI * NT; i++) {
        assert_true(fabsf(s_i2t[i] - want_i2t[i]) <= 1e-5f * (1 + fabsf(want_i2t[i])));
        assert_true(fabsf(s_t2i[i] - want_t2i[i]) <= 1e-5f * (1 + fabsf(want_t2i[i])));
    }
    size_t distinct = 0;
    for (int i = 0; i < NI; i++)
        for (int t = 0; t < NT; t++)
            distinct += asked[i][t];
    assert_int_equal(st.pairs_asked, NI * K + NT * K);
    assert_int_equal(st.itm_pairs, distinct);
    assert_true(st.itm_pairs < st.pairs_asked); /* the directions share pairs */
    assert_true(st.images_fused <= NI);
    free(pix), free(ifeat), free(itok), free(tfeat), free(ttok), free(rep), free(tk);
    albef_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recall_hand_computed),
        cmocka_unit_test(test_ties_rank_by_index),
        cmocka_unit_test(test_rerank_matches_plain_protocol),
    };
    return cmocka_run_group_tests_name("retrieval", tests, NULL, NULL);
}
