/* Speed of the CUDA back end (fp32 parity mode: fp32 storage, fp32 cuBLAS
 * products with TF32 off), albef-base with random weights; one table:
 *   pretrain    a whole pre-training step (ITC with queue and distillation,
 *               ITM with hard negatives, MLM, momentum update, AdamW), 256 px,
 *               L = 25, batch 64 (--batch), and, with --max-batch, the largest
 *               power-of-two batch that fits: samples/s, TFLOP/s, MFU, device
 *               memory in use; with --lt the batch-64 step again with the
 *               linear layers through cuBLASLt (bias in the epilogue), with
 *               --tf32 again with the matrix products on TF32 tensor cores,
 *               with --bf16 again with bf16 product inputs, fp32
 *               accumulation and bf16 storage (--precision bf16; neither is the parity
 *               mode; both take the cuBLASLt path too when --lt is given);
 *   vit384      ViT-B/16 forward at 384 px, batch 64 (images/s);
 *   itm384      fusion encoder + ITM head, L = 30 against 577 image tokens,
 *               128 pairs (pairs/s), as retrieval re-ranking runs it.
 * FLOPs are counted as the ops are called (a back end that wraps the CUDA one
 * and adds 2 M N K per matrix product, 4 B H Tq Tk D per attention forward
 * and twice that backward); everything else is left out. MFU is against the
 * card's dense fp32 peak (CUDA cores), the rate fp32 parity mode can reach,
 * and for the TF32 and bf16 rows against the dense TF32 and bf16 tensor-core
 * peaks; the figures come from the device name (--peak-tflops overrides the
 * fp32 one).
 *
 *   bench_cuda [--quick] [--batch N] [--max-batch] [--lt] [--tf32] [--bf16] [--steps N] [--peak-tflops X]
 *
 * Without a CUDA device (or in a build without CUDA) it says so and exits 0. */
#include "core/device.h"
#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "model/albef_model.h"
#include "ops/arena.h"
#include "train/pretrain.h"
#ifdef ALBEF_HAVE_CUDA
#include "../cuda/cuda_backend.h"
#endif
#include "run_times.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLS_ID 101
#define MASK_ID 103
#define FIRST_WORD 1000

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, compare_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- a back end that counts FLOPs and calls the CUDA one ------------------- */

static const struct backend_ops *real;
static struct backend_ops counting_ops;
static double flops;

static void c_matmul(backend *be, tensor c, tensor a, tensor b, int ta, int tb, float alpha, float beta)
{
    int64_t batch = c.ndim == 3 ? c.shape[0] : 1, k = ta ? a.shape[a.ndim - 2] : a.shape[a.ndim - 1];
    flops += 2.0 * (double)batch * (double)c.shape[c.ndim - 2] * (double)c.shape[c.ndim - 1] * (double)k;
    real->matmul(be, c, a, b, ta, tb, alpha, beta);
}

static void c_linear_forward(backend *be, tensor out, tensor in, tensor w, tensor bias)
{
    flops += 2.0 * (double)tensor_rows(in) * (double)tensor_cols(in) * (double)w.shape[0];
    real->linear_forward(be, out, in, w, bias);
}

static void c_linear_backward(backend *be, tensor din, int accumulate, tensor dw, tensor dbias, tensor dout,
                              tensor in, tensor w)
{
    double mnk = 2.0 * (double)tensor_rows(dout) * (double)tensor_cols(dout) * (double)w.shape[1];
    flops += mnk * (tensor_present(din) + tensor_present(dw));
    real->linear_backward(be, din, accumulate, dw, dbias, dout, in, w);
}

static double attention_flops(const attn_params *p)
{
    return 4.0 * p->batch * p->heads * (double)p->q_len * p->kv_len * p->head_dim;
}

static void c_attention_forward(backend *be, const attn_params *p, tensor out, tensor state, tensor q, tensor k,
                                tensor v, tensor mask)
{
    flops += attention_flops(p);
    real->attention_forward(be, p, out, state, q, k, v, mask);
}

static void c_attention_backward(backend *be, const attn_params *p, tensor dq, tensor dk, tensor dv, tensor scratch,
                                 tensor dout, tensor out, tensor state, tensor q, tensor k, tensor v, tensor mask)
{
    flops += 2.0 * attention_flops(p);
    real->attention_backward(be, p, dq, dk, dv, scratch, dout, out, state, q, k, v, mask);
}

