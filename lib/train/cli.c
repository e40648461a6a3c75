/* The training programs' shared options and set-up (train/cli.h). */
#include "train/cli.h"

#include "core/args.h"
#include "core/error.h"
#include "core/file.h"
#include "core/log.h"
#include "model/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    O_IMAGE_ROOT = TRAIN_CLI_FIRST, O_VOCAB, O_INIT, O_RESUME, O_EPOCHS, O_STEPS, O_ACCUM, O_LR, O_MIN_LR,
    O_WARMUP_LR, O_WARMUP_EPOCHS, O_SCHEDULE, O_WARMUP_STEPS, O_WD, O_ALPHA, O_NO_ALPHA_WARMUP, O_MOMENTUM,
    O_DROPOUT, O_NO_TEACHER_DROPOUT, O_MAX_TOKENS, O_MAX_WORDS, O_CROP_SCALE, O_NO_AUGMENT, O_NO_CROP, O_NO_FLIP,
    O_QUEUE_FROM, O_ITC_ONLY_STEPS, O_RANDOM_NEGATIVES_STEPS, O_IMAGE_RES, O_SEED, O_WORKERS, O_DEVICE,
    O_PRECISION, O_SAVE_EVERY, O_KEEP, O_LOG,
};

const struct option train_cli_longs[] = {
    {"image-root", required_argument, 0, O_IMAGE_ROOT},
    {"vocab", required_argument, 0, O_VOCAB},
    {"config", required_argument, 0, 'c'},
    {"out", required_argument, 0, 'o'},
    {"init", required_argument, 0, O_INIT},
    {"resume", required_argument, 0, O_RESUME},
    {"epochs", required_argument, 0, O_EPOCHS},
    {"steps", required_argument, 0, O_STEPS},
    {"batch", required_argument, 0, 'b'},
    {"accum", required_argument, 0, O_ACCUM},
    {"lr", required_argument, 0, O_LR},
    {"min-lr", required_argument, 0, O_MIN_LR},
    {"warmup-lr", required_argument, 0, O_WARMUP_LR},
    {"warmup-epochs", required_argument, 0, O_WARMUP_EPOCHS},
    {"schedule", required_argument, 0, O_SCHEDULE},
    {"warmup-steps", required_argument, 0, O_WARMUP_STEPS},
    {"weight-decay", required_argument, 0, O_WD},
    {"alpha", required_argument, 0, O_ALPHA},
    {"no-alpha-warmup", no_argument, 0, O_NO_ALPHA_WARMUP},
    {"momentum", required_argument, 0, O_MOMENTUM},
    {"dropout", required_argument, 0, O_DROPOUT},
    {"no-teacher-dropout", no_argument, 0, O_NO_TEACHER_DROPOUT},
    {"max-tokens", required_argument, 0, O_MAX_TOKENS},
    {"max-words", required_argument, 0, O_MAX_WORDS},
    {"crop-scale", required_argument, 0, O_CROP_SCALE},
    {"no-augment", no_argument, 0, O_NO_AUGMENT},
    {"no-crop", no_argument, 0, O_NO_CROP},
    {"no-flip", no_argument, 0, O_NO_FLIP},
    {"queue-from", required_argument, 0, O_QUEUE_FROM},
    {"itc-only-steps", required_argument, 0, O_ITC_ONLY_STEPS},
    {"random-negatives-steps", required_argument, 0, O_RANDOM_NEGATIVES_STEPS},
    {"image-res", required_argument, 0, O_IMAGE_RES},
    {"seed", required_argument, 0, O_SEED},
    {"workers", required_argument, 0, O_WORKERS},
    {"device", required_argument, 0, O_DEVICE},
    {"precision", required_argument, 0, O_PRECISION},
    {"save-every", required_argument, 0, O_SAVE_EVERY},
    {"keep", required_argument, 0, O_KEEP},
    {"log", required_argument, 0, O_LOG},
    {"quiet", no_argument, 0, 'q'},
    {0, 0, 0, 0},
};

int train_cli_count(void) { return (int)(sizeof train_cli_longs / sizeof train_cli_longs[0]) - 1; }

void train_cli_merge_longs(const struct option *own, int n_own, struct option *longs, int cap)
{
    int n_tc = train_cli_count();
    if (n_own + n_tc + 1 > cap) {
        fprintf(stderr, "train_cli_merge_longs: %d options do not fit in %d\n", n_own + n_tc + 1, cap);
        abort();
    }
    memcpy(longs, own, sizeof(struct option) * (size_t)n_own);
    memcpy(longs + n_own, train_cli_longs, sizeof(struct option) * (size_t)(n_tc + 1));
}

