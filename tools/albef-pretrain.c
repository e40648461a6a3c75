/* albef-pretrain: ALBEF pre-training (ITC + ITM with hard negatives + MLM,
 * momentum distillation, feature queues) on image-caption manifests.
 * See albef-pretrain(1). */
#include "albef.h"
#include "core/args.h"
#include "core/file.h"
#include "data/loader.h"
#include "io/manifest.h"
#include "model/config.h"
#include "text/tokenizer.h"
#include "train/checkpoint.h"
#include "train/schedule.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROG "albef-pretrain"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

typedef struct {
    const char *config, *train, *image_root, *vocab, *out, *init, *init_bert, *init_vit, *resume, *log_path, *device;
    int epochs, batch, accum, workers, max_tokens, max_words, keep, quiet, alpha_warmup, teacher_dropout, augment;
    int crop, flip;
    int64_t queue_from, itc_only_steps;
    double crop_min;
    int64_t steps, save_every, warmup_steps;
    double lr, min_lr, warmup_lr, weight_decay, alpha, dropout, momentum;
    int warmup_epochs;
    enum lr_schedule_kind schedule;
    uint64_t seed;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: " PROG " --train FILE[,FILE...] --vocab VOCAB --out DIR [OPTION]...\n"
            "Pre-train ALBEF (ITC + ITM + MLM with momentum distillation) on image-caption\n"
            "manifests in ALBEF's format: [{\"image\": path, \"caption\": text or [texts]}].\n"
            "\n"
            "Data and model:\n"
            "  -t, --train FILES        pre-training manifests, comma-separated\n"
            "      --image-root DIR     folder that relative image paths are under\n"
            "      --vocab FILE         BERT vocabulary (vocab.txt)\n"
            "  -c, --config CFG         model configuration: albef-base, albef-base-384, tiny or a\n"
            "                           JSON file (default: the checkpoint's, else albef-base)\n"
            "  -o, --out DIR            checkpoints go here (created if needed)\n"
            "      --init CKPT          start from an ALBEF checkpoint's weights\n"
            "      --init-bert FILE     BERT weights (Hugging Face names, safetensors)\n"
            "      --init-vit FILE      DeiT weights (timm names, safetensors)\n"
            "      --resume DIR|CKPT    continue a run (DIR: its newest checkpoint)\n"
            "\n"
            "Training (defaults are Pretrain.yaml's):\n"
            "      --epochs N           epochs (default 30)\n"
            "      --steps N            stop after N optimizer steps\n"
            "  -b, --batch N            samples per micro-batch (default 64)\n"
            "      --accum N            micro-batches per optimizer step (default 1)\n"
            "      --lr X               peak learning rate (default 1e-4)\n"
            "      --min-lr X           final learning rate (default 1e-5)\n"
            "      --warmup-lr X        starting learning rate (default 1e-5)\n"
            "      --warmup-epochs N    ALBEF schedule: warm-up in steps of 100 iterations (default 20)\n"
            "      --schedule S         albef (default) or cosine (per-step warm-up and cosine)\n"
            "      --warmup-steps N     cosine schedule: linear warm-up steps (default 1000)\n"
            "      --weight-decay X     AdamW weight decay (default 0.02)\n"
            "      --alpha X            distillation weight (default: the configuration's, 0.4)\n"
            "      --no-alpha-warmup    no ramp of alpha over the first epoch\n"
            "      --momentum X         momentum-model update rate (default: the configuration's,\n"
            "                           0.995; lower it to train from scratch)\n"
            "      --dropout P          BERT dropout (default 0.1; 0 for parity runs)\n"
            "      --no-teacher-dropout evaluation mode for the momentum model\n"
            "      --crop-scale X       smallest RandomResizedCrop area fraction (default 0.2)\n"
            "      --no-crop            square resize of the whole image instead of RandomResizedCrop\n"
            "      --no-flip            no horizontal flip\n"
            "      --no-augment         no RandomAugment\n"
            "      --queue-from N       contrast against the batch alone before step N (default 0)\n"
            "      --itc-only-steps N   the first N steps train ITC alone (default 0)\n"
            "      --max-tokens N       text length with [CLS] (default 25)\n"
            "      --max-words N        pre_caption words (default 30)\n"
            "      --seed S             random seed (default 42)\n"
            "      --workers N          data loading threads (default 4)\n"
            "      --device D           cpu (default) or cuda\n"
            "\n"
            "Checkpoints and logs:\n"
            "      --save-every N       also save every N optimizer steps (default: each epoch)\n"
            "      --keep K             checkpoints to keep (default 3)\n"
            "      --log FILE           JSON lines per step to FILE (default: stdout)\n"
            "  -q, --quiet              no progress on stderr\n"
            "  -h, --help               show this help and exit\n"
            "  -V, --version            show the version and exit\n"
            "\n"
            "SIGINT or SIGTERM finish the current step, save a checkpoint and exit 130 / 143.\n"
            "Exit status: 0 on success, 1 on failure, 2 on a usage error. See " PROG "(1).\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry '" PROG " --help'.\n");
    return 2;
}

