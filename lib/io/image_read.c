/* JPEG (libjpeg-turbo) and PNG (libpng) decoding to RGB, matching Pillow 9's
 * Image.open(f).convert('RGB'); see io/image.h for the conversion rules.
 *
 * Both libraries report fatal errors by calling a handler that must not
 * return; ours longjmp back to the decode function. Everything that must
 * survive the jump (allocations, flags) lives in a context struct owned by
 * the caller, never in automatic variables of the function that calls
 * setjmp, whose values are indeterminate after the jump. */
#include "io/image.h"

#include "core/error.h"
#include "core/file.h"

#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#ifdef ALBEF_FUZZING
/* Keeps forged headers within the fuzzer's memory and time limits. */
#define DECODE_MAX_PIXELS (4LL << 20)
#else
#define DECODE_MAX_PIXELS IMAGE_MAX_PIXELS
#endif

/* A progressive JPEG may hold any number of scans; past this many it is an
 * attack, not a photo (libjpeg-turbo's own tools stop at 500). */
#define JPEG_MAX_SCANS 1000

static int check_decode_size(long long width, long long height, const char *name)
{
    if (width > IMAGE_MAX_SIDE || height > IMAGE_MAX_SIDE)
        return image_check_size(width > INT_MAX ? INT_MAX : (int)width, height > INT_MAX ? INT_MAX : (int)height,
                                name);
    int rc = image_check_size((int)width, (int)height, name);
    if (rc)
        return rc;
    if (width * height > DECODE_MAX_PIXELS)
        return albef_error(ALBEF_ERR_INVALID, "%s: image size %lldx%lld exceeds the limit of %lld pixels", name,
                           width, height, DECODE_MAX_PIXELS);
    return ALBEF_OK;
}

/* ------------------------------------------------------------------ JPEG */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf escape;
    int scanlines_done; /* an early end of data after the last row is harmless */
    int truncated;
    int scan_limit;
} jpeg_error_state;

typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpeg_error_state err;
    struct jpeg_progress_mgr progress;
    int created;
    const uint8_t *buf;
    size_t len;
    const char *name;
    int min_side; /* > 0: reduce by DCT scaling while both sides stay >= min_side */
    int scale;
    uint8_t *row; /* one scanline when the output is not RGB */
    image_u8 *out;
} jpeg_decode_ctx;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_error_state *err = (jpeg_error_state *)cinfo->err;
    longjmp(err->escape, 1);
}

/* Warnings about corrupt data are ignored, as Pillow does; running out of
 * data is not: libjpeg would pad the image with gray, Pillow raises "image
 * file is truncated". */
static void jpeg_on_message(j_common_ptr cinfo, int msg_level)
{
    jpeg_error_state *err = (jpeg_error_state *)cinfo->err;
    if (msg_level >= 0)
        return;
    err->pub.num_warnings++;
    if (err->pub.msg_code == JWRN_JPEG_EOF && !err->scanlines_done) {
        err->truncated = 1;
        longjmp(err->escape, 1);
    }
}

static void jpeg_on_progress(j_common_ptr cinfo)
{
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_error_state *err = (jpeg_error_state *)cinfo->err;
        err->scan_limit = 1;
        longjmp(err->escape, 1);
    }
}

static inline uint8_t muldiv255(int a, int b)
{
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

/* libjpeg gives Adobe-inverted CMYK (Pillow's rawmode "CMYK;I" undoes the
 * inversion); then Pillow's cmyk2rgb: R = (255 - K) - (255 - K) * C / 255. */
static void cmyk_inverted_row_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int width)
{
    for (int x = 0; x < width; x++, cmyk += 4, rgb += 3) {
        int nk = cmyk[3];
        for (int c = 0; c < 3; c++)
            rgb[c] = (uint8_t)(nk - muldiv255(255 - cmyk[c], nk));
    }
}

static void gray_row_to_rgb(const uint8_t *gray, uint8_t *rgb, int width)
{
    for (int x = 0; x < width; x++, rgb += 3)
        rgb[0] = rgb[1] = rgb[2] = gray[x];
}

