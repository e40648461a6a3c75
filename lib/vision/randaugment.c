#include "vision/randaugment.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[RANDAUG_NUM_OPS] = {
    "Identity", "AutoContrast", "Equalize",   "Brightness", "Sharpness",
    "ShearX",   "ShearY",       "TranslateX", "TranslateY", "Rotate",
};

const char *randaug_op_name(enum randaug_op op)
{
    if ((int)op < 0 || op >= RANDAUG_NUM_OPS)
        return NULL;
    return op_names[op];
}

int randaug_op_from_name(const char *name)
{
    for (int i = 0; name && i < RANDAUG_NUM_OPS; i++)
        if (strcmp(name, op_names[i]) == 0)
            return i;
    return -1;
}

randaug_params randaug_params_albef(void)
{
    return (randaug_params){.num_ops = 2, .magnitude = 7, .apply_prob = 0.5, .autocontrast_pil = 0};
}

int randaug_params_check(const randaug_params *p)
{
    if (!p)
        return albef_error(ALBEF_ERR_INVALID, "randaugment: params are NULL");
    if (p->num_ops < 0 || p->num_ops > RANDAUG_MAX_OPS)
        return albef_error(ALBEF_ERR_INVALID, "randaugment: num_ops must be in [0, %d], got %d", RANDAUG_MAX_OPS,
                           p->num_ops);
    if (p->magnitude < 0 || p->magnitude > RANDAUG_MAX_LEVEL)
        return albef_error(ALBEF_ERR_INVALID, "randaugment: magnitude must be in [0, %d], got %d", RANDAUG_MAX_LEVEL,
                           p->magnitude);
    if (!(p->apply_prob >= 0.0 && p->apply_prob <= 1.0))
        return albef_error(ALBEF_ERR_INVALID, "randaugment: apply_prob must be in [0, 1], got %g", p->apply_prob);
    return ALBEF_OK;
}

static int check_image(const image_u8 *img, const char *what)
{
    if (!img || !img->data)
        return albef_error(ALBEF_ERR_INVALID, "randaugment: %s image has no pixels", what);
    if (img->width < 1 || img->height < 1 || img->channels < 1 || img->channels > 4)
        return albef_error(ALBEF_ERR_INVALID, "randaugment: %s image is %dx%dx%d; expected width, height >= 1 and 1-4 channels",
                           what, img->width, img->height, img->channels);
    /* The warps' fixed-point coordinates (1/1024 pixel) must fit an int. */
    if (img->width > IMAGE_MAX_SIDE || img->height > IMAGE_MAX_SIDE)
        return albef_error(ALBEF_ERR_INVALID, "randaugment: %s image is %dx%d; sides are limited to %d", what,
                           img->width, img->height, IMAGE_MAX_SIDE);
    return ALBEF_OK;
}

static size_t image_bytes(const image_u8 *img) { return (size_t)img->width * img->height * img->channels; }

static int op_has_sign(enum randaug_op op) { return op >= RANDAUG_SHEAR_X && op <= RANDAUG_ROTATE; }

int randaug_sample(const randaug_params *p, rng_state *rng, randaug_plan *plan)
{
    int rc = randaug_params_check(p);
    if (rc)
        return rc;
    if (!rng || !plan)
        return albef_error(ALBEF_ERR_INVALID, "randaugment: rng and plan must not be NULL");
    plan->count = p->num_ops;
    for (int k = 0; k < p->num_ops; k++)
        plan->ops[k] = (randaug_choice){.op = (enum randaug_op)rng_below(rng, RANDAUG_NUM_OPS), .applied = 0, .negate = 0};
    for (int k = 0; k < p->num_ops; k++) {
        randaug_choice *c = &plan->ops[k];
        /* ALBEF skips an op when random() > prob. */
        c->applied = !(rng_uniform(rng) > p->apply_prob);
        if (!c->applied || !op_has_sign(c->op))
            continue;
        /* Rotate flips its sign on random() < 0.5, the others on > 0.5. */
        double u = rng_uniform(rng);
        c->negate = c->op == RANDAUG_ROTATE ? u < 0.5 : u > 0.5;
    }
    return ALBEF_OK;
}

