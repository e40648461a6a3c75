/* The null back end: every operation does nothing and allocation hands out
 * no memory. Running the model's real forward and backward code on it, with
 * arenas in measuring mode, gives the exact arena sizes for a configuration
 * and batch without touching any data. */
#include "ops/ops.h"

#include <stddef.h>

static void *null_alloc(backend *be, size_t bytes)
{
    (void)be;
    (void)bytes;
    return NULL;
}

/* One do-nothing function per signature shape would be noise: the table's
 * entries are called through typed pointers, so each gets a typed stub. */
#define NULL_OP(name, ...)                                                                                         \
    static void null_##name(backend *be, __VA_ARGS__) { (void)be; }

static void null_free(backend *be, void *p) { (void)be; (void)p; }
static void null_copy(backend *be, void *d, const void *s, size_t n) { (void)be; (void)d; (void)s; (void)n; }
static void null_zero(backend *be, void *d, size_t n) { (void)be; (void)d; (void)n; }
static void null_synchronize(backend *be) { (void)be; }

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
NULL_OP(matmul, tensor c, tensor a, tensor b, int ta, int tb, float alpha, float beta)
NULL_OP(linear_forward, tensor out, tensor in, tensor w, tensor bias)
NULL_OP(linear_backward, tensor din, int acc, tensor dw, tensor db, tensor dout, tensor in, tensor w)
NULL_OP(unary, tensor out, tensor in)
NULL_OP(unary_backward, tensor din, tensor dout, tensor in)
NULL_OP(layernorm_forward, tensor out, tensor mean, tensor rstd, tensor in, tensor w, tensor b, float eps)
NULL_OP(bias_gelu_forward, tensor out, tensor pre, tensor in, tensor bias)
NULL_OP(bias_gelu_backward, tensor din, tensor dbias, tensor dout, tensor pre)
NULL_OP(residual_layernorm_forward, tensor out, tensor mean, tensor rstd, tensor sum, tensor x, tensor bias,
        tensor residual, tensor w, tensor b, float eps, float p, uint64_t seed)
NULL_OP(residual_layernorm_backward, tensor dsum, int acc, tensor dx, tensor dbias, tensor dw, tensor db,
        tensor dout, tensor sum, tensor w, tensor mean, tensor rstd, float p, uint64_t seed)
NULL_OP(layernorm_backward, tensor din, int acc, tensor dw, tensor db, tensor dout, tensor in, tensor w, tensor mean,
        tensor rstd)
NULL_OP(add, tensor out, tensor a, tensor b)
NULL_OP(scale, tensor x, float s)
NULL_OP(attention_forward, const attn_params *p, tensor out, tensor state, tensor q, tensor k, tensor v, tensor mask)
NULL_OP(attention_backward, const attn_params *p, tensor dq, tensor dk, tensor dv, tensor scratch, tensor dout,
        tensor out, tensor state, tensor q, tensor k, tensor v, tensor mask)
NULL_OP(dropout, tensor out, tensor in, float p, uint64_t seed)
NULL_OP(embedding_forward, tensor out, tensor ids, tensor word, tensor pos, tensor type_row)
NULL_OP(embedding_backward, tensor dword, tensor dpos, tensor dtype_row, tensor dout, tensor ids)
NULL_OP(patchify, tensor patches, tensor images, int patch)
NULL_OP(vit_embed_forward, tensor out, tensor patch_tokens, tensor cls, tensor pos)
NULL_OP(vit_embed_backward, tensor dpatch_tokens, tensor dcls, tensor dpos, tensor dout)
NULL_OP(l2norm_forward, tensor out, tensor norms, tensor in)
NULL_OP(l2norm_backward, tensor din, tensor dout, tensor out, tensor norms)
NULL_OP(copy_rows, tensor dst, int64_t ds, tensor src, int64_t ss, int64_t rows, int64_t cols, int acc)
NULL_OP(gather_rows, tensor out, tensor in, tensor idx)
NULL_OP(div_scalar_forward, tensor out, tensor in, tensor s)
NULL_OP(div_scalar_backward, tensor din, tensor ds, tensor dout, tensor out, tensor s)
NULL_OP(clamp, tensor x, float lo, float hi)
NULL_OP(softmax_xent, const xent_params *p, tensor loss, tensor dlogits, tensor logits, tensor labels, tensor soft)
NULL_OP(reduce, tensor out, tensor in, float scale)
NULL_OP(itm_negatives, tensor w, tensor neg, tensor logits, tensor same, int uniform, uint64_t seed)
NULL_OP(fill, tensor x, float value)
NULL_OP(fill_normal, tensor x, float mean, float std, uint64_t seed)
NULL_OP(adamw, tensor param, tensor grad, tensor m, tensor v, tensor decay, float lr, float b1, float b2, float eps,
        float wd, int step)