/* Returns a status; on failure the caller finds the reason in ctx->err. */
static int jpeg_decode_run(jpeg_decode_ctx *ctx)
{
    if (setjmp(ctx->err.escape))
        return -1;
    jpeg_create_decompress(&ctx->cinfo);
    ctx->created = 1;
    ctx->progress.progress_monitor = jpeg_on_progress;
    ctx->cinfo.progress = &ctx->progress;
    jpeg_mem_src(&ctx->cinfo, ctx->buf, (unsigned long)ctx->len);
    jpeg_read_header(&ctx->cinfo, TRUE);

    j_decompress_ptr ci = &ctx->cinfo;
    switch (ci->num_components) {
    case 1:
        ci->out_color_space = JCS_GRAYSCALE;
        break;
    case 3:
        ci->out_color_space = JCS_RGB;
        break;
    case 4: /* CMYK, or YCCK that libjpeg turns into CMYK */
        ci->out_color_space = JCS_CMYK;
        break;
    default:
        return albef_error(ALBEF_ERR_UNSUPPORTED, "%s: JPEG with %d components; expected 1, 3 or 4", ctx->name,
                           ci->num_components);
    }
    int rc = check_decode_size(ci->image_width, ci->image_height, ctx->name);
    if (rc)
        return rc;

    ctx->scale = 1;
    if (ctx->min_side > 0) {
        for (int s = 8; s >= 2; s /= 2) {
            ci->scale_num = 1;
            ci->scale_denom = (unsigned)s;
            jpeg_calc_output_dimensions(ci);
            if (ci->output_width >= (JDIMENSION)ctx->min_side && ci->output_height >= (JDIMENSION)ctx->min_side) {
                ctx->scale = s;
                break;
            }
        }
        ci->scale_denom = (unsigned)ctx->scale;
    }

    jpeg_start_decompress(ci);
    int width = (int)ci->output_width, height = (int)ci->output_height;
    rc = image_alloc(ctx->out, width, height, 3);
    if (rc)
        return albef_error_context(rc, "%s: ", ctx->name);
    if (ci->output_components != 3) {
        ctx->row = malloc((size_t)width * (size_t)ci->output_components);
        if (!ctx->row)
            return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for a JPEG row of %d pixels", ctx->name, width);
    }
    while (ci->output_scanline < ci->output_height) {
        uint8_t *dst = ctx->out->data + (size_t)ci->output_scanline * (size_t)width * 3;
        JSAMPROW row = ctx->row ? ctx->row : dst;
        if (jpeg_read_scanlines(ci, &row, 1) != 1)
            return albef_error(ALBEF_ERR_INVALID, "%s: corrupt JPEG: no data for row %u", ctx->name,
                               ci->output_scanline);
        if (ci->output_components == 1)
            gray_row_to_rgb(ctx->row, dst, width);
        else if (ci->output_components == 4)
            cmyk_inverted_row_to_rgb(ctx->row, dst, width);
    }
    ctx->err.scanlines_done = 1;
    jpeg_finish_decompress(ci);
    return ALBEF_OK;
}

