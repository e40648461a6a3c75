/* Retrieval recall@K against hand-computed cases: images with several
 * captions (more than 5 included), ties, the -100 filler of re-ranking. */
#include "albef.h"
#include "eval/retrieval.h"
#include "testutil.h"

#include <math.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recall_hand_computed),
        cmocka_unit_test(test_ties_rank_by_index),
    };
    return cmocka_run_group_tests_name("retrieval", tests, NULL, NULL);
}
