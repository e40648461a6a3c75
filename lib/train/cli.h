/* What the albef-* training programs share on their command lines and in
 * their set-up: the training options (schedule, batch, augmentation,
 * checkpoints, logs), and a session that loads the tokenizer and the
 * manifests, builds the back end, the trainer and the loader, starts the
 * weights (resume, --init or random) and runs train_run with signals
 * turned into a final checkpoint.
 *
 * A program lists its own long options, appends train_cli_longs, and hands
 * every option it does not know to train_cli_option. */
#ifndef ALBEF_TRAIN_CLI_H
#define ALBEF_TRAIN_CLI_H

#include "data/loader.h"
#include "io/manifest.h"
#include "text/tokenizer.h"
#include "train/runner.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>

typedef struct {
    const char *image_root, *vocab, *config, *out, *init, *resume, *log_path, *device, *precision;
    int epochs, batch, accum, workers, max_tokens, max_words, keep, quiet, alpha_warmup, teacher_dropout;
    int augment, crop, flip, image_res, warmup_epochs;
    int64_t steps, save_every, warmup_steps, queue_from, itc_only_steps, random_negatives_steps;
    double crop_min, lr, min_lr, warmup_lr, weight_decay, alpha, dropout, momentum;
    enum lr_schedule_kind schedule;
    uint64_t seed;
} train_cli;

/* Pretrain.yaml's values; fine-tuning programs change what their yaml changes. */
void train_cli_defaults(train_cli *o);

/* The shared long options (NULL-terminated) and how many there are. Their
 * codes start at TRAIN_CLI_FIRST; a program's own codes stay below it. */
enum { TRAIN_CLI_FIRST = 0x1000 };
extern const struct option train_cli_longs[];
int train_cli_count(void);

/* A program's own long options (n_own of them) followed by the shared ones
 * and the terminating entry, into longs (cap entries). */
void train_cli_merge_longs(const struct option *own, int n_own, struct option *longs, int cap);

/* For every getopt_long result a program does not handle itself: the
 * shared options, a missing value (':') and an unknown option ('?').
 * `text` is the option as written (argv[optind - 1]). 0 when handled, -1
 * with a usage message in err. */
int train_cli_other(train_cli *o, int code, const char *arg, const char *text, char *err, size_t cap);

/* Handles option `code` with `arg`: 1 when it was one of the shared options,
 * 0 when it was not, -1 on a bad value (usage message in err). */
int train_cli_option(train_cli *o, int code, const char *arg, char *err, size_t cap);

/* The checks that need every option (e.g. --resume without --init). */
int train_cli_check(const train_cli *o, char *err, size_t cap);

/* The shared part of --help, showing the defaults in `o`. */
void train_cli_usage(FILE *f, const train_cli *o);

typedef struct {
    albef_config cfg;
    bert_tokenizer *tok;
    manifest *m;
    backend *be;
    pretrainer t;
    int have_trainer;
    loader *ld;
    FILE *log;
    train_position pos;
    char resume_path[4096];
} train_session;

/* Everything up to the weights: configuration (the resumed checkpoint's,
 * --config, --init's, else default_config; --image-res overrides it), the
 * tokenizer, the manifests of `kind` (comma-separated paths), the output
 * folder, the log, the back end, the trainer for `task`, the loader with
 * transform `tp` (res and the crop/flip/augment options applied). */
int train_session_open(train_session *s, const train_cli *o, enum albef_task task, const char *train_files,
                       enum manifest_kind kind, transform_params tp, const char *default_config);

/* The weights: resumed (everything back), or --init's (online, momentum
 * and queues), else the seeded random initialisation. *fresh is 1 in the
 * last case, for programs that then load partial weights of their own and
 * call pretrainer_sync_momentum(). */
int train_session_start(train_session *s, const train_cli *o, int *fresh);

/* Runs train_run with SIGINT/SIGTERM turned into a checkpoint and a stop;
 * *stopped_by is the signal (0 when the run ended normally). */
int train_session_run(train_session *s, const train_cli *o,
                      int (*end_of_epoch)(pretrainer *, int, const train_position *, void *), void *user,
                      int *stopped_by);

void train_session_close(train_session *s);

#endif
