/* The text encoder, fusion encoder and answer decoder: one BERT definition
 * (ALBEF's xbert, spec 1.3). Post-LN layers (eps from the config, 1e-12),
 * exact GELU, learned absolute positions, token type 0 added; layers with
 * index >= fusion_layer have a cross-attention sub-block between self-attention
 * and the FFN whose keys and values come from encoder states (the image
 * tokens, or the question states for the VQA decoder).
 *
 * Modes pick the layers that run:
 *   BERT_TEXT         ids -> embeddings -> layers [0, fusion_layer)
 *   BERT_FUSION       encoder_embeds -> layers [fusion_layer, num_layers)
 *   BERT_MULTI_MODAL  ids -> embeddings -> every layer
 * The VQA decoder is a configuration (fusion_layer 0, causal); NLVR2 passes
 * two encoder states that alternate layer by layer, with the cross-attention
 * key/value weights of each pair of layers tied. */
#ifndef ALBEF_MODEL_BERT_H
#define ALBEF_MODEL_BERT_H

#include "model/config.h"
#include "model/layers.h"
#include "ops/arena.h"

enum bert_mode { BERT_TEXT, BERT_FUSION, BERT_MULTI_MODAL };

typedef struct {
    linear_params query, key, value, dense;
    norm_params norm;
} bert_attention_params;

typedef struct {
    bert_attention_params self, cross; /* cross: layers >= fusion_layer only */
    linear_params intermediate, output;
    norm_params output_norm;
} bert_layer_params;

typedef struct {
    tensor word;     /* (V, C); also the MLM decoder weight (tied) */
    tensor position; /* (P, C) */
    tensor type;     /* (types, C); row 0 is added */
    norm_params emb_norm;
    bert_layer_params *layers;
    /* MLM head (cls.predictions), when present */
    linear_params transform;
    norm_params transform_norm;
    tensor decoder_bias; /* (V) */
} bert_params;

typedef struct {
    bert_config cfg;
    int has_mlm_head;
    int causal;          /* decoder self-attention (VQA answer decoder) */
    int tie_cross_kv;    /* NLVR2: layers fusion+2i and fusion+2i+1 share cross key/value */
    bert_params w, g;
} bert_model;

/* Per-layer activations kept for the backward pass. ctx, cctx and act (and
 * the MLM head's norm) are read by matrix products only: they are stored in
 * the back end's act_dtype (bf16 in bf16 mode), the rest in fp32. */
typedef struct {
    tensor x_in;                          /* (B, L, C) */
    tensor q, k, v, state, ctx;           /* self-attention; state: see attention_forward */
    tensor h1_pre, h1, h1_mean, h1_rstd;  /* after self-attention residual + LN */
    uint64_t seed_self_attn, seed_self_out;
    tensor enc;                           /* (B, S, E) the encoder states this layer read */
    int enc_index;                        /* which of the inputs' encoder states (NLVR2: 0 or 1) */
    tensor cq, ck, cv, cstate, cctx;      /* cross-attention */
    tensor h2_pre, h2, h2_mean, h2_rstd;
    uint64_t seed_cross_attn, seed_cross_out;
    tensor inter, act;                    /* (B, L, I) before and after GELU */
    tensor y_pre, y, y_mean, y_rstd;      /* layer output */
    uint64_t seed_ffn_out;
} bert_layer_acts;

typedef struct {
    int inference;       /* set by the caller: keep only what the output needs (no backward) */
    int mode, batch, len, first_layer, last_layer;
    tensor ids;          /* (B, L) i32, text and multi-modal modes */
    tensor text_mask;    /* (B, L) additive: 0 or -10000 */
    tensor enc_mask[2];  /* (B, S) additive or none */
    tensor emb_sum, emb_mean, emb_rstd, emb_norm;
    uint64_t seed_emb;
    float p_hidden, p_attn;
    bert_layer_acts *layers;
    tensor out;          /* (B, L, C) last layer's output */
} bert_acts;

/* Inputs of one forward pass. */
typedef struct {
    int mode;
    tensor ids;            /* (B, L) i32 (text, multi-modal) */
    tensor embeds;         /* (B, L, C) (fusion): the text-mode output */
    tensor text_mask;      /* (B, L) additive mask: (1 - m) * -10000 */
    tensor enc[2];         /* (B, S, E) encoder states; enc[1] present for NLVR2 */
    tensor enc_mask[2];    /* (B, S) additive, or none (images: never masked) */
    int n_enc;
    int enc_shared;        /* enc[0] is (1, S, E), shared by all B rows: its cross-attention keys and
                            * values are computed once per layer (inference only) */
} bert_inputs;

typedef struct {
    const char *prefix; /* "text_encoder", "text_encoder_m", "text_decoder", ... */
    int bert_prefix;    /* names under prefix.bert. (BertForMaskedLM layout) */
    int mlm_head;       /* prefix.cls.predictions.*, decoder tied to the word embeddings */
    int causal;         /* decoder self-attention */
    int tie_cross_kv;   /* NLVR2 pairs share cross-attention key/value weights */
    int with_grads;
} bert_options;

/* Registers the parameters with their official names. */
int bert_init(bert_model *m, const bert_config *cfg, param_set *ps, const bert_options *opt);
void bert_free(bert_model *m);

int bert_acts_init(bert_acts *a, const bert_model *m);
void bert_acts_free(bert_acts *a);

/* Runs the layers of `in->mode`; the output is a->out (B, L, C). dropout may
 * be NULL (evaluation). */
void bert_forward(backend *be, const bert_model *m, bert_acts *a, arena *ar, const bert_inputs *in,
                  dropout_ctx *dropout);

/* dout (B, L, C). Parameter gradients accumulate. In fusion mode d_embeds
 * receives d(embeds) (accumulated when accumulate_embeds); d_enc[i] (B, S, E),
 * when present, accumulates d(encoder states). */
void bert_backward(backend *be, const bert_model *m, bert_acts *a, arena *ar, tensor dout, tensor d_embeds,
                   int accumulate_embeds, tensor d_enc[2]);

/* MLM head on selected rows: hidden (R, C) -> logits (R, V). Keeps its
 * activations in *h for the backward pass. */
typedef struct {
    tensor hidden, dense, act, norm, norm_mean, norm_rstd, logits;
} mlm_head_acts;
void bert_mlm_forward(backend *be, const bert_model *m, mlm_head_acts *h, arena *ar, tensor hidden);
/* dlogits (R, V) -> dhidden (R, C) written. */
void bert_mlm_backward(backend *be, const bert_model *m, mlm_head_acts *h, arena *ar, tensor dlogits,
                       tensor dhidden);

#endif