/* ---- point operations: a 256-entry table per channel ---- */

/* dst[i, c] = table[c][src[i, c]] for every channel in one pass. */
static void apply_tables(const image_u8 *src, image_u8 *dst, const uint8_t (*table)[256])
{
    size_t pixels = (size_t)src->width * src->height;
    int ch = src->channels;
    const uint8_t *s = src->data;
    uint8_t *d = dst->data;
    if (ch == 3) {
        for (size_t i = 0; i < pixels; i++, s += 3, d += 3) {
            d[0] = table[0][s[0]];
            d[1] = table[1][s[1]];
            d[2] = table[2][s[2]];
        }
        return;
    }
    for (size_t i = 0; i < pixels; i++, s += ch, d += ch)
        for (int c = 0; c < ch; c++)
            d[c] = table[c][s[c]];
}

static void identity_table(uint8_t table[256])
{
    for (int i = 0; i < 256; i++)
        table[i] = (uint8_t)i;
}

static void autocontrast(const image_u8 *src, image_u8 *dst, int pil)
{
    size_t n = image_bytes(src);
    int ch = src->channels;
    int lo[4] = {255, 255, 255, 255}, hi[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i += ch)
        for (int c = 0; c < ch; c++) {
            int v = src->data[i + c];
            lo[c] = v < lo[c] ? v : lo[c];
            hi[c] = v > hi[c] ? v : hi[c];
        }
    uint8_t table[4][256];
    for (int c = 0; c < ch; c++) {
        if (hi[c] <= lo[c]) {
            identity_table(table[c]);
            continue;
        }
        double scale = 255.0 / (double)(hi[c] - lo[c]);
        /* ALBEF computes the offset from -min on a uint8 scalar, which
         * wraps to 256 - min; PIL uses -min. */
        double neg_lo = pil ? -(double)lo[c] : (double)(uint8_t)(256 - lo[c]);
        double offset = neg_lo * scale;
        for (int i = 0; i < 256; i++) {
            double v = (double)i * scale + offset;
            v = v < 0 ? 0 : v > 255 ? 255 : v;
            table[c][i] = (uint8_t)v;
        }
    }
    apply_tables(src, dst, (const uint8_t(*)[256])table);
}

static void equalize(const image_u8 *src, image_u8 *dst)
{
    size_t n = image_bytes(src), pixels = (size_t)src->width * src->height;
    int ch = src->channels;
    uint32_t hist[4][256];
    memset(hist, 0, sizeof hist);
    for (size_t i = 0; i < n; i += ch)
        for (int c = 0; c < ch; c++)
            hist[c][src->data[i + c]]++;
    uint8_t table[4][256];
    for (int c = 0; c < ch; c++) {
        int last = 255;
        while (last > 0 && hist[c][last] == 0)
            last--;
        /* PIL leaves the brightest occupied bin out of the step. */
        uint64_t step = (pixels - hist[c][last]) / 255;
        if (step == 0) {
            identity_table(table[c]);
            continue;
        }
        uint64_t acc = step / 2;
        for (int i = 0; i < 256; i++) {
            uint64_t v = acc / step;
            table[c][i] = (uint8_t)(v > 255 ? 255 : v);
            acc += hist[c][i];
        }
    }
    apply_tables(src, dst, (const uint8_t(*)[256])table);
}

static double enhance_factor(int magnitude) { return ((double)magnitude / RANDAUG_MAX_LEVEL) * 1.8 + 0.1; }

