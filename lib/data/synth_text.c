/* English for claims and questions. Each function renders exactly the
 * meaning of its struct (see data/synth.h); the rng only picks among
 * phrasings that mean the same. */
#include "data/synth.h"

#include "core/error.h"

#include <ctype.h>
#include <string.h>

typedef struct {
    char *buf;
    size_t cap, len;
    int overflow;
} text;

static void put(text *t, const char *s)
{
    size_t n = strlen(s);
    int space = t->len > 0 && s[0] != ',';
    if (t->len + space + n + 1 > t->cap) {
        t->overflow = 1;
        return;
    }
    if (space)
        t->buf[t->len++] = ' ';
    memcpy(t->buf + t->len, s, n + 1);
    t->len += n;
}

static int finish(text *t, const char *end, const char *what)
{
    if (end)
        put(t, end);
    if (t->overflow || t->len == 0)
        return albef_error(ALBEF_ERR_INVALID, "%s: sentence does not fit in %zu bytes", what, t->cap);
    /* Drop the space put() added before the final punctuation. */
    if (end && t->len >= 2 && t->buf[t->len - 2] == ' ') {
        t->buf[t->len - 2] = t->buf[t->len - 1];
        t->buf[--t->len] = '\0';
    }
    t->buf[0] = (char)toupper((unsigned char)t->buf[0]);
    return ALBEF_OK;
}

static const char *const number_words[] = {"no", "one", "two", "three", "four", "five", "six", "seven", "eight"};
#define N_NUMBER_WORDS ((int)(sizeof number_words / sizeof number_words[0]))

/* Determiners for put_np. Counts >= 0 are written as number words. */
enum { DET_A = -1, DET_THE = -2, DET_BARE = -3, DET_BARE_PLURAL = -4 };

/* "object" and "shape" both name any shape; the question about shape uses
 * "object" only, so it never reads "what shape is the red shape". */
enum { NOUN_ANY_WORD, NOUN_OBJECT };

static void put_np(text *t, const synth_np *np, int det, int noun_choice, rng_state *r)
{
    int plural = det == DET_BARE_PLURAL || (det >= 0 && det != 1);
    const char *words[4];
    int n = 0;
    if (np->size != SYNTH_ANY)
        words[n++] = synth_size_name(np->size);
    if (np->color != SYNTH_ANY)
        words[n++] = synth_color_name(np->color);
    if (np->shape != SYNTH_ANY)
        words[n++] = plural ? synth_shape_plural(np->shape) : synth_shape_name(np->shape);
    else if (noun_choice == NOUN_ANY_WORD && rng_bernoulli(r, 0.3))
        words[n++] = plural ? "shapes" : "shape";
    else
        words[n++] = plural ? "objects" : "object";

    if (det == DET_A)
        put(t, strchr("aeiou", words[0][0]) ? "an" : "a");
    else if (det == DET_THE)
        put(t, "the");
    else if (det >= 0)
        put(t, det < N_NUMBER_WORDS ? number_words[det] : "?");
    for (int i = 0; i < n; i++)
        put(t, words[i]);
    if (np->region != SYNTH_ANY)
        put(t, synth_region_phrase(np->region));
}

/* "exactly two red circles", "exactly one red circle", "no red circles" */
static void put_exact_count(text *t, const synth_np *np, int n, rng_state *r)
{
    if (n > 0)
        put(t, "exactly");
    put_np(t, np, n, NOUN_ANY_WORD, r);
}

static const char *const object_neutral[] = {
    "is made of wood",   "is made of metal", "is made of paper",   "is made of plastic", "is made of glass",
    "is heavy",          "is fragile",       "is expensive",       "is soft",            "is hollow",
    "is magnetic",       "is a toy",         "is a sticker",       "is warm",            "is wet",
    "belongs to a child", "was painted yesterday", "was made by hand", "is brand new",   "is very old",
};
static const char *const scene_neutral[] = {
    "was drawn by a child", "was made yesterday", "hangs in a classroom", "belongs to a teacher",
    "is a page from a book", "was printed on paper",
};
#define N_OBJECT_NEUTRAL ((int)(sizeof object_neutral / sizeof object_neutral[0]))
#define N_SCENE_NEUTRAL ((int)(sizeof scene_neutral / sizeof scene_neutral[0]))

