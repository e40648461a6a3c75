/* The words of the synthetic data set: the vocabulary file and the VQA
 * answer list. The test suite checks that every generated sentence uses only
 * these words, so a new phrasing must add its words here. */
#include "data/synth.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

static const char *const words[] = {
    /* objects */
    "red", "green", "blue", "yellow", "purple", "orange", "white", "black",
    "circle", "square", "triangle", "star", "cross", "circles", "squares", "triangles", "stars", "crosses",
    "object", "objects", "shape", "shapes", "small", "large", "big", "little",
    "gray", "dark", "light", "background",
    /* counts */
    "no", "none", "one", "two", "three", "four", "five", "six", "seven", "eight", "single", "exactly", "only",
    /* places */
    "on", "at", "in", "the", "left", "right", "top", "bottom", "center", "middle", "corner",
    "to", "of", "above", "below",
    /* statements and questions */
    "a", "an", "and", "or", "is", "are", "there", "image", "images", "picture", "contains", "contain", "shows",
    "how", "many", "what", "color", "size", "where", "yes",
    /* pairs */
    "both", "neither", "either", "more", "fewer", "than", "same", "number", "total",
    /* properties no picture shows */
    "made", "wood", "metal", "paper", "plastic", "glass", "heavy", "fragile", "expensive", "soft", "hollow",
    "magnetic", "toy", "sticker", "warm", "wet", "belongs", "child", "was", "painted", "yesterday", "by", "hand",
    "brand", "new", "very", "old", "drawn", "hangs", "classroom", "teacher", "page", "from", "book", "printed",
};

size_t synth_word_count(void) { return sizeof words / sizeof words[0]; }
const char *synth_word(size_t i) { return i < synth_word_count() ? words[i] : NULL; }

static const char *const answers[] = {
    "0", "1", "2", "3", "4", "none", "one", "two", "three", "four",
    "red", "green", "blue", "yellow", "purple", "orange", "white", "black",
    "circle", "square", "triangle", "star", "cross",
    "small", "large", "big", "little",
    "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right", "middle",
    "yes", "no",
};

size_t synth_answer_count(void) { return sizeof answers / sizeof answers[0]; }
const char *synth_answer(size_t i) { return i < synth_answer_count() ? answers[i] : NULL; }

typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} vocab_builder;

static int has_line(const vocab_builder *v, const char *token, size_t n)
{
    for (size_t at = 0; at < v->len;) {
        const char *end = memchr(v->buf + at, '\n', v->len - at);
        size_t line = (size_t)(end - (v->buf + at));
        if (line == n && memcmp(v->buf + at, token, n) == 0)
            return 1;
        at += line + 1;
    }
    return 0;
}

static void add_token(vocab_builder *v, const char *token, size_t n)
{
    if (v->failed || has_line(v, token, n))
        return;
    if (v->len + n + 2 > v->cap) {
        char *grown = realloc(v->buf, v->cap * 2);
        if (!grown) {
            v->failed = 1;
            return;
        }
        v->buf = grown;
        v->cap *= 2;
    }
    memcpy(v->buf + v->len, token, n);
    v->len += n;
    v->buf[v->len++] = '\n';
    v->buf[v->len] = '\0';
}

static int is_word_char(int ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z'); }

int synth_vocab_text(char **text, size_t *len)
{
    static const char *const specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    static const char punctuation[] = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    vocab_builder v = {malloc(4096), 0, 4096, 0};
    if (!v.buf)
        return albef_error(ALBEF_ERR_NOMEM, "vocab.txt: out of memory");
    v.buf[0] = '\0';
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++)
        add_token(&v, specials[i], strlen(specials[i]));
    for (size_t i = 0; i < synth_word_count(); i++)
        add_token(&v, words[i], strlen(words[i]));
    for (int ch = 33; ch < 127; ch++) {
        char single = (char)ch;
        if (is_word_char(ch) || strchr(punctuation, ch))
            add_token(&v, &single, 1);
    }
    for (int ch = 33; ch < 127; ch++) {
        char piece[3] = {'#', '#', (char)ch};
        if (is_word_char(ch))
            add_token(&v, piece, 3);
    }
    if (v.failed) {
        free(v.buf);
        return albef_error(ALBEF_ERR_NOMEM, "vocab.txt: out of memory");
    }
    *text = v.buf;
    *len = v.len;
    return ALBEF_OK;
}