enum {
    OPT_IMAGE_ROOT = 256, OPT_VOCAB, OPT_INIT, OPT_INIT_BERT, OPT_INIT_VIT, OPT_RESUME, OPT_EPOCHS, OPT_STEPS,
    OPT_ACCUM, OPT_LR, OPT_MIN_LR, OPT_WARMUP_LR, OPT_WARMUP_EPOCHS, OPT_SCHEDULE, OPT_WARMUP_STEPS, OPT_WD,
    OPT_ALPHA, OPT_NO_ALPHA_WARMUP, OPT_DROPOUT, OPT_NO_TEACHER_DROPOUT, OPT_MAX_TOKENS, OPT_MAX_WORDS, OPT_SEED,
    OPT_WORKERS, OPT_DEVICE, OPT_SAVE_EVERY, OPT_KEEP, OPT_LOG, OPT_CROP_SCALE, OPT_NO_AUGMENT, OPT_MOMENTUM, OPT_NO_CROP, OPT_NO_FLIP, OPT_QUEUE_FROM,
    OPT_ITC_ONLY_STEPS
};

static int parse_options(int argc, char **argv, options *o)
{
    static const struct option longs[] = {
        {"train", required_argument, 0, 't'},
        {"image-root", required_argument, 0, OPT_IMAGE_ROOT},
        {"vocab", required_argument, 0, OPT_VOCAB},
        {"config", required_argument, 0, 'c'},
        {"out", required_argument, 0, 'o'},
        {"init", required_argument, 0, OPT_INIT},
        {"init-bert", required_argument, 0, OPT_INIT_BERT},
        {"init-vit", required_argument, 0, OPT_INIT_VIT},
        {"resume", required_argument, 0, OPT_RESUME},
        {"epochs", required_argument, 0, OPT_EPOCHS},
        {"steps", required_argument, 0, OPT_STEPS},
        {"batch", required_argument, 0, 'b'},
        {"accum", required_argument, 0, OPT_ACCUM},
        {"lr", required_argument, 0, OPT_LR},
        {"min-lr", required_argument, 0, OPT_MIN_LR},
        {"warmup-lr", required_argument, 0, OPT_WARMUP_LR},
        {"warmup-epochs", required_argument, 0, OPT_WARMUP_EPOCHS},
        {"schedule", required_argument, 0, OPT_SCHEDULE},
        {"warmup-steps", required_argument, 0, OPT_WARMUP_STEPS},
        {"weight-decay", required_argument, 0, OPT_WD},
        {"alpha", required_argument, 0, OPT_ALPHA},
        {"no-alpha-warmup", no_argument, 0, OPT_NO_ALPHA_WARMUP},
        {"momentum", required_argument, 0, OPT_MOMENTUM},
        {"dropout", required_argument, 0, OPT_DROPOUT},
        {"no-teacher-dropout", no_argument, 0, OPT_NO_TEACHER_DROPOUT},
        {"max-tokens", required_argument, 0, OPT_MAX_TOKENS},
        {"crop-scale", required_argument, 0, OPT_CROP_SCALE},
        {"no-augment", no_argument, 0, OPT_NO_AUGMENT},
        {"no-crop", no_argument, 0, OPT_NO_CROP},
        {"no-flip", no_argument, 0, OPT_NO_FLIP},
        {"queue-from", required_argument, 0, OPT_QUEUE_FROM},
        {"itc-only-steps", required_argument, 0, OPT_ITC_ONLY_STEPS},
        {"max-words", required_argument, 0, OPT_MAX_WORDS},
        {"seed", required_argument, 0, OPT_SEED},
        {"workers", required_argument, 0, OPT_WORKERS},
        {"device", required_argument, 0, OPT_DEVICE},
        {"save-every", required_argument, 0, OPT_SAVE_EVERY},
        {"keep", required_argument, 0, OPT_KEEP},
        {"log", required_argument, 0, OPT_LOG},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    *o = (options){
        .epochs = 30, .batch = 64, .accum = 1, .workers = 4, .max_tokens = 25, .max_words = 30, .keep = 3,
        .alpha_warmup = 1, .teacher_dropout = 1, .lr = 1e-4, .min_lr = 1e-5, .warmup_lr = 1e-5, .warmup_epochs = 20,
        .warmup_steps = 1000, .weight_decay = 0.02, .alpha = -1, .momentum = -1, .dropout = 0.1, .seed = 42, .device = "cpu",
        .schedule = LR_ALBEF, .augment = 1, .crop_min = 0.2, .crop = 1, .flip = 1,
    };
    int c;
    int64_t v;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":t:c:o:b:qhV", longs, NULL)) != -1) {
        switch (c) {
        case 't': o->train = optarg; break;
        case OPT_IMAGE_ROOT: o->image_root = optarg; break;
        case OPT_VOCAB: o->vocab = optarg; break;
        case 'c': o->config = optarg; break;
        case 'o': o->out = optarg; break;
        case OPT_INIT: o->init = optarg; break;
        case OPT_INIT_BERT: o->init_bert = optarg; break;
        case OPT_INIT_VIT: o->init_vit = optarg; break;
        case OPT_RESUME: o->resume = optarg; break;
        case OPT_LOG: o->log_path = optarg; break;
        case OPT_DEVICE: o->device = optarg; break;
        case 'q': o->quiet = 1; break;
        case OPT_NO_ALPHA_WARMUP: o->alpha_warmup = 0; break;
        case OPT_NO_TEACHER_DROPOUT: o->teacher_dropout = 0; break;
        case OPT_NO_AUGMENT: o->augment = 0; break;
        case OPT_NO_CROP: o->crop = 0; break;
        case OPT_NO_FLIP: o->flip = 0; break;
        case OPT_SCHEDULE:
            if (!strcmp(optarg, "albef"))
                o->schedule = LR_ALBEF;
            else if (!strcmp(optarg, "cosine"))
                o->schedule = LR_STEP_COSINE;
            else
                return usage_error("--schedule must be albef or cosine, not '%s'", optarg);
            break;
#define INT_OPT(code, field, lo, hi, what)                                                                         \
    case code:                                                                                                     \
        if (parse_int64_arg(optarg, lo, hi, &v))                                                                       \
            return usage_error(what " must be an integer in [" #lo ", " #hi "], not '%s'", optarg);                \
        o->field = v;                                                                                              \
        break;
            INT_OPT(OPT_EPOCHS, epochs, 1, 100000, "--epochs")
            INT_OPT(OPT_STEPS, steps, 1, 1000000000000, "--steps")
            INT_OPT('b', batch, 2, 100000, "--batch")
            INT_OPT(OPT_ACCUM, accum, 1, 100000, "--accum")
            INT_OPT(OPT_WARMUP_EPOCHS, warmup_epochs, 0, 1000000, "--warmup-epochs")
            INT_OPT(OPT_WARMUP_STEPS, warmup_steps, 0, 1000000000000, "--warmup-steps")
            INT_OPT(OPT_MAX_TOKENS, max_tokens, 2, 512, "--max-tokens")
            INT_OPT(OPT_MAX_WORDS, max_words, 1, 10000, "--max-words")
            INT_OPT(OPT_WORKERS, workers, 1, 256, "--workers")
            INT_OPT(OPT_SAVE_EVERY, save_every, 0, 1000000000000, "--save-every")
            INT_OPT(OPT_KEEP, keep, 1, 100000, "--keep")
            INT_OPT(OPT_QUEUE_FROM, queue_from, 0, 1000000000000, "--queue-from")
            INT_OPT(OPT_ITC_ONLY_STEPS, itc_only_steps, 0, 1000000000000, "--itc-only-steps")
#undef INT_OPT
        case OPT_SEED:
            if (parse_int64_arg(optarg, 0, INT64_MAX, &v))
                return usage_error("--seed must be a non-negative integer, not '%s'", optarg);
            o->seed = (uint64_t)v;
            break;
#define REAL_OPT(code, field, lo, hi, what)                                                                        \
    case code:                                                                                                     \
        if (parse_double_arg(optarg, lo, hi, &o->field))                                                               \
            return usage_error(what " must be a number in [" #lo ", " #hi "], not '%s'", optarg);                  \
        break;
            REAL_OPT(OPT_LR, lr, 0, 10, "--lr")
            REAL_OPT(OPT_MIN_LR, min_lr, 0, 10, "--min-lr")
            REAL_OPT(OPT_WARMUP_LR, warmup_lr, 0, 10, "--warmup-lr")
            REAL_OPT(OPT_WD, weight_decay, 0, 10, "--weight-decay")
            REAL_OPT(OPT_ALPHA, alpha, 0, 1, "--alpha")
            REAL_OPT(OPT_MOMENTUM, momentum, 0, 1, "--momentum")
            REAL_OPT(OPT_DROPOUT, dropout, 0, 0.9, "--dropout")
            REAL_OPT(OPT_CROP_SCALE, crop_min, 0.01, 1, "--crop-scale")
#undef REAL_OPT
        case 'h': usage(stdout); exit(0);
        case 'V': printf(PROG " %s\n", albef_version()); exit(0);
        case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->train)
        return usage_error("%s", "--train is required");
    if (!o->vocab)
        return usage_error("%s", "--vocab is required");
    if (!o->out)
        return usage_error("%s", "--out is required");
    if (o->init && (o->init_bert || o->init_vit))
        return usage_error("%s", "--init and --init-bert/--init-vit exclude each other");
    if (o->resume && (o->init || o->init_bert || o->init_vit))
        return usage_error("%s", "--resume continues a run; it takes no --init");
    return 0;
}

/* ---- checkpoint files in the output folder ---- */

static int checkpoint_step_of(const char *name, long long *step)
{
    return sscanf(name, "checkpoint_%lld.safetensors", step) == 1 && strstr(name, ".tmp.") == NULL;
}

/* The newest checkpoint in dir (or dir itself when it is a file). */
static int find_latest(const char *dir, char *out, size_t cap)
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

static int save(const pretrainer *t, const options *o, const train_position *pos)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint_%08lld.safetensors", o->out, (long long)pos->step);
    int rc = pretrain_checkpoint_save(t, path, pos);
    if (rc)
        return rc;
    albef_log(ALBEF_LOG_INFO, "saved %s (epoch %d, batch %lld, step %lld)", path, pos->epoch, (long long)pos->batch,
              (long long)pos->step);
    prune(o->out, o->keep);
    return ALBEF_OK;
}

/* ---- run ---- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int split_commas(char *s, const char **out, int cap)
{
    int n = 0;
    for (char *tok = strtok(s, ","); tok && n < cap; tok = strtok(NULL, ","))
        out[n++] = tok;
    return n;
}

static void progress(const options *o, int epoch, int64_t batch, int64_t per_epoch, const pretrain_stats *st,
                     double rate)
{
    if (o->quiet || !isatty(STDERR_FILENO))
        return;
    int width = 24, done = per_epoch ? (int)(width * (batch + 1) / per_epoch) : 0;
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < done ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\repoch %d [%s] %lld/%lld  itc %.3f itm %.3f mlm %.3f  %.1f img/s ", epoch, bar,
            (long long)batch + 1, (long long)per_epoch, st->loss_ita, st->loss_itm, st->loss_mlm, rate);
    fflush(stderr);
}

static int run(const options *o)
{
    int rc;
    char resume_path[4096] = "";
    albef_config cfg;
    /* the configuration: a checkpoint's, or the one named, or albef-base */
    if (o->resume) {
        rc = find_latest(o->resume, resume_path, sizeof resume_path);
        rc = rc ? rc : checkpoint_read_config(resume_path, &cfg);
    } else if (o->config) {
        rc = config_load(o->config, &cfg);
    } else if (o->init) {
        rc = checkpoint_read_config(o->init, &cfg);
    } else {
        rc = config_preset("albef-base", &cfg);
    }
    if (rc)
        return rc;
    if (o->alpha >= 0)
        cfg.alpha = (float)o->alpha;
    if (o->momentum >= 0)
        cfg.momentum = (float)o->momentum;

    bert_tokenizer *tok = NULL;
    manifest *m = NULL;
    backend *be = NULL;
    loader *ld = NULL;
    pretrainer t;
    int have_trainer = 0;
    FILE *log = stdout;
    char *train_list = strdup(o->train);
    const char *paths[256];
    int n_paths = train_list ? split_commas(train_list, paths, 256) : 0;

    rc = bert_tokenizer_load(o->vocab, &tok);
    if (!rc && bert_tokenizer_vocab_size(tok) > cfg.bert.vocab_size)
        rc = albef_error(ALBEF_ERR_INVALID, "%s: %d tokens, more than the model's vocab_size %d", o->vocab,
                         bert_tokenizer_vocab_size(tok), cfg.bert.vocab_size);
    rc = rc ? rc : manifest_load(&m, MANIFEST_PRETRAIN, paths, (size_t)n_paths);
    if (!rc && mkdir(o->out, 0755) != 0 && errno != EEXIST)
        rc = albef_error(ALBEF_ERR_IO, "%s: cannot create: %s", o->out, strerror(errno));
    if (!rc && o->log_path && !(log = fopen(o->log_path, "a")))
        rc = albef_error(ALBEF_ERR_IO, "%s: cannot open: %s", o->log_path, strerror(errno));
    rc = rc ? rc : backend_create(o->device, &be);
    if (rc)
        goto done;
    albef_log(ALBEF_LOG_INFO, "%zu image-caption items from %d manifest(s)", manifest_count(m), n_paths);

    pretrain_options po = pretrain_options_default(o->batch);
    po.max_len = o->max_tokens;
    po.seed = o->seed;
    po.hidden_dropout = po.attention_dropout = (float)o->dropout;
    po.teacher_dropout = o->teacher_dropout;
    po.weight_decay = (float)o->weight_decay;
    bert_special_ids sp = bert_tokenizer_special_ids(tok);
    rc = pretrainer_init(&t, &cfg, be, &po, sp.cls, sp.mask);
    if (rc)
        goto done;
    have_trainer = 1;
    {
        char *vocab_text = NULL;
        rc = file_read_all(o->vocab, &vocab_text, NULL);
        rc = rc ? rc : pretrainer_set_vocab(&t, vocab_text);
        free(vocab_text);
        if (rc)
            goto done;
    }
    size_t per_sample = pretrainer_bytes_per_sample(&cfg, o->max_tokens);
    albef_log(ALBEF_LOG_INFO, "model: %zu parameters (+ momentum copy); activations %.1f MiB per sample",
              t.online.params.numel, per_sample / 1048576.0);

    train_position pos = {0};
    if (o->resume) {
        rc = pretrain_checkpoint_resume(&t, resume_path, &pos);
        if (!rc)
            albef_log(ALBEF_LOG_INFO, "resuming %s at epoch %d, batch %lld, step %lld", resume_path, pos.epoch,
                      (long long)pos.batch, (long long)pos.step);
    } else if (o->init) {
        rc = pretrain_checkpoint_init(&t, o->init);
    } else {
        albef_model_init_weights(&t.online, o->seed);
        load_report rep;
        static const name_rule bert_rules[] = {
            {"bert.pooler.", NULL},         {"cls.seq_relationship.", NULL},
            {"bert.", "text_encoder.bert."}, {"cls.predictions.", "text_encoder.cls.predictions."},
            {"embeddings.", "text_encoder.bert.embeddings."}, {"encoder.", "text_encoder.bert.encoder."},
        };
        static const name_rule vit_rules[] = {
            {"head", NULL}, {"dist_token", NULL}, {"fc_norm.", NULL}, {"", "visual_encoder."},
        };
        if (!rc && o->init_bert) {
            rc = albef_model_load_renamed(&t.online, o->init_bert, bert_rules, 6, &rep);
            if (!rc)
                albef_log(ALBEF_LOG_INFO, "%s: %d tensors loaded into the text encoder (%d not used%s%s)", o->init_bert,
                          rep.loaded, rep.unexpected, rep.unexpected ? ": " : "", rep.unexpected_names);
        }
        if (!rc && o->init_vit) {
            rc = albef_model_load_renamed(&t.online, o->init_vit, vit_rules, 4, &rep);
            if (!rc)
                albef_log(ALBEF_LOG_INFO, "%s: %d tensors loaded into the image encoder (%d not used%s%s)", o->init_vit,
                          rep.loaded, rep.unexpected, rep.unexpected ? ": " : "", rep.unexpected_names);
        }
        pretrainer_sync_momentum(&t);
    }
    if (rc)
        goto done;

    loader_config lc = {
        .manifest = m, .image_root = o->image_root, .tokenizer = tok, .transform = transform_params_pretrain(),
        .batch = o->batch, .max_words = o->max_words, .max_tokens = o->max_tokens, .seed = o->seed,
        .workers = o->workers, .prefetch = 2 * o->workers,
    };
    lc.transform.res = cfg.image_res;
    lc.transform.scale_min = o->crop_min;
    lc.transform.augment = o->augment;
    lc.transform.random_crop = o->crop;
    lc.transform.flip_prob = o->flip ? lc.transform.flip_prob : 0.0;
    rc = loader_open(&lc, &ld);
    if (rc)
        goto done;
    int64_t per_epoch = loader_batches_per_epoch(ld);
    lr_schedule sched = {
        .kind = o->schedule, .lr = o->lr, .min_lr = o->min_lr, .warmup_lr = o->warmup_lr,
        .warmup_epochs = o->warmup_epochs, .epochs = o->epochs, .warmup_steps = o->warmup_steps,
        .total_steps = o->steps ? o->steps : (int64_t)o->epochs * (per_epoch / o->accum),
    };
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int finished = 0;
    for (int epoch = pos.epoch; epoch < o->epochs && !finished && !rc; epoch++) {
        int64_t first = epoch == pos.epoch ? pos.batch : 0;
        rc = loader_start_epoch(ld, epoch, first);
        double t0 = now(), wait0 = loader_get_stats(ld).wait_seconds;
        int64_t images = 0;
        pretrain_stats st = {0};
        for (int64_t i = first; !rc; i++) {
            loader_batch *b;
            rc = loader_next(ld, &b);
            if (rc || !b)
                break;
            float alpha = (float)alpha_at(cfg.alpha, o->alpha_warmup, epoch, i, per_epoch);
            pretrain_batch pb = {.images = b->images, .ids = b->ids, .mask = b->mask, .len = b->len, .alpha = alpha,
                                 .no_queue = pos.step < o->queue_from, .itc_only = pos.step < o->itc_only_steps};
            rc = pretrainer_accumulate(&t, &pb, 1.0f / (float)o->accum, &st);
            loader_release(ld, b);
            images += o->batch;
            if (rc || (i + 1) % o->accum)
                continue;
            int64_t it = i / o->accum; /* optimizer steps into the epoch */
            float lr = (float)lr_at(&sched, epoch, it, pos.step);
            rc = pretrainer_update(&t, lr, &st.grad_norm);
            if (rc)
                break;
            pos.step++;
            pos.epoch = epoch;
            pos.batch = i + 1;
            double dt = now() - t0, wait = loader_get_stats(ld).wait_seconds - wait0;
            fprintf(log,
                    "{\"step\":%lld,\"epoch\":%d,\"batch\":%lld,\"lr\":%.6g,\"alpha\":%.4f,\"temp\":%.6f,"
                    "\"loss_itc\":%.6f,\"loss_itm\":%.6f,\"loss_mlm\":%.6f,\"grad_norm\":%.6g,\"masked\":%d,"
                    "\"images_per_s\":%.2f,\"data_wait\":%.3f,\"skipped\":%lld}\n",
                    (long long)pos.step, epoch, (long long)pos.batch, lr, alpha, st.temp, st.loss_ita, st.loss_itm,
                    st.loss_mlm, st.grad_norm, st.masked_tokens, images / (dt > 0 ? dt : 1),
                    dt > 0 ? wait / dt : 0.0, (long long)loader_get_stats(ld).skipped);
            fflush(log);
            if (!isfinite(st.loss_ita + st.loss_itm + st.loss_mlm)) {
                rc = albef_error(ALBEF_ERR_INVALID, "step %lld: the loss is not finite (itc %g, itm %g, mlm %g)",
                                 (long long)pos.step, st.loss_ita, st.loss_itm, st.loss_mlm);
                break;
            }
            progress(o, epoch, i, per_epoch, &st, images / (dt > 0 ? dt : 1));
            int last = o->steps && pos.step >= o->steps;
            if (stop_signal || last || (o->save_every && pos.step % o->save_every == 0)) {
                rc = save(&t, o, &pos);
                if (stop_signal || last) {
                    finished = 1;
                    break;
                }
            }
        }
        if (!o->quiet && isatty(STDERR_FILENO))
            fputc('\n', stderr);
        if (!rc && !finished) {
            /* end of the epoch: the next one starts at its first batch */
            pos.epoch = epoch + 1;
            pos.batch = 0;
            rc = save(&t, o, &pos);
        }
    }
done:
    if (ld) {
        loader_stats ls = loader_get_stats(ld);
        if (ls.skipped)
            albef_log(ALBEF_LOG_WARN, "%lld images could not be read and were skipped", (long long)ls.skipped);
        loader_close(ld);
    }
    if (have_trainer)
        pretrainer_free(&t);
    if (log && log != stdout)
        fclose(log);
    backend_destroy(be);
    manifest_free(m);
    bert_tokenizer_free(tok);
    free(train_list);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc;
    if (o.quiet)
        albef_log_set_level(ALBEF_LOG_WARN);
    rc = run(&o);
    if (rc) {
        fprintf(stderr, PROG ": %s\n", albef_errmsg());
        return 1;
    }
    if (stop_signal) {
        fprintf(stderr, PROG ": stopped by signal %d after saving a checkpoint\n", (int)stop_signal);
        return 128 + (int)stop_signal;
    }
    return 0;
}
