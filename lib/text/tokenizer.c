#include "text/tokenizer.h"

#include "core/error.h"
#include "core/file.h"
#include "text/unicode.h"
#include "text/vocab.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define MAX_WORD BERT_MAX_INPUT_CHARS_PER_WORD

struct bert_tokenizer {
    vocab vocab;
    bert_special_ids special;
};

/* In the order of bert_special_ids. */
static const char *const special_names[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

static int32_t special_id(const bert_special_ids *s, int k)
{
    const int32_t ids[5] = {s->pad, s->unk, s->cls, s->sep, s->mask};
    return ids[k];
}

int bert_tokenizer_load_buffer(const char *data, size_t size, const char *name, bert_tokenizer **out)
{
    *out = NULL;
    bert_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", name);
    int rc = vocab_parse(&t->vocab, data, size, name);
    if (rc != ALBEF_OK) {
        free(t);
        return rc;
    }
    int32_t ids[5];
    for (int k = 0; k < 5; k++) {
        ids[k] = vocab_find_word(&t->vocab, special_names[k], strlen(special_names[k]));
        if (ids[k] < 0) {
            rc = albef_error(ALBEF_ERR_INVALID, "%s: special token '%s' is not in the vocabulary (%d tokens)", name,
                             special_names[k], (int)t->vocab.n);
            bert_tokenizer_free(t);
            return rc;
        }
    }
    t->special = (bert_special_ids){.pad = ids[0], .unk = ids[1], .cls = ids[2], .sep = ids[3], .mask = ids[4]};
    *out = t;
    return ALBEF_OK;
}

int bert_tokenizer_load(const char *vocab_path, bert_tokenizer **out)
{
    *out = NULL;
    char *data;
    size_t size;
    int rc = file_read_all(vocab_path, &data, &size);
    if (rc != ALBEF_OK)
        return rc;
    rc = bert_tokenizer_load_buffer(data, size, vocab_path, out);
    free(data);
    return rc;
}

void bert_tokenizer_free(bert_tokenizer *t)
{
    if (!t)
        return;
    vocab_free(&t->vocab);
    free(t);
}

int32_t bert_tokenizer_vocab_size(const bert_tokenizer *t) { return t->vocab.n; }

bert_special_ids bert_tokenizer_special_ids(const bert_tokenizer *t) { return t->special; }

int32_t bert_tokenizer_token_to_id(const bert_tokenizer *t, const char *token, size_t len)
{
    return vocab_find_word(&t->vocab, token, len);
}

const char *bert_tokenizer_id_to_token(const bert_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->vocab.n)
        return NULL;
    if (len)
        *len = t->vocab.len[id];
    return t->vocab.text + t->vocab.start[id];
}

/* ---- the tokenizer proper -------------------------------------------------
 *
 * One pass over the text, in HF's order per character: lowercase, clean,
 * whitespace/CJK split, NFD, drop Mn, punctuation split. Words are never
 * materialised: a piece (the stretch between punctuation and whitespace)
 * is buffered up to 100 code points, beyond which it can only be [UNK], so
 * memory stays fixed however long the input. */

typedef struct {
    const bert_tokenizer *t;
    int32_t *ids; /* output, first `cap` ids */
    size_t cap;
    size_t n;     /* ids produced so far (may exceed cap) */
    size_t limit; /* stop once n reaches this (truncation) */

    size_t piece_n;                /* code points in the current piece (may exceed MAX_WORD) */
    uint16_t piece_off[MAX_WORD + 1]; /* byte offset of each code point; piece_off[0] = 0 */
    char piece[MAX_WORD * 4];

    /* Non-Mn characters with a nonzero combining class seen since the last
     * starter. NFD sorts such a run by combining class; Mn members are
     * dropped anyway, so only these need sorting. Past MAX_WORD + 1 of
     * them the piece is [UNK] whatever their order, so they are counted. */
    size_t run_n, run_extra;
    uint32_t run_cp[MAX_WORD + 1];
    uint8_t run_ccc[MAX_WORD + 1];
} wp_state;

static inline void emit(wp_state *st, int32_t id)
{
    if (st->n < st->cap)
        st->ids[st->n] = id;
    st->n++;
}