int train_cli_other(train_cli *o, int code, const char *arg, const char *text, char *err, size_t cap)
{
    if (code == ':') {
        snprintf(err, cap, "option '%s' needs a value", text);
        return -1;
    }
    switch (code == '?' ? 0 : train_cli_option(o, code, arg, err, cap)) {
    case 1: return 0;
    case -1: return -1;
    default: snprintf(err, cap, "unknown option '%s'", text); return -1;
    }
}

void train_cli_defaults(train_cli *o)
{
    *o = (train_cli){
        .epochs = 30, .batch = 64, .accum = 1, .workers = 4, .max_tokens = 25, .max_words = 30, .keep = 3,
        .alpha_warmup = 1, .teacher_dropout = 1, .lr = 1e-4, .min_lr = 1e-5, .warmup_lr = 1e-5,
        .warmup_epochs = 20, .warmup_steps = 1000, .weight_decay = 0.02, .alpha = -1, .momentum = -1,
        .dropout = 0.1, .seed = 42, .device = "cpu", .precision = "fp32", .schedule = LR_ALBEF, .augment = 1, .crop_min = 0.2,
        .crop = 1, .flip = 1,
    };
}

static int bad(char *err, size_t cap, const char *what, const char *range, const char *arg)
{
    snprintf(err, cap, "%s must be %s, not '%s'", what, range, arg);
    return -1;
}

