/* Retrieval evaluation speed on the CPU back end, through the public API
 * (random weights; the ranking work does not depend on them). For each
 * model (tiny at 64 px, albef-base at 256 px, albef-base-384) the rates of
 * each phase, measured on a sample:
 *   embed images, embed texts (L = 30);
 *   ITM re-ranking of one image's k candidate captions, as pairs (the
 *     image's tokens repeated for every pair: the plain fusion pass) and
 *     with albef_itm_logits_one_image (the image's cross-attention keys and
 *     values computed once per layer), and their ratio;
 * then a whole test of n images x 5n captions with k re-ranked candidates
 * per query (retrieval_scores after embedding): measured for tiny, with
 * the pairs the protocol asks for, the distinct pairs scored and the fused
 * images (one call each); projected from the rates for the larger models,
 * counting every pair asked for (an upper bound: pairs both directions ask
 * for are scored once). Last, COCO-5K (5,000 images, 25,010 captions,
 * k = 256) projected from albef-base-384's rates.
 * Each rate is the best of --trials runs.
 *
 *   bench_retrieval [--quick] [--trials N] [--k K] [--images N] */
#include "albef.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/threads.h"
#include "eval/retrieval.h"
#include "model/albef_model.h"
#include "run_times.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void fill(float *x, size_t n, rng_state *r, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * (float)rng_normal(r);
}

/* A checkpoint with random weights in a temporary file. */
static int make_checkpoint(const char *preset, char *path, size_t cap)
{
    albef_config cfg;
    backend *be = NULL;
    albef_model m;
    int rc = config_preset(preset, &cfg);
    rc = rc ? rc : backend_create("cpu", &be);
    albef_model_options opt = {.layout = LAYOUT_RETRIEVAL};
    rc = rc ? rc : albef_model_init(&m, &cfg, be, &opt);
    if (rc) {
        backend_destroy(be);
        return rc;
    }
    albef_model_init_weights(&m, 7);
    snprintf(path, cap, "/tmp/bench_retrieval_%s_%d.safetensors", preset, (int)getpid());
    rc = albef_model_save(&m, path);
    albef_model_free(&m);
    backend_destroy(be);
    return rc;
}

typedef struct {
    int trials, k, n_img, quick;
} options;

typedef struct {
    double img, txt, pairs, shared; /* images/s, texts/s, ITM pairs/s plain and with shared K/V */
} rates;

#define BEST(var, n, expr)                                                                                          \
    do {                                                                                                           \
        var = 1e30;                                                                                                \
        for (int tr_ = 0; tr_ < (n); tr_++) {                                                                      \
            double t0_ = now();                                                                                    \
            if ((expr) != 0) {                                                                                     \
                fprintf(stderr, "bench_retrieval: %s\n", albef_errmsg());                                         \
                goto fail;                                                                                         \
            }                                                                                                      \
            double dt_ = now() - t0_;                                                                              \
            if (dt_ < var)                                                                                         \
                var = dt_;                                                                                         \
        }                                                                                                          \
    } while (0)

static void row(const char *model, const char *phase, const char *value, const char *note)
{
    printf("| %-14s | %-44s | %18s | %-34s |\n", model, phase, value, note);
    fflush(stdout);
}

/* n_txt random texts of up to L tokens (word pieces past the special ones) */
static void random_texts(rng_state *r, int n_txt, int L, int V, int32_t *ids, int32_t *mask)
{
    int lo = V > 2000 ? 1000 : 5;
    for (int t = 0; t < n_txt; t++) {
        int len = 8 + (int)rng_below(r, (uint64_t)(L - 8));
        for (int j = 0; j < L; j++) {
            ids[t * L + j] = j == 0 ? 101 % V : j < len ? lo + (int)rng_below(r, (uint64_t)(V - lo)) : 0;
            mask[t * L + j] = j < len;
        }
    }
}

/* Seconds for a test of n_img images and n_txt texts at k from the rates,
 * every asked-for pair counted. */
static double projected(const rates *q, double n_img, double n_txt, int k)
{
    double k_txt = k < n_txt ? k : n_txt, k_img = k < n_img ? k : n_img;
    return n_img / q->img + n_txt / q->txt + (n_img * k_txt + n_txt * k_img) / q->shared;
}

