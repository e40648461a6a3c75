/* Pillow's BICUBIC resampling (libImaging/Resample.c, Pillow 9), rewritten to
 * give the same bytes:
 *   - per output pixel, the window [center - support, center + support) with
 *     support = 2 * max(in/out, 1), cubic kernel a = -0.5 evaluated in double
 *     at (x + 0.5 - center) * (1 / max(in/out, 1)), weights divided by their sum;
 *   - weights rounded to fixed point with 22 fractional bits, integer sums
 *     started at one half, shifted and clipped to 0..255;
 *   - a horizontal pass over only the rows the vertical pass reads, stored as
 *     8-bit, then a vertical pass; a pass whose size does not change is
 *     skipped.
 * Bit-exactness rests on computing the double weights with the same
 * expressions in the same order as Pillow; do not "simplify" them. */
#include "vision/resize.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)
#define BICUBIC_SUPPORT 2.0

typedef struct {
    int ksize;       /* taps stored per output pixel */
    int *bounds;     /* (out, 2): first input index, number of taps */
    int32_t *coeffs; /* (out, ksize): fixed-point weights */
} resample_axis;

static double bicubic_kernel(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static void resample_axis_free(resample_axis *ax)
{
    free(ax->bounds);
    free(ax->coeffs);
    memset(ax, 0, sizeof *ax);
}

static int resample_axis_init(resample_axis *ax, int in_size, int out_size)
{
    memset(ax, 0, sizeof *ax);
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = BICUBIC_SUPPORT * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    ax->ksize = ksize;
    ax->bounds = malloc(sizeof *ax->bounds * 2 * (size_t)out_size);
    ax->coeffs = malloc(sizeof *ax->coeffs * (size_t)ksize * (size_t)out_size);
    double *w = malloc(sizeof *w * (size_t)ksize);
    if (!ax->bounds || !ax->coeffs || !w) {
        free(w);
        resample_axis_free(ax);
        return albef_error(ALBEF_ERR_NOMEM, "resize: out of memory for %d x %d resampling weights", out_size, ksize);
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5); /* truncation, as Pillow rounds */
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = bicubic_kernel((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = ax->coeffs + (size_t)xx * ksize;
        for (int x = 0; x < ksize; x++) {
            double v = 0.0;
            if (x < xmax)
                v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
        }
        ax->bounds[2 * xx] = xmin;
        ax->bounds[2 * xx + 1] = xmax;
    }
    free(w);
    return ALBEF_OK;
}

static inline uint8_t clip_fixed(int32_t acc)
{
    int32_t v = acc >> PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* rows x (in_w, C) -> rows x (out_w, C); `src` points at the first input
 * pixel of the crop. Taps go two at a time: fewer loop branches, same sums. */
static void resample_horizontal_rgb(const uint8_t *src, size_t src_stride, int rows, const resample_axis *ax,
                                    int out_w, uint8_t *dst)
{
    const int32_t half = 1 << (PRECISION_BITS - 1);
    for (int y = 0; y < rows; y++) {
        const uint8_t *in = src + (size_t)y * src_stride;
        uint8_t *out = dst + (size_t)y * out_w * 3;
        for (int xx = 0; xx < out_w; xx++) {
            const int32_t *k = ax->coeffs + (size_t)xx * ax->ksize;
            const uint8_t *p = in + (size_t)ax->bounds[2 * xx] * 3;
            int n = ax->bounds[2 * xx + 1];
            int32_t r = half, g = half, b = half;
            int x = 0;
            for (; x + 1 < n; x += 2, p += 6) {
                r += p[0] * k[x] + p[3] * k[x + 1];
                g += p[1] * k[x] + p[4] * k[x + 1];
                b += p[2] * k[x] + p[5] * k[x + 1];
            }
            if (x < n) {
                r += p[0] * k[x];
                g += p[1] * k[x];
                b += p[2] * k[x];
            }
            out[3 * xx] = clip_fixed(r);
            out[3 * xx + 1] = clip_fixed(g);
            out[3 * xx + 2] = clip_fixed(b);
        }
    }
}

static void resample_horizontal_gray(const uint8_t *src, size_t src_stride, int rows, const resample_axis *ax,
                                     int out_w, uint8_t *dst)
{
    const int32_t half = 1 << (PRECISION_BITS - 1);
    for (int y = 0; y < rows; y++) {
        const uint8_t *in = src + (size_t)y * src_stride;
        uint8_t *out = dst + (size_t)y * out_w;
        for (int xx = 0; xx < out_w; xx++) {
            const int32_t *k = ax->coeffs + (size_t)xx * ax->ksize;
            const uint8_t *p = in + ax->bounds[2 * xx];
            int n = ax->bounds[2 * xx + 1];
            int32_t v = half;
            int x = 0;
            for (; x + 1 < n; x += 2)
                v += p[x] * k[x] + p[x + 1] * k[x + 1];
            if (x < n)
                v += p[x] * k[x];
            out[xx] = clip_fixed(v);
        }
    }
}

static void resample_horizontal(const uint8_t *src, size_t src_stride, int rows, const resample_axis *ax, int out_w,
                                uint8_t *dst, int channels)
{
    if (channels == 3)
        resample_horizontal_rgb(src, src_stride, rows, ax, out_w, dst);
    else
        resample_horizontal_gray(src, src_stride, rows, ax, out_w, dst);
}

/* (in_h, row_bytes) -> (out_h, row_bytes). Works on blocks of bytes across
 * a row with the accumulators in registers: fixed-length inner loops that the
 * compiler turns into SIMD. Integer sums do not depend on the order, so this
 * equals Pillow's pixel-by-pixel loop. */
enum { VERTICAL_BLOCK = 64 };

static inline void resample_vertical_block(const uint8_t *src, size_t src_stride, const int32_t *k, int n,
                                           uint8_t *out, int len)
{
    int32_t acc[VERTICAL_BLOCK];
    for (int i = 0; i < VERTICAL_BLOCK; i++)
        acc[i] = 1 << (PRECISION_BITS - 1);
    if (len == VERTICAL_BLOCK) {
        for (int y = 0; y < n; y++) {
            const uint8_t *in = src + (size_t)y * src_stride;
            int32_t w = k[y];
            for (int i = 0; i < VERTICAL_BLOCK; i++)
                acc[i] += in[i] * w;
        }
    } else {
        for (int y = 0; y < n; y++) {
            const uint8_t *in = src + (size_t)y * src_stride;
            int32_t w = k[y];
            for (int i = 0; i < len; i++)
                acc[i] += in[i] * w;
        }
    }
    for (int i = 0; i < len; i++)
        out[i] = clip_fixed(acc[i]);
}

static void resample_vertical(const uint8_t *src, size_t src_stride, size_t row_bytes, const resample_axis *ax,
                              int out_h, uint8_t *dst)
{
    for (int yy = 0; yy < out_h; yy++) {
        const int32_t *k = ax->coeffs + (size_t)yy * ax->ksize;
        const uint8_t *in = src + (size_t)ax->bounds[2 * yy] * src_stride;
        int n = ax->bounds[2 * yy + 1];
        uint8_t *out = dst + (size_t)yy * row_bytes;
        for (size_t i = 0; i < row_bytes; i += VERTICAL_BLOCK) {
            size_t len = row_bytes - i < VERTICAL_BLOCK ? row_bytes - i : VERTICAL_BLOCK;
            resample_vertical_block(in + i, src_stride, k, n, out + i, (int)len);
        }
    }
}

int resize_bicubic_crop(const image_u8 *src, int x0, int y0, int w, int h, int out_w, int out_h, image_u8 *dst)
{
    memset(dst, 0, sizeof *dst);
    if (!src || !src->data || (src->channels != 1 && src->channels != 3) || src->width < 1 || src->height < 1)
        return albef_error(ALBEF_ERR_INVALID, "resize: source image is empty or has %d channels; expected 1 or 3",
                           src ? src->channels : 0);
    if (x0 < 0 || y0 < 0 || w < 1 || h < 1 || (long long)x0 + w > src->width || (long long)y0 + h > src->height)
        return albef_error(ALBEF_ERR_INVALID, "resize: crop box (x %d, y %d, w %d, h %d) is not inside the %dx%d image",
                           x0, y0, w, h, src->width, src->height);
    int rc = image_alloc(dst, out_w, out_h, src->channels);
    if (rc)
        return albef_error_context(rc, "resize to %dx%d: ", out_w, out_h);

    const int c = src->channels;
    const size_t src_stride = (size_t)src->width * c;
    const uint8_t *crop = src->data + (size_t)y0 * src_stride + (size_t)x0 * c;
    const int need_h = out_w != w, need_v = out_h != h;

    if (!need_h && !need_v) {
        for (int y = 0; y < h; y++)
            memcpy(dst->data + (size_t)y * w * c, crop + (size_t)y * src_stride, (size_t)w * c);
        return ALBEF_OK;
    }

    resample_axis ax = {0}, ay = {0};
    uint8_t *tmp = NULL;
    if (need_h)
        rc = resample_axis_init(&ax, w, out_w);
    if (!rc && need_v)
        rc = resample_axis_init(&ay, h, out_h);
    if (rc) {
        /* nothing more to do */
    } else if (!need_v) {
        resample_horizontal(crop, src_stride, h, &ax, out_w, dst->data, c);
    } else if (!need_h) {
        resample_vertical(crop, src_stride, (size_t)w * c, &ay, out_h, dst->data);
    } else {
        /* Only the rows the vertical pass reads go through the horizontal
         * pass, as in Pillow. */
        int first = ay.bounds[0];
        int last = ay.bounds[2 * (out_h - 1)] + ay.bounds[2 * (out_h - 1) + 1];
        tmp = malloc((size_t)out_w * c * (size_t)(last - first));
        if (!tmp) {
            rc = albef_error(ALBEF_ERR_NOMEM, "resize: out of memory for %dx%d intermediate rows", out_w,
                             last - first);
        } else {
            resample_horizontal(crop + (size_t)first * src_stride, src_stride, last - first, &ax, out_w, tmp, c);
            for (int yy = 0; yy < out_h; yy++)
                ay.bounds[2 * yy] -= first;
            resample_vertical(tmp, (size_t)out_w * c, (size_t)out_w * c, &ay, out_h, dst->data);
        }
    }
    resample_axis_free(&ax);
    resample_axis_free(&ay);
    free(tmp);
    if (rc)
        image_free(dst);
    return rc;
}

int resize_bicubic(const image_u8 *src, int out_w, int out_h, image_u8 *dst)
{
    if (!src) {
        memset(dst, 0, sizeof *dst);
        return albef_error(ALBEF_ERR_INVALID, "resize: no source image");
    }
    return resize_bicubic_crop(src, 0, 0, src->width, src->height, out_w, out_h, dst);
}
