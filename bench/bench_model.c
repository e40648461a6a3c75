/* Model speed on the CPU back end (fp32, OpenBLAS + OpenMP) beside PyTorch:
 * albef-base with random weights, one table with, per row, our rate, the
 * PyTorch reference model's rate (scripts/dev/bench_model_torch.py, same
 * thread count, batch sizes and inputs) and their ratio:
 *   ViT-B/16 forward at 256 and 384 px (images/s);
 *   text encoder (6 layers, mode text) forward at L = 30 (sequences/s);
 *   fusion encoder + ITM head forward, L = 30 against 257 image tokens (pairs/s);
 *   forward + backward of the reference scenario (tests/scenario.c: ITC, ITM
 *   over 2B rows, MLM), 256 px, L = 25 (samples/s);
 *   peak RSS of each process.
 * The PyTorch side is a child process driven line by line: each row is warmed
 * up once on both sides, then their runs alternate (never overlap) until each
 * has run --min-iters times and --min-time seconds, so that both see the same
 * load on a shared machine. The table shows the best time (noise only ever
 * slows a run down); the medians go to stderr. --profile adds, for one
 * ViT-256 forward and one scenario step, the time spent in each of our ops (a
 * back end that wraps the CPU one with timers), and PyTorch's largest ops of
 * the same ViT forward (torch.profiler).
 *
 *   bench_model [--quick] [--no-torch] [--profile] [--rows LIST] [--ROW-batch N] ...
 *
 * Run from the repository root (the PyTorch script and its configs are found
 * relative to it). Without /usr/bin/python3 and torch the PyTorch columns
 * read n/a. */
#include "core/error.h"
#include "core/rng.h"
#include "core/threads.h"
#include "model/albef_model.h"
#include "ops/arena.h"
#include "../tests/scenario.h"
#include "row_list.h"
#include "torch_side.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define TORCH_SCRIPT "scripts/dev/bench_model_torch.py"
#define CLS_ID 101
#define MASK_ID 103
#define FIRST_WORD 1000

/* ---- options -------------------------------------------------------------- */

enum row_id { ROW_VIT256, ROW_VIT384, ROW_TEXT, ROW_FUSION, ROW_SCENARIO, ROW_COUNT };

static const char *const row_names[ROW_COUNT] = {"vit256", "vit384", "text", "fusion", "scenario"};

typedef struct {
    int batch[ROW_COUNT];
    int text_len, scenario_len;
    run_budget budget;
    int run[ROW_COUNT];
    int torch, profile;
    const char *python;
} bench_options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_model [options]\n"
            "  --quick              small batches, one timed run per row (a few minutes)\n"
            "  --rows LIST          comma-separated subset of vit256,vit384,text,fusion,scenario\n"
            "  --vit256-batch N     images (default 4)      --vit384-batch N   images (default 2)\n"
            "  --text-batch N       sequences (default 32)  --text-len N       tokens (default 30)\n"
            "  --fusion-batch N     pairs (default 16)\n"
            "  --scenario-batch N   samples (default 4)     --scenario-len N   tokens (default 25)\n"
            "  --min-iters N        timed runs per row at least (default 2)\n"
            "  --min-time S         seconds per row at least (default 2)\n"
            "  --no-torch           leave the PyTorch columns out\n"
            "  --python PATH        interpreter for %s (default /usr/bin/python3)\n"
            "  --profile            time every op of one ViT-256 forward and one scenario step\n",
            TORCH_SCRIPT);
}