static void brightness(const image_u8 *src, image_u8 *dst, double factor)
{
    /* numpy: float32 arange times the factor (as float32), clipped, truncated. */
    float f = (float)factor;
    uint8_t table[256];
    for (int i = 0; i < 256; i++) {
        float v = (float)i * f;
        v = v > 255.0f ? 255.0f : v;
        table[i] = (uint8_t)v;
    }
    size_t n = image_bytes(src);
    for (size_t i = 0; i < n; i++)
        dst->data[i] = table[src->data[i]];
}

static void sharpness(const image_u8 *src, image_u8 *dst, double factor)
{
    if (factor == 1.0) {
        memcpy(dst->data, src->data, image_bytes(src));
        return;
    }
    int w = src->width, h = src->height, ch = src->channels;
    size_t stride = (size_t)w * ch;
    float f = (float)factor;
    /* Borders keep their values. */
    memcpy(dst->data, src->data, stride);
    memcpy(dst->data + (h - 1) * stride, src->data + (h - 1) * stride, stride);
    for (int y = 1; y < h - 1; y++) {
        const uint8_t *up = src->data + (y - 1) * stride, *mid = up + stride, *down = mid + stride;
        uint8_t *out = dst->data + y * stride;
        for (int c = 0; c < ch; c++) {
            out[c] = mid[c];
            out[stride - ch + c] = mid[stride - ch + c];
        }
        for (size_t i = ch; i < stride - ch; i++) {
            int s = up[i - ch] + up[i] + up[i + ch] + mid[i - ch] + 5 * mid[i] + mid[i + ch] + down[i - ch] +
                    down[i] + down[i + ch];
            /* OpenCV's float filter rounded to nearest; s/13 is never within
             * 1/26 of a half, so integer rounding gives the same byte. */
            float d = (float)((2 * s + 13) / 26);
            float v = d + f * ((float)mid[i] - d);
            /* numpy's astype(uint8) truncates to an integer and keeps its
             * low byte: no clipping. */
            out[i] = (uint8_t)(int32_t)v;
        }
    }
}

/* ---- warps: cv2.warpAffine(img, M, (W, H), INTER_LINEAR, BORDER_CONSTANT) ---- */

enum {
    WARP_INTER_BITS = 5,
    WARP_TAB = 1 << WARP_INTER_BITS,
    WARP_AB_BITS = 10,
    WARP_AB_SCALE = 1 << WARP_AB_BITS,
    WARP_ROUND_DELTA = WARP_AB_SCALE / WARP_TAB / 2,
    WARP_COEF_BITS = 15,
    WARP_COLUMN_BLOCK = 256,
};

/* OpenCV's saturate_cast<int>(double): round half to even, clamped. */
static int round_to_int(double v)
{
    if (!(v > -2147483648.0))
        return v != v ? 0 : -2147483647 - 1;
    if (v >= 2147483647.0)
        return 2147483647;
    return (int)lrint(v);
}

/* One output pixel from source position (X, Y) in 1/32 pixel units. Plain
 * values, not the image struct: a byte store could alias its fields. */
