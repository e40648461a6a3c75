/* Pre-training speed on the CPU back end (fp32, OpenBLAS + OpenMP) beside
 * PyTorch, and whether the data loader keeps up. One table:
 *   a full pre-training step (pretrainer_step: forward + backward + momentum
 *   update + enqueue + AdamW) in samples/s, for the tiny preset (64 px,
 *   queue 256, batch 32) and albef-base (256 px, queue 65,536, batch 2), L = 25,
 *   ours beside the PyTorch reference's step (scripts/dev/bench_pretrain_torch.py,
 *   which runs scripts/reference/pretrain_step_ref.py's step at the same
 *   configuration, batch and thread count), with the ratio;
 *   the data loader's images/s (pre-training transform: RandomResizedCrop,
 *   flip, RandomAugment, normalise; decoding included) with 1 and 2 workers,
 *   on a synthetic set at 64 px (written to a temporary folder) and on the
 *   photos of ../shared/data/real-images at 256 px (a manifest repeating
 *   them), each beside the images/s our step of the matching preset demands
 *   (batch x steps/s);
 *   the peak RSS of the albef-base step, ours and PyTorch's.
 * Both sides run with dropout 0 (the reference has none), random weights,
 * N(0, 1) images as if normalised, and ids [CLS] + words without padding; each
 * draws its own masking and hard negatives. The PyTorch side is a child
 * process driven line by line: each step row is warmed up once on both
 * sides, then their steps alternate (never overlap) until each has run
 * --min-iters times and --min-time seconds, so that both see the same load
 * on a shared machine. The table shows the best time (noise only ever slows
 * a step down); the medians go to stderr.
 *
 *   bench_pretrain [--quick] [--no-torch] [--rows LIST] [--base-batch N] ...
 *
 * Run from the repository root (the PyTorch script and the shared data are
 * found relative to it). Without /usr/bin/python3 and torch the PyTorch
 * columns read n/a. */
#include "core/error.h"
#include "core/file.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/threads.h"
#include "data/loader.h"
#include "data/synth.h"
#include "io/manifest.h"
#include "model/config.h"
#include "text/tokenizer.h"
#include "train/pretrain.h"
#include "row_list.h"
#include "torch_side.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define TORCH_SCRIPT "scripts/dev/bench_pretrain_torch.py"
#define BERT_VOCAB_SIZE 30522
#define LEARNING_RATE 1e-4f
#define SEED 42

/* ---- options -------------------------------------------------------------- */

enum row_id { ROW_TINY, ROW_BASE, ROW_SYNTH, ROW_PHOTOS, ROW_COUNT };

static const char *const row_names[ROW_COUNT] = {"tiny", "base", "synth", "photos"};

typedef struct {
    int tiny_batch, base_batch, len;
    run_budget budget; /* of each side of a step row */
    double loader_time;
    int synth_images, photo_repeats;
    int run[ROW_COUNT];
    int torch;
    const char *python, *shared_data;
} bench_options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_pretrain [options]\n"
            "  --quick              one timed step per side, shorter loader runs (4 to 5 minutes on 2 cores)\n"
            "  --rows LIST          comma-separated subset of tiny,base,synth,photos\n"
            "  --tiny-batch N       samples per tiny step (default 32)\n"
            "  --base-batch N       samples per albef-base step (default 2)\n"
            "  --len N              text length L, [CLS] included (default 25)\n"
            "  --min-iters N        timed steps per side at least (default 2)\n"
            "  --min-time S         seconds of steps per side at least (default 2)\n"
            "  --loader-time S      seconds per loader row at least, whole epochs (default 3)\n"
            "  --synth-images N     images of the synthetic set (default 512)\n"
            "  --photo-repeats N    times the 7 photos are listed in their manifest (default 8)\n"
            "  --shared-data DIR    the shared data folder (default $ALBEF_SHARED_DATA or ../shared/data)\n"
            "  --no-torch           leave the PyTorch columns out\n"
            "  --python PATH        interpreter for %s (default /usr/bin/python3)\n",
            TORCH_SCRIPT);
}

