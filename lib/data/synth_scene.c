/* Scenes of the synthetic data set: their vocabulary of names and colours,
 * how they are drawn at random, and where their objects lie in pixels. */
#include "data/synth.h"

#include <math.h>
#include <string.h>

static const char *const shape_names[SYNTH_N_SHAPES] = {"circle", "square", "triangle", "star", "cross"};
static const char *const shape_plurals[SYNTH_N_SHAPES] = {"circles", "squares", "triangles", "stars", "crosses"};
static const char *const color_names[SYNTH_N_COLORS] = {"red",    "green",  "blue",  "yellow",
                                                        "purple", "orange", "white", "black"};
/* Far apart from each other and from every background, so a colour survives
 * JPEG and downscaling to 64 px. */
static const uint8_t color_rgb[SYNTH_N_COLORS][3] = {
    {220, 40, 40}, {40, 170, 60}, {40, 90, 230}, {240, 220, 40},
    {150, 60, 190}, {250, 140, 20}, {250, 250, 250}, {15, 15, 15},
};
static const char *const size_names[SYNTH_N_SIZES] = {"small", "large"};
static const char *const background_names[SYNTH_N_BACKGROUNDS] = {"gray", "dark", "light"};
static const uint8_t background_rgb[SYNTH_N_BACKGROUNDS][3] = {{128, 128, 128}, {60, 64, 72}, {200, 196, 186}};
static const char *const cell_names[SYNTH_CELLS] = {"top left",    "top",    "top right",
                                                    "left",        "center", "right",
                                                    "bottom left", "bottom", "bottom right"};
static const char *const region_phrases[SYNTH_N_REGIONS] = {
    "on the left",          "on the right",          "at the top",
    "at the bottom",        "in the center",         "in the top left corner",
    "in the top right corner", "in the bottom left corner", "in the bottom right corner",
};
static const char *const relation_phrases[SYNTH_N_RELATIONS] = {"to the left of", "to the right of", "above",
                                                                "below"};

#define NAME_OR(table, n, i) ((i) >= 0 && (i) < (n) ? (table)[i] : "?")

const char *synth_shape_name(int shape) { return NAME_OR(shape_names, SYNTH_N_SHAPES, shape); }
const char *synth_shape_plural(int shape) { return NAME_OR(shape_plurals, SYNTH_N_SHAPES, shape); }
const char *synth_color_name(int color) { return NAME_OR(color_names, SYNTH_N_COLORS, color); }
const char *synth_size_name(int size) { return NAME_OR(size_names, SYNTH_N_SIZES, size); }
const char *synth_background_name(int bg) { return NAME_OR(background_names, SYNTH_N_BACKGROUNDS, bg); }
const char *synth_cell_name(int cell) { return NAME_OR(cell_names, SYNTH_CELLS, cell); }
const char *synth_region_phrase(int region) { return NAME_OR(region_phrases, SYNTH_N_REGIONS, region); }
const char *synth_relation_phrase(int rel) { return NAME_OR(relation_phrases, SYNTH_N_RELATIONS, rel); }

void synth_color_rgb(int color, uint8_t rgb[3])
{
    int c = color >= 0 && color < SYNTH_N_COLORS ? color : 0;
    for (int k = 0; k < 3; k++)
        rgb[k] = color_rgb[c][k];
}

void synth_background_rgb(int bg, uint8_t rgb[3])
{
    int b = bg >= 0 && bg < SYNTH_N_BACKGROUNDS ? bg : 0;
    for (int k = 0; k < 3; k++)
        rgb[k] = background_rgb[b][k];
}

/* Largest centre offset, and radii, in cell widths: 0.42 + 0.06 < 0.5 keeps
 * every object inside its own cell, so objects never touch. */
#define SYNTH_JITTER 0.06
#define SYNTH_RADIUS_SMALL 0.28
#define SYNTH_RADIUS_LARGE 0.42
/* Chance that an object repeats a colour or shape already in the scene, so
 * counting questions often have answers above one. */
#define SYNTH_REPEAT_P 0.3