static int parse_positive(const char *flag, const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 4096) {
        fprintf(stderr, "bench_model: --%s: expected an integer in [1, 4096], got '%s'\n", flag, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Returns 0, 1 (--help printed) or -1 (usage error). */
static int parse_options(int argc, char **argv, bench_options *o)
{
    *o = (bench_options){
        .batch = {4, 2, 32, 16, 4},
        .text_len = 30,
        .scenario_len = 25,
        .budget = {.min_iters = 2, .max_iters = 20, .min_time = 2.0},
        .run = {1, 1, 1, 1, 1},
        .torch = 1,
        .python = "/usr/bin/python3",
    };
    enum { O_VIT256 = 256, O_VIT384, O_TEXT, O_TEXT_LEN, O_FUSION, O_SCEN, O_SCEN_LEN, O_ITERS, O_TIME, O_ROWS,
           O_PYTHON };
    static const struct option longopts[] = {
        {"quick", no_argument, NULL, 'q'},
        {"no-torch", no_argument, NULL, 'n'},
        {"profile", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {"rows", required_argument, NULL, O_ROWS},
        {"vit256-batch", required_argument, NULL, O_VIT256},
        {"vit384-batch", required_argument, NULL, O_VIT384},
        {"text-batch", required_argument, NULL, O_TEXT},
        {"text-len", required_argument, NULL, O_TEXT_LEN},
        {"fusion-batch", required_argument, NULL, O_FUSION},
        {"scenario-batch", required_argument, NULL, O_SCEN},
        {"scenario-len", required_argument, NULL, O_SCEN_LEN},
        {"min-iters", required_argument, NULL, O_ITERS},
        {"min-time", required_argument, NULL, O_TIME},
        {"python", required_argument, NULL, O_PYTHON},
        {NULL, 0, NULL, 0},
    };
    /* explicit flags win over --quick wherever they appear */
    int explicit_batch[ROW_COUNT] = {0}, quick = 0, explicit_iters = 0, explicit_time = 0;
    int c, rc = 0, li = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, &li)) != -1 && !rc) {
        const char *flag = longopts[li].name;
        switch (c) {
        case 'q': quick = 1; break;
        case 'n': o->torch = 0; break;
        case 'p': o->profile = 1; break;
        case 'h': usage(stdout); return 1;
        case O_ROWS: rc = row_list_parse("bench_model", optarg, row_names, ROW_COUNT, o->run); break;
        case O_VIT256:
        case O_VIT384:
        case O_TEXT:
        case O_FUSION:
        case O_SCEN: {
            enum row_id r = c == O_VIT256   ? ROW_VIT256
                            : c == O_VIT384 ? ROW_VIT384
                            : c == O_TEXT   ? ROW_TEXT
                            : c == O_FUSION ? ROW_FUSION
                                            : ROW_SCENARIO;
            rc = parse_positive(flag, optarg, &o->batch[r]);
            explicit_batch[r] = 1;
            break;
        }
        case O_TEXT_LEN: rc = parse_positive(flag, optarg, &o->text_len); break;
        case O_SCEN_LEN: rc = parse_positive(flag, optarg, &o->scenario_len); break;
        case O_ITERS: rc = parse_positive(flag, optarg, &o->budget.min_iters), explicit_iters = 1; break;
        case O_TIME: {
            char *end;
            o->budget.min_time = strtod(optarg, &end);
            explicit_time = 1;
            if (*optarg == '\0' || *end != '\0' || !(o->budget.min_time >= 0 && o->budget.min_time <= 600)) {
                fprintf(stderr, "bench_model: --min-time: expected seconds in [0, 600], got '%s'\n", optarg);
                rc = -1;
            }
            break;
        }
        case O_PYTHON: o->python = optarg; break;
        default:
            fprintf(stderr, "bench_model: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            rc = -1;
        }
    }
    if (!rc && optind < argc) {
        fprintf(stderr, "bench_model: unexpected argument '%s'\n", argv[optind]);
        rc = -1;
    }
    if (!rc && (o->text_len < 2 || o->scenario_len < 2 || o->text_len > 512 || o->scenario_len > 512)) {
        fprintf(stderr, "bench_model: text lengths must be in [2, 512]\n");
        rc = -1;
    }
    if (!rc && o->batch[ROW_SCENARIO] < 2) {
        fprintf(stderr, "bench_model: --scenario-batch must be at least 2 (ITM negatives come from another row)\n");
        rc = -1;
    }
    if (!rc && quick) {
        static const int quick_batch[ROW_COUNT] = {2, 1, 8, 4, 2};
        for (int r = 0; r < ROW_COUNT; r++)
            if (!explicit_batch[r])
                o->batch[r] = quick_batch[r];
        if (!explicit_iters)
            o->budget.min_iters = 1;
        if (!explicit_time)
            o->budget.min_time = 0.5;
    }
    return rc;
}

/* ---- the op profile: a back end that times each call of the CPU one ------- */

enum prof_slot {
    P_LINEAR_F, P_LINEAR_B, P_MATMUL, P_ATTN_F, P_ATTN_B, P_GELU_F, P_GELU_B, P_LN_F, P_LN_B, P_ADD, P_EMBED_F,
    P_EMBED_B, P_PATCH, P_VIT_EMBED_F, P_VIT_EMBED_B, P_XENT, P_ROWS, P_FILL, P_COUNT
};
static const char *const prof_names[P_COUNT] = {
    "linear forward (GEMM + bias)", "linear backward (2 GEMM + bias sum)", "matmul", "attention forward",
    "attention backward", "(bias +) GELU forward", "(bias +) GELU backward", "(residual +) layernorm forward",
    "(residual +) layernorm backward",
    "add / accumulate", "BERT embedding forward", "BERT embedding backward", "patchify", "ViT embed forward",
    "ViT embed backward", "softmax cross-entropy", "gather / scatter / copy rows", "fill",
};

typedef struct {
    double seconds[P_COUNT];
    double flops[P_COUNT]; /* counted for the GEMMs and attention only */
    long calls[P_COUNT];
} op_profile;
static op_profile prof;

static const struct backend_ops *cpu_table(void) { return backend_cpu()->ops; }

#define TIMED(slot, nflops, call)                                                                                  \
    do {                                                                                                           \
        double t0_ = now();                                                                                        \
        call;                                                                                                      \
        prof.seconds[slot] += now() - t0_;                                                                         \
        prof.flops[slot] += (nflops);                                                                              \
        prof.calls[slot]++;                                                                                        \
    } while (0)

static void p_linear_forward(backend *be, tensor out, tensor in, tensor w, tensor bias)
{
    (void)be;
    double f = 2.0 * (double)tensor_rows(in) * (double)tensor_cols(in) * (double)w.shape[0];
    TIMED(P_LINEAR_F, f, cpu_table()->linear_forward(backend_cpu(), out, in, w, bias));
}

static void p_linear_backward(backend *be, tensor din, int accumulate, tensor dw, tensor dbias, tensor dout, tensor in,
                              tensor w)
{
    (void)be;
    double mnk = (double)tensor_rows(dout) * (double)tensor_cols(dout) * (double)w.shape[1];
    double f = 2.0 * mnk * (tensor_present(din) + tensor_present(dw));
    TIMED(P_LINEAR_B, f, cpu_table()->linear_backward(backend_cpu(), din, accumulate, dw, dbias, dout, in, w));
}

static void p_matmul(backend *be, tensor c, tensor a, tensor b, int ta, int tb, float alpha, float beta)
{
    (void)be;
    int64_t k = ta ? a.shape[a.ndim - 2] : a.shape[a.ndim - 1];
    TIMED(P_MATMUL, 2.0 * (double)tensor_numel(c) * (double)k,
          cpu_table()->matmul(backend_cpu(), c, a, b, ta, tb, alpha, beta));
}

static double attention_flops(const attn_params *p)
{
    return 4.0 * p->batch * p->heads * (double)p->q_len * p->kv_len * p->head_dim;
}

static void p_attention_forward(backend *be, const attn_params *p, tensor out, tensor state, tensor q, tensor k,
                                tensor v, tensor mask)
{
    (void)be;
    TIMED(P_ATTN_F, attention_flops(p), cpu_table()->attention_forward(backend_cpu(), p, out, state, q, k, v, mask));
}

static void p_attention_backward(backend *be, const attn_params *p, tensor dq, tensor dk, tensor dv, tensor scratch,
                                 tensor dout, tensor out, tensor state, tensor q, tensor k, tensor v, tensor mask)
{
    (void)be;
    TIMED(P_ATTN_B, 2.0 * attention_flops(p),
          cpu_table()->attention_backward(backend_cpu(), p, dq, dk, dv, scratch, dout, out, state, q, k, v, mask));
}

static void p_gelu_forward(backend *be, tensor out, tensor in)
{
    (void)be;
    TIMED(P_GELU_F, 0, cpu_table()->gelu_forward(backend_cpu(), out, in));
}

static void p_gelu_backward(backend *be, tensor din, tensor dout, tensor in)
{
    (void)be;
    TIMED(P_GELU_B, 0, cpu_table()->gelu_backward(backend_cpu(), din, dout, in));
}

static void p_layernorm_forward(backend *be, tensor out, tensor mean, tensor rstd, tensor in, tensor w, tensor b,
                                float eps)
{
    (void)be;
    TIMED(P_LN_F, 0, cpu_table()->layernorm_forward(backend_cpu(), out, mean, rstd, in, w, b, eps));
}

static void p_layernorm_backward(backend *be, tensor din, int accumulate, tensor dw, tensor db, tensor dout, tensor in,
                                 tensor w, tensor mean, tensor rstd)
{
    (void)be;
    TIMED(P_LN_B, 0,
          cpu_table()->layernorm_backward(backend_cpu(), din, accumulate, dw, db, dout, in, w, mean, rstd));
}

static void p_bias_gelu_forward(backend *be, tensor out, tensor pre, tensor in, tensor bias)
{
    (void)be;
    TIMED(P_GELU_F, 0, cpu_table()->bias_gelu_forward(backend_cpu(), out, pre, in, bias));
}

static void p_bias_gelu_backward(backend *be, tensor din, tensor dbias, tensor dout, tensor pre)
{
    (void)be;
    TIMED(P_GELU_B, 0, cpu_table()->bias_gelu_backward(backend_cpu(), din, dbias, dout, pre));
}

static void p_residual_layernorm_forward(backend *be, tensor out, tensor mean, tensor rstd, tensor sum, tensor x,
                                         tensor bias, tensor residual, tensor w, tensor b, float eps, float p,
                                         uint64_t seed)
{
    (void)be;
    TIMED(P_LN_F, 0,
          cpu_table()->residual_layernorm_forward(backend_cpu(), out, mean, rstd, sum, x, bias, residual, w, b, eps,
                                                  p, seed));
}

static void p_residual_layernorm_backward(backend *be, tensor dsum, int accumulate, tensor dx, tensor dbias,
                                          tensor dw, tensor db, tensor dout, tensor sum, tensor w, tensor mean,
                                          tensor rstd, float p, uint64_t seed)
{
    (void)be;
    TIMED(P_LN_B, 0,
          cpu_table()->residual_layernorm_backward(backend_cpu(), dsum, accumulate, dx, dbias, dw, db, dout, sum, w,
                                                   mean, rstd, p, seed));
}

static void p_add(backend *be, tensor out, tensor a, tensor b)
{
    (void)be;
    TIMED(P_ADD, 0, cpu_table()->add(backend_cpu(), out, a, b));
}

static void p_accumulate(backend *be, tensor acc, tensor x)
{
    (void)be;
    TIMED(P_ADD, 0, cpu_table()->accumulate(backend_cpu(), acc, x));
}

static void p_embedding_forward(backend *be, tensor out, tensor ids, tensor word, tensor pos, tensor type_row)
{
    (void)be;
    TIMED(P_EMBED_F, 0, cpu_table()->embedding_forward(backend_cpu(), out, ids, word, pos, type_row));
}

static void p_embedding_backward(backend *be, tensor dword, tensor dpos, tensor dtype_row, tensor dout, tensor ids)
{
    (void)be;
    TIMED(P_EMBED_B, 0, cpu_table()->embedding_backward(backend_cpu(), dword, dpos, dtype_row, dout, ids));
}

static void p_patchify(backend *be, tensor patches, tensor images, int patch)
{
    (void)be;
    TIMED(P_PATCH, 0, cpu_table()->patchify(backend_cpu(), patches, images, patch));
}

static void p_vit_embed_forward(backend *be, tensor out, tensor patch_tokens, tensor cls, tensor pos)
{
    (void)be;
    TIMED(P_VIT_EMBED_F, 0, cpu_table()->vit_embed_forward(backend_cpu(), out, patch_tokens, cls, pos));
}

static void p_vit_embed_backward(backend *be, tensor dpatch_tokens, tensor dcls, tensor dpos, tensor dout)
{
    (void)be;
    TIMED(P_VIT_EMBED_B, 0, cpu_table()->vit_embed_backward(backend_cpu(), dpatch_tokens, dcls, dpos, dout));
}

static void p_softmax_xent(backend *be, const xent_params *p, tensor loss, tensor dlogits, tensor logits,
                           tensor labels, tensor soft)
{
    (void)be;
    TIMED(P_XENT, 0, cpu_table()->softmax_xent(backend_cpu(), p, loss, dlogits, logits, labels, soft));
}

static void p_copy_rows(backend *be, tensor dst, int64_t dst_stride, tensor src, int64_t src_stride, int64_t rows,
                        int64_t cols, int accumulate)
{
    (void)be;
    TIMED(P_ROWS, 0,
          cpu_table()->copy_rows(backend_cpu(), dst, dst_stride, src, src_stride, rows, cols, accumulate));
}

static void p_gather_rows(backend *be, tensor out, tensor in, tensor idx)
{
    (void)be;
    TIMED(P_ROWS, 0, cpu_table()->gather_rows(backend_cpu(), out, in, idx));
}

static void p_scatter_add_rows(backend *be, tensor dst, tensor src, tensor idx)
{
    (void)be;
    TIMED(P_ROWS, 0, cpu_table()->scatter_add_rows(backend_cpu(), dst, src, idx));
}

static void p_fill(backend *be, tensor x, float value)
{
    (void)be;
    TIMED(P_FILL, 0, cpu_table()->fill(backend_cpu(), x, value));
}

static void p_zero(backend *be, void *dst, size_t bytes)
{
    (void)be;
    TIMED(P_FILL, 0, cpu_table()->zero(backend_cpu(), dst, bytes));
}

static struct backend_ops profiled_ops;
static backend profiled_backend;

static backend *backend_profiled(void)
{
    profiled_ops = *cpu_table();
    profiled_ops.linear_forward = p_linear_forward;
    profiled_ops.linear_backward = p_linear_backward;
    profiled_ops.matmul = p_matmul;
    profiled_ops.attention_forward = p_attention_forward;
    profiled_ops.attention_backward = p_attention_backward;
    profiled_ops.gelu_forward = p_gelu_forward;
    profiled_ops.gelu_backward = p_gelu_backward;
    profiled_ops.layernorm_forward = p_layernorm_forward;
    profiled_ops.layernorm_backward = p_layernorm_backward;
    profiled_ops.bias_gelu_forward = p_bias_gelu_forward;
    profiled_ops.bias_gelu_backward = p_bias_gelu_backward;
    profiled_ops.residual_layernorm_forward = p_residual_layernorm_forward;
    profiled_ops.residual_layernorm_backward = p_residual_layernorm_backward;
    profiled_ops.add = p_add;
    profiled_ops.accumulate = p_accumulate;
    profiled_ops.embedding_forward = p_embedding_forward;
    profiled_ops.embedding_backward = p_embedding_backward;
    profiled_ops.patchify = p_patchify;
    profiled_ops.vit_embed_forward = p_vit_embed_forward;
    profiled_ops.vit_embed_backward = p_vit_embed_backward;
    profiled_ops.softmax_xent = p_softmax_xent;
    profiled_ops.copy_rows = p_copy_rows;
    profiled_ops.gather_rows = p_gather_rows;
    profiled_ops.scatter_add_rows = p_scatter_add_rows;
    profiled_ops.fill = p_fill;
    profiled_ops.zero = p_zero;
    profiled_backend = (backend){&profiled_ops, BACKEND_CPU, "cpu (profiled)", NULL, ATTN_LAYOUT_PROBS, DTYPE_F32};
    return &profiled_backend;
}

/* Profiles are printed after the table. */
static struct {
    char title[128];
    double total;
    op_profile ops;
} profiles[2];
static int n_profiles;

static void print_profiles(void)
{
    for (int k = 0; k < n_profiles; k++) {
        double covered = 0, total = profiles[k].total;
        for (int s = 0; s < P_COUNT; s++)
            covered += profiles[k].ops.seconds[s];
        printf("\n%s: %.3f s\n", profiles[k].title, total);
        printf("  %-38s %8s %7s %7s %9s\n", "op", "seconds", "share", "calls", "GFLOP/s");
        for (int s = 0; s < P_COUNT; s++) {
            double sec = profiles[k].ops.seconds[s], fl = profiles[k].ops.flops[s];
            if (!profiles[k].ops.calls[s])
                continue;
            char rate[32] = "";
            if (fl > 0)
                snprintf(rate, sizeof rate, "%.1f", fl / sec * 1e-9);
            printf("  %-38s %8.3f %6.1f%% %7ld %9s\n", prof_names[s], sec, 100.0 * sec / total,
                   profiles[k].ops.calls[s], rate);
        }
        printf("  %-38s %8.3f %6.1f%%\n", "outside the ops (model code, arena)", total - covered,
               100.0 * (total - covered) / total);
    }
}

/* ---- the passes ------------------------------------------------------------- */

static void fill_normal_host(float *x, size_t n, uint64_t seed)
{
    rng_state r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(&r);
}

/* A tensor taken from the arena and filled from host memory (nothing is
 * copied on the null back end). */
static tensor upload(backend *be, arena *ar, albef_dtype dt, const void *host, int ndim, const int64_t *shape)
{
    tensor t = arena_tensor(ar, dt, ndim, shape);
    if (t.data && host)
        be->ops->upload(be, t.data, host, tensor_nbytes(t));
    return t;
}

/* The ids of every text row: [CLS] then ordinary words, no padding. The
 * PyTorch script builds the same ones. */
static void text_ids(int32_t *ids, int batch, int len, int vocab)
{
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < len; t++)
            ids[b * len + t] = t == 0 ? CLS_ID
                                      : FIRST_WORD + (int32_t)(((int64_t)b * 7919 + (int64_t)t * 104729) %
                                                               (vocab - FIRST_WORD));
}