int synth_neutral_predicate_count(int scene_level) { return scene_level ? N_SCENE_NEUTRAL : N_OBJECT_NEUTRAL; }

/* The attribute a THE_IS claim asserts: the one field of b that is set. */
static const char *attribute_words(const synth_np *b)
{
    if (b->color != SYNTH_ANY)
        return synth_color_name(b->color);
    if (b->size != SYNTH_ANY)
        return synth_size_name(b->size);
    if (b->region != SYNTH_ANY)
        return synth_region_phrase(b->region);
    return NULL;
}

static void put_list(text *t, const synth_claim *c, rng_state *r)
{
    for (int i = 0; i < c->n_items; i++) {
        if (i > 0)
            put(t, i == c->n_items - 1 ? "and" : ",");
        put_np(t, &c->items[i], c->item_n[i] <= 1 ? DET_A : c->item_n[i], NOUN_ANY_WORD, r);
    }
}

static int np_is_everything(const synth_np *np)
{
    return np->color == SYNTH_ANY && np->shape == SYNTH_ANY && np->size == SYNTH_ANY && np->region == SYNTH_ANY;
}

int synth_claim_text(const synth_claim *c, int as_caption, rng_state *r, char *buf, size_t cap)
{
    text t = {buf, cap, 0, 0};
    if (cap)
        buf[0] = '\0';
    switch (c->kind) {
    case SYNTH_CLAIM_EXISTS:
        if (!as_caption) {
            static const char *const lead[] = {"there is", "the image contains", "the picture shows"};
            put(&t, lead[rng_below(r, 3)]);
        }
        put_np(&t, &c->a, DET_A, NOUN_ANY_WORD, r);
        break;
    case SYNTH_CLAIM_COUNT:
        if (as_caption && c->n >= 1) {
            if (c->n == 1 && rng_bernoulli(r, 0.5)) {
                put(&t, "a single");
                put_np(&t, &c->a, DET_BARE, NOUN_ANY_WORD, r);
            } else {
                put_np(&t, &c->a, c->n, NOUN_ANY_WORD, r);
            }
        } else {
            if (rng_bernoulli(r, 0.5))
                put(&t, c->n == 1 ? "there is" : "there are");
            else
                put(&t, "the image contains");
            put_exact_count(&t, &c->a, c->n, r);
        }
        break;
    case SYNTH_CLAIM_RELATION:
        if (!as_caption)
            put(&t, "there is");
        put_np(&t, &c->a, DET_A, NOUN_ANY_WORD, r);
        put(&t, synth_relation_phrase(c->rel));
        put_np(&t, &c->b, DET_A, NOUN_ANY_WORD, r);
        break;
    case SYNTH_CLAIM_THE_RELATION:
        put_np(&t, &c->a, DET_THE, NOUN_ANY_WORD, r);
        put(&t, "is");
        put(&t, synth_relation_phrase(c->rel));
        put_np(&t, &c->b, DET_THE, NOUN_ANY_WORD, r);
        break;
    case SYNTH_CLAIM_THE_IS: {
        const char *attr = attribute_words(&c->b);
        if (!attr)
            return albef_error(ALBEF_ERR_INVALID, "synth_claim_text: THE_IS claim names no colour, size or region");
        put_np(&t, &c->a, DET_THE, NOUN_ANY_WORD, r);
        put(&t, "is");
        put(&t, attr);
        break;
    }
    case SYNTH_CLAIM_LIST:
        if (!as_caption)
            put(&t, "the image contains");
        put_list(&t, c, r);
        break;
    case SYNTH_CLAIM_NEUTRAL:
        if (np_is_everything(&c->a)) {
            if (c->neutral < 0 || c->neutral >= N_SCENE_NEUTRAL)
                return albef_error(ALBEF_ERR_INVALID, "synth_claim_text: neutral predicate %d out of range", c->neutral);
            put(&t, "the picture");
            put(&t, scene_neutral[c->neutral]);
        } else {
            if (c->neutral < 0 || c->neutral >= N_OBJECT_NEUTRAL)
                return albef_error(ALBEF_ERR_INVALID, "synth_claim_text: neutral predicate %d out of range", c->neutral);
            put_np(&t, &c->a, DET_THE, NOUN_ANY_WORD, r);
            put(&t, object_neutral[c->neutral]);
        }
        break;
    default:
        return albef_error(ALBEF_ERR_INVALID, "synth_claim_text: unknown claim kind %d", c->kind);
    }
    if (c->background != SYNTH_ANY) {
        put(&t, "on a");
        put(&t, synth_background_name(c->background));
        put(&t, "background");
    }
    return finish(&t, as_caption ? NULL : ".", "synth_claim_text");
}