/* Rates on a sample; with full set, also the whole n x 5n test, measured. */
static int run_model(const char *preset, const options *o, int full, rates *q)
{
    char path[256];
    int rc = make_checkpoint(preset, path, sizeof path);
    if (rc) {
        fprintf(stderr, "bench_retrieval: %s\n", albef_errmsg());
        return -1;
    }
    int L = 30, k = o->k, n_s = o->quick ? 4 : 16, n_img = full ? o->n_img : n_s, n_txt = 5 * n_img;
    int kk = o->quick ? 8 : 32; /* candidates of the sampled ITM rates */
    albef_params p = albef_params_default();
    p.max_batch = kk;
    p.max_text_len = L;
    albef_ctx *ctx = NULL;
    float *pix = NULL, *ifeat = NULL, *itok = NULL, *tfeat = NULL, *ttok = NULL, *rep = NULL, *logits = NULL;
    float *s1 = NULL, *s2 = NULL;
    int32_t *ids = NULL, *mask = NULL;
    rc = albef_load(path, &p, &ctx);
    unlink(path);
    if (rc) {
        fprintf(stderr, "bench_retrieval: %s\n", albef_errmsg());
        return -1;
    }
    int R = albef_image_res(ctx), T = albef_image_tokens(ctx), Cv = albef_vision_width(ctx);
    int H = albef_text_width(ctx), E = albef_embed_dim(ctx), V = albef_vocab_size(ctx);
    rng_state r;
    rng_seed(&r, 1);
    pix = malloc(sizeof(float) * (size_t)n_s * 3 * R * R);
    ifeat = malloc(sizeof(float) * (size_t)n_img * E), itok = malloc(sizeof(float) * (size_t)n_img * T * Cv);
    tfeat = malloc(sizeof(float) * (size_t)n_txt * E), ttok = malloc(sizeof(float) * (size_t)n_txt * L * H);
    ids = malloc(sizeof(int32_t) * (size_t)n_txt * L), mask = malloc(sizeof(int32_t) * (size_t)n_txt * L);
    rep = malloc(sizeof(float) * (size_t)kk * T * Cv), logits = malloc(sizeof(float) * 2 * (size_t)kk);
    if (!pix || !ifeat || !itok || !tfeat || !ttok || !ids || !mask || !rep || !logits) {
        fprintf(stderr, "bench_retrieval: out of memory\n");
        goto fail;
    }
    fill(pix, (size_t)n_s * 3 * R * R, &r, 1.0f);
    random_texts(&r, n_txt, L, V, ids, mask);
    double t_img, t_txt, t_pairs, t_one;
    BEST(t_img, o->trials, albef_embed_images(ctx, pix, n_s, ifeat, itok));
    BEST(t_txt, o->trials, albef_embed_texts(ctx, ids, mask, 5 * n_s, L, tfeat, ttok));
    for (int j = 0; j < kk; j++)
        memcpy(rep + (size_t)j * T * Cv, itok, sizeof(float) * (size_t)T * Cv);
    BEST(t_pairs, o->trials, albef_itm_logits(ctx, ttok, mask, kk, L, rep, logits));
    BEST(t_one, o->trials, albef_itm_logits_one_image(ctx, ttok, mask, kk, L, itok, logits));
    *q = (rates){n_s / t_img, 5 * n_s / t_txt, kk / t_pairs, kk / t_one};
    char ph[96], v[48], note[64];
    snprintf(ph, sizeof ph, "embed images (%d px, %d tokens)", R, T);
    snprintf(v, sizeof v, "%.1f images/s", q->img);
    row(preset, ph, v, "");
    snprintf(ph, sizeof ph, "embed texts (L = %d)", L);
    snprintf(v, sizeof v, "%.1f texts/s", q->txt);
    row(preset, ph, v, "");
    snprintf(ph, sizeof ph, "ITM, 1 image x %d texts, as pairs", kk);
    snprintf(v, sizeof v, "%.1f pairs/s", q->pairs);
    row(preset, ph, v, "1.00x");
    snprintf(ph, sizeof ph, "ITM, 1 image x %d texts, shared K/V", kk);
    snprintf(v, sizeof v, "%.1f pairs/s", q->shared);
    snprintf(note, sizeof note, "%.2fx", t_pairs / t_one);
    row(preset, ph, v, note);
    snprintf(ph, sizeof ph, "test %d x %d, k = %d", o->n_img, 5 * o->n_img, k);
    if (full) {
        /* the whole test: embed every image (the sample's pixels again) and text, then rank */
        s1 = malloc(sizeof(float) * (size_t)n_img * n_txt), s2 = malloc(sizeof(float) * (size_t)n_img * n_txt);
        if (!s1 || !s2) {
            fprintf(stderr, "bench_retrieval: out of memory\n");
            goto fail;
        }
        double t0 = now();
        for (int i = 0; i < n_img; i += n_s) {
            int b = n_img - i < n_s ? n_img - i : n_s;
            if (albef_embed_images(ctx, pix, b, ifeat + (size_t)i * E, itok + (size_t)i * T * Cv))
                goto fail_msg;
        }
        /* distinct features per image, as a real test has (the ranking depends on them) */
        fill(ifeat, (size_t)n_img * E, &r, 1.0f);
        if (albef_embed_texts(ctx, ids, mask, n_txt, L, tfeat, ttok))
            goto fail_msg;
        retrieval_stats st;
        retrieval_options ro = {.k_test = k, .stats = &st};
        if (retrieval_scores(ctx, &ro, ifeat, itok, n_img, tfeat, ttok, mask, n_txt, L, s1, s2))
            goto fail_msg;
        double t = now() - t0;
        snprintf(v, sizeof v, "%.1f s", t);
        snprintf(note, sizeof note, "measured; projected %.1f s", projected(q, n_img, n_txt, k));
        row(preset, ph, v, note);
        snprintf(v, sizeof v, "%zu", st.itm_pairs);
        snprintf(note, sizeof note, "of %zu asked; %zu images fused", st.pairs_asked, st.images_fused);
        row(preset, "  ITM pairs scored", v, note);
    } else {
        snprintf(v, sizeof v, "%.0f s", projected(q, o->n_img, 5.0 * o->n_img, k));
        row(preset, ph, v, "projected (every pair asked)");
    }
    free(pix), free(ifeat), free(itok), free(tfeat), free(ttok), free(ids), free(mask), free(rep), free(logits),
        free(s1), free(s2);
    albef_free(ctx);
    return 0;
fail_msg:
    fprintf(stderr, "bench_retrieval: %s\n", albef_errmsg());
fail:
    free(pix), free(ifeat), free(itok), free(tfeat), free(ttok), free(ids), free(mask), free(rep), free(logits),
        free(s1), free(s2);
    albef_free(ctx);
    return -1;
}

