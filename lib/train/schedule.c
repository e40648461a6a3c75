#include "train/schedule.h"

#include <math.h>

lr_schedule lr_schedule_albef_pretrain(int epochs)
{
    lr_schedule s = {
        .kind = LR_ALBEF,
        .lr = 1e-4,
        .min_lr = 1e-5,
        .warmup_lr = 1e-5,
        .warmup_epochs = 20,
        .epochs = epochs,
    };
    return s;
}

/* timm's CosineLRScheduler value at t (t_in_epochs, one cycle, no noise). */
static double timm_cosine(const lr_schedule *s, double t)
{
    if (t < s->warmup_epochs)
        return s->warmup_lr + t * (s->lr - s->warmup_lr) / s->warmup_epochs;
    double tc = t - s->warmup_epochs;
    if (tc >= s->epochs)
        return s->min_lr;
    return s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(M_PI * tc / s->epochs));
}

double lr_at(const lr_schedule *s, int epoch, int64_t iter, int64_t global_step)
{
    if (s->kind == LR_STEP_COSINE) {
        if (global_step < s->warmup_steps)
            return s->warmup_lr + (s->lr - s->warmup_lr) * (double)global_step / (double)s->warmup_steps;
        int64_t span = s->total_steps - s->warmup_steps;
        double f = span > 0 ? (double)(global_step - s->warmup_steps) / (double)span : 1.0;
        if (f > 1.0)
            f = 1.0;
        return s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(M_PI * f));
    }
    if (epoch > 0)
        return timm_cosine(s, epoch + s->warmup_epochs);
    /* Epoch 0: the scheduler is constructed at warmup_lr and stepped with
     * t = i / 100 after the optimizer step of every 100th iteration i, up
     * to t = warmup_epochs; iteration i therefore uses t = (i - 1) / 100. */
    if (iter == 0 || s->warmup_epochs == 0)
        return s->warmup_epochs == 0 ? timm_cosine(s, 0) : s->warmup_lr;
    int64_t t = (iter - 1) / 100;
    if (t > s->warmup_epochs)
        t = s->warmup_epochs;
    return timm_cosine(s, (double)t);
}

double alpha_at(double alpha, int warm_up, int epoch, int64_t iter, int64_t iters_per_epoch)
{
    if (!warm_up || epoch > 0 || iters_per_epoch <= 0)
        return alpha;
    double f = (double)iter / (double)iters_per_epoch;
    return alpha * (f < 1.0 ? f : 1.0);
}
