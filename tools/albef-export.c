/* albef-export: checkpoints in and out of albef, and embeddings out.
 *   albef-export convert IN.pth|IN.safetensors OUT.safetensors [--task T] [--image-res R]
 *                        [--strip-training] [--dtype f32|bf16|f16]
 *   albef-export init --bert BERT --vit DEIT OUT.safetensors
 *   albef-export embed --model CKPT (--images M.json|DIR | --texts M.json|-) --out PREFIX
 * See albef-export(1). */
#include "albef.h"
#include "core/args.h"
#include "core/threads.h"
#include "eval/embed.h"
#include "io/manifest.h"
#include "io/npy.h"
#include "io/pth.h"
#include "io/safetensors.h"
#include "model/convert.h"
#include "model/pos_embed.h"
#include "text/tokenizer.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROG "albef-export"

enum command { CMD_CONVERT, CMD_INIT, CMD_EMBED };

typedef struct {
    enum command cmd;
    const char *in, *out, *config;
    int task, image_res, strip, cls, quiet, seed;
    albef_dtype dtype;
    const char *bert, *vit;
    const char *model, *images, *texts, *image_root, *vocab, *device;
    int batch, max_words, max_tokens;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: " PROG " convert IN OUT.safetensors [--task TASK] [--image-res R] [--strip-training]\n"
            "                            [--dtype f32|bf16|f16] [--config CONFIG]\n"
            "       " PROG " init --bert BERT --vit DEIT [--config CONFIG] [--seed N] OUT.safetensors\n"
            "       " PROG " embed --model CKPT (--images MANIFEST|DIR | --texts MANIFEST|-) --out PREFIX\n"
            "Move ALBEF checkpoints in and out of albef without Python.\n"
            "\n"
            "  convert  a PyTorch checkpoint (torch.save: ALBEF.pth, mscoco.pth, ...; the state dict\n"
            "           itself or under 'model') or a safetensors file to an albef checkpoint with the\n"
            "           official names; prints what was kept, renamed and dropped\n"
            "  init     the paper's starting checkpoint: BERT (Hugging Face, .bin or .safetensors) and\n"
            "           DeiT (timm, .pth or .safetensors) weights, the rest initialised at random\n"
            "  embed    normalised ITC embeddings of images or texts as PREFIX.npy (float32, N x E)\n"
            "           with their ids in PREFIX.jsonl, one line per row\n"
            "\n"
            "convert:\n"
            "      --task TASK       rename a pre-training checkpoint for a task as its script does:\n"
            "                        pretrain, retrieval, vqa, nlvr or ve\n"
            "      --image-res R     resize every pos_embed to R/patch x R/patch patches\n"
            "      --strip-training  drop momentum copies, queues and optimizer state\n"
            "      --dtype D         store floating-point tensors as f32 (default), bf16 or f16\n"
            "  -c, --config CONFIG   model configuration to store (preset or JSON; default: the\n"
            "                        checkpoint's, else told from the tensors' shapes)\n"
            "init:\n"
            "      --bert FILE       BERT weights (bert-base-uncased)\n"
            "      --vit FILE        DeiT weights (deit_base_patch16_224)\n"
            "  -c, --config CONFIG   model configuration (default albef-base)\n"
            "      --seed N          seed of the random initialisation (default 42)\n"
            "embed:\n"
            "  -m, --model CKPT      albef checkpoint\n"
            "      --images SRC      a manifest's images, or a folder's .jpg/.jpeg/.png\n"
            "      --texts SRC       a manifest's captions, or '-': one text per line of stdin\n"
            "  -o, --out PREFIX      writes PREFIX.npy and PREFIX.jsonl\n"
            "      --cls             also PREFIX.cls.npy: the unprojected [CLS] features\n"
            "      --image-root DIR  folder that a manifest's relative image paths are under\n"
            "      --vocab FILE      BERT vocabulary (default: the one stored in the checkpoint)\n"
            "  -b, --batch N         images or texts per pass (default 32)\n"
            "      --max-words N     pre_caption words (default 30)\n"
            "      --max-tokens N    text length, padded and truncated (default 30)\n"
            "      --device D        cpu (default) or cuda\n"
            "\n"
            "  -q, --quiet           no summary or progress on stderr\n"
            "  -h, --help            show this help and exit\n"
            "  -V, --version         show the version and exit\n"
            "\n"
            "Each command prints one JSON line on stdout.\n"
            "Exit status: 0 on success, 1 on failure, 2 on a usage error. See " PROG "(1).\n");
}

