/* Drawing claims and questions for a scene. Each generator builds its claim
 * from the scene's objects, aiming at the truth value it was asked for, and
 * keeps it only if the evaluator (synth_facts.c) agrees; so no label is ever
 * assumed, and the kinds of sentences are spread alike over true and false. */
#include "data/synth.h"

#include <string.h>

enum { F_COLOR = 1, F_SHAPE = 2, F_SIZE = 4, F_REGION = 8 };

static synth_np np_with_fields(const synth_object *o, int fields)
{
    synth_np np = synth_np_any();
    if (fields & F_COLOR)
        np.color = o->color;
    if (fields & F_SHAPE)
        np.shape = o->shape;
    if (fields & F_SIZE)
        np.size = o->size;
    return np;
}

/* A random region that contains the cell (every cell has at least one). */
static int region_of_cell(int cell, rng_state *r)
{
    int options[SYNTH_N_REGIONS], n = 0;
    for (int g = 0; g < SYNTH_N_REGIONS; g++)
        if (synth_region_contains(g, cell))
            options[n++] = g;
    return options[rng_below(r, (uint32_t)n)];
}

/* A description that fits object i and no other, using only the allowed
 * fields. Regions are a last resort: they make longer sentences. */
static int describe_unique(const synth_scene *s, int i, int allowed, rng_state *r, synth_np *out)
{
    const synth_object *o = &s->objects[i];
    synth_np found[8 * (SYNTH_N_REGIONS + 1)];
    int n = 0;
    for (int fields = 1; fields < 8; fields++) {
        if ((fields & ~allowed) != 0)
            continue;
        synth_np np = np_with_fields(o, fields);
        if (synth_count(s, &np) == 1)
            found[n++] = np;
    }
    if (n == 0 && (allowed & F_REGION)) {
        for (int g = 0; g < SYNTH_N_REGIONS; g++) {
            if (!synth_region_contains(g, o->cell))
                continue;
            for (int fields = 0; fields < 8; fields++) {
                if ((fields & ~allowed) != 0)
                    continue;
                synth_np np = np_with_fields(o, fields);
                np.region = g;
                if (synth_count(s, &np) == 1)
                    found[n++] = np;
            }
        }
    }
    if (n == 0)
        return 0;
    *out = found[rng_below(r, (uint32_t)n)];
    return 1;
}

static const synth_object *random_object(const synth_scene *s, rng_state *r)
{
    return &s->objects[rng_below(r, (uint32_t)s->n_objects)];
}

static synth_claim claim_of_kind(int kind)
{
    synth_claim c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.a = c.b = synth_np_any();
    c.background = SYNTH_ANY;
    c.rel = SYNTH_LEFT_OF;
    return c;
}

/* Attribute subsets used to name a group of objects: shape, colour,
 * colour + shape, size + shape. */
static const int group_fields[] = {F_SHAPE, F_COLOR, F_COLOR | F_SHAPE, F_SIZE | F_SHAPE};

/* ---- captions: true statements built directly from the objects ---- */