static inline void piece_append(wp_state *st, uint32_t cp)
{
    if (st->piece_n < MAX_WORD) {
        uint16_t at = st->piece_off[st->piece_n];
        if (cp < 0x80) {
            st->piece[at] = (char)cp;
            st->piece_off[st->piece_n + 1] = (uint16_t)(at + 1);
        } else {
            st->piece_off[st->piece_n + 1] = (uint16_t)(at + utf8_encode(cp, (uint8_t *)st->piece + at));
        }
    }
    st->piece_n++;
}

/* Greedy longest-match-first over the buffered piece. */
static void wordpiece(wp_state *st)
{
    const vocab *v = &st->t->vocab;
    const uint16_t *off = st->piece_off;
    int32_t sub[MAX_WORD];
    size_t n_sub = 0, start = 0, n = st->piece_n;
    while (start < n) {
        const vocab_table *table = start == 0 ? &v->words : &v->pieces;
        size_t end = n;
        while (end > start && (size_t)(off[end] - off[start]) > table->max_key_len)
            end--;
        int32_t id = -1;
        for (; end > start; end--) {
            const char *key = st->piece + off[start];
            size_t len = (size_t)(off[end] - off[start]);
            id = start == 0 ? vocab_find_word(v, key, len) : vocab_find_piece(v, key, len);
            if (id >= 0)
                break;
        }
        if (id < 0) {
            emit(st, st->t->special.unk);
            return;
        }
        sub[n_sub++] = id;
        start = end;
    }
    for (size_t i = 0; i < n_sub; i++)
        emit(st, sub[i]);
}

static void piece_flush(wp_state *st)
{
    if (st->piece_n == 0)
        return;
    if (st->piece_n > MAX_WORD)
        emit(st, st->t->special.unk);
    else
        wordpiece(st);
    st->piece_n = 0;
}

static void run_flush(wp_state *st)
{
    if (st->run_n == 0)
        return;
    /* Stable insertion sort by combining class: NFD's canonical order. */
    for (size_t i = 1; i < st->run_n; i++) {
        uint32_t cp = st->run_cp[i];
        uint8_t ccc = st->run_ccc[i];
        size_t j = i;
        for (; j > 0 && st->run_ccc[j - 1] > ccc; j--) {
            st->run_cp[j] = st->run_cp[j - 1];
            st->run_ccc[j] = st->run_ccc[j - 1];
        }
        st->run_cp[j] = cp;
        st->run_ccc[j] = ccc;
    }
    /* All of them are Mc: never punctuation or space. */
    for (size_t i = 0; i < st->run_n; i++)
        piece_append(st, st->run_cp[i]);
    st->piece_n += st->run_extra;
    st->run_n = st->run_extra = 0;
}

static inline void word_break(wp_state *st)
{
    run_flush(st);
    piece_flush(st);
}

static inline bool is_ascii_punct(uint32_t c)
{
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
}

static inline void add_punct(wp_state *st, uint32_t cp)
{
    word_break(st);
    piece_append(st, cp);
    piece_flush(st);
}

/* One code point of the NFD of a lowercased, cleaned character. */
static void add_decomposed(wp_state *st, uint32_t cp)
{
    const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
    if (p->combining_class == 0) {
        run_flush(st);
        if (p->category == UTF8PROC_CATEGORY_MN)
            return;
        if (is_ascii_punct(cp) || (p->category >= UTF8PROC_CATEGORY_PC && p->category <= UTF8PROC_CATEGORY_PO))
            add_punct(st, cp);
        else
            piece_append(st, cp);
        return;
    }
    if (p->category == UTF8PROC_CATEGORY_MN)
        return; /* dropped, but the run goes on: NFD orders across it */
    if (st->run_n < MAX_WORD + 1) {
        st->run_cp[st->run_n] = cp;
        st->run_ccc[st->run_n] = (uint8_t)p->combining_class;
        st->run_n++;
    } else {
        st->run_extra++;
    }
}

