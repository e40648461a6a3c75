/* Pillow-compatible resampling of 8-bit images.
 * Matches PIL.Image.resize(size, BICUBIC): a separable convolution whose
 * support widens with the downscale factor (antialiasing), the cubic kernel
 * with a = -0.5, coefficients normalised per output pixel, and Pillow's
 * fixed-point arithmetic and rounding, so results agree to the last bit or
 * within 1/255. */
#ifndef ALBEF_VISION_RESIZE_H
#define ALBEF_VISION_RESIZE_H

#include "io/image.h"

/* img.resize((out_w, out_h), BICUBIC). dst is allocated here. */
int resize_bicubic(const image_u8 *src, int out_w, int out_h, image_u8 *dst);

/* img.crop((x0, y0, x0 + w, y0 + h)).resize((out_w, out_h), BICUBIC), without
 * copying the crop: what torchvision's resized_crop does on PIL images. The
 * box must lie inside the image. */
int resize_bicubic_crop(const image_u8 *src, int x0, int y0, int w, int h, int out_w, int out_h, image_u8 *dst);

#endif