/* The same device state (impl) behind a table whose products are counted. */
static backend counting_backend(backend *gpu)
{
    real = gpu->ops;
    counting_ops = *gpu->ops;
    counting_ops.matmul = c_matmul;
    counting_ops.linear_forward = c_linear_forward;
    counting_ops.linear_backward = c_linear_backward;
    counting_ops.attention_forward = c_attention_forward;
    counting_ops.attention_backward = c_attention_backward;
    backend b = *gpu;
    b.ops = &counting_ops;
    return b;
}

/* ---- the rows ------------------------------------------------------------------ */

typedef struct {
    char name[32];
    int batch;
    double seconds; /* median per pass */
    double flops;   /* per pass */
    double mem_gib; /* device memory in use after the runs */
    const char *unit;
    int mode; /* MODE_* of the products */
    int ok;
} row;

/* dense fp32 (CUDA cores), dense TF32 and bf16 (tensor cores) */
static double peak_tflops, peak_tf32, peak_bf16;

static double memory_in_use_gib(backend *be)
{
    size_t free_b = 0, total = 0;
#ifdef ALBEF_HAVE_CUDA
    if (cuda_backend_memory(be, &free_b, &total))
        return 0;
#else
    (void)be;
#endif
    return (double)(total - free_b) / 1073741824.0;
}

static int check_device(backend *be, const char *what)
{
#ifdef ALBEF_HAVE_CUDA
    char msg[512];
    if (cuda_backend_last_error(be, msg, sizeof msg))
        return albef_error(ALBEF_ERR_IO, "%s: CUDA back end error: %s", what, msg);
#else
    (void)be, (void)what;
#endif
    return ALBEF_OK;
}

static void text_ids(int32_t *ids, int batch, int len, int vocab)
{
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < len; t++)
            ids[b * len + t] = t == 0 ? CLS_ID
                                      : FIRST_WORD + (int32_t)(((int64_t)b * 7919 + (int64_t)t * 104729) %
                                                               (vocab - FIRST_WORD));
}

static void fill_normal_host(float *x, size_t n, uint64_t seed)
{
    rng_state r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(&r);
}

#define MODE_TF32 1
#define MODE_LT 2
#define MODE_BF16 4

/* Sets the back end's product paths; returns 0 on success. */
static int set_mode(backend *gpu, int mode)
{
#ifdef ALBEF_HAVE_CUDA
    cuda_backend_set_lt(gpu, mode & MODE_LT);
    /* as --precision does (bf16 also stores activations in bf16) */
    return backend_set_precision(gpu, mode & MODE_BF16 ? "bf16" : mode & MODE_TF32 ? "tf32" : "fp32");
#else
    (void)gpu;
    return mode != 0;
#endif
}

/* Pre-training steps at batch B: 2 warm-up steps (the first counted), then
 * `steps` timed ones. */