static void add_nfd(wp_state *st, uint32_t cp, const utf8proc_property_t *p)
{
    bool hangul = cp >= 0xAC00 && cp <= 0xD7A3;
    if (p->decomp_seqindex == UINT16_MAX && !hangul) {
        add_decomposed(st, cp);
        return;
    }
    utf8proc_int32_t buf[16];
    utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)cp, buf, 16, UTF8PROC_DECOMPOSE, NULL);
    if (n < 1 || n > 16) { /* cannot happen for a valid code point; keep it whole */
        add_decomposed(st, cp);
        return;
    }
    for (utf8proc_ssize_t i = 0; i < n; i++)
        add_decomposed(st, (uint32_t)buf[i]);
}

static bool is_cjk_ideograph(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) ||
           (cp >= 0x2B820 && cp <= 0x2CEAF) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* A lowercased non-ASCII character: clean, split, normalise. */
static void add_char(wp_state *st, uint32_t cp)
{
    if (cp == UNICODE_REPLACEMENT)
        return;
    const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
    switch (p->category) {
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL: /* not HF whitespace, but str.split() splits on it */
    case UTF8PROC_CATEGORY_ZP:
        word_break(st);
        return;
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
        return;
    default:
        break;
    }
    if (is_cjk_ideograph(cp)) {
        word_break(st);
        add_nfd(st, cp, p);
        word_break(st);
        return;
    }
    add_nfd(st, cp, p);
}

enum { ASCII_WORD, ASCII_SPACE, ASCII_DROP, ASCII_PUNCT };

static inline int ascii_class(uint8_t c)
{
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
        return ASCII_SPACE;
    if (c < 0x20 || c == 0x7F)
        return ASCII_DROP;
    return is_ascii_punct(c) ? ASCII_PUNCT : ASCII_WORD;
}

/* Index of the special token spelled at s[0..n), or -1. */
static int match_special(const uint8_t *s, size_t n)
{
    for (int k = 0; k < 5; k++) {
        size_t len = strlen(special_names[k]);
        if (n >= len && memcmp(s, special_names[k], len) == 0)
            return k;
    }
    return -1;
}

static void tokenize_text(wp_state *st, const uint8_t *s, size_t n)
{
    size_t pos = 0;
    while (pos < n && st->n < st->limit) {
        uint8_t b = s[pos];
        if (b < 0x80) {
            pos++;
            switch (ascii_class(b)) {
            case ASCII_WORD:
                run_flush(st);
                piece_append(st, (b >= 'A' && b <= 'Z') ? b + 32u : b);
                break;
            case ASCII_SPACE:
                word_break(st);
                break;
            case ASCII_DROP:
                break;
            case ASCII_PUNCT: {
                int k = b == '[' ? match_special(s + pos - 1, n - pos + 1) : -1;
                if (k >= 0) {
                    word_break(st);
                    emit(st, special_id(&st->t->special, k));
                    pos += strlen(special_names[k]) - 1;
                } else {
                    add_punct(st, b);
                }
                break;
            }
            }
            continue;
        }
        uint32_t low[2];
        size_t n_low = unicode_lower_full(utf8_decode_next(s, n, &pos), low);
        for (size_t k = 0; k < n_low; k++)
            add_char(st, low[k]);
    }
    if (st->n < st->limit)
        word_break(st);
}

static void wp_init(wp_state *st, const bert_tokenizer *t, int32_t *ids, size_t cap, size_t limit)
{
    st->t = t;
    st->ids = ids;
    st->cap = cap;
    st->n = 0;
    st->limit = limit;
    st->piece_n = 0;
    st->piece_off[0] = 0;
    st->run_n = st->run_extra = 0;
}

/* Pieces of the text, at most `limit` of them; returns their count. */
static size_t tokenize_pieces(const bert_tokenizer *t, const char *text, size_t len, int32_t *ids, size_t cap,
                              size_t limit)
{
    wp_state st;
    wp_init(&st, t, ids, cap, limit);
    tokenize_text(&st, (const uint8_t *)text, len);
    return st.n < limit ? st.n : limit;
}