/* One row: its model pieces, inputs (host copies and arena tensors) and
 * activations. The inputs are uploaded once, before the arena mark; each run
 * gives back everything after the mark. */
typedef struct {
    enum row_id row;
    int B, L;
    backend *be;
    albef_model *model;
    const vit_model *vit;
    arena ar;
    size_t mark;
    /* host inputs */
    float *h_images;   /* (B, 3, R, R) */
    int32_t *h_ids;    /* (B, L) */
    float *h_mask;     /* (B, L) additive, all 0 */
    float *h_embeds;   /* (B, L, H) */
    float *h_enc;      /* (B, T, C) */
    scenario_inputs in;
    /* arena inputs and activations */
    tensor images, ids, text_mask, embeds, enc;
    vit_acts vacts;
    bert_acts bacts;
    scenario_state st;
} row_ctx;

static void upload_inputs(row_ctx *c)
{
    const albef_config *cfg = &c->model->cfg;
    int64_t B = c->B, L = c->L, R = c->vit->image_res, H = cfg->bert.hidden_size, C = cfg->vision_width;
    int64_t T = config_num_patches(cfg) + 1;
    switch (c->row) {
    case ROW_VIT256:
    case ROW_VIT384:
        c->images = upload(c->be, &c->ar, DTYPE_F32, c->h_images, 4, TENSOR_SHAPE(B, 3, R, R));
        break;
    case ROW_TEXT:
        c->ids = upload(c->be, &c->ar, DTYPE_I32, c->h_ids, 2, TENSOR_SHAPE(B, L));
        c->text_mask = upload(c->be, &c->ar, DTYPE_F32, c->h_mask, 2, TENSOR_SHAPE(B, L));
        break;
    case ROW_FUSION:
        c->embeds = upload(c->be, &c->ar, DTYPE_F32, c->h_embeds, 3, TENSOR_SHAPE(B, L, H));
        c->text_mask = upload(c->be, &c->ar, DTYPE_F32, c->h_mask, 2, TENSOR_SHAPE(B, L));
        c->enc = upload(c->be, &c->ar, DTYPE_F32, c->h_enc, 3, TENSOR_SHAPE(B, T, C));
        break;
    default: /* the scenario uploads its own inputs at every step */
        break;
    }
}

