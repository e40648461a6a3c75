/* albef-retrieve: image-text retrieval with an ALBEF model.
 *   albef-retrieve eval --model CKPT --test FILE [--image-root DIR] [--k N] [--itc-only]
 * See albef-retrieve(1). */
#include "albef.h"
#include "core/args.h"
#include "eval/retrieval.h"
#include "io/manifest.h"
#include "io/safetensors.h"
#include "text/caption.h"
#include "text/tokenizer.h"
#include "vision/transform.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG "albef-retrieve"

typedef struct {
    const char *model, *test, *image_root, *vocab, *device;
    int k, itc_only, batch, max_words, max_tokens, quiet;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: " PROG " eval --model CKPT --test FILE [OPTION]...\n"
            "Evaluate image-text retrieval as ALBEF does: rank by the cosine of the ITC\n"
            "features, re-rank each query's top k by the ITM match logit, report recall@1/5/10\n"
            "in both directions as one JSON object on stdout.\n"
            "\n"
            "  -m, --model CKPT      ALBEF checkpoint (safetensors, official names)\n"
            "  -t, --test FILE       retrieval test manifest: [{\"image\", \"caption\": [texts]}]\n"
            "      --image-root DIR  folder that relative image paths are under\n"
            "      --vocab FILE      BERT vocabulary (default: the one stored in the checkpoint)\n"
            "  -k, --k N             candidates re-ranked per query (default 256; Flickr: 128)\n"
            "      --itc-only        rank by the cosine alone, no ITM re-ranking\n"
            "  -b, --batch N         images or texts per pass (default 32)\n"
            "      --max-words N     pre_caption words (default 30)\n"
            "      --max-tokens N    text length, padded and truncated (default 30)\n"
            "      --device D        cpu (default) or cuda\n"
            "  -q, --quiet           no progress on stderr\n"
            "  -h, --help            show this help and exit\n"
            "  -V, --version         show the version and exit\n"
            "\n"
            "Output keys: txt_r1 txt_r5 txt_r10 txt_r_mean (image->text), img_r1 img_r5 img_r10\n"
            "img_r_mean (text->image), r_mean.\n"
            "Exit status: 0 on success, 1 on failure, 2 on a usage error. See " PROG "(1).\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry '" PROG " --help'.\n");
    return 2;
}

static int parse_options(int argc, char **argv, options *o)
{
    enum { OPT_IMAGE_ROOT = 256, OPT_VOCAB, OPT_ITC_ONLY, OPT_MAX_WORDS, OPT_MAX_TOKENS, OPT_DEVICE };
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'},
        {"test", required_argument, 0, 't'},
        {"image-root", required_argument, 0, OPT_IMAGE_ROOT},
        {"vocab", required_argument, 0, OPT_VOCAB},
        {"k", required_argument, 0, 'k'},
        {"itc-only", no_argument, 0, OPT_ITC_ONLY},
        {"batch", required_argument, 0, 'b'},
        {"max-words", required_argument, 0, OPT_MAX_WORDS},
        {"max-tokens", required_argument, 0, OPT_MAX_TOKENS},
        {"device", required_argument, 0, OPT_DEVICE},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    *o = (options){.k = 256, .batch = 32, .max_words = 30, .max_tokens = 30, .device = "cpu"};
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        exit(0);
    }
    if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
        printf(PROG " %s\n", albef_version());
        exit(0);
    }
    if (argc < 2)
        return usage_error("%s", "a command is required: eval");
    if (strcmp(argv[1], "eval"))
        return usage_error("unknown command '%s' (commands: eval)", argv[1]);
    argc--, argv++;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:t:k:b:qhV", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 't': o->test = optarg; break;
        case OPT_IMAGE_ROOT: o->image_root = optarg; break;
        case OPT_VOCAB: o->vocab = optarg; break;
        case OPT_ITC_ONLY: o->itc_only = 1; break;
        case OPT_DEVICE: o->device = optarg; break;
        case 'q': o->quiet = 1; break;
        case 'k':
            if (parse_int_arg(optarg, 1, 1 << 20, &o->k))
                return usage_error("--k must be a positive integer, not '%s'", optarg);
            break;
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
        case 'h': usage(stdout); exit(0);
        case 'V': printf(PROG " %s\n", albef_version()); exit(0);
        case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->model)
        return usage_error("%s", "--model is required");
    if (!o->test)
        return usage_error("%s", "--test is required");
    return 0;
}

