#include "vision/transform.h"

#include "core/error.h"
#include "vision/resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static transform_params base_params(int res)
{
    transform_params p = {
        .res = res,
        .random_crop = 0,
        .scale_min = 1.0,
        .scale_max = 1.0,
        .ratio_min = 3.0 / 4.0,
        .ratio_max = 4.0 / 3.0,
        .flip_prob = 0.0,
        .augment = 0,
        .randaug = randaug_params_albef(),
        .mean = TRANSFORM_CLIP_MEAN,
        .std = TRANSFORM_CLIP_STD,
    };
    return p;
}

transform_params transform_params_test(int res) { return base_params(res); }

transform_params transform_params_pretrain(void)
{
    transform_params p = base_params(256);
    p.random_crop = 1;
    p.scale_min = 0.2;
    p.flip_prob = 0.5;
    p.augment = 1;
    return p;
}

transform_params transform_params_train(void)
{
    transform_params p = transform_params_pretrain();
    p.res = 384;
    p.scale_min = 0.5;
    return p;
}

transform_params transform_params_grounding_train(void)
{
    transform_params p = base_params(384);
    p.flip_prob = 0.5;
    p.augment = 1;
    return p;
}

/* Scale and ratio bounds become float32 samples: keep them well inside float range. */
#define CROP_RANGE_MAX 1e6

static int range_ok(double lo, double hi) { return lo > 0 && lo <= hi && hi <= CROP_RANGE_MAX; }

int transform_params_check(const transform_params *p)
{
    if (!p)
        return albef_error(ALBEF_ERR_INVALID, "transform: params are NULL");
    if (p->res < 1 || p->res > IMAGE_MAX_SIDE)
        return albef_error(ALBEF_ERR_INVALID, "transform: res must be in [1, %d], got %d", IMAGE_MAX_SIDE, p->res);
    if (p->random_crop) {
        if (!range_ok(p->scale_min, p->scale_max))
            return albef_error(ALBEF_ERR_INVALID, "transform: crop scale (%g, %g) must satisfy 0 < min <= max <= %g",
                               p->scale_min, p->scale_max, CROP_RANGE_MAX);
        if (!range_ok(p->ratio_min, p->ratio_max))
            return albef_error(ALBEF_ERR_INVALID, "transform: crop ratio (%g, %g) must satisfy 0 < min <= max <= %g",
                               p->ratio_min, p->ratio_max, CROP_RANGE_MAX);
    }
    if (!(p->flip_prob >= 0 && p->flip_prob <= 1))
        return albef_error(ALBEF_ERR_INVALID, "transform: flip_prob must be in [0, 1], got %g", p->flip_prob);
    for (int c = 0; c < 3; c++)
        if (!(p->std[c] != 0 && isfinite(p->std[c]) && isfinite(p->mean[c])))
            return albef_error(ALBEF_ERR_INVALID, "transform: channel %d: mean %g, std %g; std must be finite and non-zero",
                               c, p->mean[c], p->std[c]);
    if (p->augment) {
        int rc = randaug_params_check(&p->randaug);
        if (rc)
            return albef_error_context(rc, "transform: ");
    }
    return ALBEF_OK;
}

/* torch.randint(0, n): an offset in [0, n). */
static int draw_below(uniform_draw_fn draw, void *ctx, int n)
{
    double k = floor(draw(ctx) * n);
    return k < 0 ? 0 : k >= n ? n - 1 : (int)k;
}

int random_resized_crop_box(int width, int height, double scale_min, double scale_max, double ratio_min,
                            double ratio_max, uniform_draw_fn draw, void *ctx, crop_box *box)
{
    if (width < 1 || height < 1)
        return albef_error(ALBEF_ERR_INVALID, "random_resized_crop_box: image size %dx%d; expected at least 1x1", width,
                           height);
    if (!range_ok(scale_min, scale_max) || !range_ok(ratio_min, ratio_max))
        return albef_error(ALBEF_ERR_INVALID,
                           "random_resized_crop_box: scale (%g, %g) and ratio (%g, %g) must satisfy 0 < min <= max <= %g",
                           scale_min, scale_max, ratio_min, ratio_max, CROP_RANGE_MAX);
    if (!draw || !box)
        return albef_error(ALBEF_ERR_INVALID, "random_resized_crop_box: draw and box must not be NULL");

    double area = (double)width * height;
    double log_lo = logf((float)ratio_min), log_hi = logf((float)ratio_max);
    for (int attempt = 0; attempt < 10; attempt++) {
        float fraction = (float)(scale_min + (scale_max - scale_min) * draw(ctx));
        float log_ratio = (float)(log_lo + (log_hi - log_lo) * draw(ctx));
        double target_area = area * fraction;
        double aspect = expf(log_ratio);
        /* rint in the default rounding mode is Python's round(): half to even. */
        double w = rint(sqrt(target_area * aspect)), h = rint(sqrt(target_area / aspect));
        if (w > 0 && w <= width && h > 0 && h <= height) {
            box->width = (int)w;
            box->height = (int)h;
            box->y = draw_below(draw, ctx, height - box->height + 1);
            box->x = draw_below(draw, ctx, width - box->width + 1);
            return ALBEF_OK;
        }
    }
    double in_ratio = (double)width / (double)height;
    int w = width, h = height;
    if (in_ratio < ratio_min)
        h = (int)rint(w / ratio_min);
    else if (in_ratio > ratio_max)
        w = (int)rint(h * ratio_max);
    /* A side rounds to 0 only for ratio bounds beyond twice the image's
     * aspect range, where torchvision would hand PIL an empty crop. */
    h = h < 1 ? 1 : h;
    w = w < 1 ? 1 : w;
    *box = (crop_box){.x = (width - w) / 2, .y = (height - h) / 2, .width = w, .height = h};
    return ALBEF_OK;
}

