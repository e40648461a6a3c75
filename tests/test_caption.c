/* text/caption: pre_caption and pre_question against ALBEF's Python
 * (testdata/text/caption_golden.txt, made by scripts/dev/make_text_goldens.py). */
#include "albef.h"
#include "core/file.h"
#include "core/rng.h"
#include "testutil.h"
#include "text/caption.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Undoes the golden format's escapes ("\\\\" and "\\xHH") in place; returns the length. */
static size_t unescape(char *s)
{
    size_t r = 0, w = 0;
    while (s[r]) {
        if (s[r] == '\\' && s[r + 1] == '\\') {
            s[w++] = '\\';
            r += 2;
        } else if (s[r] == '\\' && s[r + 1] == 'x' && s[r + 2] && s[r + 3]) {
            char hex[3] = {s[r + 2], s[r + 3], 0};
            s[w++] = (char)strtol(hex, NULL, 16);
            r += 4;
        } else {
            s[w++] = s[r++];
        }
    }
    s[w] = '\0';
    return w;
}

static void print_bytes(const char *what, const char *s, size_t n)
{
    fprintf(stderr, "#   %s (%zu bytes): \"", what, n);
    for (size_t i = 0; i < n && i < 240; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F || c == '\\')
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fprintf(stderr, "%s\"\n", n > 240 ? "..." : "");
}

static void test_golden_matches_albef_python(void **state)
{
    (void)state;
    char *data;
    size_t size;
    assert_ok(file_read_all(testdata_path("text/caption_golden.txt"), &data, &size));
    size_t records = 0, bad = 0, captions = 0;
    char *line = data;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (line[0] != '#') {
            char *f[4] = {line, NULL, NULL, NULL};
            for (int k = 1; k < 4; k++) {
                f[k] = f[k - 1] ? strchr(f[k - 1], '\t') : NULL;
                if (f[k])
                    *f[k]++ = '\0';
            }
            if (!f[3])
                fail_msg("caption_golden.txt: record %zu has no four fields", records + 1);
            bool caption = strcmp(f[0], "caption") == 0;
            int max_words = atoi(f[1]);
            size_t in_len = unescape(f[2]), want_len = unescape(f[3]);
            char *got;
            size_t got_len;
            records++;
            captions += caption;
            assert_ok((caption ? pre_caption_alloc : pre_question_alloc)(f[2], in_len, max_words, &got, &got_len));
            if (got_len != want_len || memcmp(got, f[3], want_len) != 0) {
                if (bad < 8) {
                    fprintf(stderr, "# mismatch at record %zu (%s, max_words %d):\n", records, f[0], max_words);
                    print_bytes("input ", f[2], in_len);
                    print_bytes("python", f[3], want_len);
                    print_bytes("ours  ", got, got_len);
                }
                bad++;
            }
            free(got);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(data);
    fprintf(stderr, "# %zu golden records (%zu pre_caption, %zu pre_question), %zu mismatches\n", records, captions,
            records - captions, bad);
    if (records < 500)
        fail_msg("caption_golden.txt has only %zu records", records);
    if (bad)
        fail_msg("%zu of %zu records differ from ALBEF's Python", bad, records);
}

static void expect_caption(const char *in, int max_words, const char *want)
{
    char out[256];
    size_t n;
    assert_ok(pre_caption(in, strlen(in), max_words, out, sizeof out, &n));
    if (strcmp(out, want) != 0 || n != strlen(want))
        fail_msg("pre_caption(\"%s\", %d) = \"%s\" (%zu bytes), expected \"%s\"", in, max_words, out, n, want);
}

static void expect_question(const char *in, int max_words, const char *want)
{
    char out[256];
    size_t n;
    assert_ok(pre_question(in, strlen(in), max_words, out, sizeof out, &n));
    if (strcmp(out, want) != 0 || n != strlen(want))
        fail_msg("pre_question(\"%s\", %d) = \"%s\" (%zu bytes), expected \"%s\"", in, max_words, out, n, want);
}

static void test_caption_hand_cases(void **state)
{
    (void)state;
    expect_caption("A <PERSON> riding a horse, on the beach!", 30, "a person riding a horse on the beach");
    expect_caption("  Two   dogs\t\tplay-fight in/near the park.\n", 30, "two dogs play fight in near the park");
    expect_caption("a\tb", 30, "a\tb"); /* one whitespace character is not a run */
    expect_caption("one two three four five", 3, "one two three");
    expect_caption("one  two three", 2, "one two"); /* the double space collapses before the split */
    expect_caption("word", 0, "");
    expect_caption("<per-son> (<person>)", 30, "<per son> person");
    /* ΟΔΟΣ Σ -> οδος σ: final sigma only after a cased letter */
    expect_caption("\xce\x9f\xce\x94\xce\x9f\xce\xa3 \xce\xa3", 30, "\xce\xbf\xce\xb4\xce\xbf\xcf\x82 \xcf\x83");
    expect_caption("\xc4\xb0stanbul", 30, "i\xcc\x87stanbul"); /* İ lowercases to i + U+0307 */
    expect_caption("", 30, "");
}

static void test_question_hand_cases(void **state)
{
    (void)state;
    expect_question("What color is the man's shirt?", 30, "what color is the mans shirt");
    expect_question("  Is it a <person>?  ", 30, "  is it a <person>"); /* no left strip, no tag rewrite */
    expect_question("how  many\tdogs", 30, "how  many\tdogs");        /* no whitespace collapsing */
    expect_question("a b c d", 2, "a b");
    expect_question("a  b", 2, "a "); /* the empty word between the spaces counts */
    expect_question("up/down-left", 50, "up down left");
}

static void test_bad_arguments_are_errors(void **state)
{
    (void)state;
    char out[8] = "junk";
    size_t n = 5;
    assert_error(pre_caption("abc", 3, -1, out, sizeof out, &n), ALBEF_ERR_INVALID, "max_words must be >= 0, got -1");
    assert_error(pre_question("abc", 3, 5, NULL, 0, &n), ALBEF_ERR_INVALID, "no output buffer");
    assert_error(pre_caption(NULL, 3, 5, out, sizeof out, &n), ALBEF_ERR_INVALID, "text is NULL");
    /* Too small a buffer fails cleanly with the bound in the message. */
    assert_error(pre_caption("a long caption", 14, 30, out, sizeof out, &n), ALBEF_ERR_INVALID, "43 always suffice");
    assert_string_equal(out, "");
    assert_int_equal(n, 0);
    /* A buffer of exactly the output size works. */
    char exact[4];
    assert_ok(pre_caption("A.B", 3, 30, exact, sizeof exact, &n));
    assert_string_equal(exact, "ab");
}

static void test_output_bound_is_tight_for_invalid_bytes(void **state)
{
    (void)state;
    /* Every invalid byte becomes U+FFFD: the 3x worst case. */
    char in[64], out[3 * 64 + 1];
    memset(in, 0xFF, sizeof in);
    size_t n;
    assert_int_equal(caption_output_bound(sizeof in), sizeof out);
    assert_ok(pre_question(in, sizeof in, 100, out, sizeof out, &n));
    assert_int_equal(n, 3 * sizeof in);
    for (size_t i = 0; i < n; i += 3)
        assert_memory_equal(out + i, "\xef\xbf\xbd", 3);
    assert_int_equal(caption_output_bound(SIZE_MAX / 2), 0);
}

static void test_random_bytes_never_crash(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 99);
    static char in[300], out[3 * 300 + 1];
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = rng_below(&r, sizeof in);
        for (size_t i = 0; i < len; i++)
            in[i] = (char)(rng_below(&r, 2) ? rng_below(&r, 256)
                                            : (uint32_t)(uint8_t) " \t\n-/<person>\xce\xa3."[rng_below(&r, 16)]);
        size_t n;
        int max_words = (int)rng_below(&r, 40);
        assert_ok(pre_caption(in, len, max_words, out, sizeof out, &n));
        assert_int_equal(strlen(out) <= n, 1);
        assert_ok(pre_question(in, len, max_words, out, sizeof out, &n));
    }
}

