/* data/synth: the synthetic shapes data set, and the image writers.
 *
 * The generated English is checked by a reader written here, apart from the
 * library: it parses each sentence with its own word tables, recounts the
 * objects of the scene and recomputes positions and relations, and must
 * agree with every label. The files a run writes are checked the same way,
 * against the scenes described in scenes.json. */
#include "albef.h"
#include "core/file.h"
#include "data/synth.h"
#include "io/image.h"
#include "io/manifest.h"
#include "text/caption.h"
#include "text/tokenizer.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* The test's own picture of a scene and its own words for it.              */

typedef struct {
    int shape, color, size, row, col;
} t_obj;

typedef struct {
    int n;
    t_obj o[SYNTH_MAX_OBJECTS];
    int background;
} t_scene;

static const char *const t_color[SYNTH_N_COLORS] = {
    [SYNTH_RED] = "red",       [SYNTH_GREEN] = "green",   [SYNTH_BLUE] = "blue",   [SYNTH_YELLOW] = "yellow",
    [SYNTH_PURPLE] = "purple", [SYNTH_ORANGE] = "orange", [SYNTH_WHITE] = "white", [SYNTH_BLACK] = "black",
};
static const char *const t_shape[SYNTH_N_SHAPES] = {
    [SYNTH_CIRCLE] = "circle", [SYNTH_SQUARE] = "square", [SYNTH_TRIANGLE] = "triangle",
    [SYNTH_STAR] = "star",     [SYNTH_CROSS] = "cross",
};
static const char *const t_shapes[SYNTH_N_SHAPES] = {
    [SYNTH_CIRCLE] = "circles", [SYNTH_SQUARE] = "squares", [SYNTH_TRIANGLE] = "triangles",
    [SYNTH_STAR] = "stars",     [SYNTH_CROSS] = "crosses",
};
static const char *const t_size[SYNTH_N_SIZES] = {[SYNTH_SMALL] = "small", [SYNTH_LARGE] = "large"};
static const char *const t_background[SYNTH_N_BACKGROUNDS] = {
    [SYNTH_BG_GRAY] = "gray", [SYNTH_BG_DARK] = "dark", [SYNTH_BG_LIGHT] = "light"};
static const char *const t_cell[3][3] = {
    {"top left", "top", "top right"}, {"left", "center", "right"}, {"bottom left", "bottom", "bottom right"}};