static void caption_list(const synth_scene *s, rng_state *r, synth_claim *c)
{
    *c = claim_of_kind(SYNTH_CLAIM_LIST);
    int fields = F_COLOR | F_SHAPE | (rng_bernoulli(r, 0.5) ? F_SIZE : 0);
    /* Reading order: by cell. */
    int order[SYNTH_MAX_OBJECTS];
    for (int i = 0; i < s->n_objects; i++) {
        int j = i;
        while (j > 0 && s->objects[order[j - 1]].cell > s->objects[i].cell) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    for (int k = 0; k < s->n_objects; k++) {
        synth_np np = np_with_fields(&s->objects[order[k]], fields);
        int seen = 0;
        for (int m = 0; m < c->n_items; m++)
            seen |= memcmp(&c->items[m], &np, sizeof np) == 0;
        if (seen)
            continue;
        c->items[c->n_items] = np;
        int n = synth_count(s, &np);
        c->item_n[c->n_items++] = n;
    }
}

/* Captions describe their image the way a person would tell one picture
 * from others: every object by colour and shape (a list), two objects and
 * where one is from the other, or one object and where it is. Bare counts
 * ("three shapes", "one cross") are true of a quarter of all scenes; such
 * captions turn ITM's hard negatives (the most similar other image of a
 * batch) into true matches labelled false, so they are left to the
 * statements of the other tasks. */
void synth_caption_claim(const synth_scene *s, rng_state *r, synth_claim *c)
{
    uint32_t pick = rng_below(r, 100);
    const synth_object *o = random_object(s, r);
    if (pick < 40 || (pick < 75 && s->n_objects < 2)) {
        caption_list(s, r, c);
    } else if (pick < 75) {
        *c = claim_of_kind(SYNTH_CLAIM_RELATION);
        int i = (int)rng_below(r, (uint32_t)s->n_objects);
        int j = (i + 1 + (int)rng_below(r, (uint32_t)s->n_objects - 1)) % s->n_objects;
        const synth_object *a = &s->objects[i], *b = &s->objects[j];
        int rels[SYNTH_N_RELATIONS], n = 0;
        for (int k = 0; k < SYNTH_N_RELATIONS; k++)
            if (synth_relation_holds(k, a, b))
                rels[n++] = k;
        c->rel = rels[rng_below(r, (uint32_t)n)]; /* distinct cells: a row or a column differs */
        c->a = np_with_fields(a, F_COLOR | F_SHAPE | (rng_bernoulli(r, 0.5) ? F_SIZE : 0));
        c->b = np_with_fields(b, F_COLOR | F_SHAPE | (rng_bernoulli(r, 0.5) ? F_SIZE : 0));
    } else {
        *c = claim_of_kind(SYNTH_CLAIM_EXISTS);
        c->a = np_with_fields(o, F_COLOR | F_SHAPE | (rng_bernoulli(r, 0.5) ? F_SIZE : 0));
        c->a.region = region_of_cell(o->cell, r);
    }
    if (rng_bernoulli(r, 0.15))
        c->background = s->background;
}

/* ---- statements aimed at a truth value ---- */

static int other_value(int value, int n, rng_state *r)
{
    return (value + 1 + (int)rng_below(r, (uint32_t)n - 1)) % n;
}

/* Changes one named attribute of np to a value the object does not have. */
static void perturb(synth_np *np, const synth_object *o, rng_state *r)
{
    int fields[4], n = 0;
    if (np->color != SYNTH_ANY)
        fields[n++] = F_COLOR;
    if (np->shape != SYNTH_ANY)
        fields[n++] = F_SHAPE;
    if (np->size != SYNTH_ANY)
        fields[n++] = F_SIZE;
    if (np->region != SYNTH_ANY)
        fields[n++] = F_REGION;
    if (n == 0) {
        np->color = other_value(o->color, SYNTH_N_COLORS, r);
        return;
    }
    switch (fields[rng_below(r, (uint32_t)n)]) {
    case F_COLOR: np->color = other_value(o->color, SYNTH_N_COLORS, r); break;
    case F_SHAPE: np->shape = other_value(o->shape, SYNTH_N_SHAPES, r); break;
    case F_SIZE: np->size = other_value(o->size, SYNTH_N_SIZES, r); break;
    default: {
        int g;
        do
            g = (int)rng_below(r, SYNTH_N_REGIONS);
        while (synth_region_contains(g, o->cell));
        np->region = g;
    }
    }
}

/* A relation that holds (want) or fails (!want) between a and b, or -1. */
static int relation_for(const synth_object *a, const synth_object *b, int want, rng_state *r)
{
    int rels[SYNTH_N_RELATIONS], n = 0;
    for (int k = 0; k < SYNTH_N_RELATIONS; k++)
        if (synth_relation_holds(k, a, b) == want)
            rels[n++] = k;
    return n ? rels[rng_below(r, (uint32_t)n)] : -1;
}

static int try_statement(const synth_scene *s, int kind, int want, rng_state *r, synth_claim *c)
{
    *c = claim_of_kind(kind);
    const synth_object *o = random_object(s, r);
    switch (kind) {
    case SYNTH_CLAIM_EXISTS:
        c->a = np_with_fields(o, F_SHAPE | (rng_below(r, 3) ? F_COLOR : 0) | (rng_bernoulli(r, 0.3) ? F_SIZE : 0));
        if (rng_bernoulli(r, 0.3))
            c->a.region = region_of_cell(o->cell, r);
        if (!want)
            perturb(&c->a, o, r);
        break;
    case SYNTH_CLAIM_COUNT: {
        c->a = rng_bernoulli(r, 0.2) ? synth_np_any() : np_with_fields(o, group_fields[rng_below(r, 4)]);
        int n = synth_count(s, &c->a);
        c->n = want ? n : other_value(n, SYNTH_MAX_OBJECTS + 1, r);
        break;
    }
    case SYNTH_CLAIM_RELATION:
    case SYNTH_CLAIM_THE_RELATION: {
        if (s->n_objects < 2)
            return 0;
        int i = (int)rng_below(r, (uint32_t)s->n_objects);
        int j = (i + 1 + (int)rng_below(r, (uint32_t)s->n_objects - 1)) % s->n_objects;
        c->rel = relation_for(&s->objects[i], &s->objects[j], want, r);
        if (c->rel < 0)
            return 0;
        if (kind == SYNTH_CLAIM_RELATION) {
            c->a = np_with_fields(&s->objects[i], F_SHAPE | (rng_below(r, 3) ? F_COLOR : 0));
            c->b = np_with_fields(&s->objects[j], F_SHAPE | (rng_below(r, 3) ? F_COLOR : 0));
        } else if (!describe_unique(s, i, F_COLOR | F_SHAPE | F_SIZE, r, &c->a) ||
                   !describe_unique(s, j, F_COLOR | F_SHAPE | F_SIZE, r, &c->b)) {
            return 0;
        }
        break;
    }
    case SYNTH_CLAIM_THE_IS: {
        int i = (int)(o - s->objects);
        int attr = (int)rng_below(r, 3);
        int allowed = attr == 0 ? F_SHAPE | F_SIZE | F_REGION : attr == 1 ? F_COLOR | F_SHAPE | F_REGION
                                                                          : F_COLOR | F_SHAPE | F_SIZE;
        if (!describe_unique(s, i, allowed, r, &c->a))
            return 0;
        if (attr == 0)
            c->b.color = want ? o->color : other_value(o->color, SYNTH_N_COLORS, r);
        else if (attr == 1)
            c->b.size = want ? o->size : other_value(o->size, SYNTH_N_SIZES, r);
        else {
            c->b.region = region_of_cell(o->cell, r);
            if (!want)
                perturb(&c->b, o, r);
        }
        break;
    }
    default:
        return 0;
    }
    return synth_claim_holds(s, c) == want;
}

void synth_statement_claim(const synth_scene *s, int want, rng_state *r, synth_claim *c)
{
    static const int kinds[] = {SYNTH_CLAIM_EXISTS, SYNTH_CLAIM_EXISTS, SYNTH_CLAIM_COUNT, SYNTH_CLAIM_COUNT,
                                SYNTH_CLAIM_RELATION, SYNTH_CLAIM_THE_RELATION, SYNTH_CLAIM_THE_IS,
                                SYNTH_CLAIM_THE_IS};
    want = want ? 1 : 0;
    for (int round = 0; round < 16; round++) {
        int kind = kinds[rng_below(r, sizeof kinds / sizeof kinds[0])];
        for (int attempt = 0; attempt < 8; attempt++)
            if (try_statement(s, kind, want, r, c))
                return;
    }
    /* Unreachable in practice; both fallbacks are certain. */
    *c = claim_of_kind(SYNTH_CLAIM_EXISTS);
    c->a = synth_np_of(&s->objects[0]);
    if (!want) {
        /* Four objects leave at least four colours unused. */
        for (int k = 0; k < SYNTH_N_COLORS; k++) {
            synth_np np = synth_np_any();
            np.color = k;
            if (synth_count(s, &np) == 0) {
                c->a = np;
                break;
            }
        }
    }
}

void synth_neutral_claim(const synth_scene *s, rng_state *r, synth_claim *c)
{
    *c = claim_of_kind(SYNTH_CLAIM_NEUTRAL);
    int i = (int)rng_below(r, (uint32_t)s->n_objects);
    if (rng_bernoulli(r, 0.85) && describe_unique(s, i, F_COLOR | F_SHAPE | F_SIZE | F_REGION, r, &c->a)) {
        c->neutral = (int)rng_below(r, (uint32_t)synth_neutral_predicate_count(0));
    } else {
        c->a = synth_np_any();
        c->neutral = (int)rng_below(r, (uint32_t)synth_neutral_predicate_count(1));
    }
}

/* ---- NLVR2 statements about a pair ---- */

static synth_np pair_np(const synth_scene *left, const synth_scene *right, rng_state *r)
{
    if (rng_bernoulli(r, 0.15)) {
        synth_np np = synth_np_any();
        np.shape = (int)rng_below(r, SYNTH_N_SHAPES);
        if (rng_bernoulli(r, 0.5))
            np.color = (int)rng_below(r, SYNTH_N_COLORS);
        return np;
    }
    const synth_scene *s = rng_bernoulli(r, 0.5) ? left : right;
    return np_with_fields(random_object(s, r), group_fields[rng_below(r, 4)]);
}

static int try_pair(const synth_scene *left, const synth_scene *right, int kind, int want, rng_state *r,
                    synth_pair_claim *c)
{
    c->kind = kind;
    c->a = pair_np(left, right, r);
    c->n = -1;
    int nl = synth_count(left, &c->a), nr = synth_count(right, &c->a);
    if (kind == SYNTH_PAIR_LEFT || kind == SYNTH_PAIR_RIGHT) {
        int n = kind == SYNTH_PAIR_LEFT ? nl : nr;
        if (want)
            c->n = n > 0 && rng_bernoulli(r, 0.5) ? -1 : n;
        else
            c->n = n == 0 && rng_bernoulli(r, 0.5) ? -1 : other_value(n, SYNTH_MAX_OBJECTS + 1, r);
    } else if (kind == SYNTH_PAIR_TOTAL) {
        /* 1..8: "no X in total" is said as "neither image contains". */
        int total = nl + nr;
        c->n = want ? total : 1 + (int)rng_below(r, 2 * SYNTH_MAX_OBJECTS);
        if (c->n < 1)
            return 0;
    }
    return synth_pair_claim_holds(left, right, c) == want;
}

void synth_pair_claim_generate(const synth_scene *left, const synth_scene *right, int want, rng_state *r,
                               synth_pair_claim *c)
{
    want = want ? 1 : 0;
    for (int round = 0; round < 16; round++) {
        int kind = (int)rng_below(r, SYNTH_N_PAIR_KINDS);
        for (int attempt = 0; attempt < 16; attempt++)
            if (try_pair(left, right, kind, want, r, c))
                return;
    }
    /* Certain either way: the left image has its first object. */
    c->kind = want ? SYNTH_PAIR_LEFT : SYNTH_PAIR_NEITHER;
    c->a = synth_np_of(&left->objects[0]);
    c->n = -1;
}

/* ---- VQA questions ---- */

static int try_question(const synth_scene *s, int kind, rng_state *r, synth_question *q)
{
    memset(q, 0, sizeof *q);
    q->kind = kind;
    q->a = synth_np_any();
    const synth_object *o = random_object(s, r);
    int i = (int)(o - s->objects);
    switch (kind) {
    case SYNTH_Q_COUNT:
        if (rng_bernoulli(r, 0.15)) {
            q->a.shape = (int)rng_below(r, SYNTH_N_SHAPES);
            q->a.color = (int)rng_below(r, SYNTH_N_COLORS);
        } else if (rng_bernoulli(r, 0.8)) {
            q->a = np_with_fields(o, group_fields[rng_below(r, 4)]);
        }
        if (rng_bernoulli(r, 0.2))
            q->a.region = (int)rng_below(r, SYNTH_N_REGIONS);
        return 1;
    case SYNTH_Q_COLOR: return describe_unique(s, i, F_SHAPE | F_SIZE | F_REGION, r, &q->a);
    case SYNTH_Q_SHAPE: return describe_unique(s, i, F_COLOR | F_SIZE | F_REGION, r, &q->a);
    case SYNTH_Q_SIZE: return describe_unique(s, i, F_COLOR | F_SHAPE | F_REGION, r, &q->a);
    case SYNTH_Q_WHERE: return describe_unique(s, i, F_COLOR | F_SHAPE | F_SIZE, r, &q->a);
    case SYNTH_Q_YESNO:
        synth_statement_claim(s, rng_bernoulli(r, 0.5), r, &q->claim);
        return 1;
    default: return 0;
    }
}

void synth_question_generate(const synth_scene *s, rng_state *r, synth_question *q)
{
    /* Weights: count 20, colour 15, shape 15, size 10, where 10, yes/no 30. */
    static const int weights[SYNTH_N_QUESTION_KINDS] = {20, 15, 15, 10, 10, 30};
    for (int attempt = 0; attempt < 32; attempt++) {
        int pick = (int)rng_below(r, 100), kind = 0;
        while (pick >= weights[kind])
            pick -= weights[kind++];
        if (try_question(s, kind, r, q))
            return;
    }
    try_question(s, SYNTH_Q_COUNT, r, q);
}

/* ---- annotators ---- */

static const char *const answer_variants[][2] = {
    {"0", "none"}, {"1", "one"}, {"2", "two"}, {"3", "three"}, {"4", "four"},
    {"center", "middle"}, {"large", "big"}, {"small", "little"},
};

void synth_annotator_answers(const char *answer, rng_state *r, const char *out[10])
{
    const char *variant = NULL;
    for (size_t k = 0; k < sizeof answer_variants / sizeof answer_variants[0]; k++)
        if (strcmp(answer, answer_variants[k][0]) == 0)
            variant = answer_variants[k][1];
    /* At most three variants, so the canonical answer has VQA accuracy 1. */
    int variants = 0;
    for (int i = 0; i < 10; i++) {
        int use = variant && variants < 3 && rng_bernoulli(r, 0.15);
        variants += use;
        out[i] = use ? variant : answer;
    }
}