static int parse_int(const char *flag, const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "bench_pretrain: --%s: expected an integer in [%d, %d], got '%s'\n", flag, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_seconds(const char *flag, const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !(*out >= 0 && *out <= 600)) {
        fprintf(stderr, "bench_pretrain: --%s: expected seconds in [0, 600], got '%s'\n", flag, s);
        return -1;
    }
    return 0;
}

/* Returns 0, 1 (--help printed) or -1 (usage error). */
static int parse_options(int argc, char **argv, bench_options *o)
{
    const char *shared = getenv("ALBEF_SHARED_DATA");
    *o = (bench_options){
        .tiny_batch = 32,
        .base_batch = 2,
        .len = 25,
        .budget = {.min_iters = 2, .max_iters = 20, .min_time = 2.0},
        .loader_time = 3.0,
        .synth_images = 512,
        .photo_repeats = 8,
        .run = {1, 1, 1, 1},
        .torch = 1,
        .python = "/usr/bin/python3",
        .shared_data = shared && *shared ? shared : "../shared/data",
    };
    enum { O_ROWS = 256, O_TINY, O_BASE, O_LEN, O_ITERS, O_TIME, O_LTIME, O_SYNTH, O_REPEATS, O_SHARED, O_PYTHON };
    static const struct option longopts[] = {
        {"quick", no_argument, NULL, 'q'},
        {"no-torch", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {"rows", required_argument, NULL, O_ROWS},
        {"tiny-batch", required_argument, NULL, O_TINY},
        {"base-batch", required_argument, NULL, O_BASE},
        {"len", required_argument, NULL, O_LEN},
        {"min-iters", required_argument, NULL, O_ITERS},
        {"min-time", required_argument, NULL, O_TIME},
        {"loader-time", required_argument, NULL, O_LTIME},
        {"synth-images", required_argument, NULL, O_SYNTH},
        {"photo-repeats", required_argument, NULL, O_REPEATS},
        {"shared-data", required_argument, NULL, O_SHARED},
        {"python", required_argument, NULL, O_PYTHON},
        {NULL, 0, NULL, 0},
    };
    /* explicit flags win over --quick wherever they appear */
    int quick = 0, explicit_iters = 0, explicit_time = 0, explicit_ltime = 0, explicit_synth = 0,
        explicit_repeats = 0;
    int c, rc = 0, li = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, &li)) != -1 && !rc) {
        const char *flag = longopts[li].name;
        switch (c) {
        case 'q': quick = 1; break;
        case 'n': o->torch = 0; break;
        case 'h': usage(stdout); return 1;
        case O_ROWS: rc = row_list_parse("bench_pretrain", optarg, row_names, ROW_COUNT, o->run); break;
        case O_TINY: rc = parse_int(flag, optarg, 2, 4096, &o->tiny_batch); break;
        case O_BASE: rc = parse_int(flag, optarg, 2, 4096, &o->base_batch); break;
        case O_LEN: rc = parse_int(flag, optarg, 2, 512, &o->len); break;
        case O_ITERS: rc = parse_int(flag, optarg, 1, 4096, &o->budget.min_iters), explicit_iters = 1; break;
        case O_TIME: rc = parse_seconds(flag, optarg, &o->budget.min_time), explicit_time = 1; break;
        case O_LTIME: rc = parse_seconds(flag, optarg, &o->loader_time), explicit_ltime = 1; break;
        case O_SYNTH: rc = parse_int(flag, optarg, 1, 100000, &o->synth_images), explicit_synth = 1; break;
        case O_REPEATS: rc = parse_int(flag, optarg, 1, 10000, &o->photo_repeats), explicit_repeats = 1; break;
        case O_SHARED: o->shared_data = optarg; break;
        case O_PYTHON: o->python = optarg; break;
        default:
            fprintf(stderr, "bench_pretrain: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            rc = -1;
        }
    }
    if (!rc && optind < argc) {
        fprintf(stderr, "bench_pretrain: unexpected argument '%s'\n", argv[optind]);
        rc = -1;
    }
    if (!rc && quick) {
        if (!explicit_iters)
            o->budget.min_iters = 1;
        if (!explicit_time)
            o->budget.min_time = 0.5;
        if (!explicit_ltime)
            o->loader_time = 1.0;
        if (!explicit_synth)
            o->synth_images = 256;
        if (!explicit_repeats)
            o->photo_repeats = 4;
    }
    return rc;
}

