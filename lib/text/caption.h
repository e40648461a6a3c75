/* Caption and question normalisation, exactly as ALBEF's dataset/utils.py
 * pre_caption() and pre_question() (Python 3 regex code):
 *
 *   pre_caption:  lowercase (Python str.lower(), Final_Sigma included);
 *                 delete , . ' ! ? " ( ) * # : ; ~ ; map '-' and '/' to ' ';
 *                 "<person>" -> "person"; runs of 2+ whitespace (Python \s)
 *                 -> one ' '; strip trailing '\n's, then ' 's on both sides;
 *                 keep the first max_words ' '-separated words.
 *   pre_question: lowercase; delete the same set; map '-' and '/' to ' ';
 *                 strip trailing ' 's; keep the first max_words words.
 *                 No whitespace collapsing and no left strip.
 *
 * "Words" are what Python's split(' ') gives, so two adjacent spaces make an
 * empty word that counts. Input is UTF-8; ill-formed bytes are replaced by
 * U+FFFD as Python's decode(errors="replace") does (the tokenizer later drops
 * U+FFFD). Output is UTF-8, NUL-terminated. max_words must be >= 0. */
#ifndef ALBEF_TEXT_CAPTION_H
#define ALBEF_TEXT_CAPTION_H

#include <stddef.h>

/* Bytes of `out` (NUL included) that always suffice for an input of `len`
 * bytes: lowercasing and replacement can grow text up to 3x. 0 on overflow. */
size_t caption_output_bound(size_t len);

/* Normalise text[0..len) into out[0..cap); *out_len (optional) gets the
 * length without the NUL. Fails with ALBEF_ERR_INVALID when cap is smaller
 * than the text needs at any step (caption_output_bound(len) never fails). */
int pre_caption(const char *text, size_t len, int max_words, char *out, size_t cap, size_t *out_len);
int pre_question(const char *text, size_t len, int max_words, char *out, size_t cap, size_t *out_len);

/* Same, into a malloc'ed string the caller frees. */
int pre_caption_alloc(const char *text, size_t len, int max_words, char **out, size_t *out_len);
int pre_question_alloc(const char *text, size_t len, int max_words, char **out, size_t *out_len);

#endif
