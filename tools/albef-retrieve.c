/* albef-retrieve: image-text retrieval with an ALBEF model.
 *   albef-retrieve eval  --model CKPT --test FILE [--image-root DIR] [--k N] [--itc-only]
 *   albef-retrieve index --model CKPT (--manifest FILE | --dir DIR) --out INDEX [--rerank-ready]
 *   albef-retrieve query --model CKPT --index INDEX [--k N] [--rerank K] [--by-image] [QUERY...]
 * See albef-retrieve(1). */
#include "albef.h"
#include "core/args.h"
#include "core/threads.h"
#include "eval/embed.h"
#include "eval/retrieval.h"
#include "core/file.h"
#include "io/manifest.h"
#include "io/safetensors.h"
#include "text/caption.h"
#include "text/tokenizer.h"

#include <math.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG "albef-retrieve"

enum command { CMD_EVAL, CMD_INDEX, CMD_QUERY };

typedef struct {
    enum command cmd;
    const char *model, *test, *image_root, *vocab, *device, *manifest, *dir, *out, *index;
    int k, itc_only, batch, max_words, max_tokens, quiet, rerank, rerank_ready, by_image;
    int k_given;
    char **queries;
    int n_queries;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: " PROG " eval  --model CKPT --test FILE [OPTION]...\n"
            "       " PROG " index --model CKPT (--manifest FILE | --dir DIR) --out INDEX [OPTION]...\n"
            "       " PROG " query --model CKPT --index INDEX [OPTION]... [QUERY]...\n"
            "Image-text retrieval with an ALBEF model.\n"
            "  eval   evaluate as ALBEF does: rank by the cosine of the ITC features, re-rank each\n"
            "         query's top k by the ITM match logit, print recall@1/5/10 in both directions\n"
            "         as one JSON object\n"
            "  index  embed images (a manifest's, or a folder's .jpg/.jpeg/.png) into an index file\n"
            "  query  search an index with texts (or images, --by-image) given as arguments or one\n"
            "         per line on stdin; one JSON line per query\n"
            "\n"
            "  -m, --model CKPT      ALBEF checkpoint (safetensors, official names)\n"
            "  -t, --test FILE       eval: retrieval test manifest [{\"image\", \"caption\": [texts]}]\n"
            "      --manifest FILE   index: images of a manifest (any ALBEF kind with \"image\")\n"
            "      --dir DIR         index: the images in a folder\n"
            "  -o, --out INDEX       index: the index file to write (safetensors)\n"
            "      --rerank-ready    index: also store every image's tokens, for query --rerank\n"
            "  -i, --index INDEX     query: the index to search\n"
            "      --rerank K        query: re-rank the top K by the ITM match logit\n"
            "      --by-image        query: the queries are image paths (image-to-image cosine)\n"
            "      --image-root DIR  folder that relative image paths are under\n"
            "      --vocab FILE      BERT vocabulary (default: the one stored in the checkpoint)\n"
            "  -k, --k N             eval: candidates re-ranked per query (default 256; Flickr: 128);\n"
            "                        query: results per query (default 10)\n"
            "      --itc-only        eval: rank by the cosine alone, no ITM re-ranking\n"
            "  -b, --batch N         images or texts per pass (default 32)\n"
            "      --max-words N     pre_caption words (default 30)\n"
            "      --max-tokens N    text length, padded and truncated (default 30)\n"
            "      --device D        cpu (default) or cuda\n"
            "  -q, --quiet           no progress on stderr\n"
            "  -h, --help            show this help and exit\n"
            "  -V, --version         show the version and exit\n"
            "\n"
            "eval output keys: txt_r1 txt_r5 txt_r10 txt_r_mean (image->text), img_r1 img_r5 img_r10\n"
            "img_r_mean (text->image), r_mean. query output: {\"query\", \"results\": [{\"id\", \"itc\",\n"
            "\"itm\"}...]}, best first.\n"
            "Exit status: 0 on success, 1 on failure, 2 on a usage error. See " PROG "(1).\n");
}

#define usage_error(...) usage_fail(PROG, __VA_ARGS__)

