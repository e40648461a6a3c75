/* The operations ALBEF is made of, forward and backward, behind a table of
 * function pointers that each back end fills: the CPU back end (ops_cpu.c,
 * fp32, OpenBLAS) is the reference; the CUDA back end (cuda/) must agree with
 * it op by op; the null back end (ops_null.c) does nothing and is used to size
 * arenas by running the real model code once.
 *
 * Gradient convention, for every *_backward:
 *   - parameter gradients ACCUMULATE:  dW += ..., db += ...   (micro-batches,
 *     tied weights and weights used in several passes add up; the trainer
 *     zeroes the gradient arena once per step);
 *   - activation gradients are WRITTEN: dx = ...;
 *   - except where an op takes `accumulate`: then dx += ... . The residual
 *     stream uses it, and so does any activation read by several consumers
 *     (image tokens feed every fusion layer and several passes).
 * Gradient outputs whose data is NULL are skipped (e.g. no dx for a frozen input).
 *
 * Shapes: tensors are row-major. "(M, C)" ops accept any shape and view it as
 * rows of its last dimension. Integer inputs (token ids, labels, indices) are
 * DTYPE_I32. Scalars that live with the parameters (temp) are tensors of one
 * element so that they can stay in device memory.
 *
 * Randomness inside ops is counter-based: dropout keeps element i of a call
 * with seed s iff hash(s, i) >= p * 2^32, so every back end draws the same
 * mask and a backward pass regenerates it instead of storing it; ITM's
 * negatives draw row i from hash(s, 2i) and hash(s, 2i + 1) the same way. */
#ifndef ALBEF_OPS_OPS_H
#define ALBEF_OPS_OPS_H

#include "ops/tensor.h"

#include <stddef.h>
#include <stdint.h>

typedef struct backend backend;

/* Scaled dot-product attention over `heads` heads of `head_dim`, with q, k, v
 * laid out as (batch, tokens, heads * head_dim) rows that may be strided (a
 * fused qkv projection gives q, k and v with row stride 3 * heads * head_dim). */
typedef struct {
    int batch, heads, q_len, kv_len, head_dim;
    int64_t q_stride, k_stride, v_stride; /* elements between consecutive tokens */
    float scale;                          /* usually head_dim^-0.5 */
    int causal;                           /* key j > query i gets causal_value added */
    float causal_value;                   /* BERT decoders: -10000 */
    float dropout;                        /* on the probabilities; 0 = off */
    uint64_t seed;                        /* dropout stream */
    int kv_shared;                        /* every batch row reads batch row 0's keys and values (one
                                           * image scored against many texts); forward only */
} attn_params;

/* Soft-target cross-entropy. For row r with p = softmax(logits[r]):
 *   target = hard_weight * onehot(labels[r]) + soft_weight * soft[r]
 *   loss[r] = -sum_v target_v * log p_v
 *   dlogits[r] = grad_scale * (sum(target) * p - target)
 * Rows whose label is -100 are ignored: loss 0, gradient 0 (the row is also
 * skipped when only soft targets are given and labels is non-NULL). */
typedef struct {
    float hard_weight, soft_weight;
    float grad_scale; /* e.g. 1 / number of counted rows, for a mean */
} xent_params;

struct backend_ops {
    /* memory */
    void *(*alloc)(backend *be, size_t bytes); /* NULL when out of memory */
    void (*free)(backend *be, void *ptr);
    void (*upload)(backend *be, void *dst, const void *host_src, size_t bytes);
    void (*download)(backend *be, void *host_dst, const void *src, size_t bytes);
    void (*copy)(backend *be, void *dst, const void *src, size_t bytes);
    void (*zero)(backend *be, void *dst, size_t bytes);
    void (*synchronize)(backend *be);

    /* c (B, M, N) = alpha * op(a) (B, M, K) * op(b) (B, K, N) + beta * c; 2-D or
     * batched 3-D; op() transposes the last two dims when trans_* is set. */
    void (*matmul)(backend *be, tensor c, tensor a, tensor b, int trans_a, int trans_b, float alpha, float beta);

