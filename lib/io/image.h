/* 8-bit images in memory, and reading/writing them as files.
 * Pixels are interleaved, row-major (H, W, C). Decoders return RGB (C = 3)
 * the way Pillow's Image.convert('RGB') does: gray is replicated, alpha is
 * dropped (not composited), palettes are expanded, 16-bit samples are reduced
 * to their high byte, CMYK/YCCK JPEGs are converted. EXIF orientation is
 * ignored, as Pillow does unless asked. */
#ifndef ALBEF_IO_IMAGE_H
#define ALBEF_IO_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int width, height, channels; /* channels: 1 or 3 */
    uint8_t *data;               /* width * height * channels bytes, owned */
} image_u8;

int image_alloc(image_u8 *img, int width, int height, int channels);
void image_free(image_u8 *img);

/* Decodes a JPEG or PNG (found by its signature, not the file name) to RGB.
 * `name` is used in error messages only. */
int image_decode(const uint8_t *buf, size_t len, const char *name, image_u8 *out);
int image_load(const char *path, image_u8 *out);

/* Like image_load, but a JPEG may be decoded at a reduced scale (libjpeg's
 * DCT scaling, 1/2, 1/4, 1/8) as long as both sides stay >= min_side.
 * *scale receives the factor applied (1, 2, 4 or 8) so callers can map crop
 * boxes. For training crops only: it does not match Pillow bit for bit. */
int image_load_reduced(const char *path, int min_side, image_u8 *out, int *scale);

/* Writers (atomic: temp file + rename). */
int image_write_png(const char *path, const image_u8 *img);
int image_write_jpeg(const char *path, const image_u8 *img, int quality);

#endif