int bert_tokenizer_tokenize(const bert_tokenizer *t, const char *text, size_t len, int32_t *ids, size_t cap,
                            size_t *n_pieces)
{
    *n_pieces = 0;
    if (len && !text)
        return albef_error(ALBEF_ERR_INVALID, "bert_tokenizer_tokenize: text is NULL with length %zu", len);
    if (cap && !ids)
        return albef_error(ALBEF_ERR_INVALID, "bert_tokenizer_tokenize: ids is NULL with capacity %zu", cap);
    *n_pieces = tokenize_pieces(t, text, len, ids, cap, SIZE_MAX);
    return ALBEF_OK;
}

int bert_tokenizer_encode(const bert_tokenizer *t, const char *text, size_t len, size_t max_length, int32_t *ids,
                          size_t cap, size_t *n_ids)
{
    *n_ids = 0;
    if (len && !text)
        return albef_error(ALBEF_ERR_INVALID, "bert_tokenizer_encode: text is NULL with length %zu", len);
    if (cap == 0 || !ids)
        return albef_error(ALBEF_ERR_INVALID, "bert_tokenizer_encode: no room for ids (capacity %zu)", cap);
    ids[0] = t->special.cls;
    size_t limit = max_length ? max_length - 1 : SIZE_MAX;
    size_t total = 1 + tokenize_pieces(t, text, len, ids + 1, cap - 1, limit);
    if (total > cap)
        return albef_error(ALBEF_ERR_INVALID, "bert_tokenizer_encode: text needs %zu ids, capacity is %zu", total,
                           cap);
    *n_ids = total;
    return ALBEF_OK;
}

bert_encode_options bert_encode_options_default(void)
{
    return (bert_encode_options){.padding = BERT_PADDING_LONGEST, .truncation = 0, .max_length = 0};
}

static int check_options(const bert_encode_options *opt)
{
    if (opt->padding != BERT_PADDING_NONE && opt->padding != BERT_PADDING_LONGEST &&
        opt->padding != BERT_PADDING_MAX_LENGTH)
        return albef_error(ALBEF_ERR_INVALID, "bert_tokenizer_encode_batch: unknown padding mode %d",
                           (int)opt->padding);
    if (opt->truncation && opt->max_length == 0)
        return albef_error(ALBEF_ERR_INVALID, "bert_tokenizer_encode_batch: truncation needs max_length > 0");
    if (opt->padding == BERT_PADDING_MAX_LENGTH && opt->max_length == 0)
        return albef_error(ALBEF_ERR_INVALID,
                           "bert_tokenizer_encode_batch: padding to max_length needs max_length > 0");
    if (opt->max_length > INT32_MAX)
        return albef_error(ALBEF_ERR_INVALID, "bert_tokenizer_encode_batch: max_length %zu is too large",
                           opt->max_length);
    return ALBEF_OK;
}

static size_t row_limit(const bert_encode_options *opt) { return opt->truncation ? opt->max_length - 1 : SIZE_MAX; }