void synth_scene_generate(uint64_t seed, uint64_t scene_id, synth_scene *scene)
{
    /* Zeroed first, padding included, so equal scenes are equal bytes. */
    memset(scene, 0, sizeof *scene);
    rng_state r;
    rng_seed_stream(&r, seed, scene_id);
    scene->n_objects = 1 + (int)rng_below(&r, SYNTH_MAX_OBJECTS);
    int cells[SYNTH_CELLS];
    for (int i = 0; i < SYNTH_CELLS; i++)
        cells[i] = i;
    for (int i = 0; i < SYNTH_MAX_OBJECTS; i++) {
        int j = i + (int)rng_below(&r, (uint32_t)(SYNTH_CELLS - i));
        int t = cells[i];
        cells[i] = cells[j];
        cells[j] = t;
    }
    for (int i = 0; i < SYNTH_MAX_OBJECTS; i++) {
        synth_object *o = &scene->objects[i];
        if (i >= scene->n_objects)
            continue;
        o->cell = cells[i];
        o->shape = i > 0 && rng_bernoulli(&r, SYNTH_REPEAT_P) ? scene->objects[rng_below(&r, (uint32_t)i)].shape
                                                              : (int)rng_below(&r, SYNTH_N_SHAPES);
        o->color = i > 0 && rng_bernoulli(&r, SYNTH_REPEAT_P) ? scene->objects[rng_below(&r, (uint32_t)i)].color
                                                              : (int)rng_below(&r, SYNTH_N_COLORS);
        o->size = (int)rng_below(&r, SYNTH_N_SIZES);
        o->dx = rng_uniform_range(&r, -SYNTH_JITTER, SYNTH_JITTER);
        o->dy = rng_uniform_range(&r, -SYNTH_JITTER, SYNTH_JITTER);
    }
    scene->background = (int)rng_below(&r, SYNTH_N_BACKGROUNDS);
    scene->textured = rng_bernoulli(&r, 0.5);
    scene->texture_seed = rng_u64(&r);
}

void synth_object_geometry(const synth_object *o, int size, double *cx, double *cy, double *r)
{
    double cell = size / (double)SYNTH_GRID;
    *cx = (o->cell % SYNTH_GRID + 0.5 + o->dx) * cell;
    *cy = (o->cell / SYNTH_GRID + 0.5 + o->dy) * cell;
    *r = (o->size == SYNTH_LARGE ? SYNTH_RADIUS_LARGE : SYNTH_RADIUS_SMALL) * cell;
}

/* A five-pointed star pointing up: outer radius 1, inner 0.45. */
static const double star_vertices[10][2] = {
    {0.0, -1.0},         {0.264503, -0.364058}, {0.951057, -0.309017}, {0.427975, 0.139058},
    {0.587785, 0.809017}, {0.0, 0.45},           {-0.587785, 0.809017}, {-0.427975, 0.139058},
    {-0.951057, -0.309017}, {-0.264503, -0.364058},
};

static int star_contains(double u, double v)
{
    int inside = 0;
    for (int i = 0, j = 9; i < 10; j = i++) {
        double ui = star_vertices[i][0], vi = star_vertices[i][1];
        double uj = star_vertices[j][0], vj = star_vertices[j][1];
        if ((vi > v) != (vj > v) && u < (uj - ui) * (v - vi) / (vj - vi) + ui)
            inside = !inside;
    }
    return inside;
}

/* Every shape lies inside the unit disc (so inside the radius that
 * synth_object_geometry gives), and covers the centre. */
int synth_shape_contains(int shape, double u, double v)
{
    switch (shape) {
    case SYNTH_CIRCLE:
        return u * u + v * v <= 0.9 * 0.9;
    case SYNTH_SQUARE:
        return fabs(u) <= 0.7 && fabs(v) <= 0.7;
    case SYNTH_TRIANGLE: /* apex (0, -0.95), base from (-0.85, 0.5) to (0.85, 0.5) */
        return v <= 0.5 && v >= -0.95 && fabs(u) <= 0.85 * (v + 0.95) / 1.45;
    case SYNTH_STAR:
        return star_contains(u, v);
    case SYNTH_CROSS:
        return (fabs(u) <= 0.3 && fabs(v) <= 0.9) || (fabs(v) <= 0.3 && fabs(u) <= 0.9);
    default:
        return 0;
    }
}