int train_cli_option(train_cli *o, int code, const char *arg, char *err, size_t cap)
{
    int64_t v;
    double d;
#define INT(field, lo, hi, what)                                                                                   \
    do {                                                                                                           \
        if (parse_int64_arg(arg, lo, hi, &v))                                                                      \
            return bad(err, cap, what, "an integer in [" #lo ", " #hi "]", arg);                                   \
        o->field = v;                                                                                              \
    } while (0)
#define REAL(field, lo, hi, what)                                                                                  \
    do {                                                                                                           \
        if (parse_double_arg(arg, lo, hi, &d))                                                                     \
            return bad(err, cap, what, "a number in [" #lo ", " #hi "]", arg);                                     \
        o->field = d;                                                                                              \
    } while (0)
    switch (code) {
    case O_IMAGE_ROOT: o->image_root = arg; break;
    case O_VOCAB: o->vocab = arg; break;
    case 'c': o->config = arg; break;
    case 'o': o->out = arg; break;
    case O_INIT: o->init = arg; break;
    case O_RESUME: o->resume = arg; break;
    case O_LOG: o->log_path = arg; break;
    case O_DEVICE: o->device = arg; break;
    case O_PRECISION:
        if (strcmp(arg, "fp32") && strcmp(arg, "tf32") && strcmp(arg, "bf16"))
            return bad(err, cap, "--precision", "fp32, tf32 or bf16", arg);
        o->precision = arg;
        break;
    case 'q': o->quiet = 1; break;
    case O_NO_ALPHA_WARMUP: o->alpha_warmup = 0; break;
    case O_NO_TEACHER_DROPOUT: o->teacher_dropout = 0; break;
    case O_NO_AUGMENT: o->augment = 0; break;
    case O_NO_CROP: o->crop = 0; break;
    case O_NO_FLIP: o->flip = 0; break;
    case O_SCHEDULE:
        if (!strcmp(arg, "albef"))
            o->schedule = LR_ALBEF;
        else if (!strcmp(arg, "cosine"))
            o->schedule = LR_STEP_COSINE;
        else
            return bad(err, cap, "--schedule", "albef or cosine", arg);
        break;
    case O_EPOCHS: INT(epochs, 1, 100000, "--epochs"); break;
    case O_STEPS: INT(steps, 1, 1000000000000, "--steps"); break;
    case 'b': INT(batch, 2, 100000, "--batch"); break;
    case O_ACCUM: INT(accum, 1, 100000, "--accum"); break;
    case O_WARMUP_EPOCHS: INT(warmup_epochs, 0, 1000000, "--warmup-epochs"); break;
    case O_WARMUP_STEPS: INT(warmup_steps, 0, 1000000000000, "--warmup-steps"); break;
    case O_MAX_TOKENS: INT(max_tokens, 2, 512, "--max-tokens"); break;
    case O_MAX_WORDS: INT(max_words, 1, 10000, "--max-words"); break;
    case O_WORKERS: INT(workers, 1, 256, "--workers"); break;
    case O_SAVE_EVERY: INT(save_every, 0, 1000000000000, "--save-every"); break;
    case O_KEEP: INT(keep, 1, 100000, "--keep"); break;
    case O_QUEUE_FROM: INT(queue_from, 0, 1000000000000, "--queue-from"); break;
    case O_ITC_ONLY_STEPS: INT(itc_only_steps, 0, 1000000000000, "--itc-only-steps"); break;
    case O_RANDOM_NEGATIVES_STEPS:
        INT(random_negatives_steps, 0, 1000000000000, "--random-negatives-steps");
        break;
    case O_IMAGE_RES: INT(image_res, 16, 4096, "--image-res"); break;
    case O_SEED:
        if (parse_int64_arg(arg, 0, INT64_MAX, &v))
            return bad(err, cap, "--seed", "a non-negative integer", arg);
        o->seed = (uint64_t)v;
        break;
    case O_LR: REAL(lr, 0, 10, "--lr"); break;
    case O_MIN_LR: REAL(min_lr, 0, 10, "--min-lr"); break;
    case O_WARMUP_LR: REAL(warmup_lr, 0, 10, "--warmup-lr"); break;
    case O_WD: REAL(weight_decay, 0, 10, "--weight-decay"); break;
    case O_ALPHA: REAL(alpha, 0, 1, "--alpha"); break;
    case O_MOMENTUM: REAL(momentum, 0, 1, "--momentum"); break;
    case O_DROPOUT: REAL(dropout, 0, 0.9, "--dropout"); break;
    case O_CROP_SCALE: REAL(crop_min, 0.01, 1, "--crop-scale"); break;
    default: return 0;
    }
#undef INT
#undef REAL
    return 1;
}

int train_cli_check(const train_cli *o, char *err, size_t cap)
{
    const char *msg = !o->vocab ? "--vocab is required"
                      : !o->out ? "--out is required"
                      : o->resume && o->init ? "--resume continues a run; it takes no --init"
                      : !strcmp(o->precision, "bf16") && strcmp(o->device, "cuda")
                          ? "--precision bf16 needs --device cuda (the CPU back end computes in fp32 only)"
                          : NULL;
    if (msg)
        snprintf(err, cap, "%s", msg);
    return msg ? -1 : 0;
}

void train_cli_usage(FILE *f, const train_cli *o)
{
    char res[64] = "the configuration's", alpha[64] = "the configuration's, 0.4",
         momentum[64] = "the configuration's, 0.995";
    if (o->alpha >= 0)
        snprintf(alpha, sizeof alpha, "%g", o->alpha);
    if (o->momentum >= 0)
        snprintf(momentum, sizeof momentum, "%g", o->momentum);
    if (o->image_res)
        snprintf(res, sizeof res, "%d", o->image_res);
    fprintf(f,
            "      --image-root DIR     folder that relative image paths are under\n"
            "      --vocab FILE         BERT vocabulary (vocab.txt)\n"
            "  -c, --config CFG         model configuration: albef-base, albef-base-384, tiny or a\n"
            "                           JSON file (default: the checkpoint's)\n"
            "      --image-res N        image resolution; position embeddings are interpolated\n"
            "                           (default: %s)\n"
            "  -o, --out DIR            checkpoints go here (created if needed)\n"
            "      --init CKPT          start from an ALBEF checkpoint's weights\n"
            "      --resume DIR|CKPT    continue a run (DIR: its newest checkpoint)\n"
            "\n"
            "Training:\n",
            res);
    fprintf(f,
            "      --epochs N           epochs (default %d)\n"
            "      --steps N            stop after N optimizer steps\n"
            "  -b, --batch N            samples per micro-batch (default %d)\n"
            "      --accum N            micro-batches per optimizer step (default 1)\n"
            "      --lr X               peak learning rate (default %g)\n"
            "      --min-lr X           final learning rate (default %g)\n"
            "      --warmup-lr X        starting learning rate (default %g)\n"
            "      --warmup-epochs N    ALBEF schedule: warm-up in steps of 100 iterations (default %d)\n"
            "      --schedule S         albef (default) or cosine (per-step warm-up and cosine)\n"
            "      --warmup-steps N     cosine schedule: linear warm-up steps (default %lld)\n"
            "      --weight-decay X     AdamW weight decay (default %g)\n"
            "      --alpha X            distillation weight (default: %s)\n"
            "      --no-alpha-warmup    no ramp of alpha over the first epoch\n"
            "      --momentum X         momentum-model update rate (default: %s;\n"
            "                           lower it to train from scratch)\n"
            "      --dropout P          BERT dropout (default %g; 0 for parity runs)\n"
            "      --no-teacher-dropout evaluation mode for the momentum model\n"
            "      --crop-scale X       smallest RandomResizedCrop area fraction (default %g)\n"
            "      --no-crop            square resize of the whole image instead of RandomResizedCrop\n"
            "      --no-flip            no horizontal flip\n"
            "      --no-augment         no RandomAugment\n"
            "      --queue-from N       contrast against the batch alone before step N (default 0)\n"
            "      --itc-only-steps N   the first N steps train ITC alone (default 0)\n"
            "      --random-negatives-steps N\n"
            "                           the first N steps draw ITM negatives uniformly from\n"
            "                           the batch's other images (default 0: ITC's hard ones)\n"
            "      --max-tokens N       text length with [CLS] (default %d)\n"
            "      --max-words N        pre_caption words (default %d)\n"
            "      --seed S             random seed (default %llu)\n"
            "      --workers N          data loading threads (default %d)\n"
            "      --device D           cpu (default) or cuda\n"
            "      --precision P        fp32 (default: the CPU's arithmetic), tf32 (cuda: matrix products\n"
            "                           on tensor cores) or bf16 (cuda: matrix products with bf16\n"
            "                           inputs, fp32 accumulation; activations only products read\n"
            "                           stored in bf16; the rest stays fp32)\n"
            "\n"
            "Checkpoints and logs:\n"
            "      --save-every N       also save every N optimizer steps (default: each epoch)\n"
            "      --keep K             checkpoints to keep (default %d)\n"
            "      --log FILE           JSON lines per step to FILE (default: stdout)\n"
            "  -q, --quiet              no progress on stderr\n",
            o->epochs, o->batch, o->lr, o->min_lr, o->warmup_lr, o->warmup_epochs, (long long)o->warmup_steps,
            o->weight_decay, alpha, momentum, o->dropout, o->crop_min, o->max_tokens, o->max_words, (unsigned long long)o->seed,
            o->workers, o->keep);
}

/* ---- the session ---- */

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

int train_session_open(train_session *s, const train_cli *o, enum albef_task task, const char *train_files,
                       enum manifest_kind kind, transform_params tp, const char *default_config)
{
    memset(s, 0, sizeof *s);
    s->log = stdout;
    int rc;
    if (o->resume) {
        rc = train_find_latest(o->resume, s->resume_path, sizeof s->resume_path);
        rc = rc ? rc : checkpoint_read_config(s->resume_path, &s->cfg);
    } else if (o->config) {
        rc = config_load(o->config, &s->cfg);
    } else if (o->init) {
        rc = checkpoint_read_config(o->init, &s->cfg);
    } else {
        rc = config_preset(default_config, &s->cfg);
    }
    if (rc)
        return rc;
    if (o->alpha >= 0)
        s->cfg.alpha = (float)o->alpha;
    if (o->momentum >= 0)
        s->cfg.momentum = (float)o->momentum;
    if (o->image_res && !o->resume) {
        if (o->image_res % s->cfg.patch_size)
            return albef_error(ALBEF_ERR_INVALID, "--image-res %d is not a multiple of the patch size %d",
                               o->image_res, s->cfg.patch_size);
        s->cfg.image_res = o->image_res;
    }

    char *list = strdup(train_files);
    const char *paths[256];
    int n = 0;
    if (!list)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    for (char *tok = strtok(list, ","); tok && n < 256; tok = strtok(NULL, ","))
        paths[n++] = tok;
    rc = bert_tokenizer_load(o->vocab, &s->tok);
    if (!rc && bert_tokenizer_vocab_size(s->tok) > s->cfg.bert.vocab_size)
        rc = albef_error(ALBEF_ERR_INVALID, "%s: %d tokens, more than the model's vocab_size %d", o->vocab,
                         bert_tokenizer_vocab_size(s->tok), s->cfg.bert.vocab_size);
    rc = rc ? rc : manifest_load(&s->m, kind, paths, (size_t)n);
    free(list);
    if (!rc && mkdir(o->out, 0755) != 0 && errno != EEXIST)
        rc = albef_error(ALBEF_ERR_IO, "%s: cannot create: %s", o->out, strerror(errno));
    if (!rc && o->log_path && !(s->log = fopen(o->log_path, "a")))
        rc = albef_error(ALBEF_ERR_IO, "%s: cannot open: %s", o->log_path, strerror(errno));
    rc = rc ? rc : backend_create(o->device, &s->be);
    rc = rc ? rc : backend_set_precision(s->be, o->precision);
    if (rc)
        return rc;
    albef_log(ALBEF_LOG_INFO, "%zu training items from %d manifest(s)", manifest_count(s->m), n);

    pretrain_options po = pretrain_options_default(o->batch);
    po.task = task;
    po.max_len = o->max_tokens;
    po.seed = o->seed;
    po.hidden_dropout = po.attention_dropout = (float)o->dropout;
    po.teacher_dropout = o->teacher_dropout;
    po.weight_decay = (float)o->weight_decay;
    bert_special_ids sp = bert_tokenizer_special_ids(s->tok);
    rc = pretrainer_init(&s->t, &s->cfg, s->be, &po, sp.cls, sp.mask);
    if (rc)
        return rc;
    s->have_trainer = 1;
    char *vocab_text = NULL;
    rc = file_read_all(o->vocab, &vocab_text, NULL);
    rc = rc ? rc : pretrainer_set_vocab(&s->t, vocab_text);
    free(vocab_text);
    if (rc)
        return rc;
    albef_log(ALBEF_LOG_INFO, "model: %zu parameters (+ momentum copy), %d px; activations %.1f MiB per sample",
              s->t.online.params.numel, s->cfg.image_res,
              pretrainer_bytes_per_sample(s->t.be, &s->cfg, o->max_tokens) / 1048576.0);

    loader_config lc = {
        .manifest = s->m, .image_root = o->image_root, .tokenizer = s->tok, .transform = tp, .batch = o->batch,
        .max_words = o->max_words, .max_tokens = o->max_tokens, .seed = o->seed, .workers = o->workers,
        .prefetch = 2 * o->workers,
    };
    lc.transform.res = s->cfg.image_res;
    lc.transform.scale_min = o->crop_min;
    lc.transform.augment = o->augment && tp.augment;
    lc.transform.random_crop = o->crop && tp.random_crop;
    lc.transform.flip_prob = o->flip ? tp.flip_prob : 0.0;
    return loader_open(&lc, &s->ld);
}

int train_session_start(train_session *s, const train_cli *o, int *fresh)
{
    *fresh = 0;
    int rc = ALBEF_OK;
    if (o->resume) {
        rc = pretrain_checkpoint_resume(&s->t, s->resume_path, &s->pos);
        if (!rc)
            albef_log(ALBEF_LOG_INFO, "resuming %s at epoch %d, batch %lld, step %lld", s->resume_path,
                      s->pos.epoch, (long long)s->pos.batch, (long long)s->pos.step);
    } else if (o->init) {
        rc = pretrain_checkpoint_init(&s->t, o->init);
    } else {
        albef_model_init_weights(&s->t.online, o->seed);
        pretrainer_sync_momentum(&s->t);
        *fresh = 1;
    }
    return rc;
}

int train_session_run(train_session *s, const train_cli *o,
                      int (*end_of_epoch)(pretrainer *, int, const train_position *, void *), void *user,
                      int *stopped_by)
{
    train_run_options ro = {
        .out_dir = o->out, .keep = o->keep, .save_every = o->save_every, .epochs = o->epochs, .steps = o->steps,
        .accum = o->accum, .alpha = s->cfg.alpha, .alpha_warmup = o->alpha_warmup, .queue_from = o->queue_from,
        .itc_only_steps = o->itc_only_steps, .random_negatives_steps = o->random_negatives_steps,
        .log = s->log, .progress = !o->quiet && isatty(STDERR_FILENO),
        .stop = &stop_signal, .end_of_epoch = end_of_epoch, .user = user,
        .sched = {.kind = o->schedule, .lr = o->lr, .min_lr = o->min_lr, .warmup_lr = o->warmup_lr,
                  .warmup_epochs = o->warmup_epochs, .epochs = o->epochs, .warmup_steps = o->warmup_steps},
    };
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    stop_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int rc = train_run(&s->t, s->ld, &ro, &s->pos);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    *stopped_by = (int)stop_signal;
    return rc;
}

void train_session_close(train_session *s)
{
    if (s->ld) {
        loader_stats ls = loader_get_stats(s->ld);
        if (ls.skipped)
            albef_log(ALBEF_LOG_WARN, "%lld images could not be read and were skipped", (long long)ls.skipped);
        loader_close(s->ld);
    }
    if (s->have_trainer)
        pretrainer_free(&s->t);
    if (s->log && s->log != stdout)
        fclose(s->log);
    backend_destroy(s->be);
    manifest_free(s->m);
    bert_tokenizer_free(s->tok);
    memset(s, 0, sizeof *s);
}