static const char *const t_numbers[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight"};

/* Region phrases: a row and/or column an object must be in (-1: any). */
static const struct {
    const char *phrase;
    int row, col;
} t_regions[] = {
    {"on the left", -1, 0},          {"on the right", -1, 2},          {"at the top", 0, -1},
    {"at the bottom", 2, -1},        {"in the center", 1, 1},          {"in the top left corner", 0, 0},
    {"in the top right corner", 0, 2}, {"in the bottom left corner", 2, 0}, {"in the bottom right corner", 2, 2},
};

enum { REL_LEFT, REL_RIGHT, REL_ABOVE, REL_BELOW };
static const struct {
    const char *phrase;
    int rel;
} t_relations[] = {
    {"to the left of", REL_LEFT}, {"to the right of", REL_RIGHT}, {"above", REL_ABOVE}, {"below", REL_BELOW}};

static int t_related(int rel, const t_obj *a, const t_obj *b)
{
    switch (rel) {
    case REL_LEFT: return a->col < b->col;
    case REL_RIGHT: return a->col > b->col;
    case REL_ABOVE: return a->row < b->row;
    default: return a->row > b->row;
    }
}

static t_scene t_from_struct(const synth_scene *s)
{
    t_scene t = {.n = s->n_objects, .background = s->background};
    for (int i = 0; i < s->n_objects; i++) {
        const synth_object *o = &s->objects[i];
        t.o[i] = (t_obj){o->shape, o->color, o->size, o->cell / 3, o->cell % 3};
    }
    return t;
}

static int t_lookup(const char *const *table, int n, const char *word)
{
    for (int i = 0; i < n; i++)
        if (table[i] && strcmp(table[i], word) == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Sentences as word lists.                                                 */

#define T_MAX_WORDS 64

typedef struct {
    char buf[SYNTH_TEXT_MAX * 2];
    const char *w[T_MAX_WORDS];
    int n, i;
    const char *text; /* for messages */
} t_words;

/* Lowercases, drops , . ? and splits on spaces. */
static void t_split(t_words *t, const char *text)
{
    t->text = text;
    t->n = t->i = 0;
    size_t k = 0;
    for (const char *c = text; *c && k + 2 < sizeof t->buf; c++) {
        if (*c == ',' || *c == '.' || *c == '?')
            continue;
        t->buf[k++] = (char)((*c >= 'A' && *c <= 'Z') ? *c - 'A' + 'a' : *c);
    }
    t->buf[k] = '\0';
    for (char *save = NULL, *tok = strtok_r(t->buf, " ", &save); tok && t->n < T_MAX_WORDS;
         tok = strtok_r(NULL, " ", &save))
        t->w[t->n++] = tok;
}

static int t_done(const t_words *t) { return t->i >= t->n; }

/* Consumes the space-separated phrase if it comes next. */
static int t_take(t_words *t, const char *phrase)
{
    char copy[128];
    snprintf(copy, sizeof copy, "%s", phrase);
    int j = t->i;
    for (char *save = NULL, *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save), j++)
        if (j >= t->n || strcmp(t->w[j], tok) != 0)
            return 0;
    t->i = j;
    return 1;
}

/* Peeks without consuming. */
static int t_next_is(t_words *t, const char *phrase)
{
    int save = t->i, ok = t_take(t, phrase);
    t->i = save;
    return ok;
}

/* ------------------------------------------------------------------------ */
/* Noun phrases.                                                            */

enum { Q_BARE, Q_A, Q_THE, Q_COUNT };

typedef struct {
    int quant, n; /* Q_COUNT: exactly n */
    int color, shape, size, row, col;
    int plural;
    int region_at; /* word index where a trailing region began, or -1 */
} t_np;

static int t_matches(const t_np *np, const t_obj *o)
{
    return (np->color < 0 || np->color == o->color) && (np->shape < 0 || np->shape == o->shape) &&
           (np->size < 0 || np->size == o->size) && (np->row < 0 || np->row == o->row) &&
           (np->col < 0 || np->col == o->col);
}

static int t_count(const t_scene *s, const t_np *np)
{
    int n = 0;
    for (int i = 0; i < s->n; i++)
        n += t_matches(np, &s->o[i]);
    return n;
}

static int t_region(t_words *t, int *row, int *col)
{
    for (size_t k = 0; k < sizeof t_regions / sizeof t_regions[0]; k++) {
        if (t_take(t, t_regions[k].phrase)) {
            *row = t_regions[k].row;
            *col = t_regions[k].col;
            return 1;
        }
    }
    return 0;
}

static int t_number(const char *w)
{
    for (int k = 1; k < (int)(sizeof t_numbers / sizeof t_numbers[0]); k++)
        if (strcmp(w, t_numbers[k]) == 0)
            return k;
    return -1;
}

/* [determiner] [size] [colour] noun [region]. Fails the test on anything else. */
static t_np t_parse_np(t_words *t)
{
    t_np np = {.quant = Q_BARE, .n = -1, .color = -1, .shape = -1, .size = -1, .row = -1, .col = -1, .region_at = -1};
    if (t_done(t))
        fail_msg("'%s': expected a noun phrase at the end", t->text);
    const char *article = NULL;
    if (t_take(t, "a single")) {
        np.quant = Q_COUNT;
        np.n = 1;
    } else if (t_next_is(t, "a") || t_next_is(t, "an")) {
        article = t->w[t->i++];
        np.quant = Q_A;
    } else if (t_take(t, "the")) {
        np.quant = Q_THE;
    } else if (t_take(t, "no")) {
        np.quant = Q_COUNT;
        np.n = 0;
    } else {
        int exactly = t_take(t, "exactly");
        int n = t_done(t) ? -1 : t_number(t->w[t->i]);
        if (n > 0) {
            t->i++;
            np.quant = Q_COUNT;
            np.n = n;
        } else if (exactly) {
            fail_msg("'%s': 'exactly' without a number", t->text);
        }
    }
    if (t_done(t))
        fail_msg("'%s': noun phrase without a noun", t->text);
    if (article) {
        int vowel = strchr("aeiou", t->w[t->i][0]) != NULL;
        if (vowel != (strcmp(article, "an") == 0))
            fail_msg("'%s': '%s %s'", t->text, article, t->w[t->i]);
    }
    if (!t_done(t) && (np.size = t_lookup(t_size, SYNTH_N_SIZES, t->w[t->i])) >= 0)
        t->i++;
    if (!t_done(t) && (np.color = t_lookup(t_color, SYNTH_N_COLORS, t->w[t->i])) >= 0)
        t->i++;
    if (t_done(t))
        fail_msg("'%s': noun phrase without a noun", t->text);
    const char *noun = t->w[t->i++];
    if ((np.shape = t_lookup(t_shape, SYNTH_N_SHAPES, noun)) >= 0)
        np.plural = 0;
    else if ((np.shape = t_lookup(t_shapes, SYNTH_N_SHAPES, noun)) >= 0)
        np.plural = 1;
    else if (!strcmp(noun, "object") || !strcmp(noun, "shape"))
        np.plural = 0;
    else if (!strcmp(noun, "objects") || !strcmp(noun, "shapes"))
        np.plural = 1;
    else
        fail_msg("'%s': '%s' is not a noun of this data set", t->text, noun);
    int singular = np.quant == Q_A || np.quant == Q_THE || (np.quant == Q_COUNT && np.n == 1);
    if (np.quant != Q_BARE && singular == np.plural)
        fail_msg("'%s': number disagreement at '%s'", t->text, noun);
    int at = t->i;
    if (t_region(t, &np.row, &np.col))
        np.region_at = at;
    return np;
}

/* The one object a definite phrase names; fails unless exactly one exists. */
static const t_obj *t_the(const t_scene *s, const t_np *np, const char *text)
{
    if (np->quant != Q_THE)
        fail_msg("'%s': expected a definite noun phrase", text);
    const t_obj *found = NULL;
    for (int i = 0; i < s->n; i++) {
        if (!t_matches(np, &s->o[i]))
            continue;
        if (found)
            fail_msg("'%s': 'the ...' names more than one object", text);
        found = &s->o[i];
    }
    if (!found)
        fail_msg("'%s': 'the ...' names no object", text);
    return found;
}

/* What an indefinite or counted phrase asserts. */
static int t_holds(const t_scene *s, const t_np *np, const char *text)
{
    int n = t_count(s, np);
    if (np->quant == Q_A)
        return n >= 1;
    if (np->quant == Q_COUNT)
        return n == np->n;
    fail_msg("'%s': a phrase without a determiner cannot be a claim", text);
    return 0;
}

static int t_relation(t_words *t)
{
    for (size_t k = 0; k < sizeof t_relations / sizeof t_relations[0]; k++)
        if (t_take(t, t_relations[k].phrase))
            return t_relations[k].rel;
    return -1;
}

/* Words no neutral predicate may contain: it must say nothing visible. */
static void t_check_neutral_words(t_words *t)
{
    for (; !t_done(t); t->i++) {
        const char *w = t->w[t->i];
        if (t_lookup(t_color, SYNTH_N_COLORS, w) >= 0 || t_lookup(t_shape, SYNTH_N_SHAPES, w) >= 0 ||
            t_lookup(t_shapes, SYNTH_N_SHAPES, w) >= 0 || t_lookup(t_size, SYNTH_N_SIZES, w) >= 0 ||
            t_number(w) > 0 || !strcmp(w, "left") || !strcmp(w, "right") || !strcmp(w, "top") ||
            !strcmp(w, "bottom") || !strcmp(w, "center") || !strcmp(w, "above") || !strcmp(w, "below") ||
            !strcmp(w, "not") || !strcmp(w, "no"))
            fail_msg("'%s': a neutral statement uses the visible word '%s'", t->text, w);
    }
}

/* ------------------------------------------------------------------------ */
/* Statements about one image: 1 true, 0 false, -1 undecidable (neutral).   */

/* After "the X is": an attribute, a relation to "the Y", or a neutral predicate. */
static int t_eval_is(const t_scene *s, t_words *t, const t_obj *a)
{
    int k;
    if (!t_done(t) && (k = t_lookup(t_color, SYNTH_N_COLORS, t->w[t->i])) >= 0 && t->i + 1 == t->n) {
        t->i++;
        return a->color == k;
    }
    if (!t_done(t) && (k = t_lookup(t_size, SYNTH_N_SIZES, t->w[t->i])) >= 0 && t->i + 1 == t->n) {
        t->i++;
        return a->size == k;
    }
    int row, col;
    if (t_region(t, &row, &col))
        return (row < 0 || a->row == row) && (col < 0 || a->col == col);
    int rel = t_relation(t);
    if (rel >= 0) {
        t_np bnp = t_parse_np(t);
        const t_obj *b = t_the(s, &bnp, t->text);
        if (a == b)
            fail_msg("'%s': an object related to itself", t->text);
        return t_related(rel, a, b);
    }
    t_check_neutral_words(t);
    return -1;
}

static int t_eval_statement(const t_scene *s, const char *text)
{
    t_words t;
    t_split(&t, text);
    int truth = 1;
    /* "... on a gray background" */
    if (t.n >= 4 && !strcmp(t.w[t.n - 4], "on") && !strcmp(t.w[t.n - 3], "a") && !strcmp(t.w[t.n - 1], "background")) {
        int bg = t_lookup(t_background, SYNTH_N_BACKGROUNDS, t.w[t.n - 2]);
        if (bg < 0)
            fail_msg("'%s': unknown background", text);
        truth &= s->background == bg;
        t.n -= 4;
    }
    if (t_take(&t, "the picture") && !t_take(&t, "shows")) {
        t_check_neutral_words(&t);
        return -1;
    }
    t.i = 0;
    if (!t_take(&t, "there is") && !t_take(&t, "there are") && !t_take(&t, "the image contains"))
        t_take(&t, "the picture shows");
    t_np a = t_parse_np(&t);
    if (a.quant == Q_THE) {
        const t_obj *o = t_the(s, &a, text);
        int v;
        if (t_take(&t, "is")) {
            v = t_eval_is(s, &t, o);
        } else { /* "the X belongs to a child" */
            t_check_neutral_words(&t);
            v = -1;
        }
        if (!t_done(&t))
            fail_msg("'%s': words left over at '%s'", text, t.w[t.i]);
        return v < 0 ? -1 : truth && v;
    }
    int rel = t_relation(&t);
    if (rel >= 0) {
        t_np b = t_parse_np(&t);
        if (a.quant != Q_A || b.quant != Q_A)
            fail_msg("'%s': relations join 'a ...' phrases", text);
        int found = 0;
        for (int i = 0; i < s->n; i++)
            for (int j = 0; j < s->n; j++)
                found |= i != j && t_matches(&a, &s->o[i]) && t_matches(&b, &s->o[j]) &&
                         t_related(rel, &s->o[i], &s->o[j]);
        truth &= found;
    } else {
        truth &= t_holds(s, &a, text);
        while (!t_done(&t)) {
            t_take(&t, "and");
            t_np next = t_parse_np(&t);
            truth &= t_holds(s, &next, text);
        }
    }
    if (!t_done(&t))
        fail_msg("'%s': words left over at '%s'", text, t.w[t.i]);
    return truth;
}

/* ------------------------------------------------------------------------ */
/* Questions: the answer the reader finds.                                  */

static void t_answer(const t_scene *s, const char *question, char *answer, size_t cap)
{
    t_words t;
    t_split(&t, question);
    if (t_take(&t, "how many")) {
        t_np np = t_parse_np(&t);
        if (np.quant != Q_BARE || !np.plural)
            fail_msg("'%s': 'how many' takes a bare plural", question);
        if (!t_take(&t, "are there") && !t_take(&t, "are in the image")) {
            if (!t_take(&t, "are") || !t_region(&t, &np.row, &np.col))
                fail_msg("'%s': cannot read the end of a 'how many' question", question);
        }
        snprintf(answer, cap, "%d", t_count(s, &np));
    } else if (t_take(&t, "what color is") || t_take(&t, "what is the color of")) {
        t_np np = t_parse_np(&t);
        snprintf(answer, cap, "%s", t_color[t_the(s, &np, question)->color]);
    } else if (t_take(&t, "what shape is") || t_take(&t, "what is the shape of")) {
        t_np np = t_parse_np(&t);
        if (np.shape >= 0)
            fail_msg("'%s': the question names the shape it asks for", question);
        snprintf(answer, cap, "%s", t_shape[t_the(s, &np, question)->shape]);
    } else if (t_take(&t, "what size is")) {
        t_np np = t_parse_np(&t);
        snprintf(answer, cap, "%s", t_size[t_the(s, &np, question)->size]);
    } else if (t_take(&t, "where is") || t_take(&t, "where in the image is")) {
        t_np np = t_parse_np(&t);
        const t_obj *o = t_the(s, &np, question);
        snprintf(answer, cap, "%s", t_cell[o->row][o->col]);
    } else if (t_next_is(&t, "is there") || t_next_is(&t, "are there")) {
        /* "is there X" reads as the statement "there is X". */
        char statement[SYNTH_TEXT_MAX];
        snprintf(statement, sizeof statement, "there is %s", strchr(strchr(question, ' ') + 1, ' ') + 1);
        snprintf(answer, cap, "%s", t_eval_statement(s, statement) ? "yes" : "no");
        return;
    } else if (t_take(&t, "is")) {
        t_np np = t_parse_np(&t);
        /* "is the X in the center?": the region is what is asked. */
        if (t_done(&t) && np.region_at >= 0) {
            t.i = np.region_at;
            np.row = np.col = -1;
        }
        const t_obj *o = t_the(s, &np, question);
        if (t_take(&t, "small or large")) {
            snprintf(answer, cap, "%s", t_size[o->size]);
        } else {
            int v = t_eval_is(s, &t, o);
            if (v < 0)
                fail_msg("'%s': a yes/no question with no answer", question);
            snprintf(answer, cap, "%s", v ? "yes" : "no");
        }
    } else {
        fail_msg("'%s': not a question this reader knows", question);
    }
    if (!t_done(&t))
        fail_msg("'%s': words left over at '%s'", question, t.w[t.i]);
}

/* ------------------------------------------------------------------------ */
/* NLVR2 statements about (left, right).                                    */

static int t_eval_pair(const t_scene *l, const t_scene *r, const char *text)
{
    t_words t;
    t_split(&t, text);
    int truth;
    if (t_take(&t, "both images contain the same number of") ||
        t_take(&t, "the two images contain the same number of")) {
        t_np np = t_parse_np(&t);
        truth = t_count(l, &np) == t_count(r, &np);
    } else if (t_take(&t, "both images contain")) {
        t_np np = t_parse_np(&t);
        truth = t_holds(l, &np, text) && t_holds(r, &np, text);
    } else if (t_take(&t, "neither image contains")) {
        t_np np = t_parse_np(&t);
        truth = !t_holds(l, &np, text) && !t_holds(r, &np, text);
    } else if (t_take(&t, "exactly one image contains") || t_take(&t, "only one of the images contains")) {
        t_np np = t_parse_np(&t);
        truth = t_holds(l, &np, text) != t_holds(r, &np, text);
    } else if (t_take(&t, "the left image contains more") || t_take(&t, "there are more")) {
        t_np np = t_parse_np(&t);
        if (!t_take(&t, "than the right image") && !t_take(&t, "in the left image than in the right image"))
            fail_msg("'%s': cannot read the comparison", text);
        truth = t_count(l, &np) > t_count(r, &np);
    } else if (t_take(&t, "the left image contains fewer") || t_take(&t, "there are fewer")) {
        t_np np = t_parse_np(&t);
        if (!t_take(&t, "than the right image") && !t_take(&t, "in the left image than in the right image"))
            fail_msg("'%s': cannot read the comparison", text);
        truth = t_count(l, &np) < t_count(r, &np);
    } else if (t_take(&t, "the left image contains")) {
        t_np np = t_parse_np(&t);
        truth = t_holds(l, &np, text);
    } else if (t_take(&t, "the right image contains")) {
        t_np np = t_parse_np(&t);
        truth = t_holds(r, &np, text);
    } else if (t_take(&t, "there is") || t_take(&t, "there are") || t_take(&t, "the two images contain")) {
        t_np np = t_parse_np(&t);
        if (t_take(&t, "in both images")) {
            truth = t_holds(l, &np, text) && t_holds(r, &np, text);
        } else if (t_take(&t, "in either image")) {
            if (np.quant != Q_COUNT || np.n != 0)
                fail_msg("'%s': 'in either image' follows 'no ...'", text);
            truth = t_count(l, &np) == 0 && t_count(r, &np) == 0;
        } else if (t_take(&t, "in total")) {
            if (np.quant != Q_COUNT)
                fail_msg("'%s': a total needs a number", text);
            truth = t_count(l, &np) + t_count(r, &np) == np.n;
        } else {
            fail_msg("'%s': cannot read the statement", text);
            return 0;
        }
    } else {
        fail_msg("'%s': not an NLVR statement this reader knows", text);
        return 0;
    }
    if (!t_done(&t))
        fail_msg("'%s': words left over at '%s'", text, t.w[t.i]);
    return truth;
}

/* ------------------------------------------------------------------------ */
/* Generated sentences agree with the reader.                               */

#define N_SEEDS 6
#define N_SCENES 400

static void test_captions_are_true(void **state)
{
    (void)state;
    char text[SYNTH_TEXT_MAX];
    int kinds[SYNTH_N_CLAIMS] = {0};
    for (uint64_t seed = 0; seed < N_SEEDS; seed++) {
        for (uint64_t id = 0; id < N_SCENES; id++) {
            synth_scene s;
            synth_scene_generate(seed, id, &s);
            t_scene ts = t_from_struct(&s);
            rng_state r;
            rng_seed_stream(&r, seed, id + 1000000);
            for (int k = 0; k < 5; k++) {
                synth_claim c;
                synth_caption_claim(&s, &r, &c);
                assert_ok(synth_claim_text(&c, 1, &r, text, sizeof text));
                kinds[c.kind]++;
                if (t_eval_statement(&ts, text) != 1)
                    fail_msg("seed %llu scene %llu: caption '%s' is not true", (unsigned long long)seed,
                             (unsigned long long)id, text);
            }
        }
    }
    /* Every caption template is exercised; bare counts are not captions. */
    assert_true(kinds[SYNTH_CLAIM_EXISTS] > 0 && kinds[SYNTH_CLAIM_RELATION] > 0 && kinds[SYNTH_CLAIM_LIST] > 0);
    assert_int_equal(kinds[SYNTH_CLAIM_COUNT], 0);
}

/* Captions tell their image apart: over 200 scenes, a caption is true of
 * 3.2 of them on average (its own included; the bound is 4), and more than
 * half are true of their own image alone. With bare counts among the
 * captions ("one cross" holds for a quarter of all scenes) it was 5.6 per 100. */
static void test_captions_are_distinctive(void **state)
{
    (void)state;
    enum { N = 200, PER = 5 };
    synth_scene *scenes = malloc(N * sizeof *scenes);
    assert_non_null(scenes);
    for (int i = 0; i < N; i++)
        synth_scene_generate(3, (uint64_t)i, &scenes[i]);
    rng_state r;
    rng_seed_stream(&r, 3, 77);
    long holds = 0;
    int alone = 0;
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < PER; k++) {
            synth_claim c;
            synth_caption_claim(&scenes[i], &r, &c);
            int m = 0;
            for (int j = 0; j < N; j++)
                m += synth_claim_holds(&scenes[j], &c) == 1;
            assert_true(m >= 1); /* its own scene */
            holds += m;
            alone += m == 1;
        }
    }
    free(scenes);
    double mean = (double)holds / (N * PER);
    print_message("captions: true of %.2f of %d scenes on average, of their own alone %.0f %%\n", mean, N,
                  100.0 * alone / (N * PER));
    assert_true(mean < 2.0 * N / 100);
    assert_true(alone > N * PER / 2);
}