static inline void warp_pixel(const uint8_t *restrict src, int w, int h, int ch, size_t stride, int X, int Y,
                              uint8_t *restrict out)
{
    int sx = X >> WARP_INTER_BITS, sy = Y >> WARP_INTER_BITS;
    int fx = X & (WARP_TAB - 1), fy = Y & (WARP_TAB - 1), gx = WARP_TAB - fx, gy = WARP_TAB - fy;
    if (sx >= 0 && sx < w - 1 && sy >= 0 && sy < h - 1) {
        /* OpenCV's 15-bit weights are (32 - fx)(32 - fy) * 32 and so on, all
         * multiples of 32: (32 s + 2^14) >> 15 is (s + 2^9) >> 10. */
        const uint8_t *p = src + (size_t)sy * stride + (size_t)sx * ch, *q = p + stride;
        if (ch == 3) {
            int r = (p[0] * gx + p[3] * fx) * gy + (q[0] * gx + q[3] * fx) * fy;
            int g = (p[1] * gx + p[4] * fx) * gy + (q[1] * gx + q[4] * fx) * fy;
            int b = (p[2] * gx + p[5] * fx) * gy + (q[2] * gx + q[5] * fx) * fy;
            out[0] = (uint8_t)((r + 512) >> 10);
            out[1] = (uint8_t)((g + 512) >> 10);
            out[2] = (uint8_t)((b + 512) >> 10);
            return;
        }
        for (int c = 0; c < ch; c++) {
            int sum = (p[c] * gx + p[c + ch] * fx) * gy + (q[c] * gx + q[c + ch] * fx) * fy;
            out[c] = (uint8_t)((sum + 512) >> 10);
        }
        return;
    }
    int in_x0 = sx >= 0 && sx < w, in_x1 = sx + 1 >= 0 && sx + 1 < w;
    int in_y0 = sy >= 0 && sy < h, in_y1 = sy + 1 >= 0 && sy + 1 < h;
    /* At the border a tap outside the image reads the fill value. */
    const uint8_t *row0 = in_y0 ? src + (size_t)sy * stride : NULL;
    const uint8_t *row1 = in_y1 ? src + (size_t)(sy + 1) * stride : NULL;
    for (int c = 0; c < ch; c++) {
        int v00 = row0 && in_x0 ? row0[(size_t)sx * ch + c] : RANDAUG_FILL;
        int v01 = row0 && in_x1 ? row0[(size_t)(sx + 1) * ch + c] : RANDAUG_FILL;
        int v10 = row1 && in_x0 ? row1[(size_t)sx * ch + c] : RANDAUG_FILL;
        int v11 = row1 && in_x1 ? row1[(size_t)(sx + 1) * ch + c] : RANDAUG_FILL;
        int sum = (v00 * gx + v01 * fx) * gy + (v10 * gx + v11 * fx) * fy;
        out[c] = (uint8_t)((sum + 512) >> 10);
    }
}

/* Rows of one column block; ch is a constant where the caller inlines it. */
static inline void warp_block(const image_u8 *src, image_u8 *dst, int ch, const double m[6], int x0, int bw,
                              const int *adelta, const int *bdelta)
{
    const uint8_t *restrict in = src->data;
    uint8_t *restrict out_base = dst->data;
    int w = src->width, h = src->height;
    size_t stride = (size_t)w * ch;
    for (int y = 0; y < h; y++) {
        int X0 = round_to_int((m[1] * y + m[2]) * WARP_AB_SCALE) + WARP_ROUND_DELTA;
        int Y0 = round_to_int((m[4] * y + m[5]) * WARP_AB_SCALE) + WARP_ROUND_DELTA;
        uint8_t *out = out_base + (size_t)y * stride + (size_t)x0 * ch;
        for (int k = 0; k < bw; k++, out += ch)
            warp_pixel(in, w, h, ch, stride, (X0 + adelta[k]) >> (WARP_AB_BITS - WARP_INTER_BITS),
                       (Y0 + bdelta[k]) >> (WARP_AB_BITS - WARP_INTER_BITS), out);
    }
}