/* ---- the temporary folder ------------------------------------------------------ */

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    return remove(path) != 0 ? -1 : 0;
}

static void remove_tree(const char *dir)
{
    if (dir[0] && nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "bench_pretrain: could not remove all of %s: %s\n", dir, strerror(errno));
}

static int make_temp_dir(char *dir, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, cap, "%s/bench_pretrain.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        int rc = albef_error(ALBEF_ERR_IO, "%s: cannot create a temporary folder: %s", dir, strerror(errno));
        dir[0] = '\0';
        return rc;
    }
    return ALBEF_OK;
}

/* Writes a preset's configuration where the PyTorch side reads it, so that
 * both sides build exactly the same model. */
static int write_config(const albef_config *cfg, const char *path)
{
    char *json = config_to_json(cfg);
    if (!json)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for the configuration", path);
    int rc = file_write_all_atomic(path, json, strlen(json));
    free(json);
    return rc;
}

/* ---- the PyTorch side: scripts/dev/bench_pretrain_torch.py --serve ------------ */

static void start_torch(torch_side *t, const bench_options *o, int threads, const char *tiny_cfg,
                        const char *base_cfg)
{
    torch_init(t, "bench_pretrain", TORCH_SCRIPT);
    if (!o->torch) {
        snprintf(t->note, sizeof t->note, "--no-torch");
        return;
    }
    if (!o->run[ROW_TINY] && !o->run[ROW_BASE])
        return;
    char args[4][32];
    const int nums[4] = {threads, o->tiny_batch, o->base_batch, o->len};
    for (int i = 0; i < 4; i++)
        snprintf(args[i], sizeof args[i], "%d", nums[i]);
    char *argv[] = {(char *)o->python, TORCH_SCRIPT, "--serve", "--threads", args[0], "--tiny-batch", args[1],
                    "--base-batch", args[2], "--len", args[3], "--tiny-config", (char *)tiny_cfg,
                    "--base-config", (char *)base_cfg, NULL};
    torch_start(t, argv);
}

/* ---- the step rows -------------------------------------------------------------- */

typedef struct {
    row_result ours[ROW_COUNT], torch[ROW_COUNT];
    long our_rss_kb, torch_rss_kb; /* after the albef-base row */
    double loader_rate[ROW_COUNT][2]; /* images/s with 1 and 2 workers */
    int64_t loader_skipped[ROW_COUNT][2];
    int loader_ok[ROW_COUNT][2];
    double step_arena_mib[ROW_COUNT];
    float alpha;
} results;

/* The special ids of the vocabulary the model is built for: bert-base-uncased,
 * or the synthetic one ([PAD] [UNK] [CLS] [SEP] [MASK] first). The PyTorch
 * script uses the same (make_goldens.special_ids). */
typedef struct {
    int cls, mask, first_word;
} special_ids;

static special_ids ids_for_vocab(int vocab)
{
    return vocab >= BERT_VOCAB_SIZE ? (special_ids){101, 103, 1000} : (special_ids){2, 4, 5};
}

typedef struct {
    pretrainer *t;
    const pretrain_batch *b;
} step_pass_ctx;

static int step_pass(void *p)
{
    step_pass_ctx *c = p;
    return pretrainer_step(c->t, c->b, LEARNING_RATE, NULL);
}

/* One step row: a trainer at (cfg, batch, len), its inputs, one warm-up
 * step on each side, then alternating steps until each side has enough. */
