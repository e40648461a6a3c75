/* Rasterises a scene: background (plain or with light noise), then each
 * object with 4x4 supersampled coverage, so edges are smooth while pixels
 * wholly inside a shape keep its exact palette colour. */
#include "data/synth.h"

#include "core/error.h"

#include <math.h>

#define SUBSAMPLES 4

static void fill_background(const synth_scene *s, image_u8 *img)
{
    uint8_t rgb[3];
    synth_background_rgb(s->background, rgb);
    size_t n = (size_t)img->width * (size_t)img->height;
    rng_state r;
    rng_seed(&r, s->texture_seed);
    for (size_t i = 0; i < n; i++) {
        int noise = s->textured ? (int)rng_below(&r, 2 * SYNTH_TEXTURE_AMPLITUDE + 1) - SYNTH_TEXTURE_AMPLITUDE : 0;
        for (int k = 0; k < 3; k++) {
            int v = rgb[k] + noise;
            img->data[3 * i + (size_t)k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}

static void draw_object(const synth_object *o, image_u8 *img)
{
    double cx, cy, r;
    synth_object_geometry(o, img->width, &cx, &cy, &r);
    uint8_t rgb[3];
    synth_color_rgb(o->color, rgb);
    int x0 = (int)floor(cx - r), x1 = (int)ceil(cx + r);
    int y0 = (int)floor(cy - r), y1 = (int)ceil(cy + r);
    x0 = x0 < 0 ? 0 : x0;
    y0 = y0 < 0 ? 0 : y0;
    x1 = x1 > img->width ? img->width : x1;
    y1 = y1 > img->height ? img->height : y1;
    const int full = SUBSAMPLES * SUBSAMPLES;
    for (int y = y0; y < y1; y++) {
        for (int x = x0; x < x1; x++) {
            int covered = 0;
            for (int j = 0; j < SUBSAMPLES; j++) {
                double v = (y + (j + 0.5) / SUBSAMPLES - cy) / r;
                for (int i = 0; i < SUBSAMPLES; i++) {
                    double u = (x + (i + 0.5) / SUBSAMPLES - cx) / r;
                    covered += synth_shape_contains(o->shape, u, v);
                }
            }
            if (!covered)
                continue;
            uint8_t *p = img->data + 3 * ((size_t)y * (size_t)img->width + (size_t)x);
            for (int k = 0; k < 3; k++)
                p[k] = (uint8_t)((p[k] * (full - covered) + rgb[k] * covered + full / 2) / full);
        }
    }
}

int synth_render(const synth_scene *scene, image_u8 *img)
{
    if (!img || !img->data || img->channels != 3 || img->width != img->height || img->width < SYNTH_MIN_SIZE ||
        img->width > SYNTH_MAX_SIZE)
        return albef_error(ALBEF_ERR_INVALID, "synth_render: image %dx%dx%d: expected a square RGB image of side %d..%d",
                           img ? img->width : 0, img ? img->height : 0, img ? img->channels : 0, SYNTH_MIN_SIZE,
                           SYNTH_MAX_SIZE);
    if (scene->n_objects < 1 || scene->n_objects > SYNTH_MAX_OBJECTS)
        return albef_error(ALBEF_ERR_INVALID, "synth_render: scene has %d objects: expected 1..%d", scene->n_objects,
                           SYNTH_MAX_OBJECTS);
    fill_background(scene, img);
    for (int i = 0; i < scene->n_objects; i++)
        draw_object(&scene->objects[i], img);
    return ALBEF_OK;
}