int main(int argc, char **argv)
{
    threads_prefer_passive_wait(argv); /* as the programs do */
    options o = {.trials = 3, .k = 128, .n_img = 1000};
    static const struct option longs[] = {
        {"quick", no_argument, 0, 'q'}, {"trials", required_argument, 0, 't'},
        {"k", required_argument, 0, 'k'}, {"images", required_argument, 0, 'n'}, {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "qt:k:n:", longs, NULL)) != -1) {
        switch (c) {
        case 'q': o.quick = 1; o.trials = 1; o.k = 8; o.n_img = 20; break;
        case 't': o.trials = atoi(optarg) > 0 ? atoi(optarg) : 1; break;
        case 'k': o.k = atoi(optarg) > 0 ? atoi(optarg) : 1; break;
        case 'n': o.n_img = atoi(optarg) > 0 ? atoi(optarg) : 1; break;
        default: fprintf(stderr, "usage: bench_retrieval [--quick] [--trials N] [--k K] [--images N]\n"); return 2;
        }
    }
    albef_log_set_level(ALBEF_LOG_WARN);
    row("model", "phase", "rate or time", "note");
    printf("|----------------|----------------------------------------------|--------------------|------------------------------------|\n");
    rates tiny, base, base384;
    if (run_model("tiny", &o, 1, &tiny) || run_model("albef-base", &o, 0, &base))
        return 1;
    if (o.quick)
        return 0;
    if (run_model("albef-base-384", &o, 0, &base384))
        return 1;
    char v[48];
    snprintf(v, sizeof v, "%.1f h", projected(&base384, 5000, 25010, 256) / 3600);
    row("albef-base-384", "COCO-5K test, 5000 x 25010, k = 256", v, "projected (every pair asked)");
    return 0;
}