static int time_step_row(const bench_options *o, enum row_id row, const albef_config *cfg, int batch, torch_side *ts,
                         results *res)
{
    const char *name = row_names[row];
    if (cfg->queue_size % batch)
        return albef_error(ALBEF_ERR_INVALID, "%s: queue_size %d is not a multiple of the batch %d", name,
                           cfg->queue_size, batch);
    int L = o->len;
    if (L > cfg->bert.max_position_embeddings)
        return albef_error(ALBEF_ERR_INVALID, "%s: --len %d exceeds max_position_embeddings %d", name, L,
                           cfg->bert.max_position_embeddings);
    special_ids sp = ids_for_vocab(cfg->bert.vocab_size);
    pretrain_options po = pretrain_options_default(batch);
    po.max_len = L;
    po.seed = SEED;
    /* the reference has no dropout */
    po.hidden_dropout = po.attention_dropout = 0;
    po.teacher_dropout = 0;
    pretrainer t;
    double t0 = now();
    int rc = pretrainer_init(&t, cfg, backend_cpu(), &po, sp.cls, sp.mask);
    if (rc)
        return albef_error_context(rc, "%s: ", name);
    albef_model_init_weights(&t.online, SEED);
    pretrainer_sync_momentum(&t);
    size_t R = (size_t)cfg->image_res, n_px = (size_t)batch * 3 * R * R, n_ids = (size_t)batch * (size_t)L;
    float *images = malloc(sizeof(float) * n_px);
    int32_t *ids = malloc(sizeof(int32_t) * n_ids), *mask = malloc(sizeof(int32_t) * n_ids);
    if (!images || !ids || !mask) {
        rc = albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for a batch of %d", name, batch);
        goto done;
    }
    rng_state rng;
    rng_seed(&rng, SEED + 1);
    for (size_t i = 0; i < n_px; i++)
        images[i] = (float)rng_normal(&rng);
    /* the ids of bench_model (and of the PyTorch script): [CLS], then words */
    int V = cfg->bert.vocab_size;
    for (int b = 0; b < batch; b++)
        for (int k = 0; k < L; k++) {
            ids[b * L + k] = k == 0 ? sp.cls
                                    : sp.first_word + (int32_t)(((int64_t)b * 7919 + (int64_t)k * 104729) %
                                                                (V - sp.first_word));
            mask[b * L + k] = 1;
        }
    res->step_arena_mib[row] = (double)(t.ar_bytes + t.scratch_bytes) / 1048576.0;
    fprintf(stderr,
            "bench_pretrain: %s: %zu parameters (+ momentum copy), activations %.1f MiB, built in %.1f s\n", name,
            t.online.params.numel, res->step_arena_mib[row], now() - t0);

    pretrain_batch pb = {.images = images, .ids = ids, .mask = mask, .len = L, .alpha = cfg->alpha};
    step_pass_ctx pass = {&t, &pb};
    rc = torch_race(ts, name, batch, &o->budget, step_pass, &pass, &res->ours[row], &res->torch[row]);
    if (rc) {
        rc = albef_error_context(rc, "%s step: ", name);
        goto done;
    }
    const row_result *a = &res->ours[row], *b = &res->torch[row];
    fprintf(stderr, "bench_pretrain: %-6s ours    best %.3f s, median %.3f s over %d steps\n", name, a->best,
            a->median, a->iters);
    if (b->ok)
        fprintf(stderr, "bench_pretrain: %-6s PyTorch best %.3f s, median %.3f s over %d steps\n", name, b->best,
                b->median, b->iters);
    if (row == ROW_BASE) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        res->our_rss_kb = ru.ru_maxrss;
        res->torch_rss_kb = ts->up ? ts->rss_kb : 0;
    }
done:
    free(images), free(ids), free(mask);
    pretrainer_free(&t);
    return rc;
}

/* ---- the loader rows -------------------------------------------------------------- */

/* Whole epochs until `min_time` has passed; images/s from loader_start_epoch
 * of the first to the end of the last, worker start-up excluded. */
static int time_loader(const loader_config *base, int workers, double min_time, double *rate, int64_t *skipped)
{
    loader_config c = *base;
    c.workers = workers;
    c.prefetch = 2 * workers;
    loader *l;
    int rc = loader_open(&c, &l);
    if (rc)
        return rc;
    int64_t images = 0;
    double t0 = now();
    for (int epoch = 0; !rc && (epoch == 0 || now() - t0 < min_time); epoch++) {
        rc = loader_start_epoch(l, epoch, 0);
        for (loader_batch *b; !rc;) {
            rc = loader_next(l, &b);
            if (rc || !b)
                break;
            images += b->batch;
            loader_release(l, b);
        }
    }
    double dt = now() - t0;
    *rate = dt > 0 ? (double)images / dt : 0;
    *skipped = loader_get_stats(l).skipped;
    loader_close(l);
    return rc;
}

