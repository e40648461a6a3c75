/* text/tokenizer: BERT WordPiece with ALBEF's rule, against Hugging Face's
 * slow BertTokenizer (the golden files in testdata/text, made by
 * scripts/dev/make_text_goldens.py). */
#include "albef.h"
#include "core/file.h"
#include "core/rng.h"
#include "testutil.h"
#include "text/tokenizer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bert_tokenizer *bert; /* bert-base-uncased, loaded once */

static int load_bert(void **state)
{
    (void)state;
    if (bert_tokenizer_load(shared_data_path("bert-base-uncased-vocab.txt"), &bert) != ALBEF_OK) {
        fprintf(stderr, "# cannot load the BERT vocabulary: %s\n", albef_errmsg());
        bert = NULL;
    }
    return 0;
}

static int free_bert(void **state)
{
    (void)state;
    bert_tokenizer_free(bert);
    return 0;
}

#define NEED_BERT()                                                                                        \
    do {                                                                                                   \
        if (!bert)                                                                                         \
            skip();                                                                                        \
    } while (0)

/* ---- golden files ---------------------------------------------------------- */

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

/* Splits `line` at tabs into at most `max` fields; returns the count. */
static int split_tabs(char *line, char **fields, int max)
{
    int n = 0;
    fields[n++] = line;
    for (char *p = line; *p && n < max; p++) {
        if (*p == '\t') {
            *p = '\0';
            fields[n++] = p + 1;
        }
    }
    return n;
}

static size_t parse_ints(const char *s, int32_t *out, size_t cap)
{
    size_t n = 0;
    char *end;
    for (;;) {
        long v = strtol(s, &end, 10);
        if (end == s)
            return n;
        if (n < cap)
            out[n] = (int32_t)v;
        n++;
        s = end;
    }
}

/* Next line of a buffer (newline replaced by NUL), or NULL at the end. */
static char *next_line(char **cursor)
{
    char *s = *cursor;
    if (!s || !*s)
        return NULL;
    char *nl = strchr(s, '\n');
    if (nl) {
        *nl = '\0';
        *cursor = nl + 1;
    } else {
        *cursor = s + strlen(s);
    }
    return s;
}

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
    fprintf(stderr, "#     %s (%zu):", what, n);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

static void print_text(const char *text, size_t len)
{
    fprintf(stderr, "#   text (%zu bytes): \"", len);
    for (size_t i = 0; i < len && i < 200; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7F || c == '\\')
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fprintf(stderr, "%s\"\n", len > 200 ? "..." : "");
}

enum { MAX_IDS = 4096 };

static void test_golden_texts_match_hf(void **state)
{
    (void)state;
    NEED_BERT();
    char *data;
    size_t size;
    assert_ok(file_read_all(testdata_path("text/tokenizer_golden.txt"), &data, &size));
    static int32_t want[MAX_IDS], got[MAX_IDS];
    size_t lines = 0, bad = 0, truncated = 0;
    char *cursor = data, *line;
    while ((line = next_line(&cursor))) {
        if (line[0] == '#')
            continue;
        char *f[3] = {NULL, NULL, NULL};
        if (split_tabs(line, f, 3) != 3)
            fail_msg("tokenizer_golden.txt: record %zu has no three fields", lines + 1);
        size_t k = (size_t)strtoul(f[0], NULL, 10);
        size_t len = unescape(f[1]);
        size_t n_want = parse_ints(f[2], want, MAX_IDS), n_got;
        assert_true(n_want <= MAX_IDS);
        lines++;
        truncated += k > 0;
        assert_ok(bert_tokenizer_encode(bert, f[1], len, k, got, MAX_IDS, &n_got));
        if (n_got != n_want || memcmp(got, want, n_want * sizeof *got) != 0) {
            if (bad < 8) {
                fprintf(stderr, "# mismatch at golden record %zu (max_length %zu):\n", lines, k);
                print_text(f[1], len);
                print_ids("hf  ", want, n_want);
                print_ids("ours", got, n_got);
            }
            bad++;
        }
    }
    free(data);
    fprintf(stderr, "# %zu golden texts (%zu truncated), %zu mismatches\n", lines, truncated, bad);
    if (lines < 2000)
        fail_msg("tokenizer_golden.txt has only %zu records", lines);
    if (bad)
        fail_msg("%zu of %zu golden texts differ from Hugging Face", bad, lines);
}