static void progress(size_t done, size_t total, void *user)
{
    const char *what = user;
    if (done == total || done % 16 == 0) {
        fprintf(stderr, "\r%s %zu/%zu", what, done, total);
        if (done == total)
            fputc('\n', stderr);
        fflush(stderr);
    }
}

/* The tokenizer: --vocab, else the vocabulary stored in the checkpoint. */
static int load_tokenizer(const options *o, bert_tokenizer **tok)
{
    if (o->vocab)
        return bert_tokenizer_load(o->vocab, tok);
    safetensors_file *st;
    int rc = safetensors_open(o->model, &st);
    if (rc)
        return rc;
    const char *v = safetensors_metadata_get(st, "vocab");
    if (v)
        rc = bert_tokenizer_load_buffer(v, strlen(v), o->model, tok);
    else
        rc = albef_error(ALBEF_ERR_INVALID, "%s: no vocabulary stored in the checkpoint; give --vocab", o->model);
    safetensors_close(st);
    return rc;
}

static int run(const options *o)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int show = !o->quiet && isatty(STDERR_FILENO);
    albef_params p = albef_params_default();
    p.device = o->device;
    p.max_batch = o->batch;
    p.max_text_len = o->max_tokens;
    albef_ctx *ctx = NULL;
    bert_tokenizer *tok = NULL;
    manifest *m = NULL;
    float *img_feat = NULL, *img_tok = NULL, *txt_feat = NULL, *txt_tok = NULL, *pixels = NULL, *s_i2t = NULL,
          *s_t2i = NULL;
    int32_t *ids = NULL, *mask = NULL, *lengths = NULL;
    char **texts = NULL;
    size_t *first = NULL, *count = NULL, *owner = NULL;
    int rc = albef_load(o->model, &p, &ctx);
    rc = rc ? rc : load_tokenizer(o, &tok);
    const char *paths[1] = {o->test};
    rc = rc ? rc : manifest_load(&m, MANIFEST_RETRIEVAL_EVAL, paths, 1);
    if (rc)
        goto done;
    int n_img = (int)manifest_count(m), n_txt = (int)manifest_text_total(m), L = o->max_tokens;
    int R = albef_image_res(ctx), T = albef_image_tokens(ctx), Cv = albef_vision_width(ctx);
    int H = albef_text_width(ctx), E = albef_embed_dim(ctx);
    if (!n_img || !n_txt) {
        rc = albef_error(ALBEF_ERR_INVALID, "%s: no images or no captions", o->test);
        goto done;
    }
    img_feat = malloc(sizeof(float) * (size_t)n_img * E);
    img_tok = malloc(sizeof(float) * (size_t)n_img * T * Cv);
    txt_feat = malloc(sizeof(float) * (size_t)n_txt * E);
    txt_tok = malloc(sizeof(float) * (size_t)n_txt * L * H);
    pixels = malloc(sizeof(float) * (size_t)o->batch * 3 * R * R);
    ids = malloc(sizeof(int32_t) * (size_t)n_txt * L);
    mask = malloc(sizeof(int32_t) * (size_t)n_txt * L);
    lengths = malloc(sizeof(int32_t) * (size_t)n_txt);
    texts = calloc((size_t)n_txt, sizeof(char *));
    first = malloc(sizeof(size_t) * (size_t)n_img);
    count = malloc(sizeof(size_t) * (size_t)n_img);
    owner = malloc(sizeof(size_t) * (size_t)n_txt);
    s_i2t = malloc(sizeof(float) * (size_t)n_img * n_txt);
    s_t2i = malloc(sizeof(float) * (size_t)n_img * n_txt);
    if (!img_feat || !img_tok || !txt_feat || !txt_tok || !pixels || !ids || !mask || !lengths || !texts || !first ||
        !count || !owner || !s_i2t || !s_t2i) {
        rc = albef_error(ALBEF_ERR_NOMEM, "out of memory for %d images and %d texts", n_img, n_txt);
        goto done;
    }
    /* texts: pre_caption, then padded and truncated to max_tokens */
    for (int t = 0; t < n_txt && !rc; t++) {
        const char *c = manifest_text_by_id(m, (size_t)t);
        rc = pre_caption_alloc(c, strlen(c), o->max_words, &texts[t], NULL);
        owner[t] = manifest_text_item(m, (size_t)t);
    }
    for (int i = 0; i < n_img; i++) {
        first[i] = manifest_text_first(m, (size_t)i);
        count[i] = manifest_text_count(m, (size_t)i);
    }
    bert_encode_options eo = bert_encode_options_default();
    eo.padding = BERT_PADDING_MAX_LENGTH;
    eo.truncation = 1;
    eo.max_length = (size_t)L;
    size_t len = 0;
    rc = rc ? rc
            : bert_tokenizer_encode_batch(tok, (const char *const *)texts, NULL, (size_t)n_txt, &eo, (size_t)L, ids,
                                          mask, lengths, &len);
    for (int t = 0; !rc && t < n_txt * L; t++)
        if (ids[t] >= albef_vocab_size(ctx))
            rc = albef_error(ALBEF_ERR_INVALID, "the vocabulary has more tokens than the model (%d)",
                             albef_vocab_size(ctx));
    if (rc)
        goto done;
    /* images: decoded, square-resized (BICUBIC), normalised, in batches */
    transform_params tp = transform_params_test(R);
    char path[4096];
    for (int i = 0; i < n_img && !rc; i += o->batch) {
        int b = n_img - i < o->batch ? n_img - i : o->batch;
        for (int j = 0; j < b && !rc; j++) {
            image_u8 img = {0};
            rc = manifest_join_path(path, sizeof path, o->image_root, manifest_image(m, (size_t)(i + j)));
            rc = rc ? rc : image_load(path, &img);
            rc = rc ? rc : transform_apply(&tp, &img, NULL, pixels + (size_t)j * 3 * R * R);
            image_free(&img);
        }
        rc = rc ? rc : albef_embed_images(ctx, pixels, b, img_feat + (size_t)i * E, img_tok + (size_t)i * T * Cv);
        if (show)
            progress((size_t)(i + b), (size_t)n_img, "images");
    }
    rc = rc ? rc : albef_embed_texts(ctx, ids, mask, n_txt, L, txt_feat, txt_tok);
    if (rc)
        goto done;
    retrieval_options ro = {.k_test = o->k, .itc_only = o->itc_only, .progress = show ? progress : NULL,
                            .progress_user = "re-ranking queries"};
    rc = retrieval_scores(ctx, &ro, img_feat, img_tok, n_img, txt_feat, txt_tok, mask, n_txt, L, s_i2t, s_t2i);
    retrieval_metrics r;
    rc = rc ? rc : retrieval_metrics_compute(s_i2t, s_t2i, n_img, n_txt, first, count, owner, &r);
    if (!rc) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("{\"txt_r1\":%.4f,\"txt_r5\":%.4f,\"txt_r10\":%.4f,\"txt_r_mean\":%.4f,"
               "\"img_r1\":%.4f,\"img_r5\":%.4f,\"img_r10\":%.4f,\"img_r_mean\":%.4f,\"r_mean\":%.4f,"
               "\"images\":%d,\"texts\":%d,\"k\":%d,\"itc_only\":%s,\"seconds\":%.2f}\n",
               r.txt_r1, r.txt_r5, r.txt_r10, r.txt_r_mean, r.img_r1, r.img_r5, r.img_r10, r.img_r_mean, r.r_mean,
               n_img, n_txt, o->itc_only ? 0 : o->k, o->itc_only ? "true" : "false",
               (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9);
    }
done:
    for (int t = 0; texts && t < (int)manifest_text_total(m); t++)
        free(texts[t]);
    free(texts), free(img_feat), free(img_tok), free(txt_feat), free(txt_tok), free(pixels), free(ids), free(mask),
        free(lengths), free(first), free(count), free(owner), free(s_i2t), free(s_t2i);
    manifest_free(m);
    bert_tokenizer_free(tok);
    albef_free(ctx);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc;
    albef_log_set_level(o.quiet ? ALBEF_LOG_WARN : ALBEF_LOG_INFO);
    rc = run(&o);
    if (rc) {
        fprintf(stderr, PROG ": %s\n", albef_errmsg());
        return 1;
    }
    return 0;
}
