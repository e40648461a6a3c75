/* The training data loader: (image, caption) batches from ALBEF's
 * pre-training or retrieval-train manifests, prepared by worker threads ahead of the trainer.
 *
 * Each sample: one caption picked uniformly from its list, pre_caption (30
 * words), the image decoded and put through the training transform
 * (RandomResizedCrop, flip, RandomAugment, CLIP normalisation). A batch's
 * captions are tokenised together ([CLS] first, no [SEP], truncated to
 * max_tokens, padded to the longest).
 *
 * Deterministic: the epoch's order is a permutation drawn from (seed, epoch)
 * and every random choice of a sample from (seed, epoch, position), so the
 * batches do not depend on the number of workers. A missing or corrupt image
 * is logged with its file and reason, counted, and replaced by another sample
 * chosen the same deterministic way; it never stops the run. */
#ifndef ALBEF_DATA_LOADER_H
#define ALBEF_DATA_LOADER_H

#include "io/manifest.h"
#include "text/tokenizer.h"
#include "vision/transform.h"

#include <stdint.h>

typedef struct {
    const manifest *manifest;       /* MANIFEST_PRETRAIN, or MANIFEST_RETRIEVAL_TRAIN (one caption per item) */
    const char *image_root;         /* joined with relative paths; NULL: paths as they are */
    const bert_tokenizer *tokenizer;
    transform_params transform;
    int batch;
    int max_words;                  /* pre_caption: 30 */
    int max_tokens;                 /* truncation: 25 */
    uint64_t seed;
    int workers;                    /* >= 1 */
    int prefetch;                   /* batches prepared ahead (>= 1) */
} loader_config;

typedef struct {
    int64_t index;      /* batch number within the epoch */
    int batch, len, res;
    float *images;      /* (B, 3, res, res) */
    int32_t *ids;       /* (B, len) */
    int32_t *mask;      /* (B, len) */
    int64_t *items;     /* (B) manifest item of each sample */
    int64_t *idx;       /* (B) image index: the dense image_id index (retrieval train), else the item */
} loader_batch;

typedef struct {
    int64_t samples;       /* delivered */
    int64_t skipped;       /* images that could not be read */
    double wait_seconds;   /* time loader_next spent waiting for workers */
} loader_stats;

typedef struct loader loader;

int loader_open(const loader_config *cfg, loader **out);
void loader_close(loader *l);

/* Batches per epoch (the last partial batch is dropped, as drop_last). */
int64_t loader_batches_per_epoch(const loader *l);

/* Starts an epoch at batch `first` (0, or where a resumed run stopped). */
int loader_start_epoch(loader *l, int epoch, int64_t first);

/* The next batch of the epoch, or *out = NULL at its end. The batch stays
 * valid until loader_release. */
int loader_next(loader *l, loader_batch **out);
void loader_release(loader *l, loader_batch *b);

loader_stats loader_get_stats(const loader *l);

#endif