    /* out (M, N) = in (M, K) * w (N, K)^T + bias (N), bias optional. The bias is
     * added to the finished product (the CPU back end: a second pass), so a
     * linear run without its bias, followed by an op that adds it (below:
     * bias_gelu_forward, residual_layernorm_forward), gives the same bits. */
    void (*linear_forward)(backend *be, tensor out, tensor in, tensor w, tensor bias);
    /* din (M, K) (=, or += with accumulate), dw (N, K) +=, dbias (N) +=. */
    void (*linear_backward)(backend *be, tensor din, int accumulate, tensor dw, tensor dbias, tensor dout, tensor in,
                            tensor w);

    /* Exact GELU: x * Phi(x). */
    void (*gelu_forward)(backend *be, tensor out, tensor in);
    void (*gelu_backward)(backend *be, tensor din, tensor dout, tensor in);

    /* Layer normalisation over the last dim; saves mean and rstd (M).
     * Backward: din may alias dout. */
    void (*layernorm_forward)(backend *be, tensor out, tensor mean, tensor rstd, tensor in, tensor w, tensor b,
                              float eps);
    void (*layernorm_backward)(backend *be, tensor din, int accumulate, tensor dw, tensor db, tensor dout, tensor in,
                               tensor w, tensor mean, tensor rstd);

    /* The bias and GELU after a linear run without its bias, in one pass:
     * pre (M, N) = in (M, N) + bias (N), out (M, N) = GELU(pre); pre may alias
     * in. Backward: din (M, N) = dout * GELU'(pre), written (may alias dout);
     * dbias (N) += column sums of din. Bit for bit the ops they replace:
     * linear_forward with the bias then gelu_forward; gelu_backward then
     * linear_backward's bias gradient. */
    void (*bias_gelu_forward)(backend *be, tensor out, tensor pre, tensor in, tensor bias);
    void (*bias_gelu_backward)(backend *be, tensor din, tensor dbias, tensor dout, tensor pre);

    /* A residual sublayer's end and a layer normalisation, in one pass:
     *   sum (M, C) = residual (M, C) + dropout(x (M, C) + bias (C))
     *   out (M, C) = LayerNorm(sum) with w, b, eps; mean, rstd (M) saved.
     * x is a linear's output, run without its bias when bias is given (bias
     * data NULL: none). Dropout (p, seed) draws dropout_forward's mask, element
     * index r * C + c, so the op equals linear_forward with the bias,
     * dropout_forward, add and layernorm_forward, bit for bit on the CPU.
     * sum may alias x or residual. BERT (post-norm) keeps sum for the
     * backward and passes out on; ViT (pre-norm) passes sum on as the residual
     * stream, and out is the next sub-block's normalised input.
     *
     * Backward, with g = LayerNorm's input gradient from dout:
     *   dsum (M, C) = g, or dsum + g with accumulate (a gradient already on
     *                 sum: ViT's residual stream); it is also d(residual);
     *   dx (M, C)   = dropout_backward(dsum), written; may be the same tensor
     *                 as dsum when p == 0; data NULL: not written;
     *   dbias (C) += column sums of dx (p must be 0 when dx is not written);
     *   dw, db (C) += as layernorm_backward.
     * dout is only read; neither dsum nor dx may alias it. */
    void (*residual_layernorm_forward)(backend *be, tensor out, tensor mean, tensor rstd, tensor sum, tensor x,
                                       tensor bias, tensor residual, tensor w, tensor b, float eps, float p,
                                       uint64_t seed);
    void (*residual_layernorm_backward)(backend *be, tensor dsum, int accumulate, tensor dx, tensor dbias, tensor dw,
                                        tensor db, tensor dout, tensor sum, tensor w, tensor mean, tensor rstd,
                                        float p, uint64_t seed);

    /* out = a + b (out may alias a or b); acc += x. */
    void (*add)(backend *be, tensor out, tensor a, tensor b);
    void (*accumulate)(backend *be, tensor acc, tensor x);
    void (*scale)(backend *be, tensor x, float s);

    /* out (B, Tq, H*D) = softmax(q k^T * scale + mask + causal) v, with dropout
     * on the probabilities. mask (B, Tk) is additive, one value per key, or
     * data NULL for none. state (B, H, Tq, attention_state_cols(be, Tk)) keeps
     * what the backward pass needs (see enum attn_layout). */
    void (*attention_forward)(backend *be, const attn_params *p, tensor out, tensor state, tensor q, tensor k,
                              tensor v, tensor mask);
    /* dq, dk, dv written (same strides as q, k, v); out, state and mask are
     * the forward pass's (out (B, Tq, H*D), its result); scratch (B, H, Tq,
     * attention_scratch_cols(be, Tk)). */
    void (*attention_backward)(backend *be, const attn_params *p, tensor dq, tensor dk, tensor dv, tensor scratch,
                               tensor dout, tensor out, tensor state, tensor q, tensor k, tensor v, tensor mask);

