/* The image encoder: ViT-B/16 as ALBEF customises it (spec 1.2).
 * Patch embedding (a stride-P convolution, done as patchify + linear), a
 * [CLS] token before the patches, learned position embeddings, pre-LN blocks
 * (LN eps 1e-6, fused qkv with bias, exact GELU), a final LayerNorm, and all
 * tokens out: (B, 1 + N, C). */
#ifndef ALBEF_MODEL_VIT_H
#define ALBEF_MODEL_VIT_H

#include "model/config.h"
#include "model/layers.h"
#include "ops/arena.h"

typedef struct {
    norm_params norm1, norm2;
    linear_params qkv, proj, fc1, fc2;
} vit_block_params;

typedef struct {
    tensor cls_token;     /* (1, 1, C) */
    tensor pos_embed;     /* (1, 1 + N, C) */
    linear_params patch;  /* weight (C, 3, P, P), bias (C) */
    vit_block_params *blocks;
    norm_params norm;
} vit_params;

typedef struct {
    int image_res, patch, width, depth, heads, mlp_hidden, num_patches;
    float eps;
    vit_params w; /* values */
    vit_params g; /* gradients (data NULL when the model does not train) */
} vit_model;

/* What a forward pass keeps for its backward pass. ln1, attn, ln2 and act
 * are read by matrix products only: they are stored in the back end's
 * act_dtype (bf16 in bf16 mode), the rest in fp32. */
typedef struct {
    tensor x_in;                  /* (B, T, C) block input, the residual stream */
    tensor ln1, ln1_mean, ln1_rstd;
    tensor qkv;                   /* (B, T, 3C) */
    tensor state;                 /* (B, H, T, attention_state_cols(be, T)) */
    tensor attn;                  /* (B, T, C) heads merged, before proj */
    tensor x_mid;                 /* (B, T, C) after the attention residual */
    tensor ln2, ln2_mean, ln2_rstd;
    tensor fc1;                   /* (B, T, 4C) before GELU */
    tensor act;                   /* (B, T, 4C) after GELU */
} vit_block_acts;

typedef struct {
    int batch;
    int inference;        /* set by the caller: keep only what the output needs (no backward) */
    tensor patches;       /* (B * N, 3 * P * P) */
    tensor x_final;       /* (B, T, C) last block output */
    tensor norm_mean, norm_rstd;
    tensor out;           /* (B, T, C) after the final LayerNorm */
    vit_block_acts *blocks;
} vit_acts;

/* Registers the parameters under `prefix` ("visual_encoder"); the tensors
 * are filled when the parameter set is allocated. with_grads also registers
 * gradient slots. */
int vit_init(vit_model *m, const albef_config *cfg, param_set *ps, const char *prefix, int with_grads);
void vit_free(vit_model *m);

int vit_acts_init(vit_acts *a, const vit_model *m);
void vit_acts_free(vit_acts *a);

/* images (B, 3, R, R), normalised -> a->out (B, 1 + N, C). Activations come
 * from `ar`. */
void vit_forward(backend *be, const vit_model *m, vit_acts *a, arena *ar, tensor images);
/* dout (B, 1 + N, C): accumulates parameter gradients. */
void vit_backward(backend *be, const vit_model *m, vit_acts *a, arena *ar, tensor dout);

#endif
