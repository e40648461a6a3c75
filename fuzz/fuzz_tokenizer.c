/* libFuzzer target: random bytes through pre_caption, pre_question and the
 * BERT tokenizer. The first byte picks max_words and max_length, the rest is
 * the text. Checks: outputs fit their documented bounds, every id is in the
 * vocabulary, truncation gives a prefix of the full encoding, the piece
 * count agrees with the encoding, and a batch row equals the single encode.
 * The vocabulary is ../shared/data/bert-base-uncased-vocab.txt
 * (ALBEF_SHARED_DATA), or a small built-in one when that file is absent. */
#include "core/error.h"
#include "text/caption.h"
#include "text/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fallback_vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\n##a\n##b\nthe\ndog\n##s\n.\n,\n!\n"
                                     "\xc3\xa9\n\xe4\xb8\xad\n##\xe4\xb8\xad\n";

static bert_tokenizer *tokenizer(void)
{
    static bert_tokenizer *t;
    if (!t) {
        const char *root = getenv("ALBEF_SHARED_DATA") ? getenv("ALBEF_SHARED_DATA") : "../shared/data";
        char path[1024];
        snprintf(path, sizeof path, "%s/bert-base-uncased-vocab.txt", root);
        if (bert_tokenizer_load(path, &t) != ALBEF_OK &&
            bert_tokenizer_load_buffer(fallback_vocab, sizeof fallback_vocab - 1, "fallback", &t) != ALBEF_OK)
            abort();
    }
    return t;
}

static void check_normalise(const char *text, size_t len, int max_words, int caption)
{
    size_t cap = caption_output_bound(len), n;
    char *out = malloc(cap);
    if (!out)
        return;
    int rc = caption ? pre_caption(text, len, max_words, out, cap, &n)
                     : pre_question(text, len, max_words, out, cap, &n);
    if (rc != ALBEF_OK || n >= cap || out[n] != '\0')
        abort();
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const bert_tokenizer *t = tokenizer();
    int max_words = data[0] & 0x3F;
    size_t max_length = 1 + (data[0] >> 3);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    check_normalise(text, len, max_words, 1);
    check_normalise(text, len, max_words, 0);

    size_t cap = len + 2, n_full, n_trunc, n_pieces;
    int32_t *full = malloc(cap * sizeof *full), *trunc = malloc(cap * sizeof *trunc);
    if (!full || !trunc)
        abort();
    if (bert_tokenizer_encode(t, text, len, 0, full, cap, &n_full) != ALBEF_OK)
        abort();
    if (bert_tokenizer_encode(t, text, len, max_length, trunc, cap, &n_trunc) != ALBEF_OK)
        abort();
    if (bert_tokenizer_tokenize(t, text, len, NULL, 0, &n_pieces) != ALBEF_OK)
        abort();
    int32_t vocab = bert_tokenizer_vocab_size(t);
    if (n_full < 1 || n_full > len + 1 || n_pieces + 1 != n_full)
        abort();
    if (n_trunc != (n_full < max_length ? n_full : max_length) || memcmp(full, trunc, n_trunc * sizeof *full) != 0)
        abort();
    for (size_t i = 0; i < n_full; i++)
        if (full[i] < 0 || full[i] >= vocab)
            abort();

    const char *texts[2] = {text, text};
    size_t lens[2] = {len, len};
    bert_encode_options opt = {.padding = BERT_PADDING_LONGEST, .truncation = 1, .max_length = max_length};
    bert_batch b;
    if (bert_tokenizer_encode_batch_alloc(t, texts, lens, 2, &opt, &b) != ALBEF_OK)
        abort();
    if (b.length != n_trunc || memcmp(b.ids, trunc, n_trunc * sizeof *trunc) != 0 ||
        memcmp(b.ids + b.length, trunc, n_trunc * sizeof *trunc) != 0)
        abort();
    for (size_t i = 0; i < 2 * b.length; i++)
        if (b.mask[i] != 1)
            abort();
    bert_batch_free(&b);
    free(full);
    free(trunc);
    return 0;
}