static void test_statements_have_the_asked_truth(void **state)
{
    (void)state;
    char text[SYNTH_TEXT_MAX];
    int kinds[2][SYNTH_N_CLAIMS] = {{0}};
    for (uint64_t seed = 0; seed < N_SEEDS; seed++) {
        for (uint64_t id = 0; id < N_SCENES; id++) {
            synth_scene s;
            synth_scene_generate(seed, id, &s);
            t_scene ts = t_from_struct(&s);
            rng_state r;
            rng_seed_stream(&r, seed, id + 2000000);
            for (int want = 0; want <= 1; want++) {
                synth_claim c;
                synth_statement_claim(&s, want, &r, &c);
                assert_ok(synth_claim_text(&c, 0, &r, text, sizeof text));
                kinds[want][c.kind]++;
                int got = t_eval_statement(&ts, text);
                if (got != want)
                    fail_msg("seed %llu scene %llu: '%s' should be %s, the reader finds %d",
                             (unsigned long long)seed, (unsigned long long)id, text, want ? "true" : "false", got);
            }
            synth_claim c;
            synth_neutral_claim(&s, &r, &c);
            assert_ok(synth_claim_text(&c, 0, &r, text, sizeof text));
            if (t_eval_statement(&ts, text) != -1)
                fail_msg("seed %llu scene %llu: neutral '%s' is decidable", (unsigned long long)seed,
                         (unsigned long long)id, text);
        }
    }
    /* True and false statements come from the same kinds, in like shares,
     * so the kind of a sentence gives its label away. */
    int total = N_SEEDS * N_SCENES;
    for (int k = 0; k < SYNTH_N_CLAIMS; k++) {
        double f0 = kinds[0][k] / (double)total, f1 = kinds[1][k] / (double)total;
        if (fabs(f0 - f1) > 0.1)
            fail_msg("claim kind %d: %.3f of false statements but %.3f of true ones", k, f0, f1);
    }
}

static void test_questions_have_the_reader_answer(void **state)
{
    (void)state;
    char text[SYNTH_TEXT_MAX], answer[64];
    int kinds[SYNTH_N_QUESTION_KINDS] = {0}, yes = 0, no = 0;
    for (uint64_t seed = 0; seed < N_SEEDS; seed++) {
        for (uint64_t id = 0; id < N_SCENES; id++) {
            synth_scene s;
            synth_scene_generate(seed, id, &s);
            t_scene ts = t_from_struct(&s);
            rng_state r;
            rng_seed_stream(&r, seed, id + 3000000);
            for (int k = 0; k < 4; k++) {
                synth_question q;
                synth_question_generate(&s, &r, &q);
                assert_ok(synth_question_text(&q, &r, text, sizeof text));
                const char *a = synth_question_answer(&s, &q);
                assert_non_null(a);
                kinds[q.kind]++;
                yes += !strcmp(a, "yes");
                no += !strcmp(a, "no");
                t_answer(&ts, text, answer, sizeof answer);
                if (strcmp(a, answer) != 0)
                    fail_msg("seed %llu scene %llu: '%s' labelled '%s', the reader answers '%s'",
                             (unsigned long long)seed, (unsigned long long)id, text, a, answer);
            }
        }
    }
    for (int k = 0; k < SYNTH_N_QUESTION_KINDS; k++)
        if (kinds[k] == 0)
            fail_msg("question kind %d never generated", k);
    if (fabs(yes / (double)(yes + no) - 0.5) > 0.05)
        fail_msg("yes/no answers unbalanced: %d yes, %d no", yes, no);
}

static void test_nlvr_statements_have_the_asked_truth(void **state)
{
    (void)state;
    char text[SYNTH_TEXT_MAX];
    int kinds[2][SYNTH_N_PAIR_KINDS] = {{0}};
    for (uint64_t seed = 0; seed < N_SEEDS; seed++) {
        for (uint64_t id = 0; id < N_SCENES; id++) {
            synth_scene left, right;
            synth_scene_generate(seed, id, &left);
            synth_scene_generate(seed, id + 7777, &right);
            t_scene tl = t_from_struct(&left), tr = t_from_struct(&right);
            rng_state r;
            rng_seed_stream(&r, seed, id + 4000000);
            for (int want = 0; want <= 1; want++) {
                synth_pair_claim c;
                synth_pair_claim_generate(&left, &right, want, &r, &c);
                assert_ok(synth_pair_claim_text(&c, &r, text, sizeof text));
                kinds[want][c.kind]++;
                if (t_eval_pair(&tl, &tr, text) != want)
                    fail_msg("seed %llu pair %llu: '%s' should be %s", (unsigned long long)seed,
                             (unsigned long long)id, text, want ? "true" : "false");
            }
        }
    }
    for (int k = 0; k < SYNTH_N_PAIR_KINDS; k++)
        if (kinds[0][k] == 0 || kinds[1][k] == 0)
            fail_msg("pair kind %d: %d false and %d true statements; expected both", k, kinds[0][k], kinds[1][k]);
}

