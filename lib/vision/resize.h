/* Pillow-compatible resampling of 8-bit images.
 * Matches PIL.Image.resize(size, BICUBIC, box): a separable convolution whose
 * support widens with the downscale factor (antialiasing), the cubic kernel
 * with a = -0.5, coefficients normalised per output pixel, rounding as Pillow
 * does (fixed-point coefficients, clip to [0, 255]). */
#ifndef ALBEF_VISION_RESIZE_H
#define ALBEF_VISION_RESIZE_H

#include "io/image.h"

/* Resizes the box (x0, y0, x0 + bw, y0 + bh) of `src` (in source pixels,
 * floats as in Pillow's `box`) to out_w x out_h. dst is allocated here.
 * With box = the whole image this is img.resize((out_w, out_h), BICUBIC);
 * with an integer box it equals img.crop(box).resize(...), which is what
 * torchvision's resized_crop does on PIL images. */
int resize_bicubic(const image_u8 *src, double x0, double y0, double bw, double bh, int out_w, int out_h,
                   image_u8 *dst);

#endif