static void test_golden_batches_match_hf(void **state)
{
    (void)state;
    NEED_BERT();
    char *data;
    size_t size;
    assert_ok(file_read_all(testdata_path("text/tokenizer_batch_golden.txt"), &data, &size));
    char *cursor = data, *line;
    size_t batches = 0;
    while ((line = next_line(&cursor))) {
        if (line[0] == '#')
            continue;
        char *f[5] = {NULL, NULL, NULL, NULL, NULL};
        if (split_tabs(line, f, 5) != 5 || strcmp(f[0], "batch") != 0)
            fail_msg("tokenizer_batch_golden.txt: bad batch header '%s'", line);
        bert_encode_options opt = bert_encode_options_default();
        opt.padding = strcmp(f[1], "max_length") == 0 ? BERT_PADDING_MAX_LENGTH : BERT_PADDING_LONGEST;
        opt.truncation = atoi(f[2]);
        opt.max_length = (size_t)atoi(f[3]);
        size_t n = (size_t)atoi(f[4]);
        assert_true(n >= 1 && n <= 16);
        const char *texts[16];
        size_t lens[16];
        for (size_t i = 0; i < n; i++) {
            char *tl = next_line(&cursor), *tf[2] = {NULL, NULL};
            assert_non_null(tl);
            assert_int_equal(split_tabs(tl, tf, 2), 2);
            lens[i] = unescape(tf[1]);
            texts[i] = tf[1];
        }
        static int32_t want_ids[16 * MAX_IDS], want_mask[16 * MAX_IDS];
        size_t L = 0;
        for (size_t part = 0; part < 2; part++) {
            for (size_t i = 0; i < n; i++) {
                char *rl = next_line(&cursor), *rf[2] = {NULL, NULL};
                assert_non_null(rl);
                assert_int_equal(split_tabs(rl, rf, 2), 2);
                size_t m = parse_ints(rf[1], (part ? want_mask : want_ids) + i * MAX_IDS, MAX_IDS);
                if (i == 0 && part == 0)
                    L = m;
                assert_int_equal(m, L);
            }
        }
        bert_batch b;
        assert_ok(bert_tokenizer_encode_batch_alloc(bert, texts, lens, n, &opt, &b));
        if (b.length != L)
            fail_msg("batch %zu (%s, truncation %d, max_length %zu): length %zu, HF %zu", batches, f[1],
                     opt.truncation, opt.max_length, b.length, L);
        for (size_t i = 0; i < n; i++) {
            if (memcmp(b.ids + i * L, want_ids + i * MAX_IDS, L * sizeof(int32_t)) != 0 ||
                memcmp(b.mask + i * L, want_mask + i * MAX_IDS, L * sizeof(int32_t)) != 0) {
                fprintf(stderr, "# batch %zu row %zu differs:\n", batches, i);
                print_text(texts[i], lens[i]);
                print_ids("hf ids  ", want_ids + i * MAX_IDS, L);
                print_ids("our ids ", b.ids + i * L, L);
                print_ids("hf mask ", want_mask + i * MAX_IDS, L);
                print_ids("our mask", b.mask + i * L, L);
                fail_msg("batch %zu row %zu differs from Hugging Face", batches, i);
            }
        }
        bert_batch_free(&b);
        batches++;
    }
    free(data);
    assert_true(batches >= 40);
}

/* ---- small hand-made vocabularies --------------------------------------------- */

/* Specials scattered at positions no BERT vocabulary uses. */
static const char small_vocab[] = "want\n##want\n[SEP]\n##ed\nwa\n[MASK]\nun\nrunn\n##ing\n,\n[PAD]\n[CLS]\n"
                                  "yes\n[UNK]\n##s\ndog\n.\n";

static bert_tokenizer *load_small(void)
{
    bert_tokenizer *t;
    assert_ok(bert_tokenizer_load_buffer(small_vocab, sizeof small_vocab - 1, "small.txt", &t));
    return t;
}

