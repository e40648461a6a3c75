// The ops of the hand-written kernel files, by file (ops_cuda.cu puts them in
// the op table). Included by cuda_internal.cuh and by cuda/emu/cuda_emu.h,
// whose tests call them on CPU threads.
#ifndef ALBEF_CUDA_CUDA_KERNELS_CUH
#define ALBEF_CUDA_CUDA_KERNELS_CUH

// elementwise.cu
// dst[i] = src[i] rounded to bf16 (nearest even), n elements.
void cuda_round_to_bf16(backend *be, __nv_bfloat16 *dst, const float *src, int64_t n, const char *op);
void cuda_gelu_forward(backend *be, tensor out, tensor in);
void cuda_gelu_backward(backend *be, tensor din, tensor dout, tensor in);
void cuda_bias_gelu_forward(backend *be, tensor out, tensor pre, tensor in, tensor bias);
void cuda_add(backend *be, tensor out, tensor a, tensor b);
void cuda_accumulate(backend *be, tensor acc, tensor x);
void cuda_scale(backend *be, tensor x, float s);
void cuda_clamp(backend *be, tensor x, float lo, float hi);
void cuda_fill(backend *be, tensor x, float value);
void cuda_fill_normal(backend *be, tensor x, float mean, float std, uint64_t seed);
void cuda_dropout_forward(backend *be, tensor out, tensor in, float p, uint64_t seed);
void cuda_dropout_backward(backend *be, tensor din, tensor dout, float p, uint64_t seed);
void cuda_div_scalar_forward(backend *be, tensor out, tensor in, tensor s);
void cuda_cast(backend *be, tensor dst, tensor src);
void cuda_adamw(backend *be, tensor param, tensor grad, tensor m, tensor v, tensor decay, float lr, float beta1,
                float beta2, float eps, float weight_decay, int step);
void cuda_ema(backend *be, tensor target, tensor source, float momentum);

// reduce.cu
// dst[c] += sum over rows of src[r * cols + c], deterministic.
void cuda_column_sums_add(backend *be, float *dst, const float *src, int64_t rows, int64_t cols, const char *op);
// din = dout * GELU'(pre) and dbias += its column sums, in one pass over the
// rows (dbias NULL: the elementwise pass alone).
void cuda_bias_gelu_backward(backend *be, tensor din, tensor dbias, tensor dout, tensor pre);
void cuda_reduce_sum(backend *be, tensor out, tensor in, float scale);
void cuda_reduce_sumsq(backend *be, tensor out, tensor in, float scale);
void cuda_div_scalar_backward(backend *be, tensor din, tensor ds, tensor dout, tensor out, tensor s);
void cuda_l2norm_forward(backend *be, tensor out, tensor norms, tensor in);
void cuda_l2norm_backward(backend *be, tensor din, tensor dout, tensor out, tensor norms);

// layernorm.cu
void cuda_layernorm_forward(backend *be, tensor out, tensor mean, tensor rstd, tensor in, tensor w, tensor b,
                            float eps);
void cuda_layernorm_backward(backend *be, tensor din, int accumulate, tensor dw, tensor db, tensor dout, tensor in,
                             tensor w, tensor mean, tensor rstd);
void cuda_residual_layernorm_forward(backend *be, tensor out, tensor mean, tensor rstd, tensor sum, tensor x,
                                     tensor bias, tensor residual, tensor w, tensor b, float eps, float p,
                                     uint64_t seed);
void cuda_residual_layernorm_backward(backend *be, tensor dsum, int accumulate, tensor dx, tensor dbias, tensor dw,
                                      tensor db, tensor dout, tensor sum, tensor w, tensor mean, tensor rstd, float p,
                                      uint64_t seed);

// attention.cu
void cuda_attention_forward(backend *be, const attn_params *p, tensor out, tensor state, tensor q, tensor k, tensor v,
                            tensor mask);
void cuda_attention_backward(backend *be, const attn_params *p, tensor dq, tensor dk, tensor dv, tensor scratch,
                             tensor dout, tensor out, tensor state, tensor q, tensor k, tensor v, tensor mask);

// xent.cu
void cuda_softmax_rows(backend *be, tensor out, tensor in);
void cuda_softmax_xent(backend *be, const xent_params *p, tensor loss, tensor dlogits, tensor logits, tensor labels,
                       tensor soft);

// rows.cu
void cuda_embedding_forward(backend *be, tensor out, tensor ids, tensor word, tensor pos, tensor type_row);
void cuda_embedding_backward(backend *be, tensor dword, tensor dpos, tensor dtype_row, tensor dout, tensor ids);
void cuda_patchify(backend *be, tensor patches, tensor images, int patch);
void cuda_vit_embed_forward(backend *be, tensor out, tensor patch_tokens, tensor cls, tensor pos);
void cuda_vit_embed_backward(backend *be, tensor dpatch_tokens, tensor dcls, tensor dpos, tensor dout);
void cuda_copy_rows(backend *be, tensor dst, int64_t dst_stride, tensor src, int64_t src_stride, int64_t rows,
                    int64_t cols, int accumulate);
void cuda_gather_rows(backend *be, tensor out, tensor in, tensor idx);
void cuda_scatter_add_rows(backend *be, tensor dst, tensor src, tensor idx);

// sample.cu
void cuda_itm_negatives(backend *be, tensor w, tensor neg, tensor logits, tensor same, int uniform, uint64_t seed);

// The op table's entries for the kernel files above, attention.cu's
// excepted: ops_cuda.cu's table and the emulation's kernel tests fill them
// from this one list (inline: emitted only where it is called, so a program
// that links some of the files does not need the others).
inline void cuda_kernel_ops_fill(backend_ops *o)
{
    o->gelu_forward = cuda_gelu_forward;
    o->gelu_backward = cuda_gelu_backward;
    o->layernorm_forward = cuda_layernorm_forward;
    o->layernorm_backward = cuda_layernorm_backward;
    o->bias_gelu_forward = cuda_bias_gelu_forward;
    o->bias_gelu_backward = cuda_bias_gelu_backward;
    o->residual_layernorm_forward = cuda_residual_layernorm_forward;
    o->residual_layernorm_backward = cuda_residual_layernorm_backward;
    o->add = cuda_add;
    o->accumulate = cuda_accumulate;
    o->scale = cuda_scale;
    o->dropout_forward = cuda_dropout_forward;
    o->dropout_backward = cuda_dropout_backward;
    o->embedding_forward = cuda_embedding_forward;
    o->embedding_backward = cuda_embedding_backward;
    o->patchify = cuda_patchify;
    o->vit_embed_forward = cuda_vit_embed_forward;
    o->vit_embed_backward = cuda_vit_embed_backward;
    o->l2norm_forward = cuda_l2norm_forward;
    o->l2norm_backward = cuda_l2norm_backward;
    o->copy_rows = cuda_copy_rows;
    o->gather_rows = cuda_gather_rows;
    o->scatter_add_rows = cuda_scatter_add_rows;
    o->div_scalar_forward = cuda_div_scalar_forward;
    o->div_scalar_backward = cuda_div_scalar_backward;
    o->clamp = cuda_clamp;
    o->softmax_rows = cuda_softmax_rows;
    o->softmax_xent = cuda_softmax_xent;
    o->reduce_sum = cuda_reduce_sum;
    o->reduce_sumsq = cuda_reduce_sumsq;
    o->itm_negatives = cuda_itm_negatives;
    o->fill = cuda_fill;
    o->fill_normal = cuda_fill_normal;
    o->cast = cuda_cast;
    o->adamw = cuda_adamw;
    o->ema = cuda_ema;
}

#endif
