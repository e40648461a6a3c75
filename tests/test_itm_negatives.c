/* The ITM negative sampler (op itm_negatives) on the CPU back end: its
 * weights are the in-batch softmax less the excluded pairs; its draws, over
 * many seeds, follow those weights (a chi-square bound on the empirical
 * frequencies) and never pick an excluded pair: the diagonal, every sample of
 * the same image (retrieval), nothing else in uniform mode; a row with no
 * candidate of another image takes any other sample uniformly. */
#include "albef.h"
#include "core/rng.h"
#include "ops/ops.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define B 6
#define N 9       /* logits have columns past the batch (the queue): never read */
#define DRAWS 40000

/* The weights as the op documents them, computed here independently. */
static void reference_weights(const float *logits, const int32_t *same, int uniform, float *w)
{
    for (int i = 0; i < B; i++) {
        const float *x = logits + i * N;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < B; j++)
            mx = fmax(mx, x[j]);
        for (int j = 0; j < B; j++)
            s += exp(x[j] - mx);
        for (int j = 0; j < B; j++) {
            int excluded = same ? same[i] == same[j] : i == j;
            w[i * B + j] = excluded ? 0.0f : uniform ? 1.0f : (float)(exp(x[j] - mx) / s);
        }
    }
}

/* Draws DRAWS times (seeds 1..DRAWS) and checks each row's frequencies
 * against `expect` (B, B): zero-weight columns never drawn; chi-square over
 * the others within df + 8 sqrt(2 df): a correct sampler stays below it but
 * for about one time in a million, while an error of 0.02 in a probability
 * of 0.2 alone adds about 80. */
static void check_frequencies(const char *what, const float *logits, const int32_t *same_v, int uniform,
                              const float *expect)
{
    backend *be = backend_cpu();
    float w[B * B];
    int32_t neg[B], same_copy[B];
    int64_t count[B][B];
    memset(count, 0, sizeof count);
    tensor same = tensor_none();
    if (same_v) {
        memcpy(same_copy, same_v, sizeof same_copy);
        same = tensor_make(same_copy, DTYPE_I32, 1, TENSOR_SHAPE(B));
    }
    tensor tw = tensor_f32(w, B, B), tneg = tensor_make(neg, DTYPE_I32, 1, TENSOR_SHAPE(B));
    tensor tl = tensor_f32((float *)logits, B, N);
    for (uint64_t seed = 1; seed <= DRAWS; seed++) {
        op_itm_negatives(be, tw, tneg, tl, same, uniform, seed);
        for (int i = 0; i < B; i++) {
            if (neg[i] < 0 || neg[i] >= B)
                fail_msg("%s: seed %llu row %d drew %d, outside the batch", what, (unsigned long long)seed, i, neg[i]);
            count[i][neg[i]]++;
        }
    }
    for (int i = 0; i < B; i++) {
        double total = 0, chi2 = 0;
        int df = -1;
        for (int j = 0; j < B; j++)
            total += expect[i * B + j];
        for (int j = 0; j < B; j++) {
            if (expect[i * B + j] == 0) {
                if (count[i][j])
                    fail_msg("%s: row %d drew excluded column %d %lld times", what, i, j, (long long)count[i][j]);
                continue;
            }
            double e = DRAWS * expect[i * B + j] / total, d = (double)count[i][j] - e;
            chi2 += d * d / e;
            df++;
        }
        double bound = df + 8 * sqrt(2.0 * df);
        printf("# %-28s row %d: chi-square %6.2f, %d degrees of freedom, bound %6.2f\n", what, i, chi2, df, bound);
        if (chi2 > bound) {
            for (int j = 0; j < B; j++)
                printf("#   column %d: drawn %lld, expected %.1f\n", j, (long long)count[i][j],
                       DRAWS * expect[i * B + j] / total);
            fail_msg("%s: row %d: chi-square %.2f > %.2f", what, i, chi2, bound);
        }
    }
}

static void random_logits(float *logits)
{
    rng_state r;
    rng_seed(&r, 7);
    for (int i = 0; i < B * N; i++)
        logits[i] = (i % N) >= B ? 50.0f : 1.5f * (float)rng_normal(&r);
}

