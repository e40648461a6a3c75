/* The image transforms of ALBEF's data pipelines (dataset/__init__.py), from a
 * decoded RGB image to the normalised (3, res, res) float tensor the ViT eats:
 *
 *   pretrain        RandomResizedCrop(256, scale (0.2, 1), ratio (3/4, 4/3), BICUBIC)
 *                   -> RandomHorizontalFlip(0.5) -> RandomAugment(2, 7) -> ToTensor -> Normalize
 *   train           the same at 384 with scale (0.5, 1) (retrieval, VQA, NLVR2, SNLI-VE)
 *   grounding train Resize((384, 384), BICUBIC) -> flip -> RandomAugment(2, 7) -> ...
 *   test            Resize((res, res), BICUBIC) -> ToTensor -> Normalize
 *
 * Resizing is Pillow's BICUBIC (vision/resize.h); ToTensor and Normalize are
 * computed in float32 as torchvision does, ((v / 255) - mean) / std, so the
 * floats equal PyTorch's bit for bit when the resized bytes do.
 *
 * A transform is split in two: drawing its random choices (crop box, flip,
 * RandomAugment plan) from the caller's rng, which is cheap and depends only
 * on the image size, and running them on the pixels. Same rng state, same
 * image: same output. */
#ifndef ALBEF_VISION_TRANSFORM_H
#define ALBEF_VISION_TRANSFORM_H

#include "core/rng.h"
#include "io/image.h"
#include "vision/randaugment.h"

/* CLIP's normalisation, which ALBEF uses. */
#define TRANSFORM_CLIP_MEAN {0.48145466f, 0.4578275f, 0.40821073f}
#define TRANSFORM_CLIP_STD {0.26862954f, 0.26130258f, 0.27577711f}

typedef struct {
    int res;                      /* output (3, res, res) */
    int random_crop;              /* 1: RandomResizedCrop; 0: Resize((res, res)) of the whole image */
    double scale_min, scale_max;  /* crop area as a fraction of the image area */
    double ratio_min, ratio_max;  /* crop aspect ratio w / h */
    double flip_prob;             /* RandomHorizontalFlip; 0: no flip, no draw */
    int augment;                  /* 1: RandomAugment with `randaug` */
    randaug_params randaug;
    float mean[3], std[3];
} transform_params;

transform_params transform_params_pretrain(void);        /* 256, crop (0.2, 1), flip, RandomAugment(2, 7) */
transform_params transform_params_train(void);           /* 384, crop (0.5, 1), flip, RandomAugment(2, 7) */
transform_params transform_params_grounding_train(void); /* 384, square resize, flip, RandomAugment(2, 7) */
transform_params transform_params_test(int res);         /* square resize, nothing random */

int transform_params_check(const transform_params *p);

/* A crop box in source pixels: torchvision's (i, j, h, w) is (y, x, height, width). */
typedef struct {
    int x, y, width, height;
} crop_box;

/* Returns a uniform number in [0, 1). */
typedef double (*uniform_draw_fn)(void *ctx);

/* RandomResizedCrop.get_params with every random number taken from `draw`,
 * consumed in torchvision's order: per try, one for the area and one for the
 * log aspect ratio; on acceptance one for the row and one for the column.
 * The arithmetic follows torchvision: the area fraction and log ratio are
 * float32 samples (a + (b - a) * u), the log bounds are float32 logs of the
 * float32 ratios, the aspect is a float32 exp; w and h are rounded half to
 * even (Python's round); an offset below n is floor(u * n). After ten failed
 * tries: the centre crop with the aspect ratio clamped into the range. */
int random_resized_crop_box(int width, int height, double scale_min, double scale_max, double ratio_min,
                            double ratio_max, uniform_draw_fn draw, void *ctx, crop_box *box);

/* The random choices of one transform call. */
typedef struct {
    crop_box crop;         /* the whole image when the transform does not crop */
    int flip;
    randaug_plan augment;  /* count 0 when RandomAugment is off */
} transform_sample;

/* Draws crop, flip and RandomAugment plan, in that order, for a width x height
 * image. rng may be NULL when p has nothing random (a test transform). */
int transform_draw(const transform_params *p, int width, int height, rng_state *rng, transform_sample *s);

/* Runs a drawn sample on src (RGB, 3 channels): out is (3, res, res) floats. */
int transform_run(const transform_params *p, const transform_sample *s, const image_u8 *src, float *out);

/* transform_draw + transform_run. */
int transform_apply(const transform_params *p, const image_u8 *src, rng_state *rng, float *out);

/* ToTensor + Normalize: (H, W, 3) uint8 -> (3, H, W) float32. */
int transform_to_normalized_chw(const image_u8 *img, const float mean[3], const float std[3], float *out);

/* Mirrors the columns in place (PIL's FLIP_LEFT_RIGHT). */
void image_flip_horizontal(image_u8 *img);

#endif
