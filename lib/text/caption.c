#include "text/caption.h"

#include "core/error.h"
#include "text/unicode.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t caption_output_bound(size_t len)
{
    if (len > (SIZE_MAX - 1) / 3)
        return 0;
    return 3 * len + 1;
}

/* Python's Final_Sigma context, the part after a capital sigma whose
 * successor starts at s[next]: the next character that is not
 * Case_Ignorable must not be cased. A scan stops at the first character that
 * is not Case_Ignorable, and every sigma is such a character, so the scans of
 * all sigmas in a text cover disjoint stretches: linear time overall. */
static bool sigma_followed_by_cased(const uint8_t *s, size_t n, size_t next)
{
    size_t pos = next;
    while (pos < n) {
        uint32_t c = utf8_decode_next(s, n, &pos);
        if (!unicode_is_case_ignorable(c))
            return unicode_is_cased(c);
    }
    return false;
}

/* The shared first step, str.lower() then re.sub(r"[,.'!?\"()*#:;~]", "")
 * then '-' and '/' to ' ': one pass, since the deleted and mapped
 * characters are ASCII and no lowercase mapping produces or consumes them.
 * Returns the bytes written, or SIZE_MAX when out[0..cap) is too small. */
static size_t lower_and_strip_punctuation(const uint8_t *s, size_t n, uint8_t *out, size_t cap)
{
    size_t w = 0, pos = 0;
    bool prev_cased = false; /* the last character that is not Case_Ignorable was cased */
    while (pos < n) {
        if (s[pos] < 0x80) { /* ASCII: no sigma, no property lookups */
            uint8_t c = s[pos++];
            bool letter = (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
            if (c != '\'' && c != '.' && c != ':' && c != '^' && c != '`') /* ASCII's Case_Ignorable */
                prev_cased = letter;
            if (c == 0 || !strchr(",.'!?\"()*#:;~", c)) {
                if (w + 1 > cap)
                    return SIZE_MAX;
                out[w++] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : (c == '-' || c == '/') ? (uint8_t)' ' : c;
            }
            continue;
        }
        uint32_t c = utf8_decode_next(s, n, &pos);
        uint32_t low[2];
        size_t nl;
        if (c == 0x3A3) {
            bool final = prev_cased && !sigma_followed_by_cased(s, n, pos);
            low[0] = final ? 0x3C2 : 0x3C3;
            nl = 1;
        } else {
            nl = unicode_lower_full(c, low);
        }
        if (!unicode_is_case_ignorable(c))
            prev_cased = unicode_is_cased(c);
        for (size_t k = 0; k < nl; k++) {
            uint32_t l = low[k];
            if (l < 0x80) {
                if (l != 0 && strchr(",.'!?\"()*#:;~", (int)l))
                    continue;
                if (l == '-' || l == '/')
                    l = ' ';
                if (w + 1 > cap)
                    return SIZE_MAX;
                out[w++] = (uint8_t)l;
            } else {
                uint8_t buf[4];
                size_t nb = utf8_encode(l, buf);
                if (w + nb > cap)
                    return SIZE_MAX;
                memcpy(out + w, buf, nb);
                w += nb;
            }
        }
    }
    return w;
}

/* str.replace("<person>", "person"), in place; returns the new length. */
static size_t replace_person_tag(uint8_t *s, size_t n)
{
    static const char tag[] = "<person>";
    const size_t tn = sizeof tag - 1;
    size_t r = 0, w = 0;
    while (r < n) {
        if (s[r] == '<' && n - r >= tn && memcmp(s + r, tag, tn) == 0) {
            memmove(s + w, tag + 1, tn - 2);
            w += tn - 2;
            r += tn;
        } else {
            s[w++] = s[r++];
        }
    }
    return w;
}

/* Length of the character at s[i] (valid UTF-8) and whether it is \s. */
static size_t char_at(const uint8_t *s, size_t n, size_t i, bool *space)
{
    if (s[i] < 0x80) {
        *space = unicode_is_python_space(s[i]);
        return 1;
    }
    size_t p = i;
    *space = unicode_is_python_space(utf8_decode_next(s, n, &p));
    return p - i;
}

/* re.sub(r"\s{2,}", " "), in place on valid UTF-8; returns the new length. */
static size_t collapse_whitespace_runs(uint8_t *s, size_t n)
{
    size_t r = 0, w = 0;
    while (r < n) {
        bool space;
        size_t len = char_at(s, n, r, &space);
        if (!space) {
            memmove(s + w, s + r, len);
            w += len;
            r += len;
            continue;
        }
        size_t start = r, run = 0;
        while (r < n) {
            len = char_at(s, n, r, &space);
            if (!space)
                break;
            run++;
            r += len;
        }
        if (run >= 2) {
            s[w++] = ' ';
        } else {
            memmove(s + w, s + start, r - start);
            w += r - start;
        }
    }
    return w;
}

/* ' '.join(s.split(' ')[:max_words]) when there are more words than that. */
static size_t keep_first_words(const uint8_t *s, size_t n, int max_words)
{
    if (max_words == 0)
        return 0; /* split(' ') always yields at least one word */
    int spaces = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ' ' && ++spaces == max_words)
            return i;
    return n;
}