#define usage_error(...) usage_fail(PROG, __VA_ARGS__)

static int parse_options(int argc, char **argv, options *o)
{
    enum {
        OPT_TASK = 256, OPT_IMAGE_RES, OPT_STRIP, OPT_DTYPE, OPT_BERT, OPT_VIT, OPT_SEED, OPT_IMAGES, OPT_TEXTS,
        OPT_CLS, OPT_IMAGE_ROOT, OPT_VOCAB, OPT_MAX_WORDS, OPT_MAX_TOKENS, OPT_DEVICE
    };
    static const struct option longs[] = {
        {"task", required_argument, 0, OPT_TASK},
        {"image-res", required_argument, 0, OPT_IMAGE_RES},
        {"strip-training", no_argument, 0, OPT_STRIP},
        {"dtype", required_argument, 0, OPT_DTYPE},
        {"config", required_argument, 0, 'c'},
        {"bert", required_argument, 0, OPT_BERT},
        {"vit", required_argument, 0, OPT_VIT},
        {"seed", required_argument, 0, OPT_SEED},
        {"model", required_argument, 0, 'm'},
        {"images", required_argument, 0, OPT_IMAGES},
        {"texts", required_argument, 0, OPT_TEXTS},
        {"out", required_argument, 0, 'o'},
        {"cls", no_argument, 0, OPT_CLS},
        {"image-root", required_argument, 0, OPT_IMAGE_ROOT},
        {"vocab", required_argument, 0, OPT_VOCAB},
        {"batch", required_argument, 0, 'b'},
        {"max-words", required_argument, 0, OPT_MAX_WORDS},
        {"max-tokens", required_argument, 0, OPT_MAX_TOKENS},
        {"device", required_argument, 0, OPT_DEVICE},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    *o = (options){.task = -1, .dtype = DTYPE_F32, .seed = 42, .batch = 32, .max_words = 30, .max_tokens = 30,
                   .device = "cpu"};
    static const char *const commands[] = {"convert", "init", "embed"}; /* in enum order */
    int cmd = args_command(argc, argv, PROG, albef_version(), commands, 3, usage);
    if (cmd < 0)
        return 2;
    o->cmd = cmd;
    argc--, argv++;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:m:o:b:qhV", longs, NULL)) != -1) {
        switch (c) {
        case OPT_TASK:
            if ((o->task = convert_task_parse(optarg)) < 0)
                return usage_error("--task must be pretrain, retrieval, vqa, nlvr or ve, not '%s'", optarg);
            break;
        case OPT_IMAGE_RES:
            if (parse_int_arg(optarg, 16, 4096, &o->image_res))
                return usage_error("--image-res must be an integer in [16, 4096], not '%s'", optarg);
            break;
        case OPT_STRIP: o->strip = 1; break;
        case OPT_DTYPE:
            if (!strcmp(optarg, "f32"))
                o->dtype = DTYPE_F32;
            else if (!strcmp(optarg, "bf16"))
                o->dtype = DTYPE_BF16;
            else if (!strcmp(optarg, "f16"))
                o->dtype = DTYPE_F16;
            else
                return usage_error("--dtype must be f32, bf16 or f16, not '%s'", optarg);
            break;
        case 'c': o->config = optarg; break;
        case OPT_BERT: o->bert = optarg; break;
        case OPT_VIT: o->vit = optarg; break;
        case OPT_SEED:
            if (parse_int_arg(optarg, 0, 2147483647, &o->seed))
                return usage_error("--seed must be a non-negative integer, not '%s'", optarg);
            break;
        case 'm': o->model = optarg; break;
        case OPT_IMAGES: o->images = optarg; break;
        case OPT_TEXTS: o->texts = optarg; break;
        case 'o': o->out = optarg; break;
        case OPT_CLS: o->cls = 1; break;
        case OPT_IMAGE_ROOT: o->image_root = optarg; break;
        case OPT_VOCAB: o->vocab = optarg; break;
        case 'b':
            if (parse_int_arg(optarg, 1, 1 << 16, &o->batch))
                return usage_error("--batch must be a positive integer, not '%s'", optarg);
            break;
        case OPT_MAX_WORDS:
            if (parse_int_arg(optarg, 1, 10000, &o->max_words))
                return usage_error("--max-words must be a positive integer, not '%s'", optarg);
            break;
        case OPT_MAX_TOKENS:
            if (parse_int_arg(optarg, 2, 512, &o->max_tokens))
                return usage_error("--max-tokens must be an integer in [2, 512], not '%s'", optarg);
            break;
        case OPT_DEVICE: o->device = optarg; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); exit(0);
        case 'V': printf(PROG " %s\n", albef_version()); exit(0);
        case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    char **args = argv + optind;
    int n_args = argc - optind;
    switch (o->cmd) {
    case CMD_CONVERT:
        if (n_args != 2)
            return usage_error("%s", "convert takes IN and OUT");
        o->in = args[0], o->out = args[1];
        return 0;
    case CMD_INIT:
        if (n_args != 1)
            return usage_error("%s", "init takes OUT");
        o->out = args[0];
        if (!o->bert || !o->vit)
            return usage_error("%s", "init needs --bert and --vit");
        return 0;
    case CMD_EMBED:
        if (n_args)
            return usage_error("unexpected argument '%s'", args[0]);
        if (!o->model)
            return usage_error("%s", "embed needs --model");
        if (!o->images == !o->texts)
            return usage_error("%s", "embed needs one of --images and --texts");
        if (!o->out)
            return usage_error("%s", "embed needs --out");
        return 0;
    }
    return 0;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

/* ---- convert ----------------------------------------------------------------- */

/* What happened to the tensors, for the summary. */
#define MAX_REASONS 8
#define MAX_SAMPLES 4
typedef struct {
    int in, kept, renamed, dropped, unexpected, interpolated, cast;
    const char *reason[MAX_REASONS];
    int reason_count[MAX_REASONS];
    char reason_sample[MAX_REASONS][160];
    char renamed_sample[MAX_SAMPLES][2 * CONVERT_NAME_MAX + 8];
    char unexpected_names[1024];
    const char *top_keys; /* of a .pth's pickled dict */
} summary;

static void note_drop(summary *s, const char *name, const char *why)
{
    s->dropped++;
    int r = 0;
    while (r < MAX_REASONS - 1 && s->reason[r] && s->reason[r] != why)
        r++;
    s->reason[r] = why;
    if (s->reason_count[r]++ == 0)
        snprintf(s->reason_sample[r], sizeof s->reason_sample[r], "%s", name);
}

static void note_list(char *list, size_t cap, const char *name)
{
    size_t n = strlen(list);
    if (n + strlen(name) + 8 < cap)
        snprintf(list + n, cap - n, "%s%s", n ? ", " : "", name);
    else if (n + 5 < cap && (n < 3 || strcmp(list + n - 3, "...")))
        snprintf(list + n, cap - n, ", ...");
}

/* The data to write for one output tensor: the input's bytes, or a converted
 * (or interpolated) copy added to `owned`. */
static int tensor_data(const options *o, const safetensors_file *st, const safetensors_tensor *t, int target_tokens,
                       albef_dtype *dtype, int64_t *shape, const void **data, void **owned, summary *s)
{
    *dtype = t->dtype;
    memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    *data = t->data;
    *owned = NULL;
    int interpolate = target_tokens > 0 && t->ndim == 3 && t->shape[1] != target_tokens;
    if (!dtype_is_float(t->dtype) || (t->dtype == o->dtype && !interpolate))
        return ALBEF_OK;
    size_t n = (size_t)t->numel, C = interpolate ? (size_t)t->shape[2] : 0;
    size_t n_out = interpolate ? (size_t)target_tokens * C : n;
    float *f = malloc(sizeof(float) * (n ? n : 1));
    float *g = interpolate ? malloc(sizeof(float) * (n_out ? n_out : 1)) : NULL;
    void *out = malloc(dtype_size(o->dtype) * (n_out ? n_out : 1));
    int rc = f && out && (!interpolate || g) ? ALBEF_OK : albef_error(ALBEF_ERR_NOMEM, "out of memory");
    rc = rc ? rc : safetensors_tensor_to_f32(st, t, f);
    if (!rc && interpolate) {
        rc = pos_embed_interpolate(f, (int)t->shape[1], g, target_tokens, (int)C);
        shape[1] = target_tokens;
        s->interpolated++;
    }
    rc = rc ? rc : dtype_convert_from_f32(out, o->dtype, interpolate ? g : f, n_out);
    free(f);
    free(g);
    if (rc) {
        free(out);
        return albef_error_context(rc, "tensor '%s': ", t->name);
    }
    if (t->dtype != o->dtype)
        s->cast++;
    *dtype = o->dtype;
    *data = out;
    *owned = out;
    return ALBEF_OK;
}

static void print_summary(const options *o, const summary *s, const char *config_source)
{
    if (o->quiet)
        return;
    fprintf(stderr, PROG ": %s: %d tensors in; %d kept, %d written under new names, %d dropped, %d unexpected\n",
            o->in, s->in, s->kept, s->renamed, s->dropped, s->unexpected);
    for (int i = 0; i < MAX_SAMPLES && s->renamed_sample[i][0]; i++)
        fprintf(stderr, "  renamed   %s\n", s->renamed_sample[i]);
    for (int r = 0; r < MAX_REASONS && s->reason[r]; r++)
        fprintf(stderr, "  dropped   %d: %s (e.g. %s)\n", s->reason_count[r], s->reason[r], s->reason_sample[r]);
    if (s->unexpected)
        fprintf(stderr, "  unexpected (kept as they are): %s\n", s->unexpected_names);
    if (s->top_keys && *s->top_keys)
        fprintf(stderr, "  the checkpoint's entries: %s (only the state dict under 'model' is converted)\n",
                s->top_keys);
    if (s->interpolated)
        fprintf(stderr, "  pos_embed resized for %d px: %d tensor(s)\n", o->image_res, s->interpolated);
    if (s->cast)
        fprintf(stderr, "  %d tensor(s) stored as %s\n", s->cast, dtype_name(o->dtype));
    fprintf(stderr, "  configuration: %s\n", config_source);
}

static int run_convert(const options *o)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    safetensors_file *st = NULL;
    safetensors_writer *w = NULL;
    void **owned = NULL;
    char *config_json = NULL;
    summary s = {0};
    int rc = weights_open(o->in, &st);
    if (rc)
        return rc;
    double read_s = seconds_since(&t0);
    size_t n = safetensors_count(st);
    int pretrain = convert_is_pretrain_layout(st);
    if (o->task > CONVERT_PRETRAIN && !pretrain) {
        rc = albef_error(ALBEF_ERR_INVALID,
                         "%s: not a pre-training checkpoint (no text_encoder.bert.*): --task %s renames pre-training "
                         "checkpoints only; leave it out to convert this one as it is",
                         o->in, convert_task_name((enum convert_task)o->task));
        goto done;
    }
    /* the configuration: given, stored, or told from the shapes */
    albef_config cfg;
    const char *config_source = "none (not an ALBEF model: no configuration stored)";
    const char *stored = safetensors_metadata_get(st, "config");
    int have_cfg = 0;
    if (o->config) {
        rc = config_load(o->config, &cfg);
        if (rc)
            goto done;
        have_cfg = 1, config_source = o->config;
    } else if (stored && !config_parse(stored, o->in, &cfg)) {
        have_cfg = 1, config_source = "as stored in the input";
    } else if (!convert_infer_config(st, &cfg)) {
        have_cfg = 1, config_source = "told from the tensors' shapes (64 channels per attention head)";
    }
    int target_tokens = 0;
    if (o->image_res) {
        if (!have_cfg || o->image_res % cfg.patch_size) {
            rc = albef_error(ALBEF_ERR_INVALID, "%s: --image-res %d needs a model whose patch size divides it", o->in,
                             o->image_res);
            goto done;
        }
        cfg.image_res = o->image_res;
        target_tokens = 1 + config_num_patches(&cfg);
    }
    if (have_cfg && !(config_json = config_to_json(&cfg))) {
        rc = albef_error(ALBEF_ERR_NOMEM, "out of memory");
        goto done;
    }
    owned = calloc(2 * n + 1, sizeof *owned);
    rc = owned ? safetensors_writer_init(&w) : albef_error(ALBEF_ERR_NOMEM, "out of memory");
    size_t n_owned = 0;
    s.in = (int)n;
    s.top_keys = safetensors_metadata_get(st, "pth.keys");
    for (size_t i = 0; i < n && !rc; i++) {
        const safetensors_tensor *t = safetensors_tensor_at(st, i);
        convert_names out;
        if (o->strip && convert_is_training_state(t->name)) {
            note_drop(&s, t->name, "training state (--strip-training)");
            continue;
        }
        if (!convert_is_known(t->name) && !strstr(t->name, "position_ids")) {
            s.unexpected++;
            note_list(s.unexpected_names, sizeof s.unexpected_names, t->name);
        }
        if (o->task >= 0 && pretrain) {
            convert_remap((enum convert_task)o->task, have_cfg ? cfg.bert.fusion_layer : 6, t->name, &out);
        } else {
            out.n = 1;
            snprintf(out.name[0], sizeof out.name[0], "%s", t->name);
        }
        if (!out.n) {
            note_drop(&s, t->name, out.dropped_why);
            continue;
        }
        int is_pos = strlen(t->name) >= 10 && !strcmp(t->name + strlen(t->name) - 10, ".pos_embed");
        albef_dtype dtype;
        int64_t shape[16];
        const void *data;
        void *copy;
        if (t->ndim > 16) {
            rc = albef_error(ALBEF_ERR_UNSUPPORTED, "%s: tensor '%s' has %d dimensions", o->in, t->name, t->ndim);
            break;
        }
        rc = tensor_data(o, st, t, is_pos ? target_tokens : 0, &dtype, shape, &data, &copy, &s);
        if (copy)
            owned[n_owned++] = copy;
        for (int k = 0; k < out.n && !rc; k++) {
            rc = safetensors_writer_add(w, out.name[k], dtype, t->ndim, shape, data);
            if (strcmp(out.name[k], t->name)) {
                if (s.renamed < MAX_SAMPLES)
                    snprintf(s.renamed_sample[s.renamed], sizeof s.renamed_sample[0], "%s -> %s", t->name,
                             out.name[k]);
                s.renamed++;
            } else {
                s.kept++;
            }
        }
    }
    rc = rc ? rc : safetensors_writer_set_metadata(w, "format", "albef");
    if (!rc && config_json)
        rc = safetensors_writer_set_metadata(w, "config", config_json);
    if (!rc && o->task >= 0)
        rc = safetensors_writer_set_metadata(w, "task", convert_task_name((enum convert_task)o->task));
    const char *vocab = safetensors_metadata_get(st, "vocab");
    if (!rc && vocab)
        rc = safetensors_writer_set_metadata(w, "vocab", vocab);
    if (!rc) {
        const char *slash = strrchr(o->in, '/');
        rc = safetensors_writer_set_metadata(w, "converted_from", slash ? slash + 1 : o->in);
    }
    rc = rc ? rc : safetensors_writer_write(w, o->out);
    if (!rc) {
        struct stat in_st, out_st;
        double mb_in = stat(o->in, &in_st) ? 0 : (double)in_st.st_size / 1e6;
        double mb_out = stat(o->out, &out_st) ? 0 : (double)out_st.st_size / 1e6, secs = seconds_since(&t0);
        print_summary(o, &s, config_source);
        printf("{\"in\":\"%s\",\"out\":\"%s\",\"task\":\"%s\",\"tensors_in\":%d,\"kept\":%d,\"renamed\":%d,"
               "\"dropped\":%d,\"unexpected\":%d,\"interpolated\":%d,\"dtype\":\"%s\",\"mb_in\":%.1f,\"mb_out\":%.1f,"
               "\"read_s\":%.3f,\"seconds\":%.3f,\"mb_per_s\":%.1f}\n",
               o->in, o->out, o->task >= 0 ? convert_task_name((enum convert_task)o->task) : "as-is", s.in, s.kept,
               s.renamed, s.dropped, s.unexpected, s.interpolated, dtype_name(o->dtype), mb_in, mb_out, read_s, secs,
               secs > 0 ? mb_in / secs : 0);
    }
    for (size_t i = 0; owned && i < n_owned; i++)
        free(owned[i]);
done:
    free(owned);
    free(config_json);
    safetensors_writer_free(w);
    safetensors_close(st);
    return rc;
}

/* ---- init ----------------------------------------------------------------------- */

static int run_init(const options *o)
{
    albef_config cfg;
    int rc = config_load(o->config ? o->config : "albef-base", &cfg);
    if (rc)
        return rc;
    albef_model m;
    albef_model_options opt = {.layout = LAYOUT_PRETRAIN};
    rc = albef_model_init(&m, &cfg, backend_cpu(), &opt);
    if (rc)
        return rc;
    albef_model_init_weights(&m, (uint64_t)o->seed);
    load_report bert, vit;
    rc = convert_load_bert_vit(&m, o->bert, o->vit, &bert, &vit);
    rc = rc ? rc : albef_model_save(&m, o->out);
    if (!rc) {
        if (!o->quiet) {
            fprintf(stderr, PROG ": %s: %d tensors into the text encoder; not used: %d%s%s\n", o->bert, bert.loaded,
                    bert.unexpected, bert.unexpected ? ": " : "", bert.unexpected_names);
            fprintf(stderr, PROG ": %s: %d tensors into the image encoder%s; not used: %d%s%s\n", o->vit, vit.loaded,
                    vit.interpolated ? " (pos_embed resized)" : "", vit.unexpected, vit.unexpected ? ": " : "",
                    vit.unexpected_names);
        }
        printf("{\"out\":\"%s\",\"bert_tensors\":%d,\"vit_tensors\":%d,\"parameters\":%d,\"seed\":%d}\n", o->out,
               bert.loaded, vit.loaded, m.params.count, o->seed);
    }
    albef_model_free(&m);
    return rc;
}

/* ---- embed ---------------------------------------------------------------------- */

static void progress(size_t done, size_t total, void *user)
{
    if (done == total || done % 16 == 0) {
        fprintf(stderr, "\r%s %zu/%zu", (const char *)user, done, total);
        if (done == total)
            fputc('\n', stderr);
        fflush(stderr);
    }
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* The texts to embed: a manifest's captions (in text-id order) or stdin's
 * lines. *owner is the image each caption belongs to (NULL for stdin). */
static int read_texts(const options *o, char ***texts, int *n, manifest **mf)
{
    *texts = NULL, *n = 0, *mf = NULL;
    if (strcmp(o->texts, "-")) {
        enum manifest_kind kinds[] = {MANIFEST_RETRIEVAL_EVAL, MANIFEST_PRETRAIN, MANIFEST_RETRIEVAL_TRAIN};
        const char *mp[1] = {o->texts};
        for (int k = 0; k < 3 && !*mf; k++)
            if (manifest_load(mf, kinds[k], mp, 1))
                *mf = NULL;
        if (!*mf)
            return manifest_load(mf, MANIFEST_RETRIEVAL_EVAL, mp, 1);
        *n = (int)manifest_text_total(*mf);
        *texts = calloc((size_t)*n + 1, sizeof(char *));
        for (int t = 0; *texts && t < *n; t++)
            (*texts)[t] = (char *)manifest_text_by_id(*mf, (size_t)t);
        return *texts ? ALBEF_OK : albef_error(ALBEF_ERR_NOMEM, "out of memory");
    }
    char line[8192];
    int cap = 0;
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nt = realloc(*texts, sizeof(char *) * (size_t)cap);
            if (!nt)
                return albef_error(ALBEF_ERR_NOMEM, "out of memory");
            *texts = nt;
        }
        if (!((*texts)[*n] = strdup(line)))
            return albef_error(ALBEF_ERR_NOMEM, "out of memory");
        (*n)++;
    }
    return *n ? ALBEF_OK : albef_error(ALBEF_ERR_INVALID, "stdin: no texts");
}

