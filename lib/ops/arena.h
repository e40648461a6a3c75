/* Arenas: one allocation in back-end memory, handed out as tensors by a bump
 * pointer. The activation arena is sized once, before training, by running
 * the model on the null back end with a measuring arena; each step then
 * resets it and takes the same tensors again: no allocation inside a step.
 * Tensors are 64-byte aligned. */
#ifndef ALBEF_OPS_ARENA_H
#define ALBEF_OPS_ARENA_H

#include "ops/ops.h"

#include <stddef.h>

typedef struct {
    backend *be;
    char *base;      /* NULL for a measuring arena */
    size_t capacity; /* bytes */
    size_t used, peak;
    int overflow;    /* set when a request did not fit; the tensor's data is NULL */
} arena;

/* Allocates `bytes` of back-end memory. */
int arena_init(arena *a, backend *be, size_t bytes);
/* An arena that hands out no memory and records how much would be used. */
void arena_init_measuring(arena *a);
void arena_free(arena *a);

tensor arena_tensor(arena *a, albef_dtype dtype, int ndim, const int64_t *shape);
#define arena_f32(a, ...) arena_tensor((a), DTYPE_F32, TENSOR_NDIM(__VA_ARGS__), TENSOR_SHAPE(__VA_ARGS__))
/* An activation that only matrix products read, in the back end's
 * act_dtype (bf16 in bf16 mode; see ops.h). */
#define arena_act(a, be, ...)                                                                                       \
    arena_tensor((a), (be)->act_dtype, TENSOR_NDIM(__VA_ARGS__), TENSOR_SHAPE(__VA_ARGS__))
#define arena_i32(a, ...) arena_tensor((a), DTYPE_I32, TENSOR_NDIM(__VA_ARGS__), TENSOR_SHAPE(__VA_ARGS__))

/* Everything taken after a mark is given back by arena_reset(a, mark). */
static inline size_t arena_mark(const arena *a) { return a->used; }
static inline void arena_reset(arena *a, size_t mark) { a->used = mark; }

#endif