static void expect_weights(const char *what, const float *logits, const int32_t *same_v, int uniform)
{
    float w[B * B], ref[B * B];
    int32_t neg[B], same_copy[B];
    tensor same = tensor_none();
    if (same_v) {
        memcpy(same_copy, same_v, sizeof same_copy);
        same = tensor_make(same_copy, DTYPE_I32, 1, TENSOR_SHAPE(B));
    }
    op_itm_negatives(backend_cpu(), tensor_f32(w, B, B), tensor_make(neg, DTYPE_I32, 1, TENSOR_SHAPE(B)),
                     tensor_f32((float *)logits, B, N), same, uniform, 3);
    reference_weights(logits, same_v, uniform, ref);
    assert_close_f32(w, ref, B * B, 1e-7, 1e-6, what);
}

static void test_softmax_weights_diagonal_excluded(void **state)
{
    (void)state;
    float logits[B * N], w[B * B];
    random_logits(logits);
    expect_weights("softmax weights", logits, NULL, 0);
    reference_weights(logits, NULL, 0, w);
    check_frequencies("softmax, diagonal excluded", logits, NULL, 0, w);
}

static void test_same_image_excluded(void **state)
{
    (void)state;
    const int32_t same[B] = {0, 0, 2, 2, 2, 5}; /* three images: two, three and one captions */
    float logits[B * N], w[B * B];
    random_logits(logits);
    expect_weights("retrieval weights", logits, same, 0);
    reference_weights(logits, same, 0, w);
    check_frequencies("softmax, same image excluded", logits, same, 0, w);
}

static void test_uniform_mode(void **state)
{
    (void)state;
    const int32_t same[B] = {0, 1, 1, 3, 4, 5};
    float logits[B * N], w[B * B];
    random_logits(logits);
    expect_weights("uniform weights", logits, NULL, 1);
    reference_weights(logits, NULL, 1, w);
    check_frequencies("uniform, diagonal excluded", logits, NULL, 1, w);
    expect_weights("uniform retrieval weights", logits, same, 1);
    reference_weights(logits, same, 1, w);
    check_frequencies("uniform, same image excluded", logits, same, 1, w);
}

/* Every sample is the same image: no weight anywhere, and each row takes one
 * of the other samples uniformly (never itself). */
static void test_all_zero_rows(void **state)
{
    (void)state;
    const int32_t same[B] = {4, 4, 4, 4, 4, 4};
    float logits[B * N], w[B * B];
    random_logits(logits);
    expect_weights("all-excluded weights", logits, same, 0);
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++)
            w[i * B + j] = i != j; /* the expected frequencies, not the weights */
    check_frequencies("all excluded: any other", logits, same, 0, w);
}

/* The same seed draws the same negatives; draws follow only (seed, row). */
static void test_draws_are_reproducible(void **state)
{
    (void)state;
    float logits[B * N], w[B * B];
    int32_t a[B], b[B];
    random_logits(logits);
    tensor tl = tensor_f32(logits, B, N), tw = tensor_f32(w, B, B);
    op_itm_negatives(backend_cpu(), tw, tensor_make(a, DTYPE_I32, 1, TENSOR_SHAPE(B)), tl, tensor_none(), 0, 99);
    op_itm_negatives(backend_cpu(), tw, tensor_make(b, DTYPE_I32, 1, TENSOR_SHAPE(B)), tl, tensor_none(), 0, 99);
    assert_memory_equal(a, b, sizeof a);
    for (int i = 0; i < B; i++)
        assert_int_equal(a[i], itm_draw_index(w + i * B, B, i, itm_draw_uniform(99, i)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax_weights_diagonal_excluded),
        cmocka_unit_test(test_same_image_excluded),
        cmocka_unit_test(test_uniform_mode),
        cmocka_unit_test(test_all_zero_rows),
        cmocka_unit_test(test_draws_are_reproducible),
    };
    return cmocka_run_group_tests_name("itm_negatives", tests, NULL, NULL);
}
