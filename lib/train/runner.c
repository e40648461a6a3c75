/* The shared training loop (train/runner.h). */
#include "train/runner.h"

#include "core/error.h"
#include "core/log.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int checkpoint_step_of(const char *name, long long *step)
{
    return sscanf(name, "checkpoint_%lld.safetensors", step) == 1 && strstr(name, ".tmp.") == NULL;
}

int train_find_latest(const char *dir, char *out, size_t cap)
{
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISREG(st.st_mode)) {
        snprintf(out, cap, "%s", dir);
        return ALBEF_OK;
    }
    DIR *d = opendir(dir);
    if (!d)
        return albef_error(ALBEF_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
    long long best = -1, s;
    struct dirent *e;
    while ((e = readdir(d)))
        if (checkpoint_step_of(e->d_name, &s) && s > best) {
            best = s;
            snprintf(out, cap, "%s/%s", dir, e->d_name);
        }
    closedir(d);
    return best < 0 ? albef_error(ALBEF_ERR_IO, "%s: no checkpoint_*.safetensors to resume from", dir) : ALBEF_OK;
}

/* Deletes all but the newest `keep` checkpoints. */
static void prune(const char *dir, int keep)
{
    long long steps[4096];
    int n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    long long s;
    while ((e = readdir(d)) && n < 4096)
        if (checkpoint_step_of(e->d_name, &s))
            steps[n++] = s;
    closedir(d);
    for (int i = 0; i < n; i++) {
        int newer = 0;
        for (int j = 0; j < n; j++)
            newer += steps[j] > steps[i];
        if (newer >= keep) {
            char path[4096];
            snprintf(path, sizeof path, "%s/checkpoint_%08lld.safetensors", dir, steps[i]);
            if (unlink(path) == 0)
                albef_log(ALBEF_LOG_DEBUG, "removed old checkpoint %s", path);
        }
    }
}

int train_save(const pretrainer *t, const train_run_options *o, const train_position *pos)
{
    if (t->opt.comm && t->opt.comm->rank != 0)
        return ALBEF_OK; /* rank 0 writes for all: the replicas are identical */
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint_%08lld.safetensors", o->out_dir, (long long)pos->step);
    int rc = pretrain_checkpoint_save(t, path, pos);
    if (rc)
        return rc;
    albef_log(ALBEF_LOG_INFO, "saved %s (epoch %d, batch %lld, step %lld)", path, pos->epoch, (long long)pos->batch,
              (long long)pos->step);
    prune(o->out_dir, o->keep);
    return ALBEF_OK;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void progress(const pretrainer *t, int epoch, int64_t batch, int64_t per_epoch, const pretrain_stats *st,
                     double rate)
{
    int width = 24, done = per_epoch ? (int)(width * (batch + 1) / per_epoch) : 0;
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < done ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\repoch %d [%s] %lld/%lld  itc %.3f itm %.3f", epoch, bar, (long long)batch + 1,
            (long long)per_epoch, st->loss_ita, st->loss_itm);
    if (t->opt.task == TASK_PRETRAIN)
        fprintf(stderr, " mlm %.3f", st->loss_mlm);
    fprintf(stderr, "  %.1f img/s ", rate);
    fflush(stderr);
}

static void log_step(FILE *log, const pretrainer *t, const train_position *pos, int epoch, float lr, float alpha,
                     const pretrain_stats *st, double rate, double wait_frac, int64_t skipped)
{
    fprintf(log, "{\"step\":%lld,\"epoch\":%d,\"batch\":%lld,\"lr\":%.6g,\"alpha\":%.4f,\"temp\":%.6f,"
                 "\"loss_itc\":%.6f,\"loss_itm\":%.6f,",
            (long long)pos->step, epoch, (long long)pos->batch, lr, alpha, st->temp, st->loss_ita, st->loss_itm);
    if (t->opt.task == TASK_PRETRAIN)
        fprintf(log, "\"loss_mlm\":%.6f,\"masked\":%d,", st->loss_mlm, st->masked_tokens);
    fprintf(log, "\"grad_norm\":%.6g,\"images_per_s\":%.2f,\"data_wait\":%.3f,\"skipped\":%lld}\n", st->grad_norm,
            rate, wait_frac, (long long)skipped);
    fflush(log);
}

