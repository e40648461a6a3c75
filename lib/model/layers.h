/* Parameter groups shared by the ViT and BERT modules, and the dropout
 * context a training forward pass draws its seeds from. */
#ifndef ALBEF_MODEL_LAYERS_H
#define ALBEF_MODEL_LAYERS_H

#include "model/params.h"
#include "ops/ops.h"

#include <stdint.h>

typedef struct {
    tensor weight, bias; /* weight (out, in), bias (out) */
} linear_params;

typedef struct {
    tensor weight, bias; /* (C) each */
} norm_params;

/* Registers name.weight (out, in) and name.bias (out) into value and grad slots. */
int linear_register(param_set *ps, linear_params *w, linear_params *g, int64_t out, int64_t in, const char *name);
/* Registers name.weight and name.bias, both (width). */
int norm_register(param_set *ps, norm_params *w, norm_params *g, int64_t width, const char *name);

/* Dropout during training: each dropout site of a forward pass takes the next
 * seed of the sequence and keeps it in its activations for the backward pass.
 * NULL (or zero probabilities) means evaluation: no dropout. */
typedef struct {
    float hidden, attention;
    uint64_t seed;
    uint64_t counter;
} dropout_ctx;

static inline uint64_t dropout_next_seed(dropout_ctx *d)
{
    uint64_t z = d->seed + 0x9e3779b97f4a7c15ull * ++d->counter;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