/* The reader itself must be able to say no: a wrong caption is caught. */
static void test_reader_rejects_false_sentences(void **state)
{
    (void)state;
    t_scene s = {.n = 2, .background = SYNTH_BG_GRAY};
    s.o[0] = (t_obj){SYNTH_CIRCLE, SYNTH_RED, SYNTH_LARGE, 0, 0};
    s.o[1] = (t_obj){SYNTH_SQUARE, SYNTH_BLUE, SYNTH_SMALL, 2, 2};
    assert_int_equal(t_eval_statement(&s, "A large red circle in the top left corner"), 1);
    assert_int_equal(t_eval_statement(&s, "A red circle on the right"), 0);
    assert_int_equal(t_eval_statement(&s, "A red circle above a blue square on a gray background"), 1);
    assert_int_equal(t_eval_statement(&s, "A red circle below a blue square"), 0);
    assert_int_equal(t_eval_statement(&s, "Two objects on a dark background"), 0);
    assert_int_equal(t_eval_statement(&s, "There are exactly two circles."), 0);
    assert_int_equal(t_eval_statement(&s, "The square is small."), 1);
    assert_int_equal(t_eval_statement(&s, "The circle is blue."), 0);
    assert_int_equal(t_eval_statement(&s, "The circle is made of wood."), -1);
    char a[32];
    t_answer(&s, "How many squares are on the right?", a, sizeof a);
    assert_string_equal(a, "1");
    t_answer(&s, "Where is the small object?", a, sizeof a);
    assert_string_equal(a, "bottom right");
    t_answer(&s, "Is there a green star?", a, sizeof a);
    assert_string_equal(a, "no");
}

/* ------------------------------------------------------------------------ */
/* Scenes and pixels.                                                       */

static void test_scenes_are_well_formed(void **state)
{
    (void)state;
    int counts[SYNTH_MAX_OBJECTS + 1] = {0}, repeated_color = 0;
    for (uint64_t id = 0; id < 4000; id++) {
        synth_scene s;
        synth_scene_generate(11, id, &s);
        assert_in_range(s.n_objects, 1, SYNTH_MAX_OBJECTS);
        counts[s.n_objects]++;
        int used = 0;
        for (int i = 0; i < s.n_objects; i++) {
            const synth_object *o = &s.objects[i];
            assert_in_range(o->shape, 0, SYNTH_N_SHAPES - 1);
            assert_in_range(o->color, 0, SYNTH_N_COLORS - 1);
            assert_in_range(o->size, 0, SYNTH_N_SIZES - 1);
            assert_in_range(o->cell, 0, SYNTH_CELLS - 1);
            if (used & (1 << o->cell))
                fail_msg("scene %llu: two objects in cell %d", (unsigned long long)id, o->cell);
            used |= 1 << o->cell;
            /* The object stays inside its own cell, at every size. */
            double cx, cy, r, cell = 300 / 3.0;
            synth_object_geometry(o, 300, &cx, &cy, &r);
            int row = o->cell / 3, col = o->cell % 3;
            if (cx - r < col * cell || cx + r > (col + 1) * cell || cy - r < row * cell || cy + r > (row + 1) * cell)
                fail_msg("scene %llu object %d leaves its cell", (unsigned long long)id, i);
            for (int j = 0; j < i; j++)
                repeated_color += s.objects[j].color == o->color;
        }
        assert_in_range(s.background, 0, SYNTH_N_BACKGROUNDS - 1);
    }
    for (int n = 1; n <= SYNTH_MAX_OBJECTS; n++)
        if (counts[n] < 800)
            fail_msg("%d scenes of %d objects in 4000; expected about 1000", counts[n], n);
    assert_true(repeated_color > 200); /* counting questions need repeats */
}

static const uint8_t *pixel(const image_u8 *img, int x, int y)
{
    return img->data + 3 * ((size_t)y * (size_t)img->width + (size_t)x);
}

static int color_distance(const uint8_t *p, const uint8_t *q)
{
    int d = 0;
    for (int k = 0; k < 3; k++)
        d += abs((int)p[k] - (int)q[k]);
    return d;
}

/* Points (in radii from the centre) that tell the shapes apart: inside
 * (1) or outside (0) of each shape. */
static const struct {
    int shape;
    double u, v;
    int inside;
} probes[] = {
    {SYNTH_CIRCLE, 0.0, 0.75, 1},  {SYNTH_CIRCLE, 0.7, 0.7, 0},    {SYNTH_CIRCLE, -0.75, 0.0, 1},
    {SYNTH_SQUARE, 0.6, 0.6, 1},   {SYNTH_SQUARE, -0.6, -0.6, 1},  {SYNTH_SQUARE, 0.0, 0.85, 0},
    {SYNTH_TRIANGLE, 0.0, -0.7, 1}, {SYNTH_TRIANGLE, -0.6, -0.6, 0}, {SYNTH_TRIANGLE, 0.6, 0.4, 1},
    {SYNTH_TRIANGLE, 0.6, -0.6, 0}, {SYNTH_STAR, 0.0, -0.8, 1},     {SYNTH_STAR, 0.0, 0.8, 0},
    {SYNTH_STAR, 0.6, 0.1, 0},     {SYNTH_CROSS, 0.0, 0.75, 1},    {SYNTH_CROSS, 0.75, 0.0, 1},
    {SYNTH_CROSS, 0.6, 0.6, 0},
};

static void check_render(const synth_scene *s, int size, const char *what)
{
    image_u8 img;
    assert_ok(image_alloc(&img, size, size, 3));
    assert_ok(synth_render(s, &img));
    uint8_t bg[3];
    synth_background_rgb(s->background, bg);
    double cx[SYNTH_MAX_OBJECTS], cy[SYNTH_MAX_OBJECTS], rad[SYNTH_MAX_OBJECTS];
    for (int i = 0; i < s->n_objects; i++) {
        const synth_object *o = &s->objects[i];
        synth_object_geometry(o, size, &cx[i], &cy[i], &rad[i]);
        uint8_t want[3];
        synth_color_rgb(o->color, want);
        const uint8_t *p = pixel(&img, (int)cx[i], (int)cy[i]);
        if (color_distance(p, want) != 0)
            fail_msg("%s: object %d (%s %s) centre pixel (%d, %d) is %d,%d,%d; expected %d,%d,%d", what, i,
                     t_color[o->color], t_shape[o->shape], (int)cx[i], (int)cy[i], p[0], p[1], p[2], want[0],
                     want[1], want[2]);
        if (size < 128)
            continue;
        for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
            if (probes[k].shape != o->shape)
                continue;
            const uint8_t *q = pixel(&img, (int)(cx[i] + probes[k].u * rad[i]), (int)(cy[i] + probes[k].v * rad[i]));
            int nearer_object = color_distance(q, want) < color_distance(q, bg);
            if (nearer_object != probes[k].inside)
                fail_msg("%s: %s at (%.2f, %.2f) radii should be %s the shape", what, t_shape[o->shape],
                         probes[k].u, probes[k].v, probes[k].inside ? "inside" : "outside");
        }
    }
    /* Away from every object: the background, plus its light texture. */
    int limit = s->textured ? SYNTH_TEXTURE_AMPLITUDE : 0, checked = 0;
    for (int y = 0; y < size; y++) {
        for (int x = 0; x < size; x++) {
            int near = 0;
            for (int i = 0; i < s->n_objects; i++) {
                double dx = x + 0.5 - cx[i], dy = y + 0.5 - cy[i];
                near |= sqrt(dx * dx + dy * dy) <= rad[i] + 1.0;
            }
            if (near)
                continue;
            checked++;
            const uint8_t *p = pixel(&img, x, y);
            for (int k = 0; k < 3; k++)
                if (abs((int)p[k] - (int)bg[k]) > limit)
                    fail_msg("%s: background pixel (%d, %d) channel %d is %d; expected %d +- %d", what, x, y, k, p[k],
                             bg[k], limit);
        }
    }
    assert_true(checked > size * size / 3);
    image_free(&img);
}

static void test_render_draws_each_object_and_nothing_else(void **state)
{
    (void)state;
    static const int sizes[] = {32, 64, 100, 256};
    char what[64];
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int n = sizes[k] >= 256 ? 40 : 150;
        for (int id = 0; id < n; id++) {
            synth_scene s;
            synth_scene_generate(5, (uint64_t)id, &s);
            snprintf(what, sizeof what, "size %d scene %d", sizes[k], id);
            check_render(&s, sizes[k], what);
        }
    }
}

static void test_shapes_stay_inside_their_radius(void **state)
{
    (void)state;
    for (int shape = 0; shape < SYNTH_N_SHAPES; shape++) {
        assert_true(synth_shape_contains(shape, 0, 0));
        for (double a = 0; a < 6.283; a += 0.01)
            if (synth_shape_contains(shape, 1.001 * cos(a), 1.001 * sin(a)))
                fail_msg("%s reaches outside the unit disc at angle %.2f", t_shape[shape], a);
    }
}

static void test_render_is_deterministic(void **state)
{
    (void)state;
    synth_scene a, b, c;
    synth_scene_generate(3, 17, &a);
    synth_scene_generate(3, 17, &b);
    assert_memory_equal(&a, &b, sizeof a);
    image_u8 ia, ib;
    assert_ok(image_alloc(&ia, 64, 64, 3));
    assert_ok(image_alloc(&ib, 64, 64, 3));
    assert_ok(synth_render(&a, &ia));
    assert_ok(synth_render(&b, &ib));
    assert_memory_equal(ia.data, ib.data, 64 * 64 * 3);
    int differ = 0;
    for (uint64_t id = 0; id < 20; id++) {
        synth_scene_generate(4, id, &c);
        assert_ok(synth_render(&c, &ib));
        differ += memcmp(ia.data, ib.data, 64 * 64 * 3) != 0;
    }
    assert_int_equal(differ, 20);
    image_free(&ia);
    image_free(&ib);
}

static void test_render_rejects_bad_images(void **state)
{
    (void)state;
    synth_scene s;
    synth_scene_generate(1, 1, &s);
    image_u8 img;
    assert_ok(image_alloc(&img, 16, 16, 3));
    assert_error(synth_render(&s, &img), ALBEF_ERR_INVALID, "side 32..512");
    image_free(&img);
    assert_ok(image_alloc(&img, 64, 32, 3));
    assert_error(synth_render(&s, &img), ALBEF_ERR_INVALID, "square");
    image_free(&img);
    assert_ok(image_alloc(&img, 64, 64, 1));
    assert_error(synth_render(&s, &img), ALBEF_ERR_INVALID, "RGB");
    image_free(&img);
    assert_ok(image_alloc(&img, 64, 64, 3));
    s.n_objects = 0;
    assert_error(synth_render(&s, &img), ALBEF_ERR_INVALID, "0 objects");
    image_free(&img);
}

