/* The BERT WordPiece tokenizer with ALBEF's rule.
 *
 * Tokenisation is Hugging Face's slow BertTokenizer with do_lower_case=True
 * (transformers 4.x), bit for bit:
 *   1. Special tokens written literally in the text ("[PAD]", "[UNK]", "[CLS]",
 *      "[SEP]", "[MASK]", case-sensitive) become that token; the text around
 *      them is tokenised on its own ("yes[SEP]" -> yes [SEP]).
 *   2. Lowercase (Python str.lower() per character); drop U+0000, U+FFFD and
 *      control/format/unassigned characters (category C*, except \t \n \r);
 *      whitespace (space, \t, \n, \r, Zs, and U+2028/U+2029 which str.split()
 *      splits on) separates words; every CJK ideograph (HF's ranges) is a word.
 *   3. Per word: NFD, drop nonspacing marks (Mn), split every punctuation
 *      character (ASCII 33-47, 58-64, 91-96, 123-126, Unicode P*) into its own
 *      piece.
 *   4. WordPiece: greedy longest match first, "##" continuations; a piece of
 *      more than 100 code points, or one with no full match, is [UNK].
 * ALBEF's change: a single sequence encodes as [CLS] x1 ... xn, with no
 * trailing [SEP]; truncation to max_length K keeps [CLS] and K-1 pieces.
 *
 * Input is UTF-8. Ill-formed bytes become U+FFFD, as Python's
 * decode(errors="replace") does, and step 2 drops them: invalid bytes vanish
 * without splitting the word they sit in. Character data is Unicode 15.0
 * (see text/unicode.h for the one difference from Python 3.11).
 *
 * A loaded tokenizer is immutable: encode from any number of threads. No
 * call allocates except load and the *_alloc batch helper. */
#ifndef ALBEF_TEXT_TOKENIZER_H
#define ALBEF_TEXT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define BERT_MAX_INPUT_CHARS_PER_WORD 100

typedef struct bert_tokenizer bert_tokenizer;

/* Ids of the special tokens, found by name in the vocabulary. */
typedef struct {
    int32_t pad, unk, cls, sep, mask;
} bert_special_ids;

/* Loads vocab.txt (one token per line, id = line number). Every special
 * token must be present; the error names the file and the missing token. */
int bert_tokenizer_load(const char *vocab_path, bert_tokenizer **out);
/* The same from memory; `name` stands for the file in error messages. */
int bert_tokenizer_load_buffer(const char *data, size_t size, const char *name, bert_tokenizer **out);
void bert_tokenizer_free(bert_tokenizer *t);

int32_t bert_tokenizer_vocab_size(const bert_tokenizer *t);
bert_special_ids bert_tokenizer_special_ids(const bert_tokenizer *t);
/* Id of a vocabulary entry, or -1. */
int32_t bert_tokenizer_token_to_id(const bert_tokenizer *t, const char *token, size_t len);
/* Text of id (NUL-terminated; *len optional), or NULL when out of range. */
const char *bert_tokenizer_id_to_token(const bert_tokenizer *t, int32_t id, size_t *len);

/* Word pieces of text[0..len) (no [CLS]): writes the first min(n, cap) ids
 * to `ids` (may be NULL when cap is 0) and sets *n_pieces to n, the count
 * for the whole text. */
int bert_tokenizer_tokenize(const bert_tokenizer *t, const char *text, size_t len, int32_t *ids, size_t cap,
                            size_t *n_pieces);

/* [CLS] followed by the pieces of text[0..len). With max_length K > 0 the
 * result is truncated to K ids; with K == 0 it is not truncated. Fails with
 * ALBEF_ERR_INVALID when the result needs more than cap ids. */
int bert_tokenizer_encode(const bert_tokenizer *t, const char *text, size_t len, size_t max_length, int32_t *ids,
                          size_t cap, size_t *n_ids);

enum bert_padding {
    BERT_PADDING_NONE = 0,       /* every row must have the same length */
    BERT_PADDING_LONGEST = 1,    /* pad to the longest row of the batch */
    BERT_PADDING_MAX_LENGTH = 2, /* pad to max_length */
};

/* As the Python call tokenizer(texts, padding=..., truncation=..., max_length=K). */
typedef struct {
    enum bert_padding padding;
    int truncation;    /* nonzero: keep at most max_length ids per row */
    size_t max_length; /* K; 0 = none (then truncation and max_length padding are errors) */
} bert_encode_options;

/* padding longest, no truncation, no max_length. */
bert_encode_options bert_encode_options_default(void);

/* Encodes texts[0..n) (UTF-8; text i is lens[i] bytes, or NUL-terminated
 * when lens is NULL) into a (n, L) batch; L goes to *length. `ids` holds
 * n * row_cap entries and is used at stride row_cap while encoding; on
 * return its first n * L entries are the batch, padded with [PAD]. mask (may
 * be NULL, n * row_cap entries) gets (n, L): 1 for real tokens, 0 for
 * padding. lengths ((n), required) gets the real tokens per row. Fails with
 * ALBEF_ERR_INVALID when a row does not fit row_cap, when padding is
 * max_length and a row is longer than K (truncation off), or when padding is
 * none and the rows differ in length. */
int bert_tokenizer_encode_batch(const bert_tokenizer *t, const char *const *texts, const size_t *lens, size_t n,
                                const bert_encode_options *opt, size_t row_cap, int32_t *ids, int32_t *mask,
                                int32_t *lengths, size_t *length);

/* A batch with its own storage. */
typedef struct {
    int32_t *ids;     /* (batch, length) */
    int32_t *mask;    /* (batch, length) */
    int32_t *lengths; /* (batch) */
    size_t batch, length;
} bert_batch;

/* Sizes and allocates the batch, then encodes it; free with bert_batch_free. */
int bert_tokenizer_encode_batch_alloc(const bert_tokenizer *t, const char *const *texts, const size_t *lens, size_t n,
                                      const bert_encode_options *opt, bert_batch *out);
void bert_batch_free(bert_batch *b);

#endif