    /* out = in * keep / (1 - p), keep drawn from (seed, element index). */
    void (*dropout_forward)(backend *be, tensor out, tensor in, float p, uint64_t seed);
    void (*dropout_backward)(backend *be, tensor din, tensor dout, float p, uint64_t seed);

    /* BERT embeddings: out (B, T, C) = word[ids] + pos[0..T) + type_row (C),
     * type_row optional. Backward scatter-adds into the tables. */
    void (*embedding_forward)(backend *be, tensor out, tensor ids, tensor word, tensor pos, tensor type_row);
    void (*embedding_backward)(backend *be, tensor dword, tensor dpos, tensor dtype_row, tensor dout, tensor ids);

    /* ViT input: patches (B*N, 3*P*P) from images (B, 3, H, W), each patch
     * flattened as (channel, y, x) to match the conv weight (C, 3, P, P). */
    void (*patchify)(backend *be, tensor patches, tensor images, int patch);
    /* out (B, 1+N, C): [cls ; patch_tokens (B, N, C)] + pos (1+N, C). */
    void (*vit_embed_forward)(backend *be, tensor out, tensor patch_tokens, tensor cls, tensor pos);
    void (*vit_embed_backward)(backend *be, tensor dpatch_tokens, tensor dcls, tensor dpos, tensor dout);

    /* out = in / max(||in||_2, 1e-12) per row; norms (M) saved. */
    void (*l2norm_forward)(backend *be, tensor out, tensor norms, tensor in);
    void (*l2norm_backward)(backend *be, tensor din, tensor dout, tensor out, tensor norms);

    /* Row-block copies: dst rows r (cols elements each) from src, with row
     * strides in elements; accumulate adds instead of writing. Selects the
     * [CLS] token of each sequence (src_stride = T * C) and its backward. */
    void (*copy_rows)(backend *be, tensor dst, int64_t dst_stride, tensor src, int64_t src_stride, int64_t rows,
                      int64_t cols, int accumulate);
    /* out[i] = in[idx[i]] along the leading dim; backward dst[idx[i]] += src[i]. */
    void (*gather_rows)(backend *be, tensor out, tensor in, tensor idx);
    void (*scatter_add_rows)(backend *be, tensor dst, tensor src, tensor idx);

    /* out = in / s[0] (s a one-element tensor); backward din = dout / s,
     * ds += -sum(dout * out) / s. */
    void (*div_scalar_forward)(backend *be, tensor out, tensor in, tensor s);
    void (*div_scalar_backward)(backend *be, tensor din, tensor ds, tensor dout, tensor out, tensor s);
    void (*clamp)(backend *be, tensor x, float lo, float hi);

    void (*softmax_rows)(backend *be, tensor out, tensor in);
    /* loss (R), dlogits (R, V) or data NULL, logits (R, V), labels (R) i32 or
     * NULL, soft (R, V) or NULL. */
    void (*softmax_xent)(backend *be, const xent_params *p, tensor loss, tensor dlogits, tensor logits, tensor labels,
                         tensor soft);

    /* out[0] = scale * sum(in), or scale * sum(in^2). */
    void (*reduce_sum)(backend *be, tensor out, tensor in, float scale);
    void (*reduce_sumsq)(backend *be, tensor out, tensor in, float scale);

    /* ITM negatives, one direction, for a batch of B >= 2: the sampling
     * weights w (B, B) are the softmax of row i of the first B columns of
     * logits (B, N >= B), or 1 where `uniform` is set, and 0 where j is the
     * same image as i: same[j] == same[i] with same (B) i32 (retrieval: a
     * label per image), or j == i when same's data is NULL. Not renormalised.
     * neg (B) i32: one column per row drawn with probability w[i][j] /
     * sum_j w[i][j], from the uniform itm_draw_uniform(seed, i); a row whose
     * weights are all zero (every other sample is the same image) takes one of
     * the other B - 1 columns uniformly. See itm_draw_index for the rule. */
    void (*itm_negatives)(backend *be, tensor w, tensor neg, tensor logits, tensor same, int uniform, uint64_t seed);

