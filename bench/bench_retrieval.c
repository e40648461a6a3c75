/* Retrieval evaluation speed on the CPU back end, through the public API
 * (random weights; the ranking work does not depend on them). For each
 * model (tiny at 64 px, albef-base at 256 px) one table row per phase:
 *   embed images, embed texts (L = 30);
 *   ITM re-ranking of one image's k candidate captions, as pairs (the
 *     image's tokens repeated for every pair: the plain fusion pass) and
 *     with albef_itm_logits_one_image (the image's cross-attention keys and
 *     values computed once per layer), and their ratio;
 *   the whole retrieval_scores of n images x 5n captions with k re-ranked
 *     candidates per query, as queries/s.
 * Each rate is the best of --trials runs (the last row runs once).
 *
 *   bench_retrieval [--quick] [--trials N] [--k K] [--images N] */
#include "albef.h"
#include "core/error.h"
#include "core/rng.h"
#include "eval/retrieval.h"
#include "model/albef_model.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

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

#define BEST(var, n, expr)                                                                                          \
    do {                                                                                                           \
        var = 1e30;                                                                                                \
        for (int tr_ = 0; tr_ < (n); tr_++) {                                                                      \
            double t0_ = now();                                                                                    \
            if ((expr) != 0) {                                                                                     \
                fprintf(stderr, "bench_retrieval: %s\n", albef_errmsg());                                         \
                return -1;                                                                                         \
            }                                                                                                      \
            double dt_ = now() - t0_;                                                                              \
            if (dt_ < var)                                                                                         \
                var = dt_;                                                                                         \
        }                                                                                                          \
    } while (0)

static int run_model(const char *preset, const options *o)
{
    char path[256];
    int rc = make_checkpoint(preset, path, sizeof path);
    if (rc) {
        fprintf(stderr, "bench_retrieval: %s\n", albef_errmsg());
        return -1;
    }
    int n_img = o->n_img, n_txt = 5 * n_img, L = 30, k = o->k;
    albef_params p = albef_params_default();
    p.max_batch = k > 32 ? k : 32;
    p.max_text_len = L;
    albef_ctx *ctx;
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
    float *pix = malloc(sizeof(float) * (size_t)n_img * 3 * R * R);
    float *ifeat = malloc(sizeof(float) * (size_t)n_img * E), *itok = malloc(sizeof(float) * (size_t)n_img * T * Cv);
    float *tfeat = malloc(sizeof(float) * (size_t)n_txt * E), *ttok = malloc(sizeof(float) * (size_t)n_txt * L * H);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n_txt * L), *mask = malloc(sizeof(int32_t) * (size_t)n_txt * L);
    float *rep = malloc(sizeof(float) * (size_t)k * T * Cv), *logits = malloc(sizeof(float) * 2 * (size_t)k);
    float *s1 = malloc(sizeof(float) * (size_t)n_img * n_txt), *s2 = malloc(sizeof(float) * (size_t)n_img * n_txt);
    fill(pix, (size_t)n_img * 3 * R * R, &r, 1.0f);
    int lo = V > 2000 ? 1000 : 5; /* word pieces, past the special tokens */
    for (int t = 0; t < n_txt; t++) {
        int len = 8 + (int)rng_below(&r, (uint64_t)(L - 8));
        for (int j = 0; j < L; j++) {
            ids[t * L + j] = j == 0 ? 101 % V : j < len ? lo + (int)rng_below(&r, (uint64_t)(V - lo)) : 0;
            mask[t * L + j] = j < len;
        }
    }
    double t_img, t_txt, t_pairs, t_one, t_all;
    BEST(t_img, o->trials, albef_embed_images(ctx, pix, n_img, ifeat, itok));
    BEST(t_txt, o->trials, albef_embed_texts(ctx, ids, mask, n_txt, L, tfeat, ttok));
    int kk = k < n_txt ? k : n_txt;
    for (int j = 0; j < kk; j++)
        memcpy(rep + (size_t)j * T * Cv, itok, sizeof(float) * (size_t)T * Cv);
    BEST(t_pairs, o->trials, albef_itm_logits(ctx, ttok, mask, kk, L, rep, logits));
    BEST(t_one, o->trials, albef_itm_logits_one_image(ctx, ttok, mask, kk, L, itok, logits));
    retrieval_options ro = {.k_test = k};
    BEST(t_all, 1, retrieval_scores(ctx, &ro, ifeat, itok, n_img, tfeat, ttok, mask, n_txt, L, s1, s2));
    char ph[5][96], rate[5][48], ratio[5][16] = {"", "", "1.00x", "", ""};
    snprintf(ph[0], sizeof ph[0], "embed images (%d px)", R);
    snprintf(rate[0], sizeof rate[0], "%.1f images/s", n_img / t_img);
    snprintf(ph[1], sizeof ph[1], "embed texts (L = %d)", L);
    snprintf(rate[1], sizeof rate[1], "%.1f texts/s", n_txt / t_txt);
    snprintf(ph[2], sizeof ph[2], "ITM, 1 image x %d texts, as pairs", kk);
    snprintf(rate[2], sizeof rate[2], "%.1f pairs/s", kk / t_pairs);
    snprintf(ph[3], sizeof ph[3], "ITM, 1 image x %d texts, shared K/V", kk);
    snprintf(rate[3], sizeof rate[3], "%.1f pairs/s", kk / t_one);
    snprintf(ratio[3], sizeof ratio[3], "%.2fx", t_pairs / t_one);
    snprintf(ph[4], sizeof ph[4], "retrieval_scores, %d x %d, k = %d", n_img, n_txt, k);
    snprintf(rate[4], sizeof rate[4], "%.2f queries/s", (n_img + n_txt) / t_all);
    for (int i = 0; i < 5; i++)
        printf("| %-10s | %-38s | %16s | %6s |\n", preset, ph[i], rate[i], ratio[i]);
    fflush(stdout);
    free(pix), free(ifeat), free(itok), free(tfeat), free(ttok), free(ids), free(mask), free(rep), free(logits),
        free(s1), free(s2);
    albef_free(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    options o = {.trials = 3, .k = 32, .n_img = 16};
    static const struct option longs[] = {
        {"quick", no_argument, 0, 'q'}, {"trials", required_argument, 0, 't'},
        {"k", required_argument, 0, 'k'}, {"images", required_argument, 0, 'n'}, {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "qt:k:n:", longs, NULL)) != -1) {
        switch (c) {
        case 'q': o.quick = 1; o.trials = 1; o.k = 8; o.n_img = 4; break;
        case 't': o.trials = atoi(optarg) > 0 ? atoi(optarg) : 1; break;
        case 'k': o.k = atoi(optarg) > 0 ? atoi(optarg) : 1; break;
        case 'n': o.n_img = atoi(optarg) > 0 ? atoi(optarg) : 1; break;
        default: fprintf(stderr, "usage: bench_retrieval [--quick] [--trials N] [--k K] [--images N]\n"); return 2;
        }
    }
    albef_log_set_level(ALBEF_LOG_WARN);
    printf("| %-10s | %-38s | %16s | %6s |\n", "model", "phase", "rate", "ratio");
    printf("|------------|----------------------------------------|------------------|--------|\n");
    if (run_model("tiny", &o) || run_model("albef-base", &o))
        return 1;
    return 0;
}