/* One timed unit of work of the row. */
static int run_pass(void *p)
{
    row_ctx *c = p;
    arena_reset(&c->ar, c->mark);
    switch (c->row) {
    case ROW_VIT256:
    case ROW_VIT384:
        vit_forward(c->be, c->vit, &c->vacts, &c->ar, c->images);
        break;
    case ROW_TEXT: {
        bert_inputs in = {.mode = BERT_TEXT, .ids = c->ids, .text_mask = c->text_mask};
        bert_forward(c->be, &c->model->text, &c->bacts, &c->ar, &in, NULL);
        break;
    }
    case ROW_FUSION: {
        bert_inputs in = {.mode = BERT_FUSION, .embeds = c->embeds, .text_mask = c->text_mask, .enc = {c->enc},
                          .n_enc = 1};
        bert_forward(c->be, &c->model->text, &c->bacts, &c->ar, &in, NULL);
        int64_t B = c->B, L = c->L, H = c->model->cfg.bert.hidden_size;
        tensor cls = arena_f32(&c->ar, B, H), logits = arena_f32(&c->ar, B, 2); /* (B, H), (B, 2) */
        op_copy_rows(c->be, cls, H, c->bacts.out, L * H, B, H, 0);
        op_linear_forward(c->be, logits, cls, c->model->itm_head.weight, c->model->itm_head.bias);
        break;
    }
    case ROW_SCENARIO:
        /* a training step's share: the gradient arena is zeroed once per step */
        c->be->ops->zero(c->be, c->model->params.grads, c->model->params.numel * sizeof(float));
        scenario_forward(c->be, c->model, &c->ar, &c->in, &c->st, NULL);
        scenario_backward(c->be, c->model, &c->ar, &c->in, &c->st);
        break;
    default:
        break;
    }
    return ALBEF_OK;
}

