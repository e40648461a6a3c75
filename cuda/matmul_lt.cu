// cuBLASLt matrix products for linear_forward / linear_backward: the bias
// added in the product's epilogue (no separate pass over the output), the
// bias gradient summed in the weight gradient's epilogue (BGRADB), and a
// plan per shape (descriptors, layouts and the heuristic's algorithm), made
// on the first call with that shape and reused after, so that a warm step
// asks cuBLASLt for nothing but the product itself.
//
// Everything is column-major here; the callers turn their row-major
// products around (C^T = B^T A^T) as the cuBLAS path does. In bf16 mode the
// callers pass bf16 copies of a and b; d and the bias stay fp32 (the bias
// takes d's type), and so does the accumulation.
#include "cuda_internal.cuh"

#include <stdlib.h>
#include <string.h>

#define LT_MAX_PLANS 256

struct lt_key {
    int64_t m, n, k, lda, ldb, ldd;
    int trans_a, trans_b, bias, bias_grad, align, tf32, ab_type;
};

struct lt_plan {
    lt_key key;
    int usable; // 0: cuBLASLt offered no algorithm; callers use cuBLAS
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
};

struct cuda_lt_cache {
    lt_plan plans[LT_MAX_PLANS];
    int count;
};

namespace {

// The largest power of two (at most 256) that divides every address.
int common_alignment(const void *const *ptrs, int n)
{
    uintptr_t bits = 256;
    for (int i = 0; i < n; i++)
        if (ptrs[i])
            bits |= (uintptr_t)ptrs[i];
    return (int)(bits & (~bits + 1));
}

bool same_key(const lt_key &x, const lt_key &y) { return !memcmp(&x, &y, sizeof x); }

void destroy_plan(lt_plan *p)
{
    if (p->desc)
        cublasLtMatmulDescDestroy(p->desc);
    if (p->a)
        cublasLtMatrixLayoutDestroy(p->a);
    if (p->b)
        cublasLtMatrixLayoutDestroy(p->b);
    if (p->d)
        cublasLtMatrixLayoutDestroy(p->d);
}

// Builds the plan for `key`; a cuBLASLt failure is recorded, a shape with
// no algorithm is only marked unusable.
void make_plan(backend *be, lt_plan *p, const lt_key &key)
{
    cuda_impl *c = cuda_impl_of(be);
    memset(p, 0, sizeof *p);
    p->key = key;
    cublasOperation_t ta = key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = key.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtEpilogue_t epilogue = key.bias_grad ? CUBLASLT_EPILOGUE_BGRADB
                                  : key.bias    ? CUBLASLT_EPILOGUE_BIAS
                                                : CUBLASLT_EPILOGUE_DEFAULT;
    // bf16 inputs accumulate in fp32 on tensor cores whatever the TF32 setting
    cudaDataType_t ab_type = (cudaDataType_t)key.ab_type;
    cublasComputeType_t compute =
        key.tf32 && ab_type == CUDA_R_32F ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    // stored shapes: op(A) is (m, k), op(B) is (k, n)
    uint64_t a_rows = key.trans_a ? key.k : key.m, a_cols = key.trans_a ? key.m : key.k;
    uint64_t b_rows = key.trans_b ? key.n : key.k, b_cols = key.trans_b ? key.k : key.n;
    cublasStatus_t st = cublasLtMatmulDescCreate(&p->desc, compute, CUDA_R_32F);
    st = st ? st : cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    st = st ? st : cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    st = st ? st : cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue);
    st = st ? st : cublasLtMatrixLayoutCreate(&p->a, ab_type, a_rows, a_cols, key.lda);
    st = st ? st : cublasLtMatrixLayoutCreate(&p->b, ab_type, b_rows, b_cols, key.ldb);
    st = st ? st : cublasLtMatrixLayoutCreate(&p->d, CUDA_R_32F, key.m, key.n, key.ldd);
    cublasLtMatmulPreference_t pref = nullptr;
    st = st ? st : cublasLtMatmulPreferenceCreate(&pref);
    uint64_t ws = c->cublas_workspace_bytes;
    uint32_t align = (uint32_t)key.align;
    st = st ? st
            : cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    st = st ? st
            : cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align,
                                                   sizeof align);
    st = st ? st
            : cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align,
                                                   sizeof align);
    st = st ? st
            : cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align,
                                                   sizeof align);
    st = st ? st
            : cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align,
                                                   sizeof align);
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    if (!st)
        st = cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &result, &found);
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED || (!st && found == 0))
        return; // unusable: the caller takes the cuBLAS path
    if (st) {
        cuda_record_cublas(be, st, "linear (cuBLASLt plan)");
        return;
    }
    p->algo = result.algo;
    p->usable = 1;
}

} // namespace

int cuda_lt_cache_create(cuda_impl *c)
{
    c->lt_cache = static_cast<cuda_lt_cache *>(calloc(1, sizeof(cuda_lt_cache)));
    return c->lt_cache ? 0 : 1;
}

void cuda_lt_cache_destroy(cuda_impl *c)
{
    if (!c->lt_cache)
        return;
    for (int i = 0; i < c->lt_cache->count; i++)
        destroy_plan(&c->lt_cache->plans[i]);
    free(c->lt_cache);
    c->lt_cache = nullptr;
}

int cuda_lt_matmul(backend *be, const cuda_lt_gemm *g)
{
    cuda_impl *c = cuda_impl_of(be);
    if (!c->lt || !c->lt_cache)
        return 1;
    // the bias epilogues access the bias vector with vector loads and stores
    const float *bias = g->bias_grad ? g->bias_grad : g->bias;
    if (bias && ((uintptr_t)bias & 15))
        return 1;
    const void *ptrs[3] = {g->a, g->b, g->d};
    lt_key key;
    memset(&key, 0, sizeof key); // the padding too: keys are compared bytewise
    key.m = g->m, key.n = g->n, key.k = g->k, key.lda = g->lda, key.ldb = g->ldb, key.ldd = g->ldd;
    key.trans_a = g->trans_a, key.trans_b = g->trans_b, key.bias = g->bias != nullptr;
    key.bias_grad = g->bias_grad != nullptr;
    key.align = common_alignment(ptrs, 3), key.tf32 = c->tf32, key.ab_type = (int)g->ab_type;
    cuda_lt_cache *cache = c->lt_cache;
    lt_plan *p = nullptr;
    for (int i = 0; i < cache->count && !p; i++)
        if (same_key(cache->plans[i].key, key))
            p = &cache->plans[i];
    if (!p) {
        if (cache->count == LT_MAX_PLANS)
            return 1; // a full cache: the cuBLAS path, which needs no plan
        p = &cache->plans[cache->count++];
        make_plan(be, p, key);
    }
    if (!p->usable)
        return 1;
    if (bias) {
        cublasStatus_t st =
            cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
        if (st) {
            cuda_record_cublas(be, st, "linear (cuBLASLt bias)");
            return 0;
        }
    }
    float alpha = 1.0f, beta = g->beta;
    cuda_record_cublas(be,
                       cublasLtMatmul(c->lt, p->desc, &alpha, g->a, p->a, g->b, p->b, &beta, g->d, p->d, g->d, p->d,
                                      &p->algo, c->cublas_workspace, c->cublas_workspace_bytes, c->stream),
                       "linear (cuBLASLt)");
    return 0;
}