static int time_loader_row(const bench_options *o, enum row_id row, const manifest *m, const char *image_root,
                           const bert_tokenizer *tok, int res_px, int batch, results *res)
{
    loader_config c = {
        .manifest = m,
        .image_root = image_root,
        .tokenizer = tok,
        .transform = transform_params_pretrain(),
        .batch = batch,
        .max_words = 30,
        .max_tokens = o->len,
        .seed = SEED,
    };
    c.transform.res = res_px;
    for (int w = 1; w <= 2; w++) {
        int rc = time_loader(&c, w, o->loader_time, &res->loader_rate[row][w - 1], &res->loader_skipped[row][w - 1]);
        if (rc)
            return albef_error_context(rc, "%s loader, %d worker%s: ", row_names[row], w, w > 1 ? "s" : "");
        res->loader_ok[row][w - 1] = 1;
        fprintf(stderr, "bench_pretrain: %-6s loader, %d worker%s: %.1f images/s\n", row_names[row], w,
                w > 1 ? "s" : " ", res->loader_rate[row][w - 1]);
    }
    return ALBEF_OK;
}

static int synth_loader_row(const bench_options *o, const char *tmp, const albef_config *tiny, results *res)
{
    char dir[1100], manifest_path[1200], vocab_path[1200];
    snprintf(dir, sizeof dir, "%s/synth", tmp);
    synth_params p;
    synth_params_default(&p);
    p.out_dir = dir;
    p.n_train = o->synth_images, p.n_val = 0, p.n_test = 0;
    p.image_size = tiny->image_res;
    synth_summary sum;
    double t0 = now();
    int rc = synth_write_dataset(&p, &sum);
    if (rc)
        return albef_error_context(rc, "synthetic set: ");
    fprintf(stderr, "bench_pretrain: synthetic set: %d images of %d px written in %.1f s\n", p.n_train,
            p.image_size, now() - t0);
    snprintf(manifest_path, sizeof manifest_path, "%s/pretrain.json", dir);
    snprintf(vocab_path, sizeof vocab_path, "%s/vocab.txt", dir);
    const char *paths[1] = {manifest_path};
    manifest *m = NULL;
    bert_tokenizer *tok = NULL;
    rc = manifest_load(&m, MANIFEST_PRETRAIN, paths, 1);
    rc = rc ? rc : bert_tokenizer_load(vocab_path, &tok);
    rc = rc ? rc : time_loader_row(o, ROW_SYNTH, m, NULL, tok, tiny->image_res, o->tiny_batch, res);
    manifest_free(m);
    bert_tokenizer_free(tok);
    return rc;
}

/* A pre-training manifest listing the shared photos (their captions.json
 * items) `repeats` times. */
static int write_photo_manifest(const char *captions_path, int repeats, const char *out_path)
{
    char *text = NULL;
    int rc = file_read_all(captions_path, &text, NULL);
    if (rc)
        return rc;
    cJSON *items = cJSON_Parse(text), *out = cJSON_CreateArray();
    free(text);
    if (!cJSON_IsArray(items) || cJSON_GetArraySize(items) == 0) {
        cJSON_Delete(items), cJSON_Delete(out);
        return albef_error(ALBEF_ERR_INVALID, "%s: expected a non-empty JSON array of {image, caption}",
                           captions_path);
    }
    for (int r = 0; r < repeats; r++) {
        const cJSON *it;
        cJSON_ArrayForEach(it, items) cJSON_AddItemToArray(out, cJSON_Duplicate(it, 1));
    }
    char *json = cJSON_PrintUnformatted(out);
    rc = json ? file_write_all_atomic(out_path, json, strlen(json))
              : albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", out_path);
    free(json);
    cJSON_Delete(items), cJSON_Delete(out);
    return rc;
}