static int run_embed(const options *o)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    albef_params p = albef_params_default();
    p.device = o->device;
    p.max_batch = o->batch;
    if (o->max_tokens > p.max_text_len)
        p.max_text_len = o->max_tokens;
    albef_ctx *ctx = NULL;
    bert_tokenizer *tok = NULL;
    image_list images = {0};
    char **texts = NULL;
    manifest *mf = NULL;
    int n = 0, from_stdin = o->texts && !strcmp(o->texts, "-");
    float *feat = NULL, *cls = NULL;
    char path[4096];
    FILE *ids = NULL;
    int rc = albef_load(o->model, &p, &ctx);
    if (rc)
        goto done;
    int E = albef_embed_dim(ctx), width = o->images ? albef_vision_width(ctx) : albef_text_width(ctx);
    int show = !o->quiet && isatty(STDERR_FILENO);
    if (o->images) {
        struct stat sb;
        rc = !stat(o->images, &sb) && S_ISDIR(sb.st_mode) ? image_list_dir(&images, o->images)
                                                          : image_list_manifest(&images, o->images, o->image_root);
        n = images.n;
    } else {
        rc = embed_load_tokenizer(o->vocab, o->model, &tok);
        rc = rc ? rc : read_texts(o, &texts, &n, &mf);
    }
    if (rc)
        goto done;
    feat = malloc(sizeof(float) * (size_t)n * E);
    if (o->cls)
        cls = malloc(sizeof(float) * (size_t)n * width);
    if (!feat || (o->cls && !cls)) {
        rc = albef_error(ALBEF_ERR_NOMEM, "out of memory for %d embeddings", n);
        goto done;
    }
    if (o->images)
        rc = embed_image_paths(ctx, images.paths, n, o->batch, feat, NULL, cls, show && n > o->batch ? progress : NULL,
                               "images");
    else
        rc = embed_captions(ctx, tok, (const char *const *)texts, n, o->max_words, o->max_tokens, o->batch, feat, cls);
    snprintf(path, sizeof path, "%s.npy", o->out);
    rc = rc ? rc : npy_write_f32(path, feat, (size_t)n, (size_t)E);
    snprintf(path, sizeof path, "%s.cls.npy", o->out);
    if (!rc && cls)
        rc = npy_write_f32(path, cls, (size_t)n, (size_t)width);
    snprintf(path, sizeof path, "%s.jsonl", o->out);
    if (!rc && !(ids = fopen(path, "w")))
        rc = albef_error(ALBEF_ERR_IO, "%s: cannot create", path);
    for (int i = 0; !rc && i < n; i++) {
        if (o->images) {
            fprintf(ids, "{\"row\":%d,\"id\":", i);
            json_string(ids, images.ids[i]);
        } else {
            fprintf(ids, "{\"row\":%d,\"id\":%d,", i, i);
            if (mf) {
                fprintf(ids, "\"image\":");
                json_string(ids, manifest_image(mf, manifest_text_item(mf, (size_t)i)));
                fputc(',', ids);
            }
            fprintf(ids, "\"text\":");
            json_string(ids, texts[i]);
        }
        fprintf(ids, "}\n");
    }
    if (ids && fclose(ids) && !rc)
        rc = albef_error(ALBEF_ERR_IO, "%s: write failed", path);
    if (!rc)
        printf("{\"out\":\"%s\",\"kind\":\"%s\",\"rows\":%d,\"embed_dim\":%d,\"cls_dim\":%d,\"seconds\":%.3f}\n", o->out,
               o->images ? "images" : "texts", n, E, cls ? width : 0, seconds_since(&t0));
done:
    if (from_stdin)
        for (int i = 0; texts && i < n; i++)
            free(texts[i]);
    free(texts);
    manifest_free(mf);
    image_list_free(&images);
    bert_tokenizer_free(tok);
    free(feat), free(cls);
    albef_free(ctx);
    return rc;
}

int main(int argc, char **argv)
{
    threads_prefer_passive_wait(argv);
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc;
    if (o.quiet)
        albef_log_set_level(ALBEF_LOG_WARN);
    rc = o.cmd == CMD_CONVERT ? run_convert(&o) : o.cmd == CMD_INIT ? run_init(&o) : run_embed(&o);
    if (rc) {
        fprintf(stderr, PROG ": %s\n", albef_errmsg());
        return 1;
    }
    return 0;
}
