/* The training loop every albef-* trainer shares: epochs of batches from a
 * loader through a pretrainer (any task), gradient accumulation, the
 * learning-rate and alpha schedules, a JSON line per optimizer step,
 * checkpoints (every N steps, at each epoch's end, at the last step and
 * when asked to stop) and a hook at each epoch's end for validation.
 *
 * Checkpoints are <out_dir>/checkpoint_<step, 8 digits>.safetensors, the
 * newest `keep` kept; a stopped run resumes from the newest exactly where it
 * was (pretrain_checkpoint_resume + the loader's epoch and batch). */
#ifndef ALBEF_TRAIN_RUNNER_H
#define ALBEF_TRAIN_RUNNER_H

#include "data/loader.h"
#include "train/checkpoint.h"
#include "train/pretrain.h"
#include "train/schedule.h"

#include <signal.h>
#include <stdio.h>

typedef struct {
    const char *out_dir;
    int keep;              /* checkpoints kept (>= 1) */
    int64_t save_every;    /* also save every N optimizer steps; 0: epoch ends only */
    int epochs;
    int64_t steps;         /* stop after this many optimizer steps; 0: run every epoch */
    int accum;             /* micro-batches per optimizer step */
    lr_schedule sched;     /* total_steps 0: filled from epochs x steps per epoch */
    float alpha;           /* distillation weight */
    int alpha_warmup;      /* ramp alpha over epoch 0 */
    int64_t queue_from;    /* ITC against the batch alone before this step */
    int64_t itc_only_steps;
    int64_t random_negatives_steps; /* ITM negatives drawn uniformly before this step */
    FILE *log;             /* JSON lines; NULL: none */
    int progress;          /* a progress line on stderr */
    volatile sig_atomic_t *stop; /* set by a signal handler: save and return */
    /* After each full epoch's checkpoint: validation, the best checkpoint.
     * pos is where a resumed run would start (the next epoch). */
    int (*end_of_epoch)(pretrainer *t, int epoch, const train_position *pos, void *user);
    void *user;
} train_run_options;

/* Trains from *pos (zero for a new run) until the last epoch, `steps` or a
 * stop request; *pos is the position of the last checkpoint written. */
int train_run(pretrainer *t, loader *ld, const train_run_options *o, train_position *pos);

/* The newest checkpoint_*.safetensors in dir (or dir itself when it names a file). */
int train_find_latest(const char *dir, char *out, size_t cap);

/* Saves <out_dir>/checkpoint_<step>.safetensors and prunes to `keep`. */
int train_save(const pretrainer *t, const train_run_options *o, const train_position *pos);

#endif