/* ------------------------------------------------------------------------ */
/* Image writers.                                                           */

static void test_png_round_trip_is_exact(void **state)
{
    (void)state;
    image_u8 img, back;
    assert_ok(image_alloc(&img, 37, 23, 3));
    for (size_t i = 0; i < 37 * 23 * 3; i++)
        img.data[i] = (uint8_t)(i * 7 + i / 5);
    const char *path = tmp_path("rt.png");
    assert_ok(image_write_png(path, &img));
    assert_ok(image_load(path, &back));
    assert_int_equal(back.width, 37);
    assert_int_equal(back.height, 23);
    assert_int_equal(back.channels, 3);
    assert_memory_equal(back.data, img.data, 37 * 23 * 3);
    image_free(&back);
    image_free(&img);

    /* Gray: written as gray, read back as RGB with equal channels. */
    assert_ok(image_alloc(&img, 9, 5, 1));
    for (int i = 0; i < 45; i++)
        img.data[i] = (uint8_t)(i * 5);
    path = tmp_path("gray.png");
    assert_ok(image_write_png(path, &img));
    assert_ok(image_load(path, &back));
    assert_int_equal(back.channels, 3);
    for (int i = 0; i < 45; i++)
        for (int k = 0; k < 3; k++)
            assert_int_equal(back.data[3 * i + k], img.data[i]);
    image_free(&back);
    image_free(&img);
}

static void test_jpeg_round_trip_is_close(void **state)
{
    (void)state;
    synth_scene s;
    synth_scene_generate(2, 9, &s);
    image_u8 img, back;
    assert_ok(image_alloc(&img, 128, 128, 3));
    assert_ok(synth_render(&s, &img));
    const char *path = tmp_path("rt.jpg");
    assert_ok(image_write_jpeg(path, &img, 95));
    assert_ok(image_load(path, &back));
    assert_int_equal(back.width, 128);
    assert_int_equal(back.height, 128);
    double sum = 0;
    for (size_t i = 0; i < 128 * 128 * 3; i++)
        sum += abs((int)back.data[i] - (int)img.data[i]);
    double mean = sum / (128 * 128 * 3);
    if (mean > 3.0)
        fail_msg("JPEG q95: mean abs error %.2f per channel; expected <= 3", mean);
    /* Object colours survive at their centres. */
    for (int i = 0; i < s.n_objects; i++) {
        double cx, cy, r;
        synth_object_geometry(&s.objects[i], 128, &cx, &cy, &r);
        uint8_t want[3];
        synth_color_rgb(s.objects[i].color, want);
        int d = color_distance(pixel(&back, (int)cx, (int)cy), want);
        if (d > 30)
            fail_msg("JPEG: object %d centre colour off by %d (sum over channels)", i, d);
    }
    /* Lower quality: a smaller file. */
    file_mapping hi, lo;
    const char *path_lo = tmp_path("rt_q20.jpg");
    assert_ok(image_write_jpeg(path_lo, &img, 20));
    assert_ok(file_map(path, &hi));
    assert_ok(file_map(path_lo, &lo));
    assert_true(lo.size < hi.size);
    assert_int_equal(hi.data[0], 0xFF);
    assert_int_equal(hi.data[1], 0xD8);
    file_unmap(&hi);
    file_unmap(&lo);
    image_free(&back);
    image_free(&img);

    /* Gray JPEG */
    assert_ok(image_alloc(&img, 16, 16, 1));
    memset(img.data, 100, 256);
    path = tmp_path("gray.jpg");
    assert_ok(image_write_jpeg(path, &img, 90));
    assert_ok(image_load(path, &back));
    for (int i = 0; i < 256 * 3; i++)
        assert_in_range(back.data[i], 98, 102);
    image_free(&back);
    image_free(&img);
}

static int count_dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_writers_reject_bad_input_cleanly(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/writers", test_tmpdir());
    mkdir(dir, 0755);
    char path[600];
    snprintf(path, sizeof path, "%s/bad.png", dir);
    uint8_t px[4 * 4 * 4] = {0};
    image_u8 img = {4, 4, 4, px};
    assert_error(image_write_png(path, &img), ALBEF_ERR_UNSUPPORTED, "bad.png: 4 channels");
    assert_error(image_write_jpeg(path, &img, 90), ALBEF_ERR_UNSUPPORTED, "4 channels");
    img.channels = 3;
    img.width = 0;
    assert_error(image_write_png(path, &img), ALBEF_ERR_INVALID, "image size 0x4");
    img.width = 70000;
    assert_error(image_write_jpeg(path, &img, 90), ALBEF_ERR_INVALID, "image size 70000x4");
    img.width = 4;
    img.data = NULL;
    assert_error(image_write_png(path, &img), ALBEF_ERR_INVALID, "no pixel data");
    img.data = px;
    assert_error(image_write_jpeg(path, &img, 0), ALBEF_ERR_INVALID, "quality 0");
    assert_error(image_write_jpeg(path, &img, 101), ALBEF_ERR_INVALID, "quality 101");
    assert_error(image_write_png(NULL, &img), ALBEF_ERR_INVALID, "empty path");
    assert_error(image_write_png("/nonexistent/dir/x.png", &img), ALBEF_ERR_IO, "/nonexistent/dir/x.png");
    assert_error(image_write_jpeg("/nonexistent/dir/x.jpg", &img, 90), ALBEF_ERR_IO, "/nonexistent/dir/x.jpg");
    assert_int_equal(count_dir_entries(dir), 0); /* nothing, not even a temporary file */

    /* A good write replaces the old file whole. */
    assert_ok(file_write_all_atomic(path, "old", 3));
    assert_ok(image_write_png(path, &img));
    file_mapping m;
    assert_ok(file_map(path, &m));
    assert_memory_equal(m.data, "\x89PNG", 4);
    file_unmap(&m);
    assert_int_equal(count_dir_entries(dir), 1);
}

/* ------------------------------------------------------------------------ */
/* Vocabulary.                                                              */

static int vocab_has(const char *vocab, const char *word)
{
    size_t n = strlen(word);
    for (const char *line = vocab; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len == n && memcmp(line, word, n) == 0)
            return 1;
        if (!end)
            break;
        line = end + 1;
    }
    return 0;
}

static void check_words_in_vocab(const char *vocab, const bert_tokenizer *tok, const char *text, int is_question)
{
    char norm[SYNTH_TEXT_MAX * 3];
    size_t len;
    if (is_question)
        assert_ok(pre_question(text, strlen(text), 50, norm, sizeof norm, &len));
    else
        assert_ok(pre_caption(text, strlen(text), 50, norm, sizeof norm, &len));
    char copy[sizeof norm];
    snprintf(copy, sizeof copy, "%s", norm);
    for (char *save = NULL, *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
        if (!vocab_has(vocab, w))
            fail_msg("'%s': the word '%s' is not in vocab.txt", text, w);
    int32_t ids[128];
    size_t n;
    assert_ok(bert_tokenizer_tokenize(tok, norm, len, ids, 128, &n));
    bert_special_ids sp = bert_tokenizer_special_ids(tok);
    for (size_t i = 0; i < n && i < 128; i++)
        if (ids[i] == sp.unk)
            fail_msg("'%s' tokenises with [UNK]", text);
}

static void test_vocab_covers_every_generated_word(void **state)
{
    (void)state;
    char *vocab;
    size_t len;
    assert_ok(synth_vocab_text(&vocab, &len));
    bert_tokenizer *tok;
    assert_ok(bert_tokenizer_load_buffer(vocab, len, "vocab.txt", &tok));
    bert_special_ids sp = bert_tokenizer_special_ids(tok);
    assert_int_equal(sp.pad, 0);
    assert_true(sp.unk >= 0 && sp.cls >= 0 && sp.sep >= 0 && sp.mask >= 0);
    /* No duplicate lines: a duplicate would shadow an id. */
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += vocab[i] == '\n';
    assert_int_equal(bert_tokenizer_vocab_size(tok), lines);
    for (int32_t i = 0; i < lines; i++) {
        size_t n;
        const char *t = bert_tokenizer_id_to_token(tok, i, &n);
        assert_int_equal(bert_tokenizer_token_to_id(tok, t, n), i);
    }

    char text[SYNTH_TEXT_MAX];
    for (uint64_t id = 0; id < 600; id++) {
        synth_scene s, s2;
        synth_scene_generate(21, id, &s);
        synth_scene_generate(21, id + 99999, &s2);
        rng_state r;
        rng_seed_stream(&r, 21, id);
        synth_claim c;
        synth_caption_claim(&s, &r, &c);
        assert_ok(synth_claim_text(&c, 1, &r, text, sizeof text));
        check_words_in_vocab(vocab, tok, text, 0);
        synth_statement_claim(&s, (int)(id & 1), &r, &c);
        assert_ok(synth_claim_text(&c, 0, &r, text, sizeof text));
        check_words_in_vocab(vocab, tok, text, 0);
        synth_neutral_claim(&s, &r, &c);
        assert_ok(synth_claim_text(&c, 0, &r, text, sizeof text));
        check_words_in_vocab(vocab, tok, text, 0);
        synth_question q;
        synth_question_generate(&s, &r, &q);
        assert_ok(synth_question_text(&q, &r, text, sizeof text));
        check_words_in_vocab(vocab, tok, text, 1);
        synth_pair_claim pc;
        synth_pair_claim_generate(&s, &s2, (int)(id & 1), &r, &pc);
        assert_ok(synth_pair_claim_text(&pc, &r, text, sizeof text));
        check_words_in_vocab(vocab, tok, text, 0);
    }
    /* Every neutral predicate, and every answer. */
    for (int scene_level = 0; scene_level <= 1; scene_level++) {
        for (int k = 0; k < synth_neutral_predicate_count(scene_level); k++) {
            synth_claim c;
            memset(&c, 0, sizeof c);
            c.kind = SYNTH_CLAIM_NEUTRAL;
            c.a = synth_np_any();
            c.b = synth_np_any();
            c.background = SYNTH_ANY;
            if (!scene_level)
                c.a.shape = SYNTH_STAR;
            c.neutral = k;
            rng_state r;
            rng_seed(&r, 1);
            assert_ok(synth_claim_text(&c, 0, &r, text, sizeof text));
            check_words_in_vocab(vocab, tok, text, 0);
        }
    }
    for (size_t i = 0; i < synth_answer_count(); i++)
        check_words_in_vocab(vocab, tok, synth_answer(i), 0);
    /* Any ASCII word: letters and digits have '##' forms. */
    int32_t ids[32];
    size_t n;
    assert_ok(bert_tokenizer_tokenize(tok, "Zebra qx9 (hello)! #7~", 22, ids, 32, &n));
    assert_true(n >= 10);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], sp.unk);
    bert_tokenizer_free(tok);
    free(vocab);
}

