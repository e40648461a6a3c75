/* Pre-training checkpoints: one safetensors file holding the online model
 * and its momentum copy under their official names (so albef_load and
 * PyTorch read it as ALBEF.pth's 'model'), image_queue / text_queue (E, Q)
 * and queue_ptr, the AdamW moments under "optimizer.exp_avg.<name>" and
 * "optimizer.exp_avg_sq.<name>", and the run's position and RNG state in
 * the metadata ("train.*"), with the configuration under "config".
 * A checkpoint is enough to resume bit for bit on the CPU back end. */
#ifndef ALBEF_TRAIN_CHECKPOINT_H
#define ALBEF_TRAIN_CHECKPOINT_H

#include "train/pretrain.h"

typedef struct {
    int epoch;          /* current epoch */
    int64_t batch;      /* next batch within the epoch */
    int64_t step;       /* optimizer steps taken */
} train_position;

/* Written atomically (temporary file, fsync, rename). */
int pretrain_checkpoint_save(const pretrainer *t, const char *path, const train_position *pos);

/* Everything back: weights, momentum weights, queues, optimizer state,
 * position, RNG. The checkpoint's configuration and batch size must match. */
int pretrain_checkpoint_resume(pretrainer *t, const char *path, train_position *pos);

/* Starts from an ALBEF checkpoint's weights (ours or converted official
 * ones): the online model must be complete; the momentum copy is loaded
 * from the "_m" names when the file has them all, else copied from the
 * online weights; queues are loaded when present with the same shape. */
int pretrain_checkpoint_init(pretrainer *t, const char *path);

/* The configuration stored in a checkpoint's metadata. */
int checkpoint_read_config(const char *path, albef_config *cfg);

#endif