int bert_tokenizer_encode_batch(const bert_tokenizer *t, const char *const *texts, const size_t *lens, size_t n,
                                const bert_encode_options *opt, size_t row_cap, int32_t *ids, int32_t *mask,
                                int32_t *lengths, size_t *length)
{
    *length = 0;
    int rc = check_options(opt);
    if (rc != ALBEF_OK)
        return rc;
    if (n && (!texts || !ids || !lengths || row_cap == 0))
        return albef_error(ALBEF_ERR_INVALID,
                           "bert_tokenizer_encode_batch: %zu texts but no texts, ids, lengths or row capacity", n);
    size_t limit = row_limit(opt);
    size_t longest = 0, shortest = SIZE_MAX;
    /* Rows are written at stride row_cap, then moved to stride L and padded:
     * row i goes to i * L <= i * row_cap, and its padding ends at
     * (i + 1) * L <= (i + 1) * row_cap, so no row is overwritten before it
     * has moved. */
    for (size_t i = 0; i < n; i++) {
        if (!texts[i])
            return albef_error(ALBEF_ERR_INVALID, "bert_tokenizer_encode_batch: text %zu is NULL", i);
        int32_t *row = ids + i * row_cap;
        row[0] = t->special.cls;
        size_t len = 1 + tokenize_pieces(t, texts[i], lens ? lens[i] : strlen(texts[i]), row + 1, row_cap - 1, limit);
        if (len > row_cap)
            return albef_error(ALBEF_ERR_INVALID,
                               "bert_tokenizer_encode_batch: text %zu needs %zu ids, row capacity is %zu", i, len,
                               row_cap);
        if (opt->padding == BERT_PADDING_MAX_LENGTH && len > opt->max_length)
            return albef_error(ALBEF_ERR_INVALID,
                               "bert_tokenizer_encode_batch: text %zu has %zu ids, more than max_length %zu, and "
                               "truncation is off",
                               i, len, opt->max_length);
        lengths[i] = (int32_t)len;
        if (len > longest)
            longest = len;
        if (len < shortest)
            shortest = len;
    }
    size_t L = longest;
    if (opt->padding == BERT_PADDING_MAX_LENGTH)
        L = opt->max_length;
    else if (opt->padding == BERT_PADDING_NONE && n > 1 && shortest != longest)
        return albef_error(ALBEF_ERR_INVALID,
                           "bert_tokenizer_encode_batch: padding is off but the rows have %zu to %zu ids", shortest,
                           longest);
    if (L > row_cap)
        return albef_error(ALBEF_ERR_INVALID, "bert_tokenizer_encode_batch: rows of %zu ids exceed row capacity %zu", L,
                           row_cap);
    for (size_t i = 0; i < n; i++) {
        size_t len = (size_t)lengths[i];
        int32_t *row = ids + i * L;
        if (L != row_cap)
            memmove(row, ids + i * row_cap, len * sizeof *ids);
        for (size_t j = len; j < L; j++)
            row[j] = t->special.pad;
        if (mask)
            for (size_t j = 0; j < L; j++)
                mask[i * L + j] = j < len;
    }
    *length = L;
    return ALBEF_OK;
}

int bert_tokenizer_encode_batch_alloc(const bert_tokenizer *t, const char *const *texts, const size_t *lens, size_t n,
                                      const bert_encode_options *opt, bert_batch *out)
{
    memset(out, 0, sizeof *out);
    int rc = check_options(opt);
    if (rc != ALBEF_OK)
        return rc;
    if (n && !texts)
        return albef_error(ALBEF_ERR_INVALID, "bert_tokenizer_encode_batch: %zu texts but texts is NULL", n);
    size_t limit = row_limit(opt), row_cap = 1;
    for (size_t i = 0; i < n; i++) {
        if (!texts[i])
            return albef_error(ALBEF_ERR_INVALID, "bert_tokenizer_encode_batch: text %zu is NULL", i);
        size_t len = 1 + tokenize_pieces(t, texts[i], lens ? lens[i] : strlen(texts[i]), NULL, 0, limit);
        if (len > row_cap)
            row_cap = len;
    }
    if (opt->padding == BERT_PADDING_MAX_LENGTH && opt->max_length > row_cap)
        row_cap = opt->max_length;
    size_t cells = n * row_cap;
    if (n && cells / n != row_cap)
        return albef_error(ALBEF_ERR_NOMEM, "bert_tokenizer_encode_batch: %zu rows of %zu ids overflow", n, row_cap);
    out->ids = malloc((cells ? cells : 1) * sizeof *out->ids);
    out->mask = malloc((cells ? cells : 1) * sizeof *out->mask);
    out->lengths = malloc((n ? n : 1) * sizeof *out->lengths);
    if (!out->ids || !out->mask || !out->lengths) {
        bert_batch_free(out);
        return albef_error(ALBEF_ERR_NOMEM, "bert_tokenizer_encode_batch: out of memory for %zu x %zu ids", n, row_cap);
    }
    rc = bert_tokenizer_encode_batch(t, texts, lens, n, opt, row_cap, out->ids, out->mask, out->lengths, &out->length);
    if (rc != ALBEF_OK) {
        bert_batch_free(out);
        return rc;
    }
    out->batch = n;
    return ALBEF_OK;
}

void bert_batch_free(bert_batch *b)
{
    free(b->ids);
    free(b->mask);
    free(b->lengths);
    memset(b, 0, sizeof *b);
}