int train_run(pretrainer *t, loader *ld, const train_run_options *o, train_position *pos)
{
    int64_t per_epoch = loader_batches_per_epoch(ld);
    if (per_epoch / o->accum < 1)
        return albef_error(ALBEF_ERR_INVALID, "the training set holds fewer than %d batches of %d", o->accum,
                           t->opt.batch);
    lr_schedule sched = o->sched;
    if (!sched.total_steps)
        sched.total_steps = o->steps ? o->steps : (int64_t)o->epochs * (per_epoch / o->accum);
    int rc = ALBEF_OK, finished = 0;
    for (int epoch = pos->epoch; epoch < o->epochs && !finished && !rc; epoch++) {
        int64_t first = epoch == pos->epoch ? pos->batch : 0;
        rc = loader_start_epoch(ld, epoch, first);
        double t0 = now(), wait0 = loader_get_stats(ld).wait_seconds;
        int64_t images = 0;
        pretrain_stats st = {0};
        for (int64_t i = first; !rc; i++) {
            loader_batch *b;
            rc = loader_next(ld, &b);
            if (rc || !b)
                break;
            float alpha = (float)alpha_at(o->alpha, o->alpha_warmup, epoch, i, per_epoch);
            pretrain_batch pb = {.images = b->images, .ids = b->ids, .mask = b->mask, .len = b->len,
                                 .alpha = alpha, .idx = b->idx, .no_queue = pos->step < o->queue_from,
                                 .itc_only = pos->step < o->itc_only_steps,
                                 .random_negatives = pos->step < o->random_negatives_steps};
            rc = pretrainer_accumulate(t, &pb, 1.0f / (float)o->accum, NULL);
            loader_release(ld, b);
            images += t->opt.batch;
            if (rc || (i + 1) % o->accum)
                continue;
            int64_t it = i / o->accum; /* optimizer steps into the epoch */
            float lr = (float)lr_at(&sched, epoch, it, pos->step);
            rc = pretrainer_update(t, lr, NULL);
            if (rc)
                break;
            pretrainer_last_stats(t, &st); /* the step's one synchronisation */
            pos->step++;
            pos->epoch = epoch;
            pos->batch = i + 1;
            double dt = now() - t0, wait = loader_get_stats(ld).wait_seconds - wait0;
            double rate = images / (dt > 0 ? dt : 1);
            if (o->log && (!t->opt.comm || t->opt.comm->rank == 0))
                log_step(o->log, t, pos, epoch, lr, alpha, &st, rate, dt > 0 ? wait / dt : 0.0,
                         loader_get_stats(ld).skipped);
            if (!isfinite(st.loss_ita + st.loss_itm + st.loss_mlm)) {
                rc = albef_error(ALBEF_ERR_INVALID, "step %lld: the loss is not finite (itc %g, itm %g, mlm %g)",
                                 (long long)pos->step, st.loss_ita, st.loss_itm, st.loss_mlm);
                break;
            }
            if (o->progress)
                progress(t, epoch, i, per_epoch, &st, rate);
            int stop = o->stop && *o->stop, last = o->steps && pos->step >= o->steps;
            if (stop || last || (o->save_every && pos->step % o->save_every == 0)) {
                rc = train_save(t, o, pos);
                if (stop || last) {
                    finished = 1;
                    break;
                }
            }
        }
        if (o->progress)
            fputc('\n', stderr);
        if (!rc && !finished) {
            /* end of the epoch: the next one starts at its first batch */
            pos->epoch = epoch + 1;
            pos->batch = 0;
            rc = train_save(t, o, pos);
            if (!rc && o->end_of_epoch)
                rc = o->end_of_epoch(t, epoch, pos, o->user);
        }
    }
    return rc;
}