static void test_specials_are_found_by_name(void **state)
{
    (void)state;
    bert_tokenizer *t = load_small();
    bert_special_ids s = bert_tokenizer_special_ids(t);
    assert_int_equal(s.sep, 2);
    assert_int_equal(s.mask, 5);
    assert_int_equal(s.pad, 10);
    assert_int_equal(s.cls, 11);
    assert_int_equal(s.unk, 13);
    assert_int_equal(bert_tokenizer_vocab_size(t), 17);
    /* un ##want ##ed , runn ##ing [SEP] ; "UNwant\u00e9d" lowercases and loses its accent. */
    const char *text = "UNwant\xc3\xa9" "d,running[SEP] cat";
    int32_t ids[32];
    size_t n;
    assert_ok(bert_tokenizer_encode(t, text, strlen(text), 0, ids, 32, &n));
    const int32_t want[] = {11, 6, 1, 3, 9, 7, 8, 2, 13};
    assert_int_equal(n, sizeof want / sizeof want[0]);
    assert_memory_equal(ids, want, sizeof want);
    bert_tokenizer_free(t);
}

static void test_missing_special_token_is_named(void **state)
{
    (void)state;
    const char vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n";
    bert_tokenizer *t = (bert_tokenizer *)1;
    assert_error(bert_tokenizer_load_buffer(vocab, sizeof vocab - 1, "nomask.txt", &t), ALBEF_ERR_INVALID,
                 "nomask.txt: special token '[MASK]'");
    assert_null(t);
    assert_error(bert_tokenizer_load_buffer("", 0, "empty.txt", &t), ALBEF_ERR_INVALID,
                 "empty.txt: special token '[PAD]'");
    /* A lowercase spelling is not the special token. */
    const char lower[] = "[pad]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
    assert_error(bert_tokenizer_load_buffer(lower, sizeof lower - 1, "lower.txt", &t), ALBEF_ERR_INVALID, "'[PAD]'");
}

