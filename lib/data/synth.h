/* The synthetic "shapes" data set: seeded scenes of 1-4 coloured shapes on a
 * 3x3 grid, rendered as images and described in every ALBEF manifest format
 * (pretraining, retrieval, VQA, NLVR2, SNLI-VE).
 *
 * A scene is data (synth_scene). Every sentence is rendered from a claim
 * (synth_claim, synth_pair_claim) or a question (synth_question), and whether
 * a claim holds, or what a question's answer is, is decided by one evaluator
 * (synth_facts.c) reading the scene. So every caption, answer and label is
 * true of its image by construction.
 *
 * Meaning of the sentences (the grammar the text follows):
 *   "a red circle"        at least one object is a red circle (existential)
 *   "two red circles"     exactly two objects are red circles
 *   "the red circle ..."  used only when exactly one object is a red circle
 *   regions               "on the left" = column 0, "at the top" = row 0,
 *                         "in the top left corner" = cell (0, 0),
 *                         "in the center" = cell (1, 1)
 *   relations             "to the left of": a smaller column; "above": a smaller row
 * Cells are numbered row-major: cell = 3 * row + col, row 0 at the top. */
#ifndef ALBEF_DATA_SYNTH_H
#define ALBEF_DATA_SYNTH_H

#include "core/rng.h"
#include "io/image.h"

#include <stddef.h>
#include <stdint.h>

#define SYNTH_MAX_OBJECTS 4
#define SYNTH_GRID 3
#define SYNTH_CELLS (SYNTH_GRID * SYNTH_GRID)
#define SYNTH_MIN_SIZE 32
#define SYNTH_MAX_SIZE 512
#define SYNTH_TEXT_MAX 256 /* bytes for any one sentence, NUL included */

enum synth_shape { SYNTH_CIRCLE, SYNTH_SQUARE, SYNTH_TRIANGLE, SYNTH_STAR, SYNTH_CROSS, SYNTH_N_SHAPES };
enum synth_color {
    SYNTH_RED, SYNTH_GREEN, SYNTH_BLUE, SYNTH_YELLOW, SYNTH_PURPLE, SYNTH_ORANGE, SYNTH_WHITE, SYNTH_BLACK,
    SYNTH_N_COLORS
};
enum synth_size { SYNTH_SMALL, SYNTH_LARGE, SYNTH_N_SIZES };
enum synth_background { SYNTH_BG_GRAY, SYNTH_BG_DARK, SYNTH_BG_LIGHT, SYNTH_N_BACKGROUNDS };

/* Regions a phrase can name; SYNTH_ANY (-1) means "anywhere". */
enum synth_region {
    SYNTH_LEFT, SYNTH_RIGHT, SYNTH_TOP, SYNTH_BOTTOM, SYNTH_CENTER,
    SYNTH_TOP_LEFT, SYNTH_TOP_RIGHT, SYNTH_BOTTOM_LEFT, SYNTH_BOTTOM_RIGHT,
    SYNTH_N_REGIONS
};
enum synth_relation { SYNTH_LEFT_OF, SYNTH_RIGHT_OF, SYNTH_ABOVE, SYNTH_BELOW, SYNTH_N_RELATIONS };

#define SYNTH_ANY (-1)

typedef struct {
    int shape, color, size;
    int cell;      /* 0..8 */
    double dx, dy; /* centre offset from the cell centre, in cell widths (|d| <= 0.06) */
} synth_object;

typedef struct {
    int n_objects; /* 1..SYNTH_MAX_OBJECTS, each in its own cell */
    synth_object objects[SYNTH_MAX_OBJECTS];
    int background;
    int textured; /* 0: plain background, 1: light per-pixel noise */
    uint64_t texture_seed;
} synth_scene;

/* Names, as the sentences spell them. */
const char *synth_shape_name(int shape);   /* "circle" */
const char *synth_shape_plural(int shape); /* "circles" */
const char *synth_color_name(int color);   /* "red" */
const char *synth_size_name(int size);     /* "small" */
const char *synth_background_name(int bg); /* "gray" */
const char *synth_cell_name(int cell);     /* "top left", "top", ..., "center", ... (the answer to "where") */
const char *synth_region_phrase(int region); /* "on the left", "in the top left corner", ... */
const char *synth_relation_phrase(int rel);  /* "to the left of", "above", ... */
void synth_color_rgb(int color, uint8_t rgb[3]);
void synth_background_rgb(int bg, uint8_t rgb[3]);