/* Sizes the arena by running the pass on the null back end, then allocates it. */
static int size_arena(row_ctx *c)
{
    backend *real = c->be;
    c->be = backend_null_for(real);
    arena_init_measuring(&c->ar);
    upload_inputs(c);
    c->mark = arena_mark(&c->ar);
    run_pass(c);
    size_t need = c->ar.peak;
    c->be = real;
    int rc = arena_init(&c->ar, real, need);
    if (rc)
        return albef_error_context(rc, "%s: ", row_names[c->row]);
    fprintf(stderr, "bench_model: %s: activation arena %.1f MiB\n", row_names[c->row], need / 1048576.0);
    upload_inputs(c);
    c->mark = arena_mark(&c->ar);
    return ALBEF_OK;
}

/* Scenario inputs as scripts/reference/README.md describes them, without
 * padding; labelled positions where (t + b) % 7 == 1 (about 14%, near
 * mlm_probability), each replaced by [MASK]. The PyTorch script picks the same. */
static int scenario_inputs_make(scenario_inputs *in, const albef_config *cfg, int B, int L)
{
    memset(in, 0, sizeof *in);
    size_t BL = (size_t)B * L, RES = (size_t)cfg->image_res;
    in->B = B, in->L = L, in->R = cfg->image_res;
    in->image = malloc(sizeof(float) * (size_t)B * 3 * RES * RES);
    in->ids = malloc(sizeof(int32_t) * BL);
    in->mlm_ids = malloc(sizeof(int32_t) * BL);
    in->mask_add = calloc(BL, sizeof(float));
    in->masked_rows = malloc(sizeof(int32_t) * BL);
    in->mlm_labels_rows = malloc(sizeof(int32_t) * BL);
    if (!in->image || !in->ids || !in->mlm_ids || !in->mask_add || !in->masked_rows || !in->mlm_labels_rows)
        return albef_error(ALBEF_ERR_NOMEM, "scenario inputs: out of memory for batch %d", B);
    fill_normal_host(in->image, (size_t)B * 3 * RES * RES, 7);
    text_ids(in->ids, B, L, cfg->bert.vocab_size);
    memcpy(in->mlm_ids, in->ids, sizeof(int32_t) * BL);
    for (int b = 0; b < B; b++)
        for (int t = 1; t < L; t++)
            if ((t + b) % 7 == 1) {
                in->masked_rows[in->n_masked] = b * L + t;
                in->mlm_labels_rows[in->n_masked++] = in->ids[b * L + t];
                in->mlm_ids[b * L + t] = MASK_ID;
            }
    return ALBEF_OK;
}

