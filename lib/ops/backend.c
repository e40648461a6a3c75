#include "core/device.h"
#include "core/error.h"
#include "ops/ops.h"

#include <stdio.h>
#include <string.h>

#ifdef ALBEF_HAVE_CUDA
int cuda_backend_create(backend **out, char *msg, size_t cap);
void cuda_backend_destroy(backend *be);
int cuda_backend_set_tf32(backend *be, int on);
void cuda_backend_set_bf16(backend *be, int on);
#endif

#define ALL_OPS(X)                                                                                                  \
    X(alloc) X(free) X(upload) X(download) X(copy) X(zero) X(synchronize) X(matmul) X(linear_forward)               \
    X(linear_backward) X(gelu_forward) X(gelu_backward) X(layernorm_forward) X(layernorm_backward)                  \
    X(bias_gelu_forward) X(bias_gelu_backward) X(residual_layernorm_forward) X(residual_layernorm_backward) X(add)  \
    X(accumulate) X(scale) X(attention_forward) X(attention_backward) X(dropout_forward) X(dropout_backward)        \
    X(embedding_forward) X(embedding_backward) X(patchify) X(vit_embed_forward) X(vit_embed_backward)               \
    X(l2norm_forward) X(l2norm_backward) X(copy_rows) X(gather_rows) X(scatter_add_rows) X(div_scalar_forward)      \
    X(div_scalar_backward) X(clamp) X(softmax_rows) X(softmax_xent) X(reduce_sum) X(reduce_sumsq) X(fill)           \
    X(itm_negatives) X(fill_normal) X(cast) X(adamw) X(ema)

int backend_missing_ops(const backend *be, char *buf, size_t cap)
{
    int missing = 0;
    size_t n = 0;
    if (cap)
        buf[0] = '\0';
#define CHECK_OP(name)                                                                                              \
    if (!be->ops->name) {                                                                                           \
        if (n < cap)                                                                                                \
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", missing ? ", " : "", #name);                             \
        missing++;                                                                                                  \
    }
    ALL_OPS(CHECK_OP)
#undef CHECK_OP
    return missing;
}

int backend_create(const char *name, backend **out)
{
    *out = NULL;
    if (!strcmp(name, "cpu")) {
        *out = backend_cpu();
        return ALBEF_OK;
    }
    if (!strcmp(name, "cuda")) {
        char desc[512];
        int rc = device_cuda_probe(desc, sizeof desc);
        if (rc)
            return albef_error_context(rc, "--device cuda: ");
#ifdef ALBEF_HAVE_CUDA
        char msg[512];
        if (cuda_backend_create(out, msg, sizeof msg) != 0)
            return albef_error(ALBEF_ERR_NODEV, "--device cuda: %s", msg);
        char missing[1024];
        if (backend_missing_ops(*out, missing, sizeof missing)) {
            cuda_backend_destroy(*out);
            *out = NULL;
            return albef_error(ALBEF_ERR_UNSUPPORTED, "--device cuda: the CUDA back end does not implement yet: %s",
                               missing);
        }
        return ALBEF_OK;
#endif
    }
    return albef_error(ALBEF_ERR_INVALID, "unknown device '%s' (expected cpu or cuda)", name);
}

int backend_set_precision(backend *be, const char *precision)
{
    (void)be;
    int tf32 = !strcmp(precision, "tf32"), bf16 = !strcmp(precision, "bf16");
    if (strcmp(precision, "fp32") && !tf32 && !bf16)
        return albef_error(ALBEF_ERR_INVALID, "unknown precision '%s' (expected fp32, tf32 or bf16)", precision);
#ifdef ALBEF_HAVE_CUDA
    if (be->kind == BACKEND_CUDA) {
        if (cuda_backend_set_tf32(be, tf32))
            return albef_error(ALBEF_ERR_UNSUPPORTED, "--precision %s: cuBLAS refused the math mode", precision);
        cuda_backend_set_bf16(be, bf16);
        /* arenas sized before this call were sized for the old type */
        be->act_dtype = bf16 ? DTYPE_BF16 : DTYPE_F32;
        return ALBEF_OK;
    }
#endif
    if (tf32 || bf16)
        return albef_error(ALBEF_ERR_UNSUPPORTED, "--precision %s needs --device cuda", precision);
    return ALBEF_OK;
}

void backend_destroy(backend *be)
{
#ifdef ALBEF_HAVE_CUDA
    if (be && be->kind == BACKEND_CUDA)
        cuda_backend_destroy(be);
#else
    (void)be;
#endif
}