int synth_pair_claim_text(const synth_pair_claim *c, rng_state *r, char *buf, size_t cap)
{
    text t = {buf, cap, 0, 0};
    if (cap)
        buf[0] = '\0';
    int v = (int)rng_below(r, 2);
    switch (c->kind) {
    case SYNTH_PAIR_BOTH:
        if (v) {
            put(&t, "there is");
            put_np(&t, &c->a, DET_A, NOUN_ANY_WORD, r);
            put(&t, "in both images");
        } else {
            put(&t, "both images contain");
            put_np(&t, &c->a, DET_A, NOUN_ANY_WORD, r);
        }
        break;
    case SYNTH_PAIR_NEITHER:
        if (v) {
            put(&t, "there are no");
            put_np(&t, &c->a, DET_BARE_PLURAL, NOUN_ANY_WORD, r);
            put(&t, "in either image");
        } else {
            put(&t, "neither image contains");
            put_np(&t, &c->a, DET_A, NOUN_ANY_WORD, r);
        }
        break;
    case SYNTH_PAIR_ONE:
        put(&t, v ? "only one of the images contains" : "exactly one image contains");
        put_np(&t, &c->a, DET_A, NOUN_ANY_WORD, r);
        break;
    case SYNTH_PAIR_LEFT:
    case SYNTH_PAIR_RIGHT:
        put(&t, c->kind == SYNTH_PAIR_LEFT ? "the left image contains" : "the right image contains");
        if (c->n < 0)
            put_np(&t, &c->a, DET_A, NOUN_ANY_WORD, r);
        else
            put_exact_count(&t, &c->a, c->n, r);
        break;
    case SYNTH_PAIR_MORE:
    case SYNTH_PAIR_FEWER: {
        const char *cmp = c->kind == SYNTH_PAIR_MORE ? "more" : "fewer";
        if (v) {
            put(&t, "there are");
            put(&t, cmp);
            put_np(&t, &c->a, DET_BARE_PLURAL, NOUN_ANY_WORD, r);
            put(&t, "in the left image than in the right image");
        } else {
            put(&t, "the left image contains");
            put(&t, cmp);
            put_np(&t, &c->a, DET_BARE_PLURAL, NOUN_ANY_WORD, r);
            put(&t, "than the right image");
        }
        break;
    }
    case SYNTH_PAIR_SAME:
        put(&t, v ? "both images contain the same number of" : "the two images contain the same number of");
        put_np(&t, &c->a, DET_BARE_PLURAL, NOUN_ANY_WORD, r);
        break;
    case SYNTH_PAIR_TOTAL:
        if (c->n < 1)
            return albef_error(ALBEF_ERR_INVALID, "synth_pair_claim_text: a total of %d: expected >= 1", c->n);
        if (v)
            put(&t, c->n == 1 ? "there is" : "there are");
        else
            put(&t, "the two images contain");
        put_exact_count(&t, &c->a, c->n, r);
        put(&t, "in total");
        break;
    default:
        return albef_error(ALBEF_ERR_INVALID, "synth_pair_claim_text: unknown kind %d", c->kind);
    }
    return finish(&t, ".", "synth_pair_claim_text");
}

