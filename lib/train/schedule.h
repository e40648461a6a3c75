/* Learning-rate and distillation-weight schedules (spec 2.3, 2.8).
 *
 * ALBEF's schedule, as its scripts drive timm's CosineLRScheduler: in epoch
 * 0 the rate climbs from warmup_lr to lr in warmup_epochs steps of 100
 * iterations (a staircase: the scheduler is stepped after the optimizer at
 * every 100th iteration), then holds lr for the rest of the epoch; epoch
 * e >= 1 runs at min_lr + (lr - min_lr) (1 + cos(pi e / epochs)) / 2.
 * The "cosine" alternative warms up linearly per step over warmup_steps,
 * then decays per step along a cosine to min_lr. */
#ifndef ALBEF_TRAIN_SCHEDULE_H
#define ALBEF_TRAIN_SCHEDULE_H

#include <stdint.h>

enum lr_schedule_kind { LR_ALBEF, LR_STEP_COSINE };

typedef struct {
    enum lr_schedule_kind kind;
    double lr, min_lr, warmup_lr;
    int warmup_epochs;  /* ALBEF: units of 100 iterations */
    int epochs;
    int64_t warmup_steps; /* LR_STEP_COSINE */
    int64_t total_steps;  /* LR_STEP_COSINE */
} lr_schedule;

/* Pretrain.yaml's schedule: lr 1e-4, min 1e-5, warm-up from 1e-5 over 20 x 100
 * iterations, `epochs` epochs. */
lr_schedule lr_schedule_albef_pretrain(int epochs);

/* The rate used by the optimizer step of iteration `iter` (0-based, within
 * the epoch) of `epoch`; global_step counts every step of the run (for the
 * per-step schedule). */
double lr_at(const lr_schedule *s, int epoch, int64_t iter, int64_t global_step);

/* alpha * min(1, iter / iters_per_epoch) in epoch 0 when warm_up, else alpha. */
double alpha_at(double alpha, int warm_up, int epoch, int64_t iter, int64_t iters_per_epoch);

#endif