NULL_OP(ema, tensor target, tensor source, float momentum)
#pragma GCC diagnostic pop

static const struct backend_ops null_ops = {
    .alloc = null_alloc,
    .free = null_free,
    .upload = null_copy,
    .download = null_copy,
    .copy = null_copy,
    .zero = null_zero,
    .synchronize = null_synchronize,
    .matmul = null_matmul,
    .linear_forward = null_linear_forward,
    .linear_backward = null_linear_backward,
    .gelu_forward = null_unary,
    .gelu_backward = null_unary_backward,
    .layernorm_forward = null_layernorm_forward,
    .layernorm_backward = null_layernorm_backward,
    .bias_gelu_forward = null_bias_gelu_forward,
    .bias_gelu_backward = null_bias_gelu_backward,
    .residual_layernorm_forward = null_residual_layernorm_forward,
    .residual_layernorm_backward = null_residual_layernorm_backward,
    .add = null_add,
    .accumulate = null_unary,
    .scale = null_scale,
    .attention_forward = null_attention_forward,
    .attention_backward = null_attention_backward,
    .dropout_forward = null_dropout,
    .dropout_backward = null_dropout,
    .embedding_forward = null_embedding_forward,
    .embedding_backward = null_embedding_backward,
    .patchify = null_patchify,
    .vit_embed_forward = null_vit_embed_forward,
    .vit_embed_backward = null_vit_embed_backward,
    .l2norm_forward = null_l2norm_forward,
    .l2norm_backward = null_l2norm_backward,
    .copy_rows = null_copy_rows,
    .gather_rows = null_gather_rows,
    .scatter_add_rows = null_gather_rows,
    .div_scalar_forward = null_div_scalar_forward,
    .div_scalar_backward = null_div_scalar_backward,
    .clamp = null_clamp,
    .softmax_rows = null_unary,
    .softmax_xent = null_softmax_xent,
    .reduce_sum = null_reduce,
    .reduce_sumsq = null_reduce,
    .itm_negatives = null_itm_negatives,
    .fill = null_fill,
    .fill_normal = null_fill_normal,
    .cast = null_unary,
    .adamw = null_adamw,
    .ema = null_ema,
};

/* One per attention layout and activation type, so that a sizing run
 * allocates what the back end it sizes for will. */
static backend null_backends[2][2] = {
    [ATTN_LAYOUT_PROBS] = {{&null_ops, BACKEND_NULL, "null", NULL, ATTN_LAYOUT_PROBS, DTYPE_F32},
                           {&null_ops, BACKEND_NULL, "null", NULL, ATTN_LAYOUT_PROBS, DTYPE_BF16}},
    [ATTN_LAYOUT_LSE] = {{&null_ops, BACKEND_NULL, "null", NULL, ATTN_LAYOUT_LSE, DTYPE_F32},
                         {&null_ops, BACKEND_NULL, "null", NULL, ATTN_LAYOUT_LSE, DTYPE_BF16}},
};

backend *backend_null(void) { return &null_backends[ATTN_LAYOUT_PROBS][0]; }

backend *backend_null_for(const backend *be)
{
    return &null_backends[be->attn_layout][be->act_dtype == DTYPE_BF16];
}
