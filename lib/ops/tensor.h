/* Tensors: a pointer into back-end memory (host for the CPU back end, device
 * for CUDA), an element type and a row-major shape. A tensor never owns its
 * memory; arenas do. Model code passes tensors to ops and never dereferences
 * their data. */
#ifndef ALBEF_OPS_TENSOR_H
#define ALBEF_OPS_TENSOR_H

#include "core/dtype.h"

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define TENSOR_MAX_DIMS 4

typedef struct {
    void *data;
    albef_dtype dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
} tensor;

static inline int64_t tensor_numel(tensor t)
{
    int64_t n = 1;
    for (int i = 0; i < t.ndim; i++)
        n *= t.shape[i];
    return n;
}

static inline size_t tensor_nbytes(tensor t) { return (size_t)tensor_numel(t) * dtype_size(t.dtype); }

/* Size of the last dimension, and the product of all the others: the (M, C)
 * view that row-wise ops (layernorm, softmax, linear) work on. */
static inline int64_t tensor_cols(tensor t) { return t.ndim ? t.shape[t.ndim - 1] : 1; }
static inline int64_t tensor_rows(tensor t) { return tensor_numel(t) / (tensor_cols(t) ? tensor_cols(t) : 1); }

static inline tensor tensor_make(void *data, albef_dtype dtype, int ndim, const int64_t *shape)
{
    tensor t = {data, dtype, ndim, {1, 1, 1, 1}};
    for (int i = 0; i < ndim; i++)
        t.shape[i] = shape[i];
    return t;
}

#define TENSOR_SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define TENSOR_NDIM(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* tensor_f32(ptr, 2, 3, 4) -> an f32 tensor of shape (2, 3, 4) at ptr. */
#define tensor_f32(ptr, ...) tensor_make((ptr), DTYPE_F32, TENSOR_NDIM(__VA_ARGS__), TENSOR_SHAPE(__VA_ARGS__))

/* The same memory seen with another shape of the same element count. */
static inline tensor tensor_reshape(tensor t, int ndim, const int64_t *shape)
{
    tensor r = tensor_make(t.data, t.dtype, ndim, shape);
    assert(tensor_numel(r) == tensor_numel(t));
    return r;
}

/* Rows [first, first + count) along the leading dimension. */
static inline tensor tensor_slice(tensor t, int64_t first, int64_t count)
{
    assert(t.ndim >= 1 && first >= 0 && first + count <= t.shape[0]);
    size_t row_bytes = t.shape[0] ? tensor_nbytes(t) / (size_t)t.shape[0] : 0;
    tensor r = t;
    r.data = (char *)t.data + (size_t)first * row_bytes;
    r.shape[0] = count;
    return r;
}

#endif