static int yesno_text(text *t, const synth_claim *c, rng_state *r)
{
    switch (c->kind) {
    case SYNTH_CLAIM_EXISTS:
        put(t, "is there");
        put_np(t, &c->a, DET_A, NOUN_ANY_WORD, r);
        return ALBEF_OK;
    case SYNTH_CLAIM_COUNT:
        put(t, c->n == 1 ? "is there" : "are there");
        put_exact_count(t, &c->a, c->n, r);
        return ALBEF_OK;
    case SYNTH_CLAIM_RELATION:
        put(t, "is there");
        put_np(t, &c->a, DET_A, NOUN_ANY_WORD, r);
        put(t, synth_relation_phrase(c->rel));
        put_np(t, &c->b, DET_A, NOUN_ANY_WORD, r);
        return ALBEF_OK;
    case SYNTH_CLAIM_THE_RELATION:
        put(t, "is");
        put_np(t, &c->a, DET_THE, NOUN_ANY_WORD, r);
        put(t, synth_relation_phrase(c->rel));
        put_np(t, &c->b, DET_THE, NOUN_ANY_WORD, r);
        return ALBEF_OK;
    case SYNTH_CLAIM_THE_IS: {
        const char *attr = attribute_words(&c->b);
        if (!attr)
            break;
        put(t, "is");
        put_np(t, &c->a, DET_THE, NOUN_ANY_WORD, r);
        put(t, attr);
        return ALBEF_OK;
    }
    default:
        break;
    }
    return albef_error(ALBEF_ERR_INVALID, "synth_question_text: claim kind %d cannot be asked as a question", c->kind);
}

int synth_question_text(const synth_question *q, rng_state *r, char *buf, size_t cap)
{
    text t = {buf, cap, 0, 0};
    if (cap)
        buf[0] = '\0';
    int v = (int)rng_below(r, 2);
    switch (q->kind) {
    case SYNTH_Q_COUNT: {
        synth_np np = q->a;
        np.region = SYNTH_ANY;
        put(&t, "how many");
        put_np(&t, &np, DET_BARE_PLURAL, NOUN_ANY_WORD, r);
        if (q->a.region != SYNTH_ANY) {
            put(&t, "are");
            put(&t, synth_region_phrase(q->a.region));
        } else {
            put(&t, v ? "are there" : "are in the image");
        }
        break;
    }
    case SYNTH_Q_COLOR:
        put(&t, v ? "what color is" : "what is the color of");
        put_np(&t, &q->a, DET_THE, NOUN_ANY_WORD, r);
        break;
    case SYNTH_Q_SHAPE:
        put(&t, v ? "what shape is" : "what is the shape of");
        put_np(&t, &q->a, DET_THE, NOUN_OBJECT, r);
        break;
    case SYNTH_Q_SIZE:
        if (v) {
            put(&t, "what size is");
            put_np(&t, &q->a, DET_THE, NOUN_ANY_WORD, r);
        } else {
            put(&t, "is");
            put_np(&t, &q->a, DET_THE, NOUN_ANY_WORD, r);
            put(&t, "small or large");
        }
        break;
    case SYNTH_Q_WHERE:
        put(&t, v ? "where is" : "where in the image is");
        put_np(&t, &q->a, DET_THE, NOUN_ANY_WORD, r);
        break;
    case SYNTH_Q_YESNO: {
        int rc = yesno_text(&t, &q->claim, r);
        if (rc)
            return rc;
        break;
    }
    default:
        return albef_error(ALBEF_ERR_INVALID, "synth_question_text: unknown question kind %d", q->kind);
    }
    return finish(&t, "?", "synth_question_text");
}
