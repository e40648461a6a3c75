/* Unicode helpers shared by caption normalisation and the BERT tokenizer:
 * UTF-8 decoding with a fixed policy for invalid bytes, and the few
 * character properties where Python's str methods differ from plain
 * Unicode data (full lowercase mapping, str.isspace, the Final_Sigma context).
 *
 * Character data comes from utf8proc (Unicode 15.0). Python 3.11 ships
 * Unicode 14.0, so the 4,489 code points assigned in 15.0 are unassigned
 * (category Cn) there; here they have their 15.0 properties, which is what
 * Python 3.12 does. Every other code point agrees with Python 3.11. */
#ifndef ALBEF_TEXT_UNICODE_H
#define ALBEF_TEXT_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UNICODE_REPLACEMENT 0xFFFDu

/* Decodes the code point at s[*pos] and advances *pos. Ill-formed input is
 * replaced, as Python's bytes.decode("utf-8", "replace") does: each maximal
 * prefix of a well-formed sequence (or a lone bad byte) becomes one U+FFFD.
 * Surrogates and values above U+10FFFF are ill-formed. Requires *pos < n. */
uint32_t utf8_decode_next(const uint8_t *s, size_t n, size_t *pos);

/* Writes cp (< 0x110000, not a surrogate) as UTF-8; returns 1..4 bytes. */
size_t utf8_encode(uint32_t cp, uint8_t out[4]);

/* Python's str.lower() of one character outside a Final_Sigma context:
 * writes 1 or 2 code points and returns the count (U+0130 gives "i\u0307",
 * the only lowercase mapping longer than one code point). */
size_t unicode_lower_full(uint32_t cp, uint32_t out[2]);

/* Python's str.isspace(), which is also what re's \s and str.split() use. */
bool unicode_is_python_space(uint32_t cp);

/* The two properties Python's Final_Sigma rule reads. The rule tests
 * Case_Ignorable first, so unicode_is_cased() is exact only for characters
 * that are not Case_Ignorable (it leaves out the Lm and Mn members of Cased). */
bool unicode_is_case_ignorable(uint32_t cp);
bool unicode_is_cased(uint32_t cp);

#endif