    void (*fill)(backend *be, tensor x, float value);
    void (*fill_normal)(backend *be, tensor x, float mean, float std, uint64_t seed);
    void (*cast)(backend *be, tensor dst, tensor src);

    /* Optimisation, one pass over a range of the parameter arena (the whole
     * arena at once, in the trainer): AdamW (decoupled weight decay,
     * bias-corrected, step >= 1) and the momentum-model update
     * target = m * target + (1 - m) * source. decay (U8, one flag per
     * element, same numel as param) says which elements weight_decay applies
     * to; data NULL: all of them. */
    void (*adamw)(backend *be, tensor param, tensor grad, tensor m, tensor v, tensor decay, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int step);
    void (*ema)(backend *be, tensor target, tensor source, float momentum);
};

enum backend_kind { BACKEND_CPU, BACKEND_CUDA, BACKEND_NULL };

/* bf16 storage. In bf16 mode (backend_set_precision(be, "bf16"), or the
 * CPU's reference of it, backend_cpu_bf16()) every matrix product reads its
 * operands rounded to bf16 and accumulates in fp32, and the model stores the
 * activations that only products read in bf16 (be->act_dtype): the
 * normalised inputs of ViT's pre-norm blocks, GELU outputs, attention
 * outputs and the MLM head's normalised input. Other activations, gradients,
 * layer-norm statistics, losses and parameters stay fp32. The ops that take
 * such tensors accept DTYPE_BF16 there on every back end (values rounded to
 * nearest even, as f32_to_bf16 does):
 *   - linear_forward's and linear_backward's `in`;
 *   - the `out` of layernorm_forward, residual_layernorm_forward,
 *     bias_gelu_forward and attention_forward, and attention_backward's
 *     `out` (the forward's);
 * everywhere else, and in fp32 and tf32 modes, tensors are DTYPE_F32. A
 * bf16 `in` of a product outside bf16 mode is an error. */

/* What attention keeps between its forward and backward passes, per query
 * row; the model allocates it by attention_state_cols and the backward's
 * scratch by attention_scratch_cols, so arenas follow the back end they run
 * on.
 *   ATTN_LAYOUT_PROBS: the softmax probabilities (before dropout), Tk floats
 *     per row; the backward's scratch holds dS, Tk floats per row (the CPU,
 *     the reference).
 *   ATTN_LAYOUT_LSE: the row's log-sum-exp over its masked, scaled scores s,
 *     as two floats: m = max s and log(sum exp(s - m)). They stay apart
 *     because s - m is exact where s and m are large and close (a row whose
 *     keys all carry a -10000 mask), which m + log(...) rounded to one float
 *     would not be. The backward recomputes the probabilities tile by tile
 *     from q, k, the mask and them; its scratch holds D = rowsum(dout * out),
 *     one float per row (CUDA: "flash" attention, no (Tq, Tk) matrix ever
 *     stored). */
enum attn_layout { ATTN_LAYOUT_PROBS, ATTN_LAYOUT_LSE };

struct backend {
    const struct backend_ops *ops;
    enum backend_kind kind;
    const char *name;
    void *impl;
    enum attn_layout attn_layout;
    /* Element type the model stores its product-only activations in (see
     * "bf16 storage" above): DTYPE_F32, or DTYPE_BF16 in bf16 mode. */
    albef_dtype act_dtype;
};

/* Floats per query row of attention state and of the backward's scratch
 * (see enum attn_layout): kv_len, or 2 and 1. */
static inline int64_t attention_state_cols(const backend *be, int64_t kv_len)
{
    return be->attn_layout == ATTN_LAYOUT_LSE ? 2 : kv_len;
}
static inline int64_t attention_scratch_cols(const backend *be, int64_t kv_len)
{
    return be->attn_layout == ATTN_LAYOUT_LSE ? 1 : kv_len;
}

/* Back ends. backend_create("cpu" | "cuda", ...) fails with a clear message
 * (ALBEF_ERR_NODEV) when CUDA is not built in or no device is present. */