/* Scenes. A scene depends only on (seed, scene_id), so images can be made in
 * any order or in parallel. */
void synth_scene_generate(uint64_t seed, uint64_t scene_id, synth_scene *scene);

/* Object geometry in pixels for an image of side `size`: centre (cx, cy) in
 * continuous coordinates (pixel x covers [x, x+1)) and radius r, the radius
 * of the circle that bounds the shape. */
void synth_object_geometry(const synth_object *o, int size, double *cx, double *cy, double *r);

/* Whether the point (u, v), in units of the radius relative to the centre
 * (v grows downwards), lies inside the shape. */
int synth_shape_contains(int shape, double u, double v);

/* Renders the scene into img, which the caller allocates: square, 3 channels,
 * side SYNTH_MIN_SIZE..SYNTH_MAX_SIZE. Edges are antialiased; pixels wholly
 * inside an object have exactly its palette colour; background pixels are the
 * background colour, plus at most +-SYNTH_TEXTURE_AMPLITUDE when textured. */
#define SYNTH_TEXTURE_AMPLITUDE 6
int synth_render(const synth_scene *scene, image_u8 *img);

/* ---- Facts: the one place that decides what is true of a scene. ---- */

/* A class of objects; SYNTH_ANY in a field matches every value. */
typedef struct {
    int color, shape, size, region;
} synth_np;

synth_np synth_np_any(void);
synth_np synth_np_of(const synth_object *o); /* colour, shape and size of o, any region */
int synth_region_contains(int region, int cell);
int synth_np_matches(const synth_np *np, const synth_object *o);
int synth_count(const synth_scene *s, const synth_np *np);
int synth_relation_holds(int rel, const synth_object *a, const synth_object *b);

enum synth_claim_kind {
    SYNTH_CLAIM_EXISTS,       /* some object is in a */
    SYNTH_CLAIM_COUNT,        /* exactly n objects are in a */
    SYNTH_CLAIM_RELATION,     /* some object of a is `rel` some other object of b */
    SYNTH_CLAIM_THE_RELATION, /* the one object of a is `rel` the one object of b */
    SYNTH_CLAIM_THE_IS,       /* the one object of a is also in b (a colour, size or region) */
    SYNTH_CLAIM_LIST,         /* for each item i: n_i == 1 means exists, n_i >= 2 means exactly n_i */
    SYNTH_CLAIM_NEUTRAL,      /* the one object of a has a property no picture shows (VE neutral) */
    SYNTH_N_CLAIMS
};

typedef struct {
    int kind;
    synth_np a, b;
    int n;          /* COUNT */
    int rel;        /* *_RELATION */
    int background; /* SYNTH_ANY, or a background the caption also names */
    int n_items;    /* LIST */
    synth_np items[SYNTH_MAX_OBJECTS];
    int item_n[SYNTH_MAX_OBJECTS];
    int neutral; /* NEUTRAL: index of the predicate phrase */
} synth_claim;

/* Truth of a claim. A definite claim ("the X ...") whose X is not unique is
 * false; the generator never states one. NEUTRAL is never decidable: it
 * returns -1 when its referent is unique, 0 otherwise. */
int synth_claim_holds(const synth_scene *s, const synth_claim *c);

/* Claims about an ordered pair of images (NLVR2: left, right). */
enum synth_pair_kind {
    SYNTH_PAIR_BOTH,    /* both images contain an object of a */
    SYNTH_PAIR_NEITHER, /* neither image does */
    SYNTH_PAIR_ONE,     /* exactly one image does */
    SYNTH_PAIR_LEFT,    /* the left image: exists (n < 0) or exactly n objects of a */
    SYNTH_PAIR_RIGHT,   /* the right image: likewise */
    SYNTH_PAIR_MORE,    /* the left image has more objects of a than the right */
    SYNTH_PAIR_FEWER,   /* the left image has fewer */
    SYNTH_PAIR_SAME,    /* both have the same number */
    SYNTH_PAIR_TOTAL,   /* exactly n objects of a across both images */
    SYNTH_N_PAIR_KINDS
};

typedef struct {
    int kind;
    synth_np a;
    int n;
} synth_pair_claim;

int synth_pair_claim_holds(const synth_scene *left, const synth_scene *right, const synth_pair_claim *c);

enum synth_question_kind {
    SYNTH_Q_COUNT, /* how many objects of a */
    SYNTH_Q_COLOR, /* colour of the one object of a */
    SYNTH_Q_SHAPE,
    SYNTH_Q_SIZE,
    SYNTH_Q_WHERE, /* cell name of the one object of a */
    SYNTH_Q_YESNO, /* whether `claim` holds */
    SYNTH_N_QUESTION_KINDS
};

