/* A WordPiece vocabulary: vocab.txt, one token per line, id = line number
 * (0-based), read as Python's readlines() does (lines end at "\n", "\r\n"
 * or "\r"; a duplicated token maps to its last line). Lookups go through two
 * open-addressing hash tables: one over whole tokens (word starts) and one
 * over the "##" continuation tokens keyed without their "##", so a
 * continuation lookup never has to build the prefixed string. */
#ifndef ALBEF_TEXT_VOCAB_H
#define ALBEF_TEXT_VOCAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t hash;
    int32_t id; /* -1: empty slot */
} vocab_slot;

typedef struct {
    vocab_slot *slots;
    uint32_t mask;      /* capacity - 1 (power of two) */
    size_t key_skip;    /* bytes of each token not part of its key ("##": 2) */
    size_t max_key_len; /* longest key, bounds WordPiece's search */
} vocab_table;

typedef struct {
    char *text;        /* every token, each followed by a NUL */
    uint32_t *start;   /* (n) byte offset of token i in text */
    uint32_t *len;     /* (n) byte length of token i */
    int32_t n;
    vocab_table words; /* all tokens */
    vocab_table pieces; /* tokens starting with "##", keyed by the rest */
} vocab;

/* Parses vocab.txt contents; `name` (the file) goes into error messages.
 * Tokens must be valid UTF-8. */
int vocab_parse(vocab *v, const char *data, size_t size, const char *name);
void vocab_free(vocab *v);

/* Id of the token with these bytes, or -1. vocab_find_word looks a token up
 * as written; vocab_find_piece looks up "##" followed by key. */
int32_t vocab_find_word(const vocab *v, const char *key, size_t len);
int32_t vocab_find_piece(const vocab *v, const char *key, size_t len);

#endif