int backend_create(const char *name, backend **out);
/* A back end's arithmetic: "fp32" (every back end; on CUDA with TF32 off, the
 * parity mode and the default), "tf32" (CUDA: matrix products on TF32 tensor
 * cores) or "bf16" (CUDA: matrix products with bf16 inputs, fp32 accumulation
 * and output, and bf16 storage of the activations only products read; see
 * "bf16 storage"). tf32 and bf16 on the CPU back end: ALBEF_ERR_UNSUPPORTED
 * (tests reach bf16 arithmetic on the CPU through backend_cpu_bf16()).
 * Choose it before sizing arenas (model and trainer set-up): it sets
 * be->act_dtype. */
int backend_set_precision(backend *be, const char *precision);
void backend_destroy(backend *be);
backend *backend_cpu(void);
/* The CPU back end doing bf16 mode's arithmetic (operands of products
 * rounded to bf16, bf16 storage): the reference the CUDA back end's bf16
 * mode is tested against, and the way to test the model's bf16 path without
 * a GPU. Slower than backend_cpu(), never faster: the CPU has no bf16
 * products. */
backend *backend_cpu_bf16(void);
/* Lists (comma-separated) the entries of a back end's table that are NULL;
 * returns how many. */
int backend_missing_ops(const backend *be, char *buf, size_t cap);
/* The null back end, which sizes arenas by running the model: backend_null()
 * lays attention state out as the CPU does and stores activations in fp32,
 * backend_null_for(be) does both as `be` does (size with it whatever will
 * run on `be`). */
backend *backend_null(void);
backend *backend_null_for(const backend *be);

/* The helpers below are compiled for the host and, in cuda/, for the
 * device too: both back ends run the same arithmetic. */
#ifdef __CUDACC__
#define OPS_HOST_DEVICE __host__ __device__
#else
#define OPS_HOST_DEVICE
#endif