static void test_sigma_lookahead_is_linear(void **state)
{
    (void)state;
    /* Σ followed by a long run of case-ignorable marks, many times over: a
     * quadratic lookahead would take minutes here. */
    enum { REPS = 2000, MARKS = 500 };
    size_t len = (size_t)REPS * (2 + 2 * MARKS);
    char *in = malloc(len), *out = NULL;
    assert_non_null(in);
    size_t w = 0;
    for (int i = 0; i < REPS; i++) {
        memcpy(in + w, "\xce\xa3", 2);
        w += 2;
        for (int k = 0; k < MARKS; k++) {
            memcpy(in + w, "\xcc\x81", 2);
            w += 2;
        }
    }
    clock_t t0 = clock();
    size_t n;
    assert_ok(pre_caption_alloc(in, len, 30, &out, &n));
    double s = (double)(clock() - t0) / CLOCKS_PER_SEC;
    if (s > 2.0)
        fail_msg("pre_caption took %.2f s on %zu bytes", s, len);
    /* The first sigma is not preceded by a cased letter: medial form. */
    assert_memory_equal(out, "\xcf\x83", 2);
    free(out);
    free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_matches_albef_python),
        cmocka_unit_test(test_caption_hand_cases),
        cmocka_unit_test(test_question_hand_cases),
        cmocka_unit_test(test_bad_arguments_are_errors),
        cmocka_unit_test(test_output_bound_is_tight_for_invalid_bytes),
        cmocka_unit_test(test_random_bytes_never_crash),
        cmocka_unit_test(test_sigma_lookahead_is_linear),
    };
    return cmocka_run_group_tests_name("caption", tests, NULL, NULL);
}