static int photos_loader_row(const bench_options *o, const char *tmp, const albef_config *base, results *res)
{
    char root[1100], captions[1200], vocab[1200], manifest_path[1100];
    snprintf(root, sizeof root, "%s/real-images", o->shared_data);
    snprintf(captions, sizeof captions, "%s/captions.json", root);
    snprintf(vocab, sizeof vocab, "%s/bert-base-uncased-vocab.txt", o->shared_data);
    snprintf(manifest_path, sizeof manifest_path, "%s/photos.json", tmp);
    int rc = write_photo_manifest(captions, o->photo_repeats, manifest_path);
    const char *paths[1] = {manifest_path};
    manifest *m = NULL;
    bert_tokenizer *tok = NULL;
    rc = rc ? rc : manifest_load(&m, MANIFEST_PRETRAIN, paths, 1);
    rc = rc ? rc : bert_tokenizer_load(vocab, &tok);
    rc = rc ? rc : time_loader_row(o, ROW_PHOTOS, m, root, tok, base->image_res, o->base_batch, res);
    manifest_free(m);
    bert_tokenizer_free(tok);
    return rc;
}

static int run_rows(const bench_options *o, torch_side *ts, int threads, results *res)
{
    albef_config tiny, base;
    char tmp[1024] = "", tiny_path[1100], base_path[1100];
    int rc = config_preset("tiny", &tiny);
    rc = rc ? rc : config_preset("albef-base", &base);
    res->alpha = base.alpha;
    rc = rc ? rc : make_temp_dir(tmp, sizeof tmp);
    snprintf(tiny_path, sizeof tiny_path, "%s/tiny.json", tmp);
    snprintf(base_path, sizeof base_path, "%s/albef-base.json", tmp);
    rc = rc ? rc : write_config(&tiny, tiny_path);
    rc = rc ? rc : write_config(&base, base_path);
    if (!rc)
        start_torch(ts, o, threads, tiny_path, base_path);
    if (!rc && o->run[ROW_TINY])
        rc = time_step_row(o, ROW_TINY, &tiny, o->tiny_batch, ts, res);
    if (!rc && o->run[ROW_BASE])
        rc = time_step_row(o, ROW_BASE, &base, o->base_batch, ts, res);
    torch_stop(ts);
    if (!rc && o->run[ROW_SYNTH])
        rc = synth_loader_row(o, tmp, &tiny, res);
    if (!rc && o->run[ROW_PHOTOS])
        rc = photos_loader_row(o, tmp, &base, res);
    remove_tree(tmp);
    return rc;
}

/* ---- the table ------------------------------------------------------------------- */

/* Rates of 100 and more as whole numbers, smaller ones to 3 digits. */
static void format_number(char *buf, size_t cap, double v)
{
    snprintf(buf, cap, fabs(v) >= 100 ? "%.0f" : "%.3g", v);
}

static void print_row(const char *what, const char *batch, const char *unit, double ours, double beside,
                      int beside_ok, const char *beside_is)
{
    char a[32], b[32] = "n/a", ratio[32] = "n/a";
    format_number(a, sizeof a, ours);
    if (beside_ok) {
        format_number(b, sizeof b, beside);
        format_number(ratio, sizeof ratio, ours / beside);
    }
    printf("%-46s %5s  %-9s %9s %9s %7s  %s\n", what, batch, unit, a, b, ratio, beside_is);
}