static int bench_pretrain(backend *gpu, int B, int steps, int mode, row *r)
{
    albef_config cfg;
    int rc = config_preset("albef-base", &cfg);
    if (rc)
        return rc;
    int L = 25;
    snprintf(r->name, sizeof r->name, "pretrain 256px%s%s%s", mode & MODE_LT ? " lt" : "",
             mode & MODE_TF32 ? " tf32" : "", mode & MODE_BF16 ? " bf16" : "");
    r->batch = B, r->unit = "samples/s", r->mode = mode;
    if (set_mode(gpu, mode))
        return albef_error(ALBEF_ERR_UNSUPPORTED, "cannot set the TF32 math mode");
    backend counted = counting_backend(gpu);
    pretrain_options opt = pretrain_options_default(B);
    opt.max_len = L;
    pretrainer t;
    memset(&t, 0, sizeof t);
    rc = pretrainer_init(&t, &cfg, &counted, &opt, CLS_ID, MASK_ID);
    if (rc) {
        pretrainer_free(&t);
        set_mode(gpu, 0);
        return albef_error_context(rc, "pretrain batch %d: ", B);
    }
    albef_model_init_weights(&t.online, 1);
    pretrainer_sync_momentum(&t);
    size_t R = (size_t)cfg.image_res, BL = (size_t)B * L;
    float *images = malloc(sizeof(float) * (size_t)B * 3 * R * R);
    int32_t *ids = malloc(sizeof(int32_t) * BL), *mask = malloc(sizeof(int32_t) * BL);
    if (!images || !ids || !mask) {
        rc = albef_error(ALBEF_ERR_NOMEM, "pretrain: out of host memory");
        goto done;
    }
    fill_normal_host(images, (size_t)B * 3 * R * R, 7);
    text_ids(ids, B, L, cfg.bert.vocab_size);
    for (size_t i = 0; i < BL; i++)
        mask[i] = 1;
    pretrain_batch batch = {.images = images, .ids = ids, .mask = mask, .len = L, .alpha = 0.4f};
    pretrain_stats st;
    double *times = malloc(sizeof(double) * (size_t)steps);
    for (int s = -2; s < steps && !rc; s++) {
        flops = 0;
        gpu->ops->synchronize(gpu);
        double t0 = now();
        rc = pretrainer_step(&t, &batch, 1e-5f, &st);
        gpu->ops->synchronize(gpu);
        if (s == -2)
            r->flops = flops;
        else if (s >= 0)
            times[s] = now() - t0;
        rc = rc ? rc : check_device(gpu, "pretrain");
    }
    if (!rc) {
        r->seconds = median(times, steps);
        r->mem_gib = memory_in_use_gib(gpu);
        r->ok = 1;
        fprintf(stderr, "bench_cuda: pretrain B=%d: losses itc %.3f itm %.3f mlm %.3f, %.1f GFLOP per step\n", B,
                st.loss_ita, st.loss_itm, st.loss_mlm, r->flops / 1e9);
    }
    free(times);
done:
    free(images), free(ids), free(mask);
    pretrainer_free(&t);
    set_mode(gpu, 0);
    return rc;
}

/* The largest power-of-two batch whose activations fit the free memory
 * (with a tenth kept back), at least 64. */
static int largest_batch(backend *gpu)
{
    albef_config cfg;
    if (config_preset("albef-base", &cfg))
        return 64;
    size_t free_b = 0, total = 0;
#ifdef ALBEF_HAVE_CUDA
    if (cuda_backend_memory(gpu, &free_b, &total))
        return 64;
#else
    (void)gpu, (void)total;
#endif
    albef_model m;
    albef_model_options mo = {.layout = LAYOUT_PRETRAIN, .with_grads = 1};
    size_t weights = 0;
    if (albef_model_init(&m, &cfg, backend_null(), &mo) == ALBEF_OK)
        weights = m.params.numel * sizeof(float) * 5; /* values, grads, two moments, momentum copy */
    albef_model_free(&m);
    size_t per = pretrainer_bytes_per_sample(gpu, &cfg, 25);
    double room = 0.9 * (double)free_b - (double)weights;
    int B = 64;
    while (per && (double)per * (2 * B) <= room && cfg.queue_size % (2 * B) == 0)
        B *= 2;
    fprintf(stderr, "bench_cuda: %.1f GiB free, %.0f MiB per sample: largest batch %d\n", free_b / 1073741824.0,
            per / 1048576.0, B);
    return B;
}

/* ViT-B/16 forward at 384 px, or the fusion encoder + ITM head against its
 * 577 image tokens: `iters` timed passes after one warm-up. */