/* The dropout keep test shared by every back end. */
OPS_HOST_DEVICE static inline uint32_t dropout_hash(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (i + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}
OPS_HOST_DEVICE static inline int dropout_keep(uint64_t seed, uint64_t i, float p)
{
    return dropout_hash(seed, i) >= (uint32_t)((double)p * 4294967296.0);
}

/* The uniform in [0, 1) of row `row` of an itm_negatives draw: 53 bits from
 * two dropout hashes, integer arithmetic, so every back end gets it exactly. */
OPS_HOST_DEVICE static inline double itm_draw_uniform(uint64_t seed, int64_t row)
{
    uint64_t bits = ((uint64_t)dropout_hash(seed, 2 * (uint64_t)row) << 32) | dropout_hash(seed, 2 * (uint64_t)row + 1);
    return (double)(bits >> 11) / 9007199254740992.0; /* 2^53 */
}

/* The draw of itm_negatives for one row of weights w (n), given its uniform
 * u: the first j with u * total < w[0] + ... + w[j] (sums in double, in order)
 * and w[j] > 0; with total 0, column floor(u * (n - 1)) of the others
 * (skipping `self`). The CUDA kernel calls it too. */
OPS_HOST_DEVICE static inline int32_t itm_draw_index(const float *w, int64_t n, int64_t self, double u)
{
    double total = 0;
    for (int64_t j = 0; j < n; j++)
        total += w[j];
    if (!(total > 0)) {
        int64_t j = (int64_t)(u * (double)(n - 1));
        return (int32_t)(j >= self ? j + 1 : j);
    }
    double x = u * total, acc = 0;
    for (int64_t j = 0; j < n; j++) {
        acc += w[j];
        if (x < acc && w[j] > 0)
            return (int32_t)j;
    }
    for (int64_t j = n - 1; j >= 0; j--) /* rounding left x at the total */
        if (w[j] > 0)
            return (int32_t)j;
    return 0;
}

/* Short names for calling through the table: op_linear_forward(be, ...). */
#define OPS_CALL(name, be, ...) ((be)->ops->name((be), __VA_ARGS__))
#define op_matmul(be, ...) OPS_CALL(matmul, be, __VA_ARGS__)
#define op_linear_forward(be, ...) OPS_CALL(linear_forward, be, __VA_ARGS__)
#define op_linear_backward(be, ...) OPS_CALL(linear_backward, be, __VA_ARGS__)
#define op_gelu_forward(be, ...) OPS_CALL(gelu_forward, be, __VA_ARGS__)
#define op_gelu_backward(be, ...) OPS_CALL(gelu_backward, be, __VA_ARGS__)
#define op_layernorm_forward(be, ...) OPS_CALL(layernorm_forward, be, __VA_ARGS__)
#define op_layernorm_backward(be, ...) OPS_CALL(layernorm_backward, be, __VA_ARGS__)
#define op_bias_gelu_forward(be, ...) OPS_CALL(bias_gelu_forward, be, __VA_ARGS__)
#define op_bias_gelu_backward(be, ...) OPS_CALL(bias_gelu_backward, be, __VA_ARGS__)
#define op_residual_layernorm_forward(be, ...) OPS_CALL(residual_layernorm_forward, be, __VA_ARGS__)
#define op_residual_layernorm_backward(be, ...) OPS_CALL(residual_layernorm_backward, be, __VA_ARGS__)
#define op_add(be, ...) OPS_CALL(add, be, __VA_ARGS__)
#define op_accumulate(be, ...) OPS_CALL(accumulate, be, __VA_ARGS__)
#define op_scale(be, ...) OPS_CALL(scale, be, __VA_ARGS__)
#define op_attention_forward(be, ...) OPS_CALL(attention_forward, be, __VA_ARGS__)
#define op_attention_backward(be, ...) OPS_CALL(attention_backward, be, __VA_ARGS__)
#define op_dropout_forward(be, ...) OPS_CALL(dropout_forward, be, __VA_ARGS__)
#define op_dropout_backward(be, ...) OPS_CALL(dropout_backward, be, __VA_ARGS__)
#define op_embedding_forward(be, ...) OPS_CALL(embedding_forward, be, __VA_ARGS__)
#define op_embedding_backward(be, ...) OPS_CALL(embedding_backward, be, __VA_ARGS__)
#define op_patchify(be, ...) OPS_CALL(patchify, be, __VA_ARGS__)
#define op_vit_embed_forward(be, ...) OPS_CALL(vit_embed_forward, be, __VA_ARGS__)
#define op_vit_embed_backward(be, ...) OPS_CALL(vit_embed_backward, be, __VA_ARGS__)
#define op_l2norm_forward(be, ...) OPS_CALL(l2norm_forward, be, __VA_ARGS__)
#define op_l2norm_backward(be, ...) OPS_CALL(l2norm_backward, be, __VA_ARGS__)
#define op_copy_rows(be, ...) OPS_CALL(copy_rows, be, __VA_ARGS__)
#define op_gather_rows(be, ...) OPS_CALL(gather_rows, be, __VA_ARGS__)
#define op_scatter_add_rows(be, ...) OPS_CALL(scatter_add_rows, be, __VA_ARGS__)
#define op_div_scalar_forward(be, ...) OPS_CALL(div_scalar_forward, be, __VA_ARGS__)
#define op_div_scalar_backward(be, ...) OPS_CALL(div_scalar_backward, be, __VA_ARGS__)
#define op_clamp(be, ...) OPS_CALL(clamp, be, __VA_ARGS__)
#define op_softmax_rows(be, ...) OPS_CALL(softmax_rows, be, __VA_ARGS__)
#define op_softmax_xent(be, ...) OPS_CALL(softmax_xent, be, __VA_ARGS__)
#define op_reduce_sum(be, ...) OPS_CALL(reduce_sum, be, __VA_ARGS__)
#define op_reduce_sumsq(be, ...) OPS_CALL(reduce_sumsq, be, __VA_ARGS__)
#define op_itm_negatives(be, ...) OPS_CALL(itm_negatives, be, __VA_ARGS__)
#define op_fill(be, ...) OPS_CALL(fill, be, __VA_ARGS__)
#define op_fill_normal(be, ...) OPS_CALL(fill_normal, be, __VA_ARGS__)
#define op_cast(be, ...) OPS_CALL(cast, be, __VA_ARGS__)
#define op_adamw(be, ...) OPS_CALL(adamw, be, __VA_ARGS__)
#define op_ema(be, ...) OPS_CALL(ema, be, __VA_ARGS__)

/* An absent optional tensor (no bias, no mask, no gradient wanted). */
static inline tensor tensor_none(void)
{
    tensor t = {0};
    return t;
}
static inline int tensor_present(tensor t) { return t.data != NULL; }

#endif