static int parse_options(int argc, char **argv, options *o)
{
    enum {
        OPT_IMAGE_ROOT = 256, OPT_VOCAB, OPT_ITC_ONLY, OPT_MAX_WORDS, OPT_MAX_TOKENS, OPT_DEVICE, OPT_MANIFEST, OPT_DIR,
        OPT_RERANK, OPT_RERANK_READY, OPT_BY_IMAGE
    };
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'},
        {"test", required_argument, 0, 't'},
        {"manifest", required_argument, 0, OPT_MANIFEST},
        {"dir", required_argument, 0, OPT_DIR},
        {"out", required_argument, 0, 'o'},
        {"rerank-ready", no_argument, 0, OPT_RERANK_READY},
        {"index", required_argument, 0, 'i'},
        {"rerank", required_argument, 0, OPT_RERANK},
        {"by-image", no_argument, 0, OPT_BY_IMAGE},
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
    static const char *const commands[] = {"eval", "index", "query"}; /* in enum order */
    int cmd = args_command(argc, argv, PROG, albef_version(), commands, 3, usage);
    if (cmd < 0)
        return 2;
    o->cmd = cmd;
    argc--, argv++;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:t:o:i:k:b:qhV", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 't': o->test = optarg; break;
        case OPT_MANIFEST: o->manifest = optarg; break;
        case OPT_DIR: o->dir = optarg; break;
        case 'o': o->out = optarg; break;
        case 'i': o->index = optarg; break;
        case OPT_RERANK_READY: o->rerank_ready = 1; break;
        case OPT_BY_IMAGE: o->by_image = 1; break;
        case OPT_RERANK:
            if (parse_int_arg(optarg, 1, 1 << 20, &o->rerank))
                return usage_error("--rerank must be a positive integer, not '%s'", optarg);
            break;
        case OPT_IMAGE_ROOT: o->image_root = optarg; break;
        case OPT_VOCAB: o->vocab = optarg; break;
        case OPT_ITC_ONLY: o->itc_only = 1; break;
        case OPT_DEVICE: o->device = optarg; break;
        case 'q': o->quiet = 1; break;
        case 'k':
            if (parse_int_arg(optarg, 1, 1 << 20, &o->k))
                return usage_error("--k must be a positive integer, not '%s'", optarg);
            o->k_given = 1;
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
    if (!o->model)
        return usage_error("%s", "--model is required");
    if (o->cmd == CMD_QUERY) {
        o->queries = argv + optind;
        o->n_queries = argc - optind;
        if (!o->index)
            return usage_error("%s", "query needs --index");
        if (!o->k_given)
            o->k = 10;
        return 0;
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (o->cmd == CMD_EVAL && !o->test)
        return usage_error("%s", "eval needs --test");
    if (o->cmd == CMD_INDEX && !o->manifest == !o->dir)
        return usage_error("%s", "index needs one of --manifest and --dir");
    if (o->cmd == CMD_INDEX && !o->out)
        return usage_error("%s", "index needs --out");
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

static int run_eval(const options *o)
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
    int rc = albef_load(o->model, &p, &ctx);
    rc = rc ? rc : embed_load_tokenizer(o->vocab, o->model, &tok);
    const char *paths[1] = {o->test};
    rc = rc ? rc : manifest_load(&m, MANIFEST_RETRIEVAL_EVAL, paths, 1);
    if (!rc && (!manifest_count(m) || !manifest_text_total(m)))
        rc = albef_error(ALBEF_ERR_INVALID, "%s: no images or no captions", o->test);
    retrieval_eval_options eo = {
        .image_root = o->image_root, .batch = o->batch, .max_words = o->max_words, .max_tokens = o->max_tokens,
        .rank = {.k_test = o->k, .itc_only = o->itc_only, .progress = show ? progress : NULL,
                 .progress_user = "re-ranking images"},
        .progress = show ? progress : NULL, .progress_user = "images",
    };
    retrieval_metrics r;
    rc = rc ? rc : retrieval_evaluate(ctx, tok, m, &eo, &r);
    if (!rc) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("{\"txt_r1\":%.4f,\"txt_r5\":%.4f,\"txt_r10\":%.4f,\"txt_r_mean\":%.4f,"
               "\"img_r1\":%.4f,\"img_r5\":%.4f,\"img_r10\":%.4f,\"img_r_mean\":%.4f,\"r_mean\":%.4f,"
               "\"images\":%zu,\"texts\":%zu,\"k\":%d,\"itc_only\":%s,\"seconds\":%.2f}\n",
               r.txt_r1, r.txt_r5, r.txt_r10, r.txt_r_mean, r.img_r1, r.img_r5, r.img_r10, r.img_r_mean, r.r_mean,
               manifest_count(m), manifest_text_total(m), o->itc_only ? 0 : o->k, o->itc_only ? "true" : "false",
               (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9);
    }
    manifest_free(m);
    bert_tokenizer_free(tok);
    albef_free(ctx);
    return rc;
}

/* ---- index ---------------------------------------------------------------- */

static void free_list(char **v, int n)
{
    for (int i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* JSON string literal of s into a malloc'ed buffer. */
static char *json_quote(const char *s)
{
    size_t n = strlen(s);
    char *q = malloc(6 * n + 3), *w = q;
    if (!q)
        return NULL;
    *w++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            *w++ = '\\', *w++ = (char)*p;
        else if (*p < 0x20)
            w += sprintf(w, "\\u%04x", *p);
        else
            *w++ = (char)*p;
    }
    *w++ = '"';
    *w = '\0';
    return q;
}

static int embed_image_files(const options *o, albef_ctx *ctx, char *const *paths, int n, float *feat, float *tokens)
{
    int show = !o->quiet && isatty(STDERR_FILENO) && n > o->batch;
    return embed_image_paths(ctx, paths, n, o->batch, feat, tokens, NULL, show ? progress : NULL, "images");
}

static int run_index(const options *o)
{
    albef_params p = albef_params_default();
    p.device = o->device;
    p.max_batch = o->batch;
    albef_ctx *ctx = NULL;
    image_list images = {0};
    float *feat = NULL, *tokens = NULL;
    safetensors_writer *w = NULL;
    char *id_json = NULL;
    int rc = albef_load(o->model, &p, &ctx);
    if (!rc)
        rc = o->dir ? image_list_dir(&images, o->dir) : image_list_manifest(&images, o->manifest, o->image_root);
    if (rc)
        goto done;
    int n = images.n;
    char **ids = images.ids;
    int T = albef_image_tokens(ctx), Cv = albef_vision_width(ctx), E = albef_embed_dim(ctx);
    feat = malloc(sizeof(float) * (size_t)n * E);
    if (o->rerank_ready)
        tokens = malloc(sizeof(float) * (size_t)n * T * Cv);
    if (!feat || (o->rerank_ready && !tokens)) {
        rc = albef_error(ALBEF_ERR_NOMEM, "out of memory for %d images", n);
        goto done;
    }
    rc = embed_image_files(o, ctx, images.paths, n, feat, tokens);
    /* the ids, as a JSON list in the metadata */
    size_t len = 3;
    for (int i = 0; i < n; i++)
        len += 6 * strlen(ids[i]) + 4;
    id_json = malloc(len);
    if (!rc && !id_json)
        rc = albef_error(ALBEF_ERR_NOMEM, "out of memory");
    if (!rc) {
        char *wp = id_json;
        *wp++ = '[';
        for (int i = 0; i < n; i++) {
            char *q = json_quote(ids[i]);
            wp += sprintf(wp, "%s%s", i ? "," : "", q ? q : "\"\"");
            free(q);
        }
        *wp++ = ']';
        *wp = '\0';
    }
    rc = rc ? rc : safetensors_writer_init(&w);
    rc = rc ? rc : safetensors_writer_add(w, "image_feat", DTYPE_F32, 2, (const int64_t[]){n, E}, feat);
    if (!rc && tokens)
        rc = safetensors_writer_add(w, "image_tokens", DTYPE_F32, 3, (const int64_t[]){n, T, Cv}, tokens);
    rc = rc ? rc : safetensors_writer_set_metadata(w, "format", "albef-index");
    rc = rc ? rc : safetensors_writer_set_metadata(w, "ids", id_json);
    rc = rc ? rc : safetensors_writer_set_metadata(w, "model", o->model);
    rc = rc ? rc : safetensors_writer_write(w, o->out);
    if (!rc)
        printf("{\"index\":\"%s\",\"images\":%d,\"embed_dim\":%d,\"rerank_ready\":%s}\n", o->out, n, E,
               tokens ? "true" : "false");
done:
    safetensors_writer_free(w);
    free(id_json), free(feat), free(tokens);
    image_list_free(&images);
    albef_free(ctx);
    return rc;
}

/* ---- query ---------------------------------------------------------------- */

typedef struct {
    float score;
    int index;
} hit;

static int by_score(const void *a, const void *b)
{
    const hit *x = a, *y = b;
    return x->score != y->score ? (x->score > y->score ? -1 : 1) : x->index - y->index;
}

static int run_query(const options *o)
{
    albef_params p = albef_params_default();
    p.device = o->device;
    p.max_batch = o->batch;
    p.max_text_len = o->max_tokens;
    albef_ctx *ctx = NULL;
    bert_tokenizer *tok = NULL;
    safetensors_file *ix = NULL;
    float *feat = NULL, *tokens = NULL, *qfeat = NULL, *qtok = NULL, *logits = NULL;
    hit *hits = NULL;
    int n = 0, rc = albef_load(o->model, &p, &ctx);
    rc = rc ? rc : safetensors_open(o->index, &ix);
    if (rc)
        goto done;
    int E = albef_embed_dim(ctx), T = albef_image_tokens(ctx), Cv = albef_vision_width(ctx);
    int H = albef_text_width(ctx), L = o->max_tokens;
    const safetensors_tensor *ft = safetensors_find(ix, "image_feat");
    const char *id_json = safetensors_metadata_get(ix, "ids");
    if (!ft || ft->ndim != 2 || ft->shape[1] != E || !id_json) {
        rc = albef_error(ALBEF_ERR_INVALID, "%s: not an index for this model (image_feat (N, %d) and ids expected)",
                         o->index, E);
        goto done;
    }
    n = (int)ft->shape[0];
    feat = malloc(sizeof(float) * (size_t)n * E);
    rc = feat ? safetensors_tensor_to_f32(ix, ft, feat) : albef_error(ALBEF_ERR_NOMEM, "out of memory");
    if (!rc && o->rerank) {
        const safetensors_tensor *tt = safetensors_find(ix, "image_tokens");
        if (!tt || tt->ndim != 3 || tt->shape[0] != n || tt->shape[1] != T || tt->shape[2] != Cv)
            rc = albef_error(ALBEF_ERR_INVALID, "%s: --rerank needs an index written with --rerank-ready", o->index);
        else if (!(tokens = malloc(sizeof(float) * (size_t)n * T * Cv)))
            rc = albef_error(ALBEF_ERR_NOMEM, "out of memory");
        else
            rc = safetensors_tensor_to_f32(ix, tt, tokens);
    }
    if (rc)
        goto done;
    if (o->rerank && o->by_image) {
        rc = albef_error(ALBEF_ERR_INVALID, "--rerank scores texts against images; it does not apply to --by-image");
        goto done;
    }
    if (!o->by_image)
        rc = embed_load_tokenizer(o->vocab, o->model, &tok);
    qfeat = malloc(sizeof(float) * (size_t)E);
    qtok = malloc(sizeof(float) * (size_t)L * H);
    hits = malloc(sizeof(hit) * (size_t)n);
    logits = malloc(sizeof(float) * 2 * (size_t)(o->rerank ? o->rerank : 1));
    if (!rc && (!qfeat || !qtok || !hits || !logits))
        rc = albef_error(ALBEF_ERR_NOMEM, "out of memory");
    /* the stored ids: a JSON list of strings, kept quoted for the output */
    char **id_items = calloc((size_t)n + 1, sizeof(char *));
    rc = rc ? rc : (id_items ? ALBEF_OK : albef_error(ALBEF_ERR_NOMEM, "out of memory"));
    if (!rc) {
        const char *s = id_json + 1;
        for (int i = 0; i < n && !rc; i++) {
            const char *e = s + 1;
            while (*e && !(*e == '"' && e[-1] != '\\'))
                e++;
            if (*s != '"' || !*e) {
                rc = albef_error(ALBEF_ERR_INVALID, "%s: malformed 'ids' metadata", o->index);
                break;
            }
            id_items[i] = strndup(s, (size_t)(e - s + 1));
            s = e + 1;
            if (*s == ',')
                s++;
        }
    }
    char line[8192];
    int qi = 0;
    while (!rc) {
        const char *q;
        if (o->n_queries) {
            if (qi >= o->n_queries)
                break;
            q = o->queries[qi++];
        } else {
            if (!fgets(line, sizeof line, stdin))
                break;
            line[strcspn(line, "\r\n")] = '\0';
            if (!line[0])
                continue;
            q = line;
        }
        int32_t ids_q[512], mask_q[512];
        if (o->by_image) {
            char **one = (char **)&q;
            rc = embed_image_files(o, ctx, one, 1, qfeat, NULL);
        } else {
            char *cap = NULL;
            size_t len = 0;
            int32_t lengths[1];
            bert_encode_options eo = bert_encode_options_default();
            eo.padding = BERT_PADDING_MAX_LENGTH;
            eo.truncation = 1;
            eo.max_length = (size_t)L;
            rc = pre_caption_alloc(q, strlen(q), o->max_words, &cap, NULL);
            const char *texts[1] = {cap};
            rc = rc ? rc : bert_tokenizer_encode_batch(tok, texts, NULL, 1, &eo, (size_t)L, ids_q, mask_q, lengths, &len);
            rc = rc ? rc : albef_embed_texts(ctx, ids_q, mask_q, 1, L, qfeat, qtok);
            free(cap);
        }
        if (rc)
            break;
        for (int i = 0; i < n; i++) {
            double d = 0;
            for (int e = 0; e < E; e++)
                d += (double)qfeat[e] * feat[(size_t)i * E + e];
            hits[i] = (hit){(float)d, i};
        }
        qsort(hits, (size_t)n, sizeof *hits, by_score);
        int k = o->k < n ? o->k : n, rr = o->rerank < n ? o->rerank : n;
        float *itm = NULL;
        if (o->rerank && !o->by_image) {
            /* the query text against each of its top images */
            float *tt = malloc(sizeof(float) * (size_t)rr * L * H), *it = malloc(sizeof(float) * (size_t)rr * T * Cv);
            int32_t *mm = malloc(sizeof(int32_t) * (size_t)rr * L);
            itm = malloc(sizeof(float) * (size_t)rr);
            if (!tt || !it || !mm || !itm)
                rc = albef_error(ALBEF_ERR_NOMEM, "out of memory");
            for (int r = 0; !rc && r < rr; r++) {
                memcpy(tt + (size_t)r * L * H, qtok, sizeof(float) * (size_t)L * H);
                memcpy(mm + (size_t)r * L, mask_q, sizeof(int32_t) * (size_t)L);
                memcpy(it + (size_t)r * T * Cv, tokens + (size_t)hits[r].index * T * Cv, sizeof(float) * (size_t)T * Cv);
            }
            rc = rc ? rc : albef_itm_logits(ctx, tt, mm, rr, L, it, logits);
            for (int r = 0; !rc && r < rr; r++)
                itm[r] = logits[2 * r + 1];
            /* the re-ranked candidates first, by ITM; then the rest by ITC */
            hit *top = malloc(sizeof(hit) * (size_t)rr);
            float *itm_sorted = malloc(sizeof(float) * (size_t)rr);
            for (int r = 0; !rc && top && r < rr; r++)
                top[r] = (hit){itm[r], r};
            if (!rc && top && itm_sorted) {
                qsort(top, (size_t)rr, sizeof *top, by_score);
                hit *copy = malloc(sizeof(hit) * (size_t)rr);
                if (copy) {
                    memcpy(copy, hits, sizeof(hit) * (size_t)rr);
                    for (int r = 0; r < rr; r++) {
                        hits[r] = copy[top[r].index];
                        itm_sorted[r] = top[r].score;
                    }
                    memcpy(itm, itm_sorted, sizeof(float) * (size_t)rr);
                    free(copy);
                }
            }
            free(top), free(itm_sorted), free(tt), free(it), free(mm);
        }
        if (!rc) {
            char *qq = json_quote(q);
            printf("{\"query\":%s,\"results\":[", qq ? qq : "\"\"");
            free(qq);
            for (int r = 0; r < k; r++) {
                printf("%s{\"id\":%s,\"itc\":%.6f", r ? "," : "", id_items[hits[r].index], hits[r].score);
                if (itm && r < rr)
                    printf(",\"itm\":%.6f", itm[r]);
                printf("}");
            }
            printf("]}\n");
            fflush(stdout);
        }
        free(itm);
    }
    free_list(id_items, n);
done:
    free(feat), free(tokens), free(qfeat), free(qtok), free(hits), free(logits);
    if (ix)
        safetensors_close(ix);
    bert_tokenizer_free(tok);
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
    albef_log_set_level(o.quiet ? ALBEF_LOG_WARN : ALBEF_LOG_INFO);
    rc = o.cmd == CMD_EVAL ? run_eval(&o) : o.cmd == CMD_INDEX ? run_index(&o) : run_query(&o);
    if (rc) {
        fprintf(stderr, PROG ": %s\n", albef_errmsg());
        return 1;
    }
    return 0;
}