static int jpeg_decode(const uint8_t *buf, size_t len, const char *name, int min_side, image_u8 *out, int *scale)
{
    jpeg_decode_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for the JPEG decoder", name);
    ctx->buf = buf;
    ctx->len = len;
    ctx->name = name;
    ctx->min_side = min_side;
    ctx->out = out;
    ctx->cinfo.err = jpeg_std_error(&ctx->err.pub);
    ctx->err.pub.error_exit = jpeg_on_error;
    ctx->err.pub.emit_message = jpeg_on_message;

    int rc = jpeg_decode_run(ctx);
    if (rc < 0) {
        if (ctx->err.truncated) {
            rc = albef_error(ALBEF_ERR_INVALID, "%s: truncated JPEG: the data ends before the image is complete",
                             name);
        } else if (ctx->err.scan_limit) {
            rc = albef_error(ALBEF_ERR_INVALID, "%s: corrupt JPEG: more than %d scans", name, JPEG_MAX_SCANS);
        } else {
            char msg[JMSG_LENGTH_MAX];
            ctx->err.pub.format_message((j_common_ptr)&ctx->cinfo, msg);
            int code = ctx->err.pub.msg_code;
            if (code == JERR_BAD_PRECISION || code == JERR_NOT_COMPILED || code == JERR_CONVERSION_NOTIMPL)
                rc = albef_error(ALBEF_ERR_UNSUPPORTED, "%s: unsupported JPEG: %s", name, msg);
            else if (code == JERR_OUT_OF_MEMORY)
                rc = albef_error(ALBEF_ERR_NOMEM, "%s: JPEG: %s", name, msg);
            else
                rc = albef_error(ALBEF_ERR_INVALID, "%s: corrupt JPEG: %s", name, msg);
        }
    }
    if (ctx->created)
        jpeg_destroy_decompress(&ctx->cinfo);
    free(ctx->row);
    if (rc)
        image_free(out);
    else if (scale)
        *scale = ctx->scale;
    free(ctx);
    return rc;
}

/* ------------------------------------------------------------------ PNG */

typedef struct {
    png_structp png;
    png_infop info;
    const uint8_t *buf;
    size_t len, pos;
    const char *name;
    int truncated;
    char message[256];
    uint8_t *raw;       /* rows as libpng gives them: one row, or the whole image if interlaced */
    png_bytep *rows;    /* row pointers into raw (interlaced images) */
    uint8_t palette[256 * 3];
    image_u8 *out;
} png_decode_ctx;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_decode_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->message, sizeof ctx->message, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* ancillary-chunk trouble; Pillow carries on as well */
}

static void png_read_from_memory(png_structp png, png_bytep dst, size_t n)
{
    png_decode_ctx *ctx = png_get_io_ptr(png);
    if (n > ctx->len - ctx->pos) {
        ctx->truncated = 1;
        png_error(png, "unexpected end of data");
    }
    memcpy(dst, ctx->buf + ctx->pos, n);
    ctx->pos += n;
}

/* One row of samples as libpng returns them (1-, 2- and 4-bit samples
 * unpacked to one byte each, 16-bit ones big-endian) to RGB, as Pillow's
 * unpackers and convert('RGB') do. */
static void png_row_to_rgb(const png_decode_ctx *ctx, const uint8_t *src, uint8_t *rgb, int width, int color_type,
                           int bit_depth)
{
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
        if (bit_depth == 16) {
            /* Pillow opens 16-bit gray as mode I; convert('RGB') clips it. */
            for (int x = 0; x < width; x++, src += 2, rgb += 3) {
                int v = src[0] << 8 | src[1];
                rgb[0] = rgb[1] = rgb[2] = (uint8_t)(v > 255 ? 255 : v);
            }
        } else {
            int mul = bit_depth == 1 ? 255 : bit_depth == 2 ? 0x55 : bit_depth == 4 ? 0x11 : 1;
            for (int x = 0; x < width; x++, rgb += 3)
                rgb[0] = rgb[1] = rgb[2] = (uint8_t)(src[x] * mul);
        }
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: {
        int step = bit_depth == 16 ? 4 : 2;
        for (int x = 0; x < width; x++, src += step, rgb += 3)
            rgb[0] = rgb[1] = rgb[2] = src[0];
        break;
    }
    case PNG_COLOR_TYPE_PALETTE:
        for (int x = 0; x < width; x++, rgb += 3)
            memcpy(rgb, ctx->palette + 3 * src[x], 3);
        break;
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_RGB_ALPHA: {
        int bytes = bit_depth == 16 ? 2 : 1;
        int step = (color_type == PNG_COLOR_TYPE_RGB ? 3 : 4) * bytes;
        if (step == 3) {
            memcpy(rgb, src, (size_t)width * 3);
            break;
        }
        for (int x = 0; x < width; x++, src += step, rgb += 3) {
            rgb[0] = src[0];
            rgb[1] = src[bytes];
            rgb[2] = src[2 * bytes];
        }
        break;
    }
    }
}