static void test_text_reports_small_buffers(void **state)
{
    (void)state;
    synth_scene s;
    synth_scene_generate(1, 2, &s);
    rng_state r;
    rng_seed(&r, 1);
    synth_claim c;
    synth_caption_claim(&s, &r, &c);
    char tiny[4];
    assert_error(synth_claim_text(&c, 1, &r, tiny, sizeof tiny), ALBEF_ERR_INVALID, "does not fit");
    synth_question q;
    synth_question_generate(&s, &r, &q);
    assert_error(synth_question_text(&q, &r, tiny, sizeof tiny), ALBEF_ERR_INVALID, "does not fit");
    c.kind = 99;
    char buf[SYNTH_TEXT_MAX];
    assert_error(synth_claim_text(&c, 0, &r, buf, sizeof buf), ALBEF_ERR_INVALID, "unknown claim kind 99");
}

/* ------------------------------------------------------------------------ */
/* The data set on disk.                                                    */

static void small_params(synth_params *p, const char *dir, uint64_t seed)
{
    synth_params_default(p);
    p->out_dir = dir;
    p->seed = seed;
    p->n_train = 40;
    p->n_val = 12;
    p->n_test = 13;
    p->image_size = 48;
}

static cJSON *load_json(const char *dir, const char *name)
{
    char path[1024], *text;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_ok(file_read_all(path, &text, NULL));
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j)
        fail_msg("%s: not valid JSON", path);
    return j;
}

static int t_index_of(const char *const *table, int n, const cJSON *j, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, field);
    if (!cJSON_IsString(v))
        fail_msg("scenes.json: '%s' is not a string", field);
    int k = t_lookup(table, n, v->valuestring);
    if (k < 0)
        fail_msg("scenes.json: unknown %s '%s'", field, v->valuestring);
    return k;
}

typedef struct {
    int n;
    t_scene *s;
    char (*image)[64];
} t_split_scenes;

/* The scenes of every split as scenes.json describes them, by image path. */
static void load_scenes(const char *dir, t_split_scenes out[3])
{
    static const char *const splits[3] = {"train", "val", "test"};
    cJSON *root = load_json(dir, "scenes.json");
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(root, "splits");
    for (int k = 0; k < 3; k++) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(sp, splits[k]);
        assert_true(cJSON_IsArray(list));
        int n = cJSON_GetArraySize(list);
        out[k].n = n;
        out[k].s = calloc((size_t)n + 1, sizeof *out[k].s);
        out[k].image = calloc((size_t)n + 1, sizeof *out[k].image);
        int i = 0;
        const cJSON *item;
        cJSON_ArrayForEach(item, list)
        {
            t_scene *s = &out[k].s[i];
            snprintf(out[k].image[i], 64, "%s", cJSON_GetObjectItemCaseSensitive(item, "image")->valuestring);
            s->background = t_index_of(t_background, SYNTH_N_BACKGROUNDS, item, "background");
            const cJSON *o;
            cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(item, "objects"))
            {
                assert_true(s->n < SYNTH_MAX_OBJECTS);
                t_obj *ob = &s->o[s->n++];
                ob->shape = t_index_of(t_shape, SYNTH_N_SHAPES, o, "shape");
                ob->color = t_index_of(t_color, SYNTH_N_COLORS, o, "color");
                ob->size = t_index_of(t_size, SYNTH_N_SIZES, o, "size");
                ob->row = (int)cJSON_GetObjectItemCaseSensitive(o, "row")->valuedouble;
                ob->col = (int)cJSON_GetObjectItemCaseSensitive(o, "col")->valuedouble;
                assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "cell")->valuestring,
                                    t_cell[ob->row][ob->col]);
            }
            assert_in_range(s->n, 1, SYNTH_MAX_OBJECTS);
            i++;
        }
    }
    cJSON_Delete(root);
}

static void free_scenes(t_split_scenes sc[3])
{
    for (int k = 0; k < 3; k++) {
        free(sc[k].s);
        free(sc[k].image);
    }
}

/* The scene of an image path ("val/000003.png" or "val/000003"), and its split. */
static const t_scene *scene_of_path(t_split_scenes sc[3], const char *path, int *split)
{
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < sc[k].n; i++) {
            size_t n = strlen(path);
            if (strncmp(sc[k].image[i], path, n) == 0 && (sc[k].image[i][n] == '\0' || sc[k].image[i][n] == '.')) {
                *split = k;
                return &sc[k].s[i];
            }
        }
    }
    fail_msg("image '%s' is in no split of scenes.json", path);
    return NULL;
}

static const char *str_field(const cJSON *item, const char *field, const char *file)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(item, field);
    if (!cJSON_IsString(v))
        fail_msg("%s: '%s' is not a string", file, field);
    return v->valuestring;
}

static void expect_fields(const cJSON *item, const char *const *fields, int n, const char *file)
{
    int count = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, item) count++;
    if (count != n)
        fail_msg("%s: an item has %d fields; expected %d", file, count, n);
    for (int i = 0; i < n; i++)
        if (!cJSON_GetObjectItemCaseSensitive(item, fields[i]))
            fail_msg("%s: an item lacks '%s'", file, fields[i]);
}

static void expect_file(const char *dir, const char *rel)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/images/%s", dir, rel);
    if (stat(path, &st) != 0 || st.st_size == 0)
        fail_msg("%s: missing or empty", path);
}

/* Variants an annotator may give instead of the canonical answer. */
static int accepted_variant(const char *canonical, const char *a)
{
    static const char *const pairs[][2] = {{"0", "none"},      {"1", "one"},   {"2", "two"},    {"3", "three"},
                                           {"4", "four"},      {"center", "middle"}, {"large", "big"},
                                           {"small", "little"}};
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++)
        if (!strcmp(canonical, pairs[k][0]) && !strcmp(a, pairs[k][1]))
            return 1;
    return 0;
}