typedef struct {
    int kind;
    synth_np a;
    synth_claim claim; /* YESNO */
} synth_question;

/* The canonical answer ("2", "red", "circle", "small", "top left", "yes").
 * Returns NULL when the question has no answer (a definite referent that is
 * not unique). */
const char *synth_question_answer(const synth_scene *s, const synth_question *q);

/* ---- Text: sentences rendered from claims and questions. ---- */

/* Each writes one sentence (capitalised; questions end with '?', statements
 * with '.', captions with nothing) and returns 0, or an error if `cap` is too
 * small. The rng picks among equivalent phrasings. */
int synth_claim_text(const synth_claim *c, int as_caption, rng_state *r, char *buf, size_t cap);
int synth_pair_claim_text(const synth_pair_claim *c, rng_state *r, char *buf, size_t cap);
int synth_question_text(const synth_question *q, rng_state *r, char *buf, size_t cap);

/* Number of VE-neutral predicates for an object ("is made of wood") or for
 * the whole picture ("was drawn by a child"); synth_claim.neutral indexes them. */
int synth_neutral_predicate_count(int scene_level);

/* Generators: draw a claim / question that is true (or false, as asked) of
 * the scene, built from its objects. */
void synth_caption_claim(const synth_scene *s, rng_state *r, synth_claim *c);
/* want: 1 true, 0 false. Always succeeds. */
void synth_statement_claim(const synth_scene *s, int want, rng_state *r, synth_claim *c);
/* A VE neutral hypothesis: a property of an object no picture decides. */
void synth_neutral_claim(const synth_scene *s, rng_state *r, synth_claim *c);
void synth_pair_claim_generate(const synth_scene *left, const synth_scene *right, int want, rng_state *r,
                               synth_pair_claim *c);
void synth_question_generate(const synth_scene *s, rng_state *r, synth_question *q);

/* The ten annotator answers of a VQA item: mostly `answer`, sometimes an
 * accepted variant ("2" / "two", "center" / "middle"). */
void synth_annotator_answers(const char *answer, rng_state *r, const char *out[10]);

/* Every word any sentence or answer can contain (lowercase, no punctuation),
 * and every answer a question can have (canonical and variants). */
size_t synth_word_count(void);
const char *synth_word(size_t i);
size_t synth_answer_count(void);
const char *synth_answer(size_t i);

/* Writes a BERT vocabulary (one token a line): [PAD] [UNK] [CLS] [SEP] [MASK],
 * every generator word, a-z, 0-9, ASCII punctuation and the '##' forms of
 * letters and digits, so any ASCII word tokenises without [UNK]. */
int synth_vocab_text(char **text, size_t *len);

/* ---- The data set on disk. ---- */

enum synth_image_format { SYNTH_PNG, SYNTH_JPEG };

/* Writing images mostly waits on fsync, so more threads than cores pay. */
#define SYNTH_DEFAULT_THREADS 8
#define SYNTH_MAX_THREADS 64

typedef struct {
    const char *out_dir;
    uint64_t seed; /* scenes.json records it as a JSON number: exact below 2^53 */
    int n_train, n_val, n_test; /* images per split */
    int image_size;
    int format;
    int jpeg_quality;
    int captions_per_image;  /* retrieval: items per train image, captions per val/test image */
    int questions_per_image; /* VQA */
    int threads;             /* image writers; 0: SYNTH_DEFAULT_THREADS. The output does not depend on it. */
    /* Called after each image with (done, total), from the writer threads
     * but never from two at once; may be NULL. */
    void (*progress)(int done, int total, void *user);
    void *progress_user;
} synth_params;

typedef struct {
    int n_images[3]; /* train, val, test */
    int n_files;     /* image files written (VE JPEG copies included) */
    struct {
        const char *name;
        int items;
    } manifests[24];
    int n_manifests;
    int vocab_size;
    int answer_list_size;
} synth_summary;

void synth_params_default(synth_params *p);
/* Checks ranges; the message names the field and the accepted range. */
int synth_params_check(const synth_params *p);

/* Writes images under out_dir/images/{train,val,test}/ and the manifests
 * in out_dir (see albef-synth(1)), creating out_dir if needed. Every file is
 * written atomically. Same params, same bytes. */
int synth_write_dataset(const synth_params *p, synth_summary *summary);

#endif
