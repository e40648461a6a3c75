/* 8-bit images in memory, and reading/writing them as files.
 * Pixels are interleaved, row-major (H, W, C). Decoders return RGB (C = 3)
 * the way Pillow 9's Image.open(f).convert('RGB') does, bit for bit: gray is
 * replicated, alpha is dropped (not composited), palettes are expanded (an
 * index past the end of PLTE gives gray (i, i, i), Pillow's default palette),
 * 16-bit samples are reduced to their high byte, except 16-bit gray, which
 * Pillow reads as integers and clips to 255, CMYK/YCCK JPEGs are read with
 * Adobe's inverted polarity and converted as Pillow's cmyk2rgb. JPEGs are
 * decoded with libjpeg's defaults (islow IDCT, fancy upsampling), as Pillow
 * does. EXIF orientation and gamma are ignored, as in Pillow. */
#ifndef ALBEF_IO_IMAGE_H
#define ALBEF_IO_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int width, height, channels; /* channels: 1 or 3 */
    uint8_t *data;               /* width * height * channels bytes, owned */
} image_u8;

/* Decoders refuse larger images before allocating anything: a forged
 * header must not cost gigabytes. */
#define IMAGE_MAX_SIDE 30000
#define IMAGE_MAX_PIXELS 300000000LL

/* Checks 1 <= width, height <= IMAGE_MAX_SIDE and width * height <=
 * IMAGE_MAX_PIXELS; `name` (file or caller) prefixes the message. */
int image_check_size(int width, int height, const char *name);

/* Allocates width * height * channels bytes (uninitialised); channels is 1
 * or 3. image_free releases them and zeroes the struct; it accepts a zeroed
 * or already freed image. */
int image_alloc(image_u8 *img, int width, int height, int channels);
void image_free(image_u8 *img);

/* Decodes a JPEG or PNG (found by its signature, not the file name) to RGB.
 * `name` is used in error messages only. Errors: ALBEF_ERR_INVALID for empty,
 * truncated or corrupt data and images over the size limits (a JPEG that
 * ends early is an error, as in Pillow, not a gray-filled image);
 * ALBEF_ERR_UNSUPPORTED for other formats (GIF, WebP, ...), 12-bit JPEG or
 * JPEGs with 2 components; ALBEF_ERR_NOMEM. On failure *out is zeroed.
 * One place where we are stricter than Pillow: a PNG whose image data (IDAT)
 * fails its CRC is refused (libpng's rule); Pillow does not check those CRCs. */
int image_decode(const uint8_t *buf, size_t len, const char *name, image_u8 *out);
int image_load(const char *path, image_u8 *out);

/* Like image_load, but a JPEG is decoded at the smallest of libjpeg's DCT
 * scales 1/8, 1/4, 1/2 that keeps both sides >= min_side (min_side >= 1);
 * a side of n pixels becomes ceil(n / scale). *scale receives the factor
 * applied (1, 2, 4 or 8; always 1 for PNG) so callers can map crop boxes.
 * For training crops only: it does not match Pillow bit for bit. */
int image_load_reduced(const char *path, int min_side, image_u8 *out, int *scale);

/* Writers (atomic: temp file + rename). */
int image_write_png(const char *path, const image_u8 *img);
int image_write_jpeg(const char *path, const image_u8 *img, int quality);

#endif