static int normalise(const char *what, bool caption, const char *text, size_t len, int max_words, char *out,
                     size_t cap, size_t *out_len)
{
    if (out_len)
        *out_len = 0;
    if (max_words < 0)
        return albef_error(ALBEF_ERR_INVALID, "%s: max_words must be >= 0, got %d", what, max_words);
    if (!out || cap == 0)
        return albef_error(ALBEF_ERR_INVALID, "%s: no output buffer", what);
    if (len && !text)
        return albef_error(ALBEF_ERR_INVALID, "%s: text is NULL with length %zu", what, len);
    uint8_t *o = (uint8_t *)out;
    size_t n = lower_and_strip_punctuation((const uint8_t *)text, len, o, cap - 1);
    if (n == SIZE_MAX) {
        out[0] = '\0';
        return albef_error(ALBEF_ERR_INVALID,
                           "%s: output buffer of %zu bytes too small for %zu input bytes (%zu always suffice)", what,
                           cap, len, caption_output_bound(len));
    }
    size_t start = 0;
    if (caption) {
        n = replace_person_tag(o, n);
        n = collapse_whitespace_runs(o, n);
        while (n > 0 && o[n - 1] == '\n')
            n--;
        while (n > 0 && o[n - 1] == ' ')
            n--;
        while (start < n && o[start] == ' ')
            start++;
    } else {
        while (n > 0 && o[n - 1] == ' ')
            n--;
    }
    n = keep_first_words(o + start, n - start, max_words);
    memmove(o, o + start, n);
    o[n] = '\0';
    if (out_len)
        *out_len = n;
    return ALBEF_OK;
}

int pre_caption(const char *text, size_t len, int max_words, char *out, size_t cap, size_t *out_len)
{
    return normalise("pre_caption", true, text, len, max_words, out, cap, out_len);
}

int pre_question(const char *text, size_t len, int max_words, char *out, size_t cap, size_t *out_len)
{
    return normalise("pre_question", false, text, len, max_words, out, cap, out_len);
}

static int normalise_alloc(const char *what, bool caption, const char *text, size_t len, int max_words, char **out,
                           size_t *out_len)
{
    *out = NULL;
    size_t cap = caption_output_bound(len);
    if (cap == 0)
        return albef_error(ALBEF_ERR_NOMEM, "%s: text of %zu bytes is too long", what, len);
    char *buf = malloc(cap);
    if (!buf)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for %zu bytes", what, cap);
    int rc = normalise(what, caption, text, len, max_words, buf, cap, out_len);
    if (rc != ALBEF_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    return ALBEF_OK;
}

int pre_caption_alloc(const char *text, size_t len, int max_words, char **out, size_t *out_len)
{
    return normalise_alloc("pre_caption", true, text, len, max_words, out, out_len);
}

int pre_question_alloc(const char *text, size_t len, int max_words, char **out, size_t *out_len)
{
    return normalise_alloc("pre_question", false, text, len, max_words, out, out_len);
}
