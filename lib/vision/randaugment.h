/* RandomAugment as ALBEF trains with it (dataset/randaugment.py): N ops drawn
 * with replacement from ten, each applied with probability 0.5, at a fixed
 * magnitude M on a 0..10 scale. The ops reproduce that file's numpy/OpenCV
 * code, quirks included, so that a C pipeline sees the images ALBEF saw:
 *
 *   AutoContrast  per channel; ALBEF negates the channel minimum as a uint8
 *                 scalar, which wraps, so a channel whose minimum is above 0
 *                 (and whose maximum is above its minimum) becomes 255. Only
 *                 channels that already reach 0 get the linear stretch.
 *                 randaug_params.autocontrast_pil switches to PIL's stretch.
 *   Equalize      per channel, PIL's algorithm (ImageOps.equalize), in exact
 *                 integers (ALBEF's float32 sums are exact below 2^24 pixels).
 *   Brightness    LUT trunc(min(v * f, 255)) in float32, f = M/10*1.8 + 0.1.
 *   Sharpness     3x3 smoothing (centre 5, total 13) rounded to uint8, then
 *                 d + f*(v - d) in float32 on the interior; the float is cast
 *                 to uint8 without clipping, so overshoots wrap modulo 256
 *                 (numpy's astype); the border rows and columns are copied.
 *                 At M = 5 the factor is exactly 1.0: a copy, as in ALBEF.
 *   ShearX/Y      cv2.warpAffine, bilinear, fill 128: src = (x - s*y, y) or
 *                 (x, y - s*x), s = +-M/10*0.3 rounded to float32.
 *   TranslateX/Y  src = dst + t, t = +-M/10*10 pixels.
 *   Rotate        +-M/10*30 degrees about (W/2, H/2), cv2.getRotationMatrix2D.
 * The warps copy the fixed-point bilinear remap of the OpenCV 4 releases of
 * ALBEF's time (checked against 4.6): coordinates in 1/32 pixel steps
 * (INTER_BITS 5, from a 1/1024 grid), 15-bit integer weights.
 *
 * Images are image_u8 (H, W, C) with 1 to 4 channels; every op works per
 * channel. No op allocates except where a scratch buffer is asked for and
 * the caller passes none. */
#ifndef ALBEF_VISION_RANDAUGMENT_H
#define ALBEF_VISION_RANDAUGMENT_H

#include "core/rng.h"
#include "io/image.h"

enum randaug_op {
    RANDAUG_IDENTITY,
    RANDAUG_AUTOCONTRAST,
    RANDAUG_EQUALIZE,
    RANDAUG_BRIGHTNESS,
    RANDAUG_SHARPNESS,
    RANDAUG_SHEAR_X,
    RANDAUG_SHEAR_Y,
    RANDAUG_TRANSLATE_X,
    RANDAUG_TRANSLATE_Y,
    RANDAUG_ROTATE,
    RANDAUG_NUM_OPS
};

#define RANDAUG_MAX_LEVEL 10
#define RANDAUG_MAX_OPS 8
#define RANDAUG_FILL 128

typedef struct {
    int num_ops;         /* N, drawn with replacement; 0..RANDAUG_MAX_OPS (ALBEF: 2) */
    int magnitude;       /* M, 0..RANDAUG_MAX_LEVEL (ALBEF: 7, LAVIS: 5) */
    double apply_prob;   /* each drawn op runs with this probability (0.5) */
    int autocontrast_pil; /* 0: ALBEF's AutoContrast (see above); 1: PIL's */
} randaug_params;

/* ALBEF: N = 2, M = 7, p = 0.5, ALBEF's AutoContrast. */
randaug_params randaug_params_albef(void);

/* One drawn op: whether its probability draw let it run, and its sign. */
typedef struct {
    enum randaug_op op;
    int applied;
    int negate; /* shear, translate, rotate: the argument's sign is flipped */
} randaug_choice;

typedef struct {
    int count;
    randaug_choice ops[RANDAUG_MAX_OPS];
} randaug_plan;

/* "Identity", "AutoContrast", ... as in ALBEF's op list; NULL if out of range. */
const char *randaug_op_name(enum randaug_op op);
/* The inverse of randaug_op_name; -1 when unknown. */
int randaug_op_from_name(const char *name);

int randaug_params_check(const randaug_params *p);

/* Draws a plan in the order ALBEF consumes its random numbers: the N op
 * indices first, then per op the probability draw and, for an op that runs
 * and has a sign, the sign draw. */
int randaug_sample(const randaug_params *p, rng_state *rng, randaug_plan *plan);

/* Applies the ops of a plan that run, in order, to img in place. scratch:
 * width * height * channels bytes, or NULL to allocate one for the call. */
int randaug_apply_plan(const randaug_params *p, const randaug_plan *plan, image_u8 *img, uint8_t *scratch);

/* randaug_sample + randaug_apply_plan; plan_out (may be NULL) receives what was drawn. */
int randaug_apply(const randaug_params *p, rng_state *rng, image_u8 *img, uint8_t *scratch, randaug_plan *plan_out);

/* One op at magnitude m with a decided sign, src -> dst (same size and
 * channels, dst allocated by the caller, not aliasing src). */
int randaug_op_apply(enum randaug_op op, int magnitude, int negate, int autocontrast_pil, const image_u8 *src,
                     image_u8 *dst);

#endif