static void warp_affine(const image_u8 *src, image_u8 *dst, const double forward[6])
{
    /* warpAffine inverts the matrix (no WARP_INVERSE_MAP), in this order. */
    double m[6];
    memcpy(m, forward, sizeof m);
    double det = m[0] * m[4] - m[1] * m[3];
    det = det != 0 ? 1.0 / det : 0;
    double a11 = m[4] * det, a22 = m[0] * det;
    m[0] = a11;
    m[1] *= -det;
    m[3] *= -det;
    m[4] = a22;
    double b1 = -m[0] * m[2] - m[1] * m[5];
    double b2 = -m[3] * m[2] - m[4] * m[5];
    m[2] = b1;
    m[5] = b2;

    /* OpenCV's per-column terms, rounded once per column. */
    int adelta[WARP_COLUMN_BLOCK], bdelta[WARP_COLUMN_BLOCK];
    for (int x0 = 0; x0 < src->width; x0 += WARP_COLUMN_BLOCK) {
        int bw = src->width - x0 < WARP_COLUMN_BLOCK ? src->width - x0 : WARP_COLUMN_BLOCK;
        for (int k = 0; k < bw; k++) {
            adelta[k] = round_to_int(m[0] * (x0 + k) * WARP_AB_SCALE);
            bdelta[k] = round_to_int(m[3] * (x0 + k) * WARP_AB_SCALE);
        }
        if (src->channels == 3)
            warp_block(src, dst, 3, m, x0, bw, adelta, bdelta);
        else
            warp_block(src, dst, src->channels, m, x0, bw, adelta, bdelta);
    }
}

/* The 2x3 matrices ALBEF builds: shear and translate as numpy float32
 * arrays, rotation by cv2.getRotationMatrix2D in double. */
static void shear_matrix(int magnitude, int negate, int along_y, double m[6])
{
    double s = ((double)magnitude / RANDAUG_MAX_LEVEL) * 0.3;
    if (negate)
        s = -s;
    double s32 = (double)(float)s;
    double fwd[6] = {1, along_y ? 0 : s32, 0, along_y ? s32 : 0, 1, 0};
    memcpy(m, fwd, sizeof fwd);
}

static void translate_matrix(int magnitude, int negate, int along_y, double m[6])
{
    double t = ((double)magnitude / RANDAUG_MAX_LEVEL) * 10.0;
    if (negate)
        t = -t;
    double shift = (double)(float)-t;
    double fwd[6] = {1, 0, along_y ? 0 : shift, 0, 1, along_y ? shift : 0};
    memcpy(m, fwd, sizeof fwd);
}

static void rotate_matrix(int magnitude, int negate, int width, int height, double m[6])
{
    double degrees = ((double)magnitude / RANDAUG_MAX_LEVEL) * 30.0;
    if (negate)
        degrees = -degrees;
    double angle = degrees * (3.14159265358979323846 / 180.0);
    double alpha = cos(angle), beta = sin(angle);
    /* The centre travels as a float Point2f. */
    double cx = (double)(float)(width / 2.0), cy = (double)(float)(height / 2.0);
    double fwd[6] = {alpha, beta, (1 - alpha) * cx - beta * cy, -beta, alpha, beta * cx + (1 - alpha) * cy};
    memcpy(m, fwd, sizeof fwd);
}

static void apply_op(enum randaug_op op, int magnitude, int negate, int autocontrast_pil, const image_u8 *src,
                     image_u8 *dst)
{
    double m[6];
    switch (op) {
    case RANDAUG_IDENTITY:
        if (dst->data != src->data)
            memcpy(dst->data, src->data, image_bytes(src));
        return;
    case RANDAUG_AUTOCONTRAST:
        autocontrast(src, dst, autocontrast_pil);
        return;
    case RANDAUG_EQUALIZE:
        equalize(src, dst);
        return;
    case RANDAUG_BRIGHTNESS:
        brightness(src, dst, enhance_factor(magnitude));
        return;
    case RANDAUG_SHARPNESS:
        sharpness(src, dst, enhance_factor(magnitude));
        return;
    case RANDAUG_SHEAR_X:
    case RANDAUG_SHEAR_Y:
        shear_matrix(magnitude, negate, op == RANDAUG_SHEAR_Y, m);
        break;
    case RANDAUG_TRANSLATE_X:
    case RANDAUG_TRANSLATE_Y:
        translate_matrix(magnitude, negate, op == RANDAUG_TRANSLATE_Y, m);
        break;
    case RANDAUG_ROTATE:
        rotate_matrix(magnitude, negate, src->width, src->height, m);
        break;
    default:
        return;
    }
    warp_affine(src, dst, m);
}