static int bench_inference(backend *gpu, int itm, int B, int iters, row *r)
{
    albef_config cfg;
    int rc = config_preset("albef-base-384", &cfg);
    if (rc)
        return rc;
    snprintf(r->name, sizeof r->name, itm ? "itm 384px L=30" : "vit 384px");
    r->batch = B, r->unit = itm ? "pairs/s" : "images/s";
    backend counted = counting_backend(gpu);
    albef_model m;
    albef_model_options mo = {.layout = LAYOUT_PRETRAIN};
    rc = albef_model_init(&m, &cfg, &counted, &mo);
    if (rc)
        return albef_error_context(rc, "%s: ", r->name);
    albef_model_init_weights(&m, 1);
    int64_t R = cfg.image_res, L = 30, H = cfg.bert.hidden_size, C = cfg.vision_width;
    int64_t T = config_num_patches(&cfg) + 1;
    vit_acts va = {0};
    bert_acts ba = {0};
    rc = itm ? bert_acts_init(&ba, &m.text) : vit_acts_init(&va, &m.vit);
    va.inference = ba.inference = 1;
    arena ar;
    size_t n_in = itm ? (size_t)(B * L * H + B * T * C) : (size_t)(B * 3 * R * R);
    float *host = rc ? NULL : malloc(sizeof(float) * n_in);
    float *mask = rc ? NULL : calloc((size_t)(B * L), sizeof(float));
    if (!rc && (!host || !mask))
        rc = albef_error(ALBEF_ERR_NOMEM, "%s: out of host memory", r->name);
    if (!rc)
        fill_normal_host(host, n_in, 5);
    /* two passes over the arena: sizing on the null back end, then the real one */
    for (int sizing = 1; sizing >= 0 && !rc; sizing--) {
        backend *be = sizing ? backend_null_for(&counted) : &counted;
        if (sizing)
            arena_init_measuring(&ar);
        else if ((rc = arena_init(&ar, be, ar.peak)) != ALBEF_OK)
            break;
        tensor images = {0}, embeds = {0}, enc = {0}, tmask = {0};
        if (itm) {
            embeds = arena_f32(&ar, B, L, H), enc = arena_f32(&ar, B, T, C), tmask = arena_f32(&ar, B, L);
            if (!sizing) {
                be->ops->upload(be, embeds.data, host, tensor_nbytes(embeds));
                be->ops->upload(be, enc.data, host + B * L * H, tensor_nbytes(enc));
                be->ops->upload(be, tmask.data, mask, tensor_nbytes(tmask));
            }
        } else {
            images = arena_f32(&ar, B, 3, R, R);
            if (!sizing)
                be->ops->upload(be, images.data, host, tensor_nbytes(images));
        }
        size_t mark = arena_mark(&ar);
        double *times = malloc(sizeof(double) * (size_t)iters);
        for (int i = -1; i < (sizing ? 0 : iters); i++) {
            arena_reset(&ar, mark);
            flops = 0;
            be->ops->synchronize(be);
            double t0 = now();
            if (itm) {
                bert_inputs in = {.mode = BERT_FUSION, .embeds = embeds, .text_mask = tmask, .enc = {enc}, .n_enc = 1};
                bert_forward(be, &m.text, &ba, &ar, &in, NULL);
                tensor cls = arena_f32(&ar, B, H), logits = arena_f32(&ar, B, 2); /* (B, H), (B, 2) */
                op_copy_rows(be, cls, H, ba.out, L * H, B, H, 0);
                op_linear_forward(be, logits, cls, m.itm_head.weight, m.itm_head.bias);
            } else {
                vit_forward(be, &m.vit, &va, &ar, images);
            }
            be->ops->synchronize(be);
            if (i == -1 && !sizing)
                r->flops = flops;
            else if (i >= 0)
                times[i] = now() - t0;
        }
        if (!sizing) {
            rc = check_device(gpu, r->name);
            r->seconds = median(times, iters);
            r->mem_gib = memory_in_use_gib(gpu);
            r->ok = !rc;
        }
        free(times);
        arena_free(&ar);
    }
    free(host), free(mask);
    vit_acts_free(&va);
    bert_acts_free(&ba);
    albef_model_free(&m);
    return rc;
}

/* ---- main ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_cuda [--quick] [--batch N] [--max-batch] [--lt] [--tf32] [--bf16] [--steps N] "
               "[--peak-tflops X]\n");
}

/* Dense fp32 (CUDA core), TF32 and bf16 (tensor core) peaks, TFLOP/s, by
 * device name and MODE_* (NVIDIA's data sheets, SXM boards unless named). */
static double card_peak(const char *desc, int mode)
{
    int k = mode & MODE_BF16 ? 2 : mode & MODE_TF32 ? 1 : 0;
    if (strstr(desc, "H100 PCIe"))
        return (const double[]){51.2, 378.0, 756.0}[k];
    if (strstr(desc, "H100") || strstr(desc, "H200") || strstr(desc, "H800"))
        return (const double[]){66.9, 494.7, 989.4}[k];
    if (strstr(desc, "A100"))
        return (const double[]){19.5, 156.0, 312.0}[k];
    return 0;
}