static int png_decode_run(png_decode_ctx *ctx)
{
    if (setjmp(png_jmpbuf(ctx->png)))
        return -1;
    png_set_read_fn(ctx->png, ctx, png_read_from_memory);
    png_read_info(ctx->png, ctx->info);
    png_uint_32 w, h;
    int bit_depth, color_type, interlace;
    png_get_IHDR(ctx->png, ctx->info, &w, &h, &bit_depth, &color_type, &interlace, NULL, NULL);
    int rc = check_decode_size(w, h, ctx->name);
    if (rc)
        return rc;
    int width = (int)w, height = (int)h;

    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        /* Pillow's default palette is a gray ramp; PLTE overwrites its head. */
        for (int i = 0; i < 256; i++)
            ctx->palette[3 * i] = ctx->palette[3 * i + 1] = ctx->palette[3 * i + 2] = (uint8_t)i;
        png_colorp plte;
        int n = 0;
        if (png_get_PLTE(ctx->png, ctx->info, &plte, &n) && n > 0) {
            for (int i = 0; i < n && i < 256; i++) {
                ctx->palette[3 * i] = plte[i].red;
                ctx->palette[3 * i + 1] = plte[i].green;
                ctx->palette[3 * i + 2] = plte[i].blue;
            }
        }
    }
    if (bit_depth < 8)
        png_set_packing(ctx->png);
    int passes = png_set_interlace_handling(ctx->png);
    png_read_update_info(ctx->png, ctx->info);
    size_t rowbytes = png_get_rowbytes(ctx->png, ctx->info);

    rc = image_alloc(ctx->out, width, height, 3);
    if (rc)
        return albef_error_context(rc, "%s: ", ctx->name);
    size_t out_stride = (size_t)width * 3;
    if (passes > 1) {
        /* Adam7 fills each row over seven passes: keep the whole image. */
        ctx->raw = malloc(rowbytes * (size_t)height);
        ctx->rows = malloc(sizeof *ctx->rows * (size_t)height);
        if (!ctx->raw || !ctx->rows)
            return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for an interlaced %dx%d PNG", ctx->name, width,
                               height);
        for (int y = 0; y < height; y++)
            ctx->rows[y] = ctx->raw + rowbytes * (size_t)y;
        png_read_image(ctx->png, ctx->rows);
        for (int y = 0; y < height; y++)
            png_row_to_rgb(ctx, ctx->rows[y], ctx->out->data + out_stride * (size_t)y, width, color_type,
                           bit_depth);
    } else {
        ctx->raw = malloc(rowbytes);
        if (!ctx->raw)
            return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for a PNG row of %zu bytes", ctx->name, rowbytes);
        for (int y = 0; y < height; y++) {
            png_read_row(ctx->png, ctx->raw, NULL);
            png_row_to_rgb(ctx, ctx->raw, ctx->out->data + out_stride * (size_t)y, width, color_type, bit_depth);
        }
    }
    /* No png_read_end: like Pillow, accept a file whose chunks after the
     * image data (or IEND) are missing or damaged. */
    return ALBEF_OK;
}

static uint32_t read_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int png_decode(const uint8_t *buf, size_t len, const char *name, image_u8 *out)
{
    /* IHDR comes first: refuse a forged size before libpng reads further. */
    if (len >= 24 && memcmp(buf + 12, "IHDR", 4) == 0) {
        int rc = check_decode_size(read_be32(buf + 16), read_be32(buf + 20), name);
        if (rc)
            return rc;
    }
    png_decode_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for the PNG decoder", name);
    ctx->buf = buf;
    ctx->len = len;
    ctx->name = name;
    ctx->out = out;
    int rc;
    ctx->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, png_on_error, png_on_warning);
    if (ctx->png)
        ctx->info = png_create_info_struct(ctx->png);
    if (!ctx->png || !ctx->info) {
        rc = albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for the PNG decoder", name);
    } else {
        rc = png_decode_run(ctx);
        if (rc < 0) {
            if (ctx->truncated)
                rc = albef_error(ALBEF_ERR_INVALID, "%s: truncated PNG: the data ends after %zu bytes", name,
                                 ctx->len);
            else if (strstr(ctx->message, "memory"))
                rc = albef_error(ALBEF_ERR_NOMEM, "%s: PNG: %s", name, ctx->message);
            else
                rc = albef_error(ALBEF_ERR_INVALID, "%s: corrupt PNG: %s", name, ctx->message);
        }
    }
    png_destroy_read_struct(ctx->png ? &ctx->png : NULL, ctx->info ? &ctx->info : NULL, NULL);
    free(ctx->raw);
    free(ctx->rows);
    if (rc)
        image_free(out);
    free(ctx);
    return rc;
}