static void check_files(const char *dir)
{
    t_split_scenes sc[3];
    load_scenes(dir, sc);
    char abs_root[1100];
    {
        char real[1024];
        assert_non_null(realpath(dir, real));
        snprintf(abs_root, sizeof abs_root, "%s/images/", real);
    }
    int split;

    /* pretrain: absolute image paths, string or list captions, all true. */
    cJSON *j = load_json(dir, "pretrain.json");
    int lists = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, j)
    {
        static const char *const f[] = {"image", "caption"};
        expect_fields(item, f, 2, "pretrain.json");
        const char *image = str_field(item, "image", "pretrain.json");
        assert_memory_equal(image, abs_root, strlen(abs_root));
        const t_scene *s = scene_of_path(sc, image + strlen(abs_root), &split);
        assert_int_equal(split, 0);
        const cJSON *cap = cJSON_GetObjectItemCaseSensitive(item, "caption");
        if (cJSON_IsArray(cap)) {
            lists++;
            assert_true(cJSON_GetArraySize(cap) >= 2);
            const cJSON *c;
            cJSON_ArrayForEach(c, cap) assert_int_equal(t_eval_statement(s, c->valuestring), 1);
        } else {
            assert_true(cJSON_IsString(cap));
            assert_int_equal(t_eval_statement(s, cap->valuestring), 1);
        }
        struct stat st;
        assert_int_equal(stat(image, &st), 0);
    }
    assert_int_equal(cJSON_GetArraySize(j), sc[0].n);
    if (sc[0].n >= 20)
        assert_true(lists > 0 && lists < sc[0].n);
    cJSON_Delete(j);

    /* retrieval */
    static const char *const retrieval[3] = {"retrieval_train.json", "retrieval_val.json", "retrieval_test.json"};
    for (int k = 0; k < 3; k++) {
        j = load_json(dir, retrieval[k]);
        int items = 0;
        cJSON_ArrayForEach(item, j)
        {
            items++;
            const char *image = str_field(item, "image", retrieval[k]);
            const t_scene *s = scene_of_path(sc, image, &split);
            assert_int_equal(split, k);
            expect_file(dir, image);
            if (k == 0) {
                static const char *const f[] = {"image", "caption", "image_id"};
                expect_fields(item, f, 3, retrieval[k]);
                assert_int_equal(t_eval_statement(s, str_field(item, "caption", retrieval[k])), 1);
                str_field(item, "image_id", retrieval[k]);
            } else {
                static const char *const f[] = {"image", "caption"};
                expect_fields(item, f, 2, retrieval[k]);
                const cJSON *caps = cJSON_GetObjectItemCaseSensitive(item, "caption");
                assert_true(cJSON_IsArray(caps));
                assert_int_equal(cJSON_GetArraySize(caps), 5);
                const cJSON *c;
                cJSON_ArrayForEach(c, caps)
                {
                    assert_true(cJSON_IsString(c));
                    assert_int_equal(t_eval_statement(s, c->valuestring), 1);
                }
            }
        }
        assert_int_equal(items, k == 0 ? 5 * sc[0].n : sc[k].n);
        cJSON_Delete(j);
    }

    /* VQA: train/val with 10 answers, test questions plus the answers file. */
    cJSON *answer_list = load_json(dir, "answer_list.json");
    static const char *const vqa[3] = {"vqa_train.json", "vqa_val.json", "vqa_test.json"};
    cJSON *test_answers = load_json(dir, "vqa_test_answers.json");
    char answer[64];
    double ids_seen[4096];
    int n_ids = 0;
    for (int k = 0; k < 3; k++) {
        j = load_json(dir, vqa[k]);
        int items = 0;
        cJSON_ArrayForEach(item, j)
        {
            const char *image = str_field(item, "image", vqa[k]);
            const t_scene *s = scene_of_path(sc, image, &split);
            assert_int_equal(split, k);
            expect_file(dir, image);
            assert_string_equal(str_field(item, "dataset", vqa[k]), "vqa");
            const cJSON *qid = cJSON_GetObjectItemCaseSensitive(item, "question_id");
            assert_true(cJSON_IsNumber(qid));
            for (int m = 0; m < n_ids; m++)
                if (ids_seen[m] == qid->valuedouble)
                    fail_msg("%s: question_id %.0f used twice", vqa[k], qid->valuedouble);
            if (n_ids < 4096)
                ids_seen[n_ids++] = qid->valuedouble;
            t_answer(s, str_field(item, "question", vqa[k]), answer, sizeof answer);
            const cJSON *answers;
            if (k < 2) {
                static const char *const f[] = {"question_id", "question", "answer", "image", "dataset"};
                expect_fields(item, f, 5, vqa[k]);
                answers = cJSON_GetObjectItemCaseSensitive(item, "answer");
            } else {
                static const char *const f[] = {"question_id", "question", "image", "dataset"};
                expect_fields(item, f, 4, vqa[k]);
                const cJSON *ta = cJSON_GetArrayItem(test_answers, items);
                assert_true(cJSON_GetObjectItemCaseSensitive(ta, "question_id")->valuedouble == qid->valuedouble);
                assert_string_equal(str_field(ta, "answer", "vqa_test_answers.json"), answer);
                answers = cJSON_GetObjectItemCaseSensitive(ta, "answers");
            }
            assert_true(cJSON_IsArray(answers));
            assert_int_equal(cJSON_GetArraySize(answers), 10);
            int canonical = 0;
            const cJSON *a;
            cJSON_ArrayForEach(a, answers)
            {
                assert_true(cJSON_IsString(a));
                if (!strcmp(a->valuestring, answer))
                    canonical++;
                else if (!accepted_variant(answer, a->valuestring))
                    fail_msg("%s: '%s': annotator answer '%s', truth '%s'", vqa[k],
                             str_field(item, "question", vqa[k]), a->valuestring, answer);
                int listed = 0;
                const cJSON *l;
                cJSON_ArrayForEach(l, answer_list) listed |= !strcmp(l->valuestring, a->valuestring);
                if (!listed)
                    fail_msg("answer '%s' is not in answer_list.json", a->valuestring);
            }
            assert_true(canonical >= 7);
            items++;
        }
        assert_int_equal(items, 3 * sc[k].n);
        cJSON_Delete(j);
    }
    cJSON_Delete(test_answers);
    cJSON_Delete(answer_list);

    j = load_json(dir, "vg_qa.json");
    cJSON_ArrayForEach(item, j)
    {
        static const char *const f[] = {"question", "answer", "image", "dataset"};
        expect_fields(item, f, 4, "vg_qa.json");
        const t_scene *s = scene_of_path(sc, str_field(item, "image", "vg_qa.json"), &split);
        assert_int_equal(split, 0);
        assert_string_equal(str_field(item, "dataset", "vg_qa.json"), "vg");
        t_answer(s, str_field(item, "question", "vg_qa.json"), answer, sizeof answer);
        assert_string_equal(str_field(item, "answer", "vg_qa.json"), answer);
    }
    cJSON_Delete(j);

    /* NLVR2: pairs from one split, labels "True"/"False", balanced. */
    static const char *const nlvr[3] = {"nlvr_train.json", "nlvr_dev.json", "nlvr_test.json"};
    for (int k = 0; k < 3; k++) {
        j = load_json(dir, nlvr[k]);
        int labels[2] = {0, 0};
        cJSON_ArrayForEach(item, j)
        {
            static const char *const f[] = {"images", "sentence", "label"};
            expect_fields(item, f, 3, nlvr[k]);
            const cJSON *images = cJSON_GetObjectItemCaseSensitive(item, "images");
            assert_true(cJSON_IsArray(images));
            assert_int_equal(cJSON_GetArraySize(images), 2);
            int s0, s1;
            const t_scene *l = scene_of_path(sc, cJSON_GetArrayItem(images, 0)->valuestring, &s0);
            const t_scene *r = scene_of_path(sc, cJSON_GetArrayItem(images, 1)->valuestring, &s1);
            assert_int_equal(s0, k);
            assert_int_equal(s1, k);
            assert_string_not_equal(cJSON_GetArrayItem(images, 0)->valuestring,
                                    cJSON_GetArrayItem(images, 1)->valuestring);
            const char *label = str_field(item, "label", nlvr[k]);
            int want = !strcmp(label, "True");
            if (!want && strcmp(label, "False") != 0)
                fail_msg("%s: label '%s'", nlvr[k], label);
            labels[want]++;
            const char *sentence = str_field(item, "sentence", nlvr[k]);
            if (t_eval_pair(l, r, sentence) != want)
                fail_msg("%s: '%s' labelled %s", nlvr[k], sentence, label);
        }
        assert_int_equal(labels[0] + labels[1], sc[k].n >= 2 ? sc[k].n : 0); /* pairs need two images */
        assert_true(abs(labels[0] - labels[1]) <= 1);
        cJSON_Delete(j);
    }

    /* SNLI-VE: names without extension whose .jpg exists; one of each label per image. */
    static const char *const ve[3] = {"ve_train.json", "ve_dev.json", "ve_test.json"};
    for (int k = 0; k < 3; k++) {
        j = load_json(dir, ve[k]);
        int labels[3] = {0, 0, 0};
        cJSON_ArrayForEach(item, j)
        {
            static const char *const f[] = {"image", "sentence", "label"};
            expect_fields(item, f, 3, ve[k]);
            const char *image = str_field(item, "image", ve[k]);
            assert_null(strchr(image, '.'));
            char jpg[128];
            snprintf(jpg, sizeof jpg, "%s.jpg", image);
            expect_file(dir, jpg);
            const t_scene *s = scene_of_path(sc, image, &split);
            assert_int_equal(split, k);
            const char *label = str_field(item, "label", ve[k]);
            const char *sentence = str_field(item, "sentence", ve[k]);
            int v = t_eval_statement(s, sentence);
            int expect = !strcmp(label, "entailment") ? 1 : !strcmp(label, "contradiction") ? 0 : -1;
            if (expect == -1 && strcmp(label, "neutral") != 0)
                fail_msg("%s: label '%s'", ve[k], label);
            if (v != expect)
                fail_msg("%s: '%s' labelled %s, the reader finds %d", ve[k], sentence, label, v);
            labels[expect + 1]++;
        }
        assert_int_equal(labels[0], sc[k].n);
        assert_int_equal(labels[1], sc[k].n);
        assert_int_equal(labels[2], sc[k].n);
        cJSON_Delete(j);
    }
    free_scenes(sc);
}

static void test_dataset_files_are_true_and_in_albef_formats(void **state)
{
    (void)state;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/ds_a", test_tmpdir());
    synth_params p;
    small_params(&p, dir, 7);
    synth_summary sum;
    assert_ok(synth_write_dataset(&p, &sum));
    assert_int_equal(sum.n_images[0], 40);
    assert_int_equal(sum.n_images[1], 12);
    assert_int_equal(sum.n_images[2], 13);
    assert_int_equal(sum.n_files, 2 * (40 + 12 + 13)); /* PNG + the JPEG copy for SNLI-VE */
    check_files(dir);

    /* JPEG data sets need no copies. */
    snprintf(dir, sizeof dir, "%s/ds_jpeg", test_tmpdir());
    small_params(&p, dir, 8);
    p.format = SYNTH_JPEG;
    p.n_train = 12;
    p.n_val = 4;
    p.n_test = 4;
    assert_ok(synth_write_dataset(&p, &sum));
    assert_int_equal(sum.n_files, 20);
    check_files(dir);
}