/* Host inputs and activation records of a row. */
static int row_prepare(row_ctx *c)
{
    const albef_config *cfg = &c->model->cfg;
    size_t B = (size_t)c->B, L = (size_t)c->L, R = (size_t)c->vit->image_res;
    size_t H = (size_t)cfg->bert.hidden_size, C = (size_t)cfg->vision_width, T = (size_t)config_num_patches(cfg) + 1;
    int ok = 1;
    switch (c->row) {
    case ROW_VIT256:
    case ROW_VIT384:
        c->h_images = malloc(sizeof(float) * B * 3 * R * R);
        if ((ok = c->h_images != NULL))
            fill_normal_host(c->h_images, B * 3 * R * R, 3);
        return ok ? vit_acts_init(&c->vacts, c->vit) : albef_error(ALBEF_ERR_NOMEM, "vit: out of memory for images");
    case ROW_TEXT:
        c->h_ids = malloc(sizeof(int32_t) * B * L);
        c->h_mask = calloc(B * L, sizeof(float));
        if ((ok = c->h_ids && c->h_mask))
            text_ids(c->h_ids, c->B, c->L, cfg->bert.vocab_size);
        return ok ? bert_acts_init(&c->bacts, &c->model->text) : albef_error(ALBEF_ERR_NOMEM, "text: out of memory");
    case ROW_FUSION:
        c->h_mask = calloc(B * L, sizeof(float));
        c->h_embeds = malloc(sizeof(float) * B * L * H);
        c->h_enc = malloc(sizeof(float) * B * T * C);
        if ((ok = c->h_mask && c->h_embeds && c->h_enc)) {
            fill_normal_host(c->h_embeds, B * L * H, 4);
            fill_normal_host(c->h_enc, B * T * C, 5);
        }
        return ok ? bert_acts_init(&c->bacts, &c->model->text)
                  : albef_error(ALBEF_ERR_NOMEM, "fusion: out of memory");
    case ROW_SCENARIO: {
        int rc = scenario_inputs_make(&c->in, cfg, c->B, c->L);
        return rc ? rc : scenario_state_init(&c->st, c->model);
    }
    default:
        return ALBEF_OK;
    }
}

static void row_release(row_ctx *c)
{
    arena_free(&c->ar);
    vit_acts_free(&c->vacts);
    bert_acts_free(&c->bacts);
    if (c->row == ROW_SCENARIO) {
        scenario_state_free(&c->st);
        scenario_free_inputs(&c->in);
    }
    free(c->h_images), free(c->h_ids), free(c->h_mask), free(c->h_embeds), free(c->h_enc);
}

/* A ViT at another resolution sharing the weights of `from` (pos_embed, whose
 * shape differs, is drawn afresh: its values do not change the speed). */
static int vit_at_resolution(vit_model *vit, param_set *ps, const albef_config *cfg, const albef_model *from)
{
    params_init(ps);
    int rc = vit_init(vit, cfg, ps, "visual_encoder", 0);
    rc = rc ? rc : params_alloc(ps, backend_cpu(), 0);
    if (rc)
        return rc;
    for (int i = 0; i < ps->count; i++) {
        tensor dst = params_value(ps, i);
        int j = params_index(&from->params, ps->items[i].name);
        tensor src = j >= 0 ? params_value(&from->params, j) : tensor_none();
        if (j >= 0 && tensor_numel(src) == tensor_numel(dst))
            memcpy(dst.data, src.data, tensor_nbytes(dst));
        else
            op_fill_normal(backend_cpu(), dst, 0.0f, 0.02f, 11);
    }
    return ALBEF_OK;
}