int main(int argc, char **argv)
{
    int quick = 0, batch = 64, max_batch = 0, lt = 0, tf32 = 0, bf16 = 0, steps = 0;
    static const struct option longopts[] = {
        {"quick", no_argument, 0, 'q'},         {"batch", required_argument, 0, 'b'},
        {"max-batch", no_argument, 0, 'm'},     {"tf32", no_argument, 0, 't'},
        {"lt", no_argument, 0, 'l'},            {"bf16", no_argument, 0, 'f'},
        {"steps", required_argument, 0, 's'},
        {"peak-tflops", required_argument, 0, 'p'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'q': quick = 1; break;
        case 'b': batch = atoi(optarg); break;
        case 'm': max_batch = 1; break;
        case 't': tf32 = 1; break;
        case 'l': lt = 1; break;
        case 'f': bf16 = 1; break;
        case 's': steps = atoi(optarg); break;
        case 'p': peak_tflops = atof(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (batch < 1 || steps < 0 || peak_tflops < 0) {
        usage(stderr);
        return 2;
    }
    albef_log_set_level(ALBEF_LOG_WARN);
    char desc[512];
    backend *gpu = NULL;
    if (device_cuda_probe(desc, sizeof desc) != ALBEF_OK || backend_create("cuda", &gpu) != ALBEF_OK) {
        printf("bench_cuda: skipped: no CUDA device (%s)\n", albef_errmsg());
        return 0;
    }
    if (!peak_tflops)
        peak_tflops = card_peak(desc, 0);
    peak_tf32 = card_peak(desc, MODE_TF32);
    peak_bf16 = card_peak(desc, MODE_BF16);
    if (!steps)
        steps = quick ? 3 : 10;
    int iters = quick ? 5 : 20;
    fprintf(stderr, "bench_cuda: %s\n", desc);

    row rows[7];
    int n = 0, rc = ALBEF_OK;
    memset(rows, 0, sizeof rows);
    /* batch 64 in parity mode, the largest batch, then the faster paths */
    int batches[5] = {batch, max_batch ? largest_batch(gpu) : 0, lt ? batch : 0, tf32 ? batch : 0, bf16 ? batch : 0};
    int modes[5] = {0, 0, MODE_LT, MODE_TF32 | (lt ? MODE_LT : 0), MODE_BF16 | (lt ? MODE_LT : 0)};
    for (int k = 0; k < 5; k++) {
        if (!batches[k] || (k == 1 && batches[1] == batches[0]))
            continue;
        int r = bench_pretrain(gpu, batches[k], steps, modes[k], &rows[n++]);
        if (r) {
            fprintf(stderr, "bench_cuda: %s\n", albef_errmsg());
            rc = r;
        }
    }
    if (bench_inference(gpu, 0, 64, iters, &rows[n++]) || bench_inference(gpu, 1, 128, iters, &rows[n++])) {
        fprintf(stderr, "bench_cuda: %s\n", albef_errmsg());
        rc = 1;
    }

    printf("CUDA back end, fp32 parity mode (unless a row says tf32 or bf16), albef-base, %s\n", desc);
    printf("MFU against the dense fp32 peak of %.1f TFLOP/s%s; tf32 rows against the dense TF32 peak of %.1f, "
           "bf16 rows against the dense bf16 peak of %.1f\n",
           peak_tflops, peak_tflops ? "" : " (unknown card: pass --peak-tflops)", peak_tf32, peak_bf16);
    printf("%-20s %6s %12s %-10s %9s %9s %8s %9s\n", "row", "batch", "rate", "", "ms/pass", "TFLOP/s", "MFU",
           "mem GiB");
    for (int i = 0; i < n; i++) {
        const row *w = &rows[i];
        if (!w->ok) {
            printf("%-20s %6d %12s\n", w->name, w->batch, "failed");
            continue;
        }
        double tf = w->flops / w->seconds / 1e12;
        double peak = w->mode & MODE_BF16 ? peak_bf16 : w->mode & MODE_TF32 ? peak_tf32 : peak_tflops;
        printf("%-20s %6d %12.1f %-10s %9.1f %9.2f %7.1f%% %9.2f\n", w->name, w->batch, w->batch / w->seconds,
               w->unit, 1e3 * w->seconds, tf, peak ? 100.0 * tf / peak : 0.0, w->mem_gib);
    }
    backend_destroy(gpu);
    return rc ? 1 : 0;
}