/* ------------------------------------------------------------------ dispatch */

static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static int is_jpeg(const uint8_t *buf, size_t len)
{
    return len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF;
}

static int is_png(const uint8_t *buf, size_t len)
{
    return len >= 8 && memcmp(buf, png_signature, 8) == 0;
}

/* Names formats that are images but not ours, for a clearer message. */
static const char *other_image_format(const uint8_t *buf, size_t len)
{
    if (len >= 6 && (memcmp(buf, "GIF87a", 6) == 0 || memcmp(buf, "GIF89a", 6) == 0))
        return "GIF";
    if (len >= 12 && memcmp(buf, "RIFF", 4) == 0 && memcmp(buf + 8, "WEBP", 4) == 0)
        return "WebP";
    if (len >= 2 && memcmp(buf, "BM", 2) == 0)
        return "BMP";
    if (len >= 4 && (memcmp(buf, "II*\0", 4) == 0 || memcmp(buf, "MM\0*", 4) == 0))
        return "TIFF";
    if (len >= 12 && memcmp(buf + 4, "ftyp", 4) == 0)
        return "HEIF/AVIF";
    if (len >= 12 && memcmp(buf, "\0\0\0\x0cjP  ", 8) == 0)
        return "JPEG 2000";
    return NULL;
}

static int image_decode_scaled(const uint8_t *buf, size_t len, const char *name, int min_side, image_u8 *out,
                               int *scale)
{
    memset(out, 0, sizeof *out);
    if (scale)
        *scale = 1;
    if (!name)
        name = "(memory)";
    if (len == 0)
        return albef_error(ALBEF_ERR_INVALID, "%s: empty file; expected a JPEG or PNG image", name);
    if (is_jpeg(buf, len))
        return jpeg_decode(buf, len, name, min_side, out, scale);
    if (is_png(buf, len))
        return png_decode(buf, len, name, out);
    const char *other = other_image_format(buf, len);
    if (other)
        return albef_error(ALBEF_ERR_UNSUPPORTED, "%s: %s image; only JPEG and PNG are supported", name, other);
    return albef_error(ALBEF_ERR_INVALID, "%s: not a JPEG or PNG file (first bytes %02x %02x %02x %02x)", name,
                       buf[0], len > 1 ? buf[1] : 0, len > 2 ? buf[2] : 0, len > 3 ? buf[3] : 0);
}

int image_decode(const uint8_t *buf, size_t len, const char *name, image_u8 *out)
{
    return image_decode_scaled(buf, len, name, 0, out, NULL);
}

static int image_load_scaled(const char *path, int min_side, image_u8 *out, int *scale)
{
    memset(out, 0, sizeof *out);
    file_mapping m;
    int rc = file_map(path, &m);
    if (rc)
        return rc;
    rc = image_decode_scaled(m.data, m.size, path, min_side, out, scale);
    file_unmap(&m);
    return rc;
}

int image_load(const char *path, image_u8 *out)
{
    return image_load_scaled(path, 0, out, NULL);
}

int image_load_reduced(const char *path, int min_side, image_u8 *out, int *scale)
{
    if (min_side < 1) {
        memset(out, 0, sizeof *out);
        return albef_error(ALBEF_ERR_INVALID, "%s: image_load_reduced: min_side is %d; expected >= 1", path,
                           min_side);
    }
    return image_load_scaled(path, min_side, out, scale);
}