static void test_vocab_file_errors(void **state)
{
    (void)state;
    bert_tokenizer *t;
    assert_error(bert_tokenizer_load(tmp_path("no-such-vocab.txt"), &t), ALBEF_ERR_IO, "no-such-vocab.txt");
    const char bad[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nok\nbad\xff" "byte\n";
    const char *path = write_tmp_file("bad-utf8-vocab.txt", bad, sizeof bad - 1);
    assert_error(bert_tokenizer_load(path, &t), ALBEF_ERR_INVALID, "line 7: token is not valid UTF-8");
    const char truncated[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MA";
    assert_error(bert_tokenizer_load_buffer(truncated, sizeof truncated - 1, "cut.txt", &t), ALBEF_ERR_INVALID,
                 "'[MASK]'");
}

static void test_vocab_line_endings_and_duplicates(void **state)
{
    (void)state;
    /* \r\n and \r end lines as in Python's text mode; a repeated token keeps its last id. */
    const char vocab[] = "[PAD]\r\n[UNK]\r[CLS]\n[SEP]\n[MASK]\ndog\ncat\ndog\n\ncow";
    bert_tokenizer *t;
    assert_ok(bert_tokenizer_load_buffer(vocab, sizeof vocab - 1, "crlf.txt", &t));
    assert_int_equal(bert_tokenizer_vocab_size(t), 10);
    assert_int_equal(bert_tokenizer_special_ids(t).unk, 1);
    assert_int_equal(bert_tokenizer_special_ids(t).cls, 2);
    assert_int_equal(bert_tokenizer_token_to_id(t, "dog", 3), 7);
    assert_int_equal(bert_tokenizer_token_to_id(t, "cow", 3), 9);
    assert_int_equal(bert_tokenizer_token_to_id(t, "", 0), 8);
    size_t len;
    assert_string_equal(bert_tokenizer_id_to_token(t, 5, &len), "dog");
    assert_int_equal(len, 3);
    assert_null(bert_tokenizer_id_to_token(t, 10, NULL));
    assert_null(bert_tokenizer_id_to_token(t, -1, NULL));
    bert_tokenizer_free(t);
}

/* ---- encoding rules --------------------------------------------------------- */

/* NFD sorts combining marks by class; Mn marks are then dropped, so only
 * spacing marks (Mc) with a nonzero class show the order. BERT's vocabulary
 * has none of them, so a small one does. */
static void test_spacing_marks_in_canonical_order(void **state)
{
    (void)state;
    const char vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"
                         "x\xf0\x9d\x85\xa5\xf0\x9d\x85\xady\n"  /* x U+1D165 (class 216) U+1D16D (226) y */
                         "x\xf0\x9d\x85\xad\xf0\x9d\x85\xa5y\n"; /* the unsorted spelling, never produced */
    bert_tokenizer *t;
    assert_ok(bert_tokenizer_load_buffer(vocab, sizeof vocab - 1, "marks.txt", &t));
    const char *texts[] = {
        "x\xf0\x9d\x85\xad\xf0\x9d\x85\xa5y",         /* 226 216 */
        "x\xf0\x9d\x85\xa5\xf0\x9d\x85\xady",         /* 216 226 */
        "X\xf0\x9d\x85\xad\xcc\x81\xf0\x9d\x85\xa5y", /* 226, U+0301 (Mn, 230), 216 */
    };
    for (size_t i = 0; i < 3; i++) {
        int32_t ids[4];
        size_t n;
        assert_ok(bert_tokenizer_encode(t, texts[i], strlen(texts[i]), 0, ids, 4, &n));
        if (n != 2 || ids[1] != 5)
            fail_msg("text %zu: %zu ids, second %d; expected [CLS] 5", i, n, n > 1 ? ids[1] : -1);
    }
    bert_tokenizer_free(t);
}

static void test_no_trailing_sep_and_truncation(void **state)
{
    (void)state;
    NEED_BERT();
    int32_t ids[16];
    size_t n;
    const char *text = "a dog on a red sofa";
    assert_ok(bert_tokenizer_encode(bert, text, strlen(text), 0, ids, 16, &n));
    const int32_t full[] = {101, 1037, 3899, 2006, 1037, 2417, 10682};
    assert_int_equal(n, 7);
    assert_memory_equal(ids, full, sizeof full);
    assert_ok(bert_tokenizer_encode(bert, text, strlen(text), 4, ids, 16, &n));
    assert_int_equal(n, 4); /* [CLS] + 3 pieces */
    assert_memory_equal(ids, full, 4 * sizeof *ids);
    /* max_length 1 keeps [CLS] alone (HF's slow tokenizer logs an error and does not truncate there). */
    assert_ok(bert_tokenizer_encode(bert, text, strlen(text), 1, ids, 16, &n));
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 101);
    assert_ok(bert_tokenizer_encode(bert, "", 0, 0, ids, 16, &n));
    assert_int_equal(n, 1);
    /* VQA answers carry their own [SEP]. */
    assert_ok(bert_tokenizer_encode(bert, "yes[SEP]", 8, 0, ids, 16, &n));
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], 2748);
    assert_int_equal(ids[2], 102);
}

static void test_encode_reports_needed_capacity(void **state)
{
    (void)state;
    NEED_BERT();
    int32_t ids[4];
    size_t n = 99;
    const char *text = "one two three four five";
    assert_error(bert_tokenizer_encode(bert, text, strlen(text), 0, ids, 4, &n), ALBEF_ERR_INVALID,
                 "needs 6 ids, capacity is 4");
    assert_int_equal(n, 0);
    assert_ok(bert_tokenizer_encode(bert, text, strlen(text), 4, ids, 4, &n));
    assert_int_equal(n, 4);
    assert_error(bert_tokenizer_encode(bert, text, strlen(text), 0, NULL, 0, &n), ALBEF_ERR_INVALID, "capacity 0");
}

static void test_tokenize_counts_past_capacity(void **state)
{
    (void)state;
    NEED_BERT();
    int32_t ids[2] = {-7, -7};
    size_t n;
    const char *text = "unaffable runners!";
    assert_ok(bert_tokenizer_tokenize(bert, text, strlen(text), ids, 1, &n));
    assert_int_equal(n, 5); /* una ##ffa ##ble runners ! */
    assert_int_equal(ids[0], 14477);
    assert_int_equal(ids[1], -7);
    assert_ok(bert_tokenizer_tokenize(bert, text, strlen(text), NULL, 0, &n));
    assert_int_equal(n, 5);
}