/* ---- the PyTorch side: scripts/dev/bench_model_torch.py --serve ------------ */

static void start_torch(torch_side *t, const bench_options *o, int threads)
{
    torch_init(t, "bench_model", TORCH_SCRIPT);
    if (!o->torch) {
        snprintf(t->note, sizeof t->note, "--no-torch");
        return;
    }
    char args[8][32];
    const int nums[8] = {threads, o->batch[ROW_VIT256], o->batch[ROW_VIT384], o->batch[ROW_TEXT], o->text_len,
                          o->batch[ROW_FUSION], o->batch[ROW_SCENARIO], o->scenario_len};
    for (int i = 0; i < 8; i++)
        snprintf(args[i], sizeof args[i], "%d", nums[i]);
    char *argv[] = {(char *)o->python, TORCH_SCRIPT, "--serve", "--threads", args[0], "--vit256-batch", args[1],
                    "--vit384-batch", args[2], "--text-batch", args[3], "--text-len", args[4], "--fusion-batch",
                    args[5], "--scenario-batch", args[6], "--scenario-len", args[7], NULL};
    torch_start(t, argv);
}

/* --profile: the PyTorch side's ops of one vit256 forward, by self time. */
typedef struct {
    struct {
        char op[64];
        double seconds;
        int calls;
    } ops[16];
    int n_ops;
} torch_op_profile;

static void torch_profile(torch_side *t, const char *name, torch_op_profile *p)
{
    char cmd[64];
    snprintf(cmd, sizeof cmd, "profile %s", name);
    cJSON *r = torch_command(t, cmd);
    const cJSON *ev;
    cJSON_ArrayForEach(ev, cJSON_GetObjectItemCaseSensitive(r, "profile"))
    {
        const cJSON *op = cJSON_GetObjectItemCaseSensitive(ev, "op");
        if (p->n_ops == (int)(sizeof p->ops / sizeof *p->ops) || !cJSON_IsString(op))
            continue;
        snprintf(p->ops[p->n_ops].op, sizeof p->ops[0].op, "%s", op->valuestring);
        p->ops[p->n_ops].seconds = json_number(ev, "seconds");
        p->ops[p->n_ops++].calls = (int)json_number(ev, "calls");
    }
    cJSON_Delete(r);
}

/* ---- the rows ------------------------------------------------------------------ */

typedef struct {
    row_result ours[ROW_COUNT], torch[ROW_COUNT];
    long our_rss_kb;
    torch_op_profile torch_ops; /* --profile */
} results;

/* One more run through the profiling back end; kept for print_profiles. */
static void profile_row(row_ctx *c)
{
    if (n_profiles == (int)(sizeof profiles / sizeof *profiles))
        return;
    row_ctx pc = *c;
    pc.be = backend_profiled();
    memset(&prof, 0, sizeof prof);
    double t = now();
    run_pass(&pc);
    profiles[n_profiles].total = now() - t;
    profiles[n_profiles].ops = prof;
    snprintf(profiles[n_profiles].title, sizeof profiles[n_profiles].title, "profile (ours): %s, batch %d, one %s",
             row_names[c->row], c->B, c->row == ROW_SCENARIO ? "forward + backward" : "forward");
    n_profiles++;
}

static void time_row(const bench_options *o, row_ctx *c, torch_side *t, results *res)
{
    const char *name = row_names[c->row];
    torch_race(t, name, c->B, &o->budget, run_pass, c, &res->ours[c->row], &res->torch[c->row]);
    row_result *a = &res->ours[c->row], *b = &res->torch[c->row];
    fprintf(stderr, "bench_model: %-8s ours    best %.3f s, median %.3f s over %d runs\n", name, a->best, a->median,
            a->iters);
    if (b->ok)
        fprintf(stderr, "bench_model: %-8s PyTorch best %.3f s, median %.3f s over %d runs\n", name, b->best,
                b->median, b->iters);
}

static int run_rows(const bench_options *o, torch_side *t, results *res)
{
    albef_config cfg, cfg384;
    int rc = config_preset("albef-base", &cfg);
    rc = rc ? rc : config_preset("albef-base-384", &cfg384);
    if (rc)
        return rc;
    albef_model m;
    albef_model_options mo = {.layout = LAYOUT_PRETRAIN, .with_grads = o->run[ROW_SCENARIO]};
    rc = albef_model_init(&m, &cfg, backend_cpu(), &mo);
    if (rc)
        return albef_error_context(rc, "albef-base: ");
    double t0 = now();
    albef_model_init_weights(&m, 1);
    fprintf(stderr, "bench_model: albef-base: %zu parameters (%.0f MiB%s), initialised in %.1f s\n", m.params.numel,
            m.params.numel * 4.0 / 1048576.0, m.params.grads ? ", gradients as much again" : "", now() - t0);

    for (int r = 0; r < ROW_COUNT && !rc; r++) {
        if (!o->run[r])
            continue;
        row_ctx c = {.row = r, .B = o->batch[r], .be = backend_cpu(), .model = &m, .vit = &m.vit};
        c.L = r == ROW_SCENARIO ? o->scenario_len : o->text_len;
        vit_model vit384;
        param_set ps384;
        if (r == ROW_VIT384) {
            rc = vit_at_resolution(&vit384, &ps384, &cfg384, &m);
            c.vit = &vit384;
        }
        rc = rc ? rc : row_prepare(&c);
        rc = rc ? rc : size_arena(&c);
        if (!rc) {
            time_row(o, &c, t, res);
            if (o->profile && (r == ROW_VIT256 || r == ROW_SCENARIO))
                profile_row(&c);
            if (o->profile && r == ROW_VIT256)
                torch_profile(t, row_names[r], &res->torch_ops);
        }
        row_release(&c);
        if (r == ROW_VIT384) {
            vit_free(&vit384);
            params_free(&ps384);
        }
    }
    albef_model_free(&m);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    res->our_rss_kb = ru.ru_maxrss;
    return rc;
}