/* Ops that read neighbours cannot write over their input. */
static int op_is_pointwise(enum randaug_op op) { return op <= RANDAUG_BRIGHTNESS; }

int randaug_op_apply(enum randaug_op op, int magnitude, int negate, int autocontrast_pil, const image_u8 *src,
                     image_u8 *dst)
{
    int rc = check_image(src, "source");
    if (!rc)
        rc = check_image(dst, "destination");
    if (rc)
        return rc;
    if ((int)op < 0 || op >= RANDAUG_NUM_OPS)
        return albef_error(ALBEF_ERR_INVALID, "randaugment: op %d is not one of the %d ops", (int)op, RANDAUG_NUM_OPS);
    if (magnitude < 0 || magnitude > RANDAUG_MAX_LEVEL)
        return albef_error(ALBEF_ERR_INVALID, "randaugment: %s: magnitude must be in [0, %d], got %d", op_names[op],
                           RANDAUG_MAX_LEVEL, magnitude);
    if (dst->width != src->width || dst->height != src->height || dst->channels != src->channels)
        return albef_error(ALBEF_ERR_INVALID, "randaugment: %s: destination is %dx%dx%d, source %dx%dx%d", op_names[op],
                           dst->width, dst->height, dst->channels, src->width, src->height, src->channels);
    if (dst->data == src->data && !op_is_pointwise(op))
        return albef_error(ALBEF_ERR_INVALID, "randaugment: %s: destination must not be the source", op_names[op]);
    apply_op(op, magnitude, negate, autocontrast_pil, src, dst);
    return ALBEF_OK;
}

int randaug_apply_plan(const randaug_params *p, const randaug_plan *plan, image_u8 *img, uint8_t *scratch)
{
    int rc = randaug_params_check(p);
    if (!rc)
        rc = check_image(img, "input");
    if (rc)
        return rc;
    if (!plan || plan->count < 0 || plan->count > RANDAUG_MAX_OPS)
        return albef_error(ALBEF_ERR_INVALID, "randaugment: plan has %d ops; expected 0..%d", plan ? plan->count : -1,
                           RANDAUG_MAX_OPS);
    for (int k = 0; k < plan->count; k++)
        if ((int)plan->ops[k].op < 0 || plan->ops[k].op >= RANDAUG_NUM_OPS)
            return albef_error(ALBEF_ERR_INVALID, "randaugment: plan op %d is %d; expected 0..%d", k,
                               (int)plan->ops[k].op, RANDAUG_NUM_OPS - 1);
    uint8_t *owned = NULL;
    for (int k = 0; k < plan->count; k++) {
        const randaug_choice *c = &plan->ops[k];
        if (!c->applied || c->op == RANDAUG_IDENTITY)
            continue;
        if (op_is_pointwise(c->op)) {
            apply_op(c->op, p->magnitude, c->negate, p->autocontrast_pil, img, img);
            continue;
        }
        if (!scratch) {
            scratch = owned = malloc(image_bytes(img));
            if (!owned)
                return albef_error(ALBEF_ERR_NOMEM, "randaugment: no memory for a %dx%dx%d scratch image", img->width,
                                   img->height, img->channels);
        }
        image_u8 tmp = *img;
        tmp.data = scratch;
        apply_op(c->op, p->magnitude, c->negate, p->autocontrast_pil, img, &tmp);
        memcpy(img->data, scratch, image_bytes(img));
    }
    free(owned);
    return ALBEF_OK;
}

int randaug_apply(const randaug_params *p, rng_state *rng, image_u8 *img, uint8_t *scratch, randaug_plan *plan_out)
{
    randaug_plan plan;
    int rc = randaug_sample(p, rng, &plan);
    if (rc)
        return rc;
    if (plan_out)
        *plan_out = plan;
    return randaug_apply_plan(p, &plan, img, scratch);
}