static void test_long_inputs_are_bounded(void **state)
{
    (void)state;
    NEED_BERT();
    enum { N = 1 << 20 };
    char *text = malloc(N);
    assert_non_null(text);
    memset(text, 'a', N);
    int32_t ids[8];
    size_t n;
    /* One word of a million letters: a single [UNK]. */
    assert_ok(bert_tokenizer_encode(bert, text, N, 0, ids, 8, &n));
    assert_int_equal(n, 2);
    assert_int_equal(ids[1], 100);
    /* Half a million words: counted in full, truncated on request. */
    for (size_t i = 1; i < N; i += 2)
        text[i] = ' ';
    assert_ok(bert_tokenizer_tokenize(bert, text, N, ids, 8, &n));
    assert_int_equal(n, N / 2);
    assert_ok(bert_tokenizer_encode(bert, text, N, 5, ids, 8, &n));
    assert_int_equal(n, 5);
    free(text);
}

static void test_invalid_utf8_is_dropped_without_splitting(void **state)
{
    (void)state;
    NEED_BERT();
    int32_t a[16], b[16];
    size_t na, nb;
    const char *clean = "running dogs";
    const char *dirty = "run\xff\xc3ning d\xe2\x82og\xf0\x9f" "s\x80";
    assert_ok(bert_tokenizer_encode(bert, clean, strlen(clean), 0, a, 16, &na));
    assert_ok(bert_tokenizer_encode(bert, dirty, strlen(dirty), 0, b, 16, &nb));
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
}

static void test_random_bytes_never_crash(void **state)
{
    (void)state;
    NEED_BERT();
    rng_state r;
    rng_seed(&r, 12345);
    static char text[512];
    static int32_t ids[2048];
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = rng_below(&r, sizeof text);
        for (size_t i = 0; i < len; i++) {
            /* Mostly bytes that matter: ASCII, lead and continuation bytes, '[' for specials. */
            uint32_t kind = rng_below(&r, 4);
            uint32_t byte = kind == 0   ? rng_below(&r, 256)
                            : kind == 1 ? 0x80 + rng_below(&r, 0x40)
                            : kind == 2 ? 0xC0 + rng_below(&r, 0x40)
                                        : (uint32_t)(uint8_t) "[SEPMAKCLUNDa ]"[rng_below(&r, 15)];
            text[i] = (char)byte;
        }
        size_t n;
        assert_ok(bert_tokenizer_encode(bert, text, len, 0, ids, 2048, &n));
        assert_true(n >= 1 && n <= len + 1);
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= 30522)
                fail_msg("iteration %d: id %d out of range at %zu", iter, ids[i], i);
    }
}

/* ---- batches ------------------------------------------------------------------ */

static void test_batch_padding_modes(void **state)
{
    (void)state;
    NEED_BERT();
    const char *texts[] = {"a dog", "[PAD] three red apples", "cat"};
    int32_t ids[3 * 16], mask[3 * 16], lengths[3];
    size_t L;
    bert_encode_options opt = bert_encode_options_default();
    assert_ok(bert_tokenizer_encode_batch(bert, texts, NULL, 3, &opt, 16, ids, mask, lengths, &L));
    assert_int_equal(L, 5);
    const int32_t want_ids[] = {101, 1037, 3899, 0, 0, 101, 0, 2093, 2417, 18108, 101, 4937, 0, 0, 0};
    const int32_t want_mask[] = {1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0};
    assert_memory_equal(ids, want_ids, sizeof want_ids);
    assert_memory_equal(mask, want_mask, sizeof want_mask); /* the literal [PAD] is a real token */
    assert_int_equal(lengths[0], 3);
    assert_int_equal(lengths[1], 5);
    assert_int_equal(lengths[2], 2);

    opt.padding = BERT_PADDING_MAX_LENGTH;
    opt.truncation = 1;
    opt.max_length = 4;
    assert_ok(bert_tokenizer_encode_batch(bert, texts, NULL, 3, &opt, 16, ids, mask, lengths, &L));
    assert_int_equal(L, 4);
    const int32_t trunc_ids[] = {101, 1037, 3899, 0, 101, 0, 2093, 2417, 101, 4937, 0, 0};
    const int32_t trunc_mask[] = {1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0};
    assert_memory_equal(ids, trunc_ids, sizeof trunc_ids);
    assert_memory_equal(mask, trunc_mask, sizeof trunc_mask);

    /* Row capacity exactly L: no compaction needed, same result. */
    assert_ok(bert_tokenizer_encode_batch(bert, texts, NULL, 3, &opt, 4, ids, NULL, lengths, &L));
    assert_memory_equal(ids, trunc_ids, sizeof trunc_ids);
}

