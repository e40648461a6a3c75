/* What is true of a scene: the one evaluator behind every caption, answer
 * and label of the synthetic data set. The meaning of each claim is written
 * down in data/synth.h. */
#include "data/synth.h"

#include <stddef.h>

synth_np synth_np_any(void) { return (synth_np){SYNTH_ANY, SYNTH_ANY, SYNTH_ANY, SYNTH_ANY}; }

synth_np synth_np_of(const synth_object *o) { return (synth_np){o->color, o->shape, o->size, SYNTH_ANY}; }

int synth_region_contains(int region, int cell)
{
    int row = cell / SYNTH_GRID, col = cell % SYNTH_GRID;
    switch (region) {
    case SYNTH_ANY: return 1;
    case SYNTH_LEFT: return col == 0;
    case SYNTH_RIGHT: return col == SYNTH_GRID - 1;
    case SYNTH_TOP: return row == 0;
    case SYNTH_BOTTOM: return row == SYNTH_GRID - 1;
    case SYNTH_CENTER: return row == 1 && col == 1;
    case SYNTH_TOP_LEFT: return row == 0 && col == 0;
    case SYNTH_TOP_RIGHT: return row == 0 && col == SYNTH_GRID - 1;
    case SYNTH_BOTTOM_LEFT: return row == SYNTH_GRID - 1 && col == 0;
    case SYNTH_BOTTOM_RIGHT: return row == SYNTH_GRID - 1 && col == SYNTH_GRID - 1;
    default: return 0;
    }
}

int synth_np_matches(const synth_np *np, const synth_object *o)
{
    return (np->color == SYNTH_ANY || np->color == o->color) && (np->shape == SYNTH_ANY || np->shape == o->shape) &&
           (np->size == SYNTH_ANY || np->size == o->size) && synth_region_contains(np->region, o->cell);
}

int synth_count(const synth_scene *s, const synth_np *np)
{
    int n = 0;
    for (int i = 0; i < s->n_objects; i++)
        n += synth_np_matches(np, &s->objects[i]);
    return n;
}

int synth_relation_holds(int rel, const synth_object *a, const synth_object *b)
{
    int ra = a->cell / SYNTH_GRID, ca = a->cell % SYNTH_GRID;
    int rb = b->cell / SYNTH_GRID, cb = b->cell % SYNTH_GRID;
    switch (rel) {
    case SYNTH_LEFT_OF: return ca < cb;
    case SYNTH_RIGHT_OF: return ca > cb;
    case SYNTH_ABOVE: return ra < rb;
    case SYNTH_BELOW: return ra > rb;
    default: return 0;
    }
}

/* Index of the one object of np, or -1 when there are none or several. */
static int the_one(const synth_scene *s, const synth_np *np)
{
    int found = -1;
    for (int i = 0; i < s->n_objects; i++) {
        if (!synth_np_matches(np, &s->objects[i]))
            continue;
        if (found >= 0)
            return -1;
        found = i;
    }
    return found;
}

static int some_pair_related(const synth_scene *s, const synth_claim *c)
{
    for (int i = 0; i < s->n_objects; i++)
        for (int j = 0; j < s->n_objects; j++)
            if (i != j && synth_np_matches(&c->a, &s->objects[i]) && synth_np_matches(&c->b, &s->objects[j]) &&
                synth_relation_holds(c->rel, &s->objects[i], &s->objects[j]))
                return 1;
    return 0;
}

static int np_is_everything(const synth_np *np)
{
    return np->color == SYNTH_ANY && np->shape == SYNTH_ANY && np->size == SYNTH_ANY && np->region == SYNTH_ANY;
}

int synth_claim_holds(const synth_scene *s, const synth_claim *c)
{
    if (c->background != SYNTH_ANY && c->background != s->background)
        return 0;
    switch (c->kind) {
    case SYNTH_CLAIM_EXISTS:
        return synth_count(s, &c->a) > 0;
    case SYNTH_CLAIM_COUNT:
        return synth_count(s, &c->a) == c->n;
    case SYNTH_CLAIM_RELATION:
        return some_pair_related(s, c);
    case SYNTH_CLAIM_THE_RELATION: {
        int a = the_one(s, &c->a), b = the_one(s, &c->b);
        return a >= 0 && b >= 0 && a != b && synth_relation_holds(c->rel, &s->objects[a], &s->objects[b]);
    }
    case SYNTH_CLAIM_THE_IS: {
        int a = the_one(s, &c->a);
        return a >= 0 && synth_np_matches(&c->b, &s->objects[a]);
    }
    case SYNTH_CLAIM_LIST:
        for (int i = 0; i < c->n_items; i++) {
            int n = synth_count(s, &c->items[i]);
            if (c->item_n[i] <= 1 ? n < 1 : n != c->item_n[i])
                return 0;
        }
        return c->n_items > 0;
    case SYNTH_CLAIM_NEUTRAL:
        /* "The picture ..." needs no referent; "the X ..." needs exactly one X. */
        return np_is_everything(&c->a) || the_one(s, &c->a) >= 0 ? -1 : 0;
    default:
        return 0;
    }
}

int synth_pair_claim_holds(const synth_scene *left, const synth_scene *right, const synth_pair_claim *c)
{
    int nl = synth_count(left, &c->a), nr = synth_count(right, &c->a);
    switch (c->kind) {
    case SYNTH_PAIR_BOTH: return nl > 0 && nr > 0;
    case SYNTH_PAIR_NEITHER: return nl == 0 && nr == 0;
    case SYNTH_PAIR_ONE: return (nl > 0) != (nr > 0);
    case SYNTH_PAIR_LEFT: return c->n < 0 ? nl > 0 : nl == c->n;
    case SYNTH_PAIR_RIGHT: return c->n < 0 ? nr > 0 : nr == c->n;
    case SYNTH_PAIR_MORE: return nl > nr;
    case SYNTH_PAIR_FEWER: return nl < nr;
    case SYNTH_PAIR_SAME: return nl == nr;
    case SYNTH_PAIR_TOTAL: return nl + nr == c->n;
    default: return 0;
    }
}

static const char *const count_answers[] = {"0", "1", "2", "3", "4"};

const char *synth_question_answer(const synth_scene *s, const synth_question *q)
{
    if (q->kind == SYNTH_Q_COUNT) {
        int n = synth_count(s, &q->a);
        return n >= 0 && n <= SYNTH_MAX_OBJECTS ? count_answers[n] : NULL;
    }
    if (q->kind == SYNTH_Q_YESNO) {
        int t = synth_claim_holds(s, &q->claim);
        return t == 1 ? "yes" : t == 0 ? "no" : NULL;
    }
    int i = the_one(s, &q->a);
    if (i < 0)
        return NULL;
    const synth_object *o = &s->objects[i];
    switch (q->kind) {
    case SYNTH_Q_COLOR: return synth_color_name(o->color);
    case SYNTH_Q_SHAPE: return synth_shape_name(o->shape);
    case SYNTH_Q_SIZE: return synth_size_name(o->size);
    case SYNTH_Q_WHERE: return synth_cell_name(o->cell);
    default: return NULL;
    }
}