/* ---- the table ------------------------------------------------------------------- */

static void print_table(const bench_options *o, const results *res, const torch_side *t, int threads,
                        int blas_threads)
{
    static const char *const what[ROW_COUNT] = {
        "ViT-B/16 forward, 256 px",
        "ViT-B/16 forward, 384 px",
        "text encoder forward (6 layers)",
        "fusion encoder + ITM head forward",
        "scenario forward + backward (ITC+ITM+MLM)",
    };
    static const char *const unit[ROW_COUNT] = {"images/s", "images/s", "seqs/s", "pairs/s", "samples/s"};
    char torch_desc[400];
    torch_describe(t, torch_desc, sizeof torch_desc);
    const char *wait = getenv("OMP_WAIT_POLICY");
    printf("albef-base, random weights, fp32 CPU back end, N = %d threads (OpenMP %d, OpenBLAS %d%s%s); %s\n",
           threads, threads, blas_threads, wait ? ", OMP_WAIT_POLICY=" : "", wait ? wait : "", torch_desc);
    printf("rates from the best of >= %d timed runs (>= %g s) per side after one warm-up, ours and PyTorch's "
           "alternating; L = %d (text, fusion), %d (scenario)\n",
           o->budget.min_iters, o->budget.min_time, o->text_len, o->scenario_len);
    if (t->version[0] && t->note[0])
        printf("note: %s\n", t->note);
    printf("%-43s %6s  %-10s %10s %10s %13s\n", "what", "batch", "unit", "ours", "PyTorch", "ours/PyTorch");
    for (int r = 0; r < ROW_COUNT; r++) {
        if (!o->run[r] || !res->ours[r].ok)
            continue;
        double ours = res->ours[r].batch / res->ours[r].best;
        char theirs[32] = "n/a", ratio[32] = "n/a";
        if (res->torch[r].ok) {
            double rate = res->torch[r].batch / res->torch[r].best;
            snprintf(theirs, sizeof theirs, "%.3g", rate);
            snprintf(ratio, sizeof ratio, "%.2f", ours / rate);
        }
        printf("%-43s %6d  %-10s %10.3g %10s %13s\n", what[r], res->ours[r].batch, unit[r], ours, theirs, ratio);
    }
    char theirs[32] = "n/a", ratio[32] = "n/a";
    if (t->rss_kb > 0) {
        snprintf(theirs, sizeof theirs, "%.0f", t->rss_kb / 1024.0);
        snprintf(ratio, sizeof ratio, "%.2f", (double)res->our_rss_kb / (double)t->rss_kb);
    }
    printf("%-43s %6s  %-10s %10.0f %10s %13s\n", "peak RSS of the process", "-", "MiB", res->our_rss_kb / 1024.0,
           theirs, ratio);
}

static void print_torch_profile(const bench_options *o, const torch_op_profile *t)
{
    if (!t->n_ops)
        return;
    double sum = 0;
    for (int i = 0; i < t->n_ops; i++)
        sum += t->ops[i].seconds;
    printf("\nprofile (PyTorch): vit256, batch %d, one forward, the %d largest ops by self time (%.3f s)\n",
           o->batch[ROW_VIT256], t->n_ops, sum);
    printf("  %-38s %8s %7s %7s\n", "op", "seconds", "share", "calls");
    for (int i = 0; i < t->n_ops; i++)
        printf("  %-38s %8.3f %6.1f%% %7d\n", t->ops[i].op, t->ops[i].seconds, 100.0 * t->ops[i].seconds / sum,
               t->ops[i].calls);
}

int main(int argc, char **argv)
{
    threads_prefer_passive_wait(argv); /* as the programs do */
    bench_options o;
    int prc = parse_options(argc, argv, &o);
    if (prc)
        return prc > 0 ? 0 : 2;
    int threads = omp_get_max_threads(), blas_threads = openblas_get_num_threads();
    double t0 = now();
    torch_side t;
    start_torch(&t, &o, threads);
    results res;
    memset(&res, 0, sizeof res);
    int rc = run_rows(&o, &t, &res);
    torch_stop(&t);
    if (rc) {
        fprintf(stderr, "bench_model: %s\n", albef_errmsg());
        return 1;
    }
    fprintf(stderr, "bench_model: %.0f s in all\n", now() - t0);
    print_table(&o, &res, &t, threads, blas_threads);
    print_profiles();
    print_torch_profile(&o, &res.torch_ops);
    return 0;
}
