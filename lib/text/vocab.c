#include "text/vocab.h"

#include "core/error.h"
#include "text/unicode.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

static bool token_has_key(const vocab *v, const vocab_table *t, int32_t id, const char *key, size_t len)
{
    return v->len[id] - t->key_skip == len && memcmp(v->text + v->start[id] + t->key_skip, key, len) == 0;
}

static int32_t table_find(const vocab *v, const vocab_table *t, const char *key, size_t len)
{
    if (len > t->max_key_len)
        return -1;
    uint32_t h = hash_bytes(key, len);
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const vocab_slot *s = &t->slots[i];
        if (s->id < 0)
            return -1;
        if (s->hash == h && token_has_key(v, t, s->id, key, len))
            return s->id;
    }
}

/* Later lines replace earlier ones with the same key, as in a Python dict. */
static void table_insert(const vocab *v, vocab_table *t, int32_t id)
{
    const char *key = v->text + v->start[id] + t->key_skip;
    size_t len = v->len[id] - t->key_skip;
    uint32_t h = hash_bytes(key, len);
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        vocab_slot *s = &t->slots[i];
        if (s->id < 0 || (s->hash == h && token_has_key(v, t, s->id, key, len))) {
            s->hash = h;
            s->id = id;
            break;
        }
    }
    if (len > t->max_key_len)
        t->max_key_len = len;
}

static int table_init(vocab_table *t, size_t entries, size_t key_skip)
{
    size_t cap = 16;
    while (cap < 2 * entries)
        cap *= 2;
    t->slots = malloc(cap * sizeof *t->slots);
    if (!t->slots)
        return ALBEF_ERR_NOMEM;
    for (size_t i = 0; i < cap; i++)
        t->slots[i].id = -1;
    t->mask = (uint32_t)(cap - 1);
    t->key_skip = key_skip;
    t->max_key_len = 0;
    return ALBEF_OK;
}

static bool is_piece(const vocab *v, int32_t id)
{
    return v->len[id] >= 2 && v->text[v->start[id]] == '#' && v->text[v->start[id] + 1] == '#';
}

static bool valid_utf8(const char *s, size_t n)
{
    size_t pos = 0;
    while (pos < n) {
        size_t at = pos;
        uint32_t c = utf8_decode_next((const uint8_t *)s, n, &pos);
        /* A genuine U+FFFD in the file is 3 bytes; a replacement is not. */
        if (c == UNICODE_REPLACEMENT && !(pos - at == 3 && memcmp(s + at, "\xEF\xBF\xBD", 3) == 0))
            return false;
    }
    return true;
}

int vocab_parse(vocab *v, const char *data, size_t size, const char *name)
{
    memset(v, 0, sizeof *v);
    if (size >= UINT32_MAX)
        return albef_error(ALBEF_ERR_UNSUPPORTED, "%s: vocabulary of %zu bytes is larger than 4 GiB", name, size);
    size_t lines = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '\n' || data[i] == '\r') {
            lines++;
            if (data[i] == '\r' && i + 1 < size && data[i + 1] == '\n')
                i++;
        }
    }
    if (size > 0 && data[size - 1] != '\n' && data[size - 1] != '\r')
        lines++; /* last line without a newline */
    if (lines > INT32_MAX)
        return albef_error(ALBEF_ERR_UNSUPPORTED, "%s: %zu lines, more than int32 ids can number", name, lines);
    v->text = malloc(size + 1);
    v->start = malloc((lines ? lines : 1) * sizeof *v->start);
    v->len = malloc((lines ? lines : 1) * sizeof *v->len);
    if (!v->text || !v->start || !v->len) {
        vocab_free(v);
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for %zu tokens", name, lines);
    }
    size_t w = 0, line_start = 0, n = 0;
    for (size_t i = 0; i <= size; i++) {
        bool end = i == size || data[i] == '\n' || data[i] == '\r';
        if (!end)
            continue;
        if (i == size && i == line_start)
            break; /* the file ended with a newline (or is empty) */
        size_t len = i - line_start;
        if (!valid_utf8(data + line_start, len)) {
            vocab_free(v);
            return albef_error(ALBEF_ERR_INVALID, "%s: line %zu: token is not valid UTF-8", name, n + 1);
        }
        memcpy(v->text + w, data + line_start, len);
        v->start[n] = (uint32_t)w;
        v->len[n] = (uint32_t)len;
        w += len;
        v->text[w++] = '\0';
        n++;
        if (i < size && data[i] == '\r' && i + 1 < size && data[i + 1] == '\n')
            i++;
        line_start = i + 1;
    }
    v->n = (int32_t)n;
    size_t n_pieces = 0;
    for (int32_t id = 0; id < v->n; id++)
        n_pieces += is_piece(v, id);
    if (table_init(&v->words, n, 0) != ALBEF_OK || table_init(&v->pieces, n_pieces, 2) != ALBEF_OK) {
        vocab_free(v);
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for the hash tables of %zu tokens", name, n);
    }
    for (int32_t id = 0; id < v->n; id++) {
        table_insert(v, &v->words, id);
        if (is_piece(v, id))
            table_insert(v, &v->pieces, id);
    }
    return ALBEF_OK;
}

void vocab_free(vocab *v)
{
    free(v->text);
    free(v->start);
    free(v->len);
    free(v->words.slots);
    free(v->pieces.slots);
    memset(v, 0, sizeof *v);
}

int32_t vocab_find_word(const vocab *v, const char *key, size_t len) { return table_find(v, &v->words, key, len); }

int32_t vocab_find_piece(const vocab *v, const char *key, size_t len) { return table_find(v, &v->pieces, key, len); }