static void print_table(const bench_options *o, const results *res, const torch_side *t, int threads,
                        int blas_threads, const double load_start[3], const double load_end[3])
{
    char torch_desc[400];
    torch_describe(t, torch_desc, sizeof torch_desc);
    const char *wait = getenv("OMP_WAIT_POLICY");
    printf("ALBEF pre-training, fp32 CPU back end, N = %d threads (OpenMP %d, OpenBLAS %d%s%s); %s; loader workers "
           "1 and 2, timed alone; load average %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end\n",
           threads, threads, blas_threads, wait ? ", OMP_WAIT_POLICY=" : "", wait ? wait : "", torch_desc,
           load_start[0], load_start[1], load_start[2], load_end[0], load_end[1], load_end[2]);
    printf("steps: random weights, dropout 0 on both sides, alpha %.2g, lr %g, L = %d, N(0, 1) images; best of >= %d "
           "timed steps (>= %g s) per side after one warm-up, ours and PyTorch's alternating; PyTorch's MLM head runs "
           "on all B x L positions, as the official model's, ours on the masked ones\n",
           (double)res->alpha, (double)LEARNING_RATE, o->len, o->budget.min_iters, o->budget.min_time);
    printf("loader: pre-training transform (RandomResizedCrop + flip + RandomAugment(2, 7) + normalise), decoding "
           "included, whole epochs >= %g s; beside it the images/s our step of that preset demands\n",
           o->loader_time);
    if (t->version[0] && t->note[0])
        printf("note: %s\n", t->note);
    printf("%-46s %5s  %-9s %9s %9s %7s  %s\n", "what", "batch", "unit", "ours", "beside", "ratio", "beside is");
    static const char *const step_what[2] = {"full step, tiny (64 px, Q = 256)",
                                             "full step, albef-base (256 px, Q = 65,536)"};
    for (int r = ROW_TINY; r <= ROW_BASE; r++) {
        const row_result *a = &res->ours[r], *b = &res->torch[r];
        if (!o->run[r] || !a->ok)
            continue;
        char batch[16];
        snprintf(batch, sizeof batch, "%d", a->batch);
        print_row(step_what[r], batch, "samples/s", a->batch / a->best, b->ok ? b->batch / b->best : 0, b->ok,
                  "PyTorch, same step");
    }
    for (int r = ROW_SYNTH; r <= ROW_PHOTOS; r++) {
        enum row_id step = r == ROW_SYNTH ? ROW_TINY : ROW_BASE;
        const row_result *s = &res->ours[step];
        for (int w = 0; w < 2; w++) {
            if (!o->run[r] || !res->loader_ok[r][w])
                continue;
            char what[96], batch[16], is[96];
            snprintf(what, sizeof what, "loader, %s, %d worker%s",
                     r == ROW_SYNTH ? "synthetic set, 64 px" : "7 real photos, 256 px", w + 1, w ? "s" : "");
            snprintf(batch, sizeof batch, "%d", r == ROW_SYNTH ? o->tiny_batch : o->base_batch);
            snprintf(is, sizeof is, "our %s step's demand%s", step == ROW_TINY ? "tiny" : "albef-base",
                     res->loader_skipped[r][w] ? " (NOTE: images skipped)" : "");
            print_row(what, batch, "images/s", res->loader_rate[r][w], s->ok ? s->batch / s->best : 0, s->ok, is);
        }
    }
    if (o->run[ROW_BASE] && res->ours[ROW_BASE].ok)
        print_row("peak RSS, albef-base step", "-", "MiB", res->our_rss_kb / 1024.0, res->torch_rss_kb / 1024.0,
                  res->torch_rss_kb > 0, "PyTorch process");
}

int main(int argc, char **argv)
{
    threads_prefer_passive_wait(argv); /* as the programs do */
    bench_options o;
    int prc = parse_options(argc, argv, &o);
    if (prc)
        return prc > 0 ? 0 : 2;
    albef_log_set_level(ALBEF_LOG_WARN);
    int threads = omp_get_max_threads(), blas_threads = openblas_get_num_threads();
    double load_start[3] = {NAN, NAN, NAN}, load_end[3] = {NAN, NAN, NAN};
    getloadavg(load_start, 3);
    double t0 = now();
    torch_side t;
    memset(&t, 0, sizeof t);
    results res;
    memset(&res, 0, sizeof res);
    int rc = run_rows(&o, &t, threads, &res);
    if (rc) {
        fprintf(stderr, "bench_pretrain: %s\n", albef_errmsg());
        return 1;
    }
    fprintf(stderr, "bench_pretrain: %.0f s in all\n", now() - t0);
    getloadavg(load_end, 3);
    print_table(&o, &res, &t, threads, blas_threads, load_start, load_end);
    return 0;
}