static void test_batch_errors(void **state)
{
    (void)state;
    NEED_BERT();
    const char *texts[] = {"a dog", "three red apples", NULL};
    int32_t ids[3 * 8], lengths[3];
    size_t L;
    bert_encode_options opt = {.padding = BERT_PADDING_NONE};
    assert_error(bert_tokenizer_encode_batch(bert, texts, NULL, 2, &opt, 8, ids, NULL, lengths, &L), ALBEF_ERR_INVALID,
                 "padding is off but the rows have 3 to 4 ids");
    assert_ok(bert_tokenizer_encode_batch(bert, texts, NULL, 1, &opt, 8, ids, NULL, lengths, &L));
    assert_int_equal(L, 3);
    opt = (bert_encode_options){.padding = BERT_PADDING_MAX_LENGTH, .max_length = 3};
    assert_error(bert_tokenizer_encode_batch(bert, texts, NULL, 2, &opt, 8, ids, NULL, lengths, &L), ALBEF_ERR_INVALID,
                 "text 1 has 4 ids, more than max_length 3");
    opt = (bert_encode_options){.padding = BERT_PADDING_LONGEST, .truncation = 1};
    assert_error(bert_tokenizer_encode_batch(bert, texts, NULL, 2, &opt, 8, ids, NULL, lengths, &L), ALBEF_ERR_INVALID,
                 "truncation needs max_length");
    opt = (bert_encode_options){.padding = BERT_PADDING_MAX_LENGTH};
    assert_error(bert_tokenizer_encode_batch(bert, texts, NULL, 2, &opt, 8, ids, NULL, lengths, &L), ALBEF_ERR_INVALID,
                 "padding to max_length needs max_length");
    opt = bert_encode_options_default();
    assert_error(bert_tokenizer_encode_batch(bert, texts, NULL, 2, &opt, 3, ids, NULL, lengths, &L), ALBEF_ERR_INVALID,
                 "text 1 needs 4 ids, row capacity is 3");
    assert_error(bert_tokenizer_encode_batch(bert, texts, NULL, 3, &opt, 8, ids, NULL, lengths, &L), ALBEF_ERR_INVALID,
                 "text 2 is NULL");
    assert_error(bert_tokenizer_encode_batch(bert, texts, NULL, 2, &opt, 8, ids, NULL, NULL, &L), ALBEF_ERR_INVALID,
                 "no texts, ids, lengths or row capacity");
    opt = (bert_encode_options){.padding = (enum bert_padding)7};
    assert_error(bert_tokenizer_encode_batch(bert, texts, NULL, 2, &opt, 8, ids, NULL, lengths, &L), ALBEF_ERR_INVALID,
                 "unknown padding mode 7");
    opt = (bert_encode_options){.padding = BERT_PADDING_MAX_LENGTH, .truncation = 1, .max_length = 9};
    assert_error(bert_tokenizer_encode_batch(bert, texts, NULL, 2, &opt, 8, ids, NULL, lengths, &L), ALBEF_ERR_INVALID,
                 "rows of 9 ids exceed row capacity 8");
}