static double rng_draw(void *ctx) { return rng_uniform((rng_state *)ctx); }

static int params_are_random(const transform_params *p)
{
    return p->random_crop || p->flip_prob > 0 || (p->augment && p->randaug.num_ops > 0);
}

int transform_draw(const transform_params *p, int width, int height, rng_state *rng, transform_sample *s)
{
    int rc = transform_params_check(p);
    if (rc)
        return rc;
    if (!s)
        return albef_error(ALBEF_ERR_INVALID, "transform_draw: sample is NULL");
    if (!rng && params_are_random(p))
        return albef_error(ALBEF_ERR_INVALID, "transform_draw: the transform is random but rng is NULL");
    memset(s, 0, sizeof *s);
    s->crop = (crop_box){.x = 0, .y = 0, .width = width, .height = height};
    if (p->random_crop) {
        rc = random_resized_crop_box(width, height, p->scale_min, p->scale_max, p->ratio_min, p->ratio_max, rng_draw,
                                     rng, &s->crop);
        if (rc)
            return rc;
    } else if (width < 1 || height < 1) {
        return albef_error(ALBEF_ERR_INVALID, "transform_draw: image size %dx%d; expected at least 1x1", width, height);
    }
    if (p->flip_prob > 0)
        s->flip = rng_uniform(rng) < p->flip_prob;
    if (p->augment && p->randaug.num_ops > 0)
        return randaug_sample(&p->randaug, rng, &s->augment);
    return ALBEF_OK;
}

void image_flip_horizontal(image_u8 *img)
{
    int w = img->width, ch = img->channels;
    for (int y = 0; y < img->height; y++) {
        uint8_t *row = img->data + (size_t)y * w * ch;
        for (int l = 0, r = w - 1; l < r; l++, r--)
            for (int c = 0; c < ch; c++) {
                uint8_t t = row[l * ch + c];
                row[l * ch + c] = row[r * ch + c];
                row[r * ch + c] = t;
            }
    }
}

int transform_to_normalized_chw(const image_u8 *img, const float mean[3], const float std[3], float *out)
{
    if (!img || !img->data || !out || !mean || !std)
        return albef_error(ALBEF_ERR_INVALID, "transform_to_normalized_chw: NULL image, output, mean or std");
    if (img->channels != 3 || img->width < 1 || img->height < 1)
        return albef_error(ALBEF_ERR_INVALID, "transform_to_normalized_chw: image is %dx%dx%d; expected 3 channels",
                           img->width, img->height, img->channels);
    /* Each byte value maps to one float: a table computed with torchvision's
     * float32 steps (divide, subtract, divide) gives its exact results. */
    float table[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float x = (float)v / 255.0f;
            x = x - mean[c];
            table[c][v] = x / std[c];
        }
    size_t plane = (size_t)img->width * img->height;
    const uint8_t *px = img->data;
    float *r = out, *g = out + plane, *b = out + 2 * plane;
    for (size_t i = 0; i < plane; i++, px += 3) {
        r[i] = table[0][px[0]];
        g[i] = table[1][px[1]];
        b[i] = table[2][px[2]];
    }
    return ALBEF_OK;
}

static int check_box(const crop_box *b, const image_u8 *src)
{
    if (b->width < 1 || b->height < 1 || b->x < 0 || b->y < 0 || b->x > src->width - b->width ||
        b->y > src->height - b->height)
        return albef_error(ALBEF_ERR_INVALID, "transform_run: crop box x %d, y %d, %dx%d does not lie inside the %dx%d image",
                           b->x, b->y, b->width, b->height, src->width, src->height);
    return ALBEF_OK;
}

int transform_run(const transform_params *p, const transform_sample *s, const image_u8 *src, float *out)
{
    int rc = transform_params_check(p);
    if (rc)
        return rc;
    if (!s || !src || !src->data || !out)
        return albef_error(ALBEF_ERR_INVALID, "transform_run: NULL sample, image or output");
    if (src->channels != 3)
        return albef_error(ALBEF_ERR_INVALID, "transform_run: image has %d channels; expected 3 (RGB)", src->channels);
    if ((rc = check_box(&s->crop, src)))
        return rc;

    image_u8 img = {0};
    if (p->random_crop)
        rc = resize_bicubic_crop(src, s->crop.x, s->crop.y, s->crop.width, s->crop.height, p->res, p->res, &img);
    else
        rc = resize_bicubic(src, p->res, p->res, &img);
    if (rc)
        return albef_error_context(rc, "transform_run: ");
    if (s->flip)
        image_flip_horizontal(&img);
    if (p->augment && s->augment.count > 0)
        rc = randaug_apply_plan(&p->randaug, &s->augment, &img, NULL);
    if (!rc)
        rc = transform_to_normalized_chw(&img, p->mean, p->std, out);
    image_free(&img);
    return rc;
}

int transform_apply(const transform_params *p, const image_u8 *src, rng_state *rng, float *out)
{
    if (!src || !src->data)
        return albef_error(ALBEF_ERR_INVALID, "transform_apply: image is NULL");
    transform_sample s;
    int rc = transform_draw(p, src->width, src->height, rng, &s);
    return rc ? rc : transform_run(p, &s, src, out);
}
