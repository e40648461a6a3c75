/* Named parameters in one arena.
 * A model registers each parameter with its official ALBEF state-dict name
 * and shape, and the addresses of the tensor fields that will point at it
 * (its value, and its gradient when the model trains). params_alloc then
 * lays every parameter out in one contiguous buffer, in registration order,
 * with a gradient buffer of the same layout, and fills the fields. AdamW,
 * the momentum update and gradient reductions are then single passes.
 *
 * Tied weights (the MLM decoder and the word embeddings; NLVR's shared
 * cross-attention keys/values) are aliases: extra names for one parameter. */
#ifndef ALBEF_MODEL_PARAMS_H
#define ALBEF_MODEL_PARAMS_H

#include "ops/ops.h"

#include <stddef.h>

typedef struct {
    char *name;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    size_t numel;
    size_t offset;   /* in elements from the start of the arena */
    int no_decay;    /* AdamW group without weight decay: 1-D tensors and biases */
    int alias_of;    /* index of the parameter this name shares storage with, or -1 */
    tensor *value_slot, *grad_slot;
} param_info;

typedef struct {
    param_info *items;
    int count, cap;
    size_t numel;  /* elements in the arena (aliases not counted) */
    backend *be;
    float *values; /* arena, back-end memory */
    float *grads;  /* same layout; NULL without gradients */
} param_set;

void params_init(param_set *ps);
void params_free(param_set *ps);

/* Registers a parameter named by printf-style fmt. grad_slot may be NULL. */
int params_add(param_set *ps, tensor *value_slot, tensor *grad_slot, int ndim, const int64_t *shape,
               const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Registers `alias` as another name for `target` (already registered); the
 * slots, when given, get the target's tensors. */
int params_alias(param_set *ps, tensor *value_slot, tensor *grad_slot, const char *target, const char *alias);

/* Allocates the arenas (gradients when with_grads) and fills every slot. */
int params_alloc(param_set *ps, backend *be, int with_grads);

/* Sets every gradient to zero (the start of a step). */
void params_zero_grads(param_set *ps);

int params_index(const param_set *ps, const char *name); /* -1 when absent */
tensor params_value(const param_set *ps, int index);
tensor params_grad(const param_set *ps, int index);
tensor params_all_values(const param_set *ps); /* the whole arena, (numel) */
tensor params_all_grads(const param_set *ps);

#endif