static void test_batch_alloc_sizes_rows(void **state)
{
    (void)state;
    NEED_BERT();
    const char *texts[] = {"x", "a much longer caption about a dog running on the beach at sunset", "\0hidden"};
    size_t lens[] = {1, strlen(texts[1]), 7};
    bert_encode_options opt = bert_encode_options_default();
    bert_batch b;
    assert_ok(bert_tokenizer_encode_batch_alloc(bert, texts, lens, 3, &opt, &b));
    assert_int_equal(b.batch, 3);
    assert_int_equal(b.length, 15);
    assert_int_equal(b.lengths[0], 2);
    assert_int_equal(b.lengths[1], 15);
    assert_int_equal(b.lengths[2], 2); /* NUL is dropped like any control character */
    assert_int_equal(b.ids[2 * 15 + 1], 5023);
    assert_int_equal(b.mask[2 * 15 + 2], 0);
    bert_batch_free(&b);
    opt = (bert_encode_options){.padding = BERT_PADDING_MAX_LENGTH, .truncation = 1, .max_length = 30};
    assert_ok(bert_tokenizer_encode_batch_alloc(bert, texts, lens, 3, &opt, &b));
    assert_int_equal(b.length, 30);
    bert_batch_free(&b);
    assert_ok(bert_tokenizer_encode_batch_alloc(bert, NULL, NULL, 0, &opt, &b));
    assert_int_equal(b.batch, 0);
    bert_batch_free(&b);
}

/* ---- threads ------------------------------------------------------------------ */

typedef struct {
    const char *const *texts;
    size_t n;
    int32_t *ids; /* (n, 64) */
    int rc;
} thread_job;

static void *encode_all(void *arg)
{
    thread_job *j = arg;
    for (size_t i = 0; i < j->n && j->rc == ALBEF_OK; i++) {
        size_t n;
        j->rc = bert_tokenizer_encode(bert, j->texts[i], strlen(j->texts[i]), 64, j->ids + i * 64, 64, &n);
        for (size_t k = n; k < 64; k++)
            j->ids[i * 64 + k] = -1;
    }
    return NULL;
}

static void test_concurrent_encodes_agree(void **state)
{
    (void)state;
    NEED_BERT();
    static const char *const texts[] = {"a man riding a wave on top of a surfboard",
                                        "Ünïcödé tëxt wïth áccents",
                                        "中文和日本語のテキスト",
                                        "yes[SEP]",
                                        "emoji 👨‍👩‍👧 and ZWJ",
                                        "punctuation!!! (lots) of it...",
                                        "tabs\tand\nnewlines"};
    enum { T = 4, REPS = 200, N = sizeof texts / sizeof texts[0] };
    static const char *many[N * REPS];
    for (size_t i = 0; i < N * REPS; i++)
        many[i] = texts[i % N];
    static int32_t out[T][N * REPS * 64];
    pthread_t th[T];
    thread_job jobs[T];
    for (int k = 0; k < T; k++) {
        jobs[k] = (thread_job){.texts = many, .n = N * REPS, .ids = out[k], .rc = ALBEF_OK};
        assert_int_equal(pthread_create(&th[k], NULL, encode_all, &jobs[k]), 0);
    }
    for (int k = 0; k < T; k++) {
        pthread_join(th[k], NULL);
        assert_int_equal(jobs[k].rc, ALBEF_OK);
    }
    for (int k = 1; k < T; k++)
        assert_memory_equal(out[0], out[k], sizeof out[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_texts_match_hf),
        cmocka_unit_test(test_golden_batches_match_hf),
        cmocka_unit_test(test_specials_are_found_by_name),
        cmocka_unit_test(test_missing_special_token_is_named),
        cmocka_unit_test(test_vocab_file_errors),
        cmocka_unit_test(test_vocab_line_endings_and_duplicates),
        cmocka_unit_test(test_spacing_marks_in_canonical_order),
        cmocka_unit_test(test_no_trailing_sep_and_truncation),
        cmocka_unit_test(test_encode_reports_needed_capacity),
        cmocka_unit_test(test_tokenize_counts_past_capacity),
        cmocka_unit_test(test_long_inputs_are_bounded),
        cmocka_unit_test(test_invalid_utf8_is_dropped_without_splitting),
        cmocka_unit_test(test_random_bytes_never_crash),
        cmocka_unit_test(test_batch_padding_modes),
        cmocka_unit_test(test_batch_errors),
        cmocka_unit_test(test_batch_alloc_sizes_rows),
        cmocka_unit_test(test_concurrent_encodes_agree),
    };
    return cmocka_run_group_tests_name("tokenizer", tests, load_bert, free_bert);
}