static void test_manifests_load_with_the_manifest_reader(void **state)
{
    (void)state;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/ds_load", test_tmpdir());
    synth_params p;
    small_params(&p, dir, 9);
    synth_summary sum;
    assert_ok(synth_write_dataset(&p, &sum));
    static const struct {
        const char *file;
        enum manifest_kind kind;
        int per_image, split;
    } files[] = {
        {"pretrain.json", MANIFEST_PRETRAIN, 1, 0},      {"retrieval_train.json", MANIFEST_RETRIEVAL_TRAIN, 5, 0},
        {"retrieval_val.json", MANIFEST_RETRIEVAL_EVAL, 1, 1}, {"retrieval_test.json", MANIFEST_RETRIEVAL_EVAL, 1, 2},
        {"vqa_train.json", MANIFEST_VQA_TRAIN, 3, 0},    {"vqa_val.json", MANIFEST_VQA_TRAIN, 3, 1},
        {"vg_qa.json", MANIFEST_VQA_TRAIN, 1, 0},        {"vqa_test.json", MANIFEST_VQA_TEST, 3, 2},
        {"answer_list.json", MANIFEST_ANSWER_LIST, 0, 0}, {"nlvr_train.json", MANIFEST_NLVR, 1, 0},
        {"nlvr_dev.json", MANIFEST_NLVR, 1, 1},          {"nlvr_test.json", MANIFEST_NLVR, 1, 2},
        {"ve_train.json", MANIFEST_VE, 3, 0},            {"ve_dev.json", MANIFEST_VE, 3, 1},
        {"ve_test.json", MANIFEST_VE, 3, 2},
    };
    const int per_split[3] = {p.n_train, p.n_val, p.n_test};
    char path[1024], root[1024], image[1200];
    snprintf(root, sizeof root, "%s/images", dir);
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[k].file);
        const char *paths[1] = {path};
        manifest *m;
        assert_ok(manifest_load(&m, files[k].kind, paths, 1));
        if (files[k].kind == MANIFEST_ANSWER_LIST) {
            assert_int_equal(manifest_count(m), synth_answer_count());
        } else {
            if (manifest_count(m) != (size_t)(files[k].per_image * per_split[files[k].split]))
                fail_msg("%s: %zu items; expected %d", files[k].file, manifest_count(m),
                         files[k].per_image * per_split[files[k].split]);
            for (size_t i = 0; i < manifest_count(m); i++) {
                /* Every image the loader would open exists (VE: with ".jpg"). */
                assert_ok(manifest_join_path(image, sizeof image, root, manifest_image(m, i)));
                struct stat st;
                if (stat(image, &st) != 0)
                    fail_msg("%s item %zu: %s does not exist", files[k].file, i, image);
                if (files[k].kind == MANIFEST_VQA_TRAIN) {
                    float w = 0;
                    for (size_t a = 0; a < manifest_answer_count(m, i); a++)
                        w += manifest_answer_weight(m, i, a);
                    assert_true(fabsf(w - (strcmp(files[k].file, "vg_qa.json") ? 1.0f : 0.5f)) < 1e-5f);
                }
            }
        }
        if (files[k].kind == MANIFEST_RETRIEVAL_TRAIN)
            assert_int_equal(manifest_image_count(m), p.n_train);
        if (files[k].kind == MANIFEST_RETRIEVAL_EVAL)
            assert_int_equal(manifest_text_total(m), 5 * manifest_count(m));
        manifest_free(m);
    }
}

static int files_equal(const char *a, const char *b)
{
    file_mapping ma, mb;
    assert_ok(file_map(a, &ma));
    assert_ok(file_map(b, &mb));
    int eq = ma.size == mb.size && (ma.size == 0 || memcmp(ma.data, mb.data, ma.size) == 0);
    file_unmap(&ma);
    file_unmap(&mb);
    return eq;
}

/* Compares every file under a and b (recursively); pretrain.json differs by
 * its absolute paths only. Returns the number of differing files. */
static int compare_trees(const char *a, const char *b, const char *rel, int *n_files)
{
    char da[1200], db[1200];
    snprintf(da, sizeof da, "%s%s", a, rel);
    snprintf(db, sizeof db, "%s%s", b, rel);
    DIR *d = opendir(da);
    assert_non_null(d);
    int differ = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[1200], pa[2400], pb[2400];
        snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name);
        snprintf(pa, sizeof pa, "%s%s", a, sub);
        snprintf(pb, sizeof pb, "%s%s", b, sub);
        struct stat st;
        assert_int_equal(stat(pa, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            differ += compare_trees(a, b, sub, n_files);
            continue;
        }
        (*n_files)++;
        if (access(pb, F_OK) != 0)
            fail_msg("%s exists but %s does not", pa, pb);
        if (!strcmp(e->d_name, "pretrain.json")) {
            char *ta, *tb;
            assert_ok(file_read_all(pa, &ta, NULL));
            assert_ok(file_read_all(pb, &tb, NULL));
            /* Replace each run's folder by a marker, then compare. */
            char ra[1024], rb[1024];
            assert_non_null(realpath(a, ra));
            assert_non_null(realpath(b, rb));
            size_t la = strlen(ra), lb = strlen(rb);
            const char *x = ta, *y = tb;
            int same = 1;
            while (*x && *y && same) {
                if (!strncmp(x, ra, la) && !strncmp(y, rb, lb)) {
                    x += la;
                    y += lb;
                } else {
                    same = *x++ == *y++;
                }
            }
            differ += !(same && !*x && !*y);
            free(ta);
            free(tb);
        } else {
            differ += !files_equal(pa, pb);
        }
    }
    closedir(d);
    return differ;
}

static void test_dataset_is_deterministic(void **state)
{
    (void)state;
    char a[600], b[600], c[600];
    snprintf(a, sizeof a, "%s/det_a", test_tmpdir());
    snprintf(b, sizeof b, "%s/det_b", test_tmpdir());
    snprintf(c, sizeof c, "%s/det_c", test_tmpdir());
    synth_params p;
    synth_summary sum;
    small_params(&p, a, 42);
    assert_ok(synth_write_dataset(&p, &sum));
    small_params(&p, b, 42);
    p.threads = 1; /* a single writer gives the same bytes as many */
    assert_ok(synth_write_dataset(&p, &sum));
    small_params(&p, c, 43);
    assert_ok(synth_write_dataset(&p, &sum));
    int n_files = 0;
    int differ = compare_trees(a, b, "", &n_files);
    if (differ)
        fail_msg("same seed: %d of %d files differ", differ, n_files);
    assert_true(n_files > 100);
    n_files = 0;
    differ = compare_trees(a, c, "", &n_files);
    /* Another seed changes the images and the texts; answer_list.json and
     * vocab.txt stay. */
    if (differ < n_files - 2)
        fail_msg("seeds 42 and 43: only %d of %d files differ", differ, n_files);
}

static void test_params_are_checked(void **state)
{
    (void)state;
    synth_params p;
    synth_summary sum;
    synth_params_default(&p);
    assert_ok(synth_params_check(&p));
    p.image_size = 31;
    assert_error(synth_write_dataset(&p, &sum), ALBEF_ERR_INVALID, "image_size 31: expected 32..512");
    synth_params_default(&p);
    p.n_train = 0;
    assert_error(synth_params_check(&p), ALBEF_ERR_INVALID, "n_train 0");
    synth_params_default(&p);
    p.n_val = -1;
    assert_error(synth_params_check(&p), ALBEF_ERR_INVALID, "n_val -1");
    synth_params_default(&p);
    p.jpeg_quality = 0;
    assert_error(synth_params_check(&p), ALBEF_ERR_INVALID, "jpeg_quality 0");
    synth_params_default(&p);
    p.captions_per_image = 11;
    assert_error(synth_params_check(&p), ALBEF_ERR_INVALID, "captions_per_image 11");
    synth_params_default(&p);
    p.threads = 65;
    assert_error(synth_params_check(&p), ALBEF_ERR_INVALID, "threads 65");
    synth_params_default(&p);
    p.format = 7;
    assert_error(synth_params_check(&p), ALBEF_ERR_INVALID, "format 7");
    synth_params_default(&p);
    p.out_dir = "";
    assert_error(synth_params_check(&p), ALBEF_ERR_INVALID, "out_dir");
}

static void test_unwritable_folder_is_an_io_error(void **state)
{
    (void)state;
    const char *file = write_tmp_file("not_a_dir", "x", 1);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/sub", file);
    synth_params p;
    small_params(&p, dir, 1);
    synth_summary sum;
    assert_error(synth_write_dataset(&p, &sum), ALBEF_ERR_IO, "not_a_dir");
    small_params(&p, file, 1);
    assert_error(synth_write_dataset(&p, &sum), ALBEF_ERR_IO, "is not a folder");
}

static void test_small_splits(void **state)
{
    (void)state;
    /* One training image and no val/test images: NLVR needs pairs, so its
     * files are empty lists, and every other file is still written. */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/tiny", test_tmpdir());
    synth_params p;
    small_params(&p, dir, 3);
    p.n_train = 1;
    p.n_val = 0;
    p.n_test = 0;
    synth_summary sum;
    assert_ok(synth_write_dataset(&p, &sum));
    for (int i = 0; i < sum.n_manifests; i++) {
        if (!strncmp(sum.manifests[i].name, "nlvr_", 5) || !strcmp(sum.manifests[i].name, "retrieval_val.json"))
            assert_int_equal(sum.manifests[i].items, 0);
        if (!strcmp(sum.manifests[i].name, "pretrain.json"))
            assert_int_equal(sum.manifests[i].items, 1);
    }
    check_files(dir);
}

int main(void)
{
    albef_log_set_level(ALBEF_LOG_WARN); /* keep the TAP output clean */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_rejects_false_sentences),
        cmocka_unit_test(test_captions_are_true),
        cmocka_unit_test(test_captions_are_distinctive),
        cmocka_unit_test(test_statements_have_the_asked_truth),
        cmocka_unit_test(test_questions_have_the_reader_answer),
        cmocka_unit_test(test_nlvr_statements_have_the_asked_truth),
        cmocka_unit_test(test_scenes_are_well_formed),
        cmocka_unit_test(test_shapes_stay_inside_their_radius),
        cmocka_unit_test(test_render_draws_each_object_and_nothing_else),
        cmocka_unit_test(test_render_is_deterministic),
        cmocka_unit_test(test_render_rejects_bad_images),
        cmocka_unit_test(test_png_round_trip_is_exact),
        cmocka_unit_test(test_jpeg_round_trip_is_close),
        cmocka_unit_test(test_writers_reject_bad_input_cleanly),
        cmocka_unit_test(test_vocab_covers_every_generated_word),
        cmocka_unit_test(test_text_reports_small_buffers),
        cmocka_unit_test(test_dataset_files_are_true_and_in_albef_formats),
        cmocka_unit_test(test_manifests_load_with_the_manifest_reader),
        cmocka_unit_test(test_dataset_is_deterministic),
        cmocka_unit_test(test_params_are_checked),
        cmocka_unit_test(test_unwritable_folder_is_an_io_error),
        cmocka_unit_test(test_small_splits),
    };
    return cmocka_run_group_tests_name("synth", tests, NULL, NULL);
}
