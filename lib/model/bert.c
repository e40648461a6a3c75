#include "model/bert.h"

#include "core/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tie_cross_kv(param_set *ps, bert_attention_params *w, bert_attention_params *g, const char *from,
                        const char *to);

/* `block` is "attention" or "crossattention"; tie_from names the layer whose
 * key/value weights this one shares (NLVR2), or is NULL. */
static int attention_register(param_set *ps, bert_attention_params *w, bert_attention_params *g, int64_t c,
                              int64_t kv_in, const char *base, const char *block, const char *tie_from)
{
    char name[256];
    int rc = 0;
    snprintf(name, sizeof name, "%s.%s.self.query", base, block);
    rc = rc ? rc : linear_register(ps, &w->query, g ? &g->query : NULL, c, c, name);
    if (tie_from) {
        rc = rc ? rc : tie_cross_kv(ps, w, g, tie_from, base);
    } else {
        snprintf(name, sizeof name, "%s.%s.self.key", base, block);
        rc = rc ? rc : linear_register(ps, &w->key, g ? &g->key : NULL, c, kv_in, name);
        snprintf(name, sizeof name, "%s.%s.self.value", base, block);
        rc = rc ? rc : linear_register(ps, &w->value, g ? &g->value : NULL, c, kv_in, name);
    }
    snprintf(name, sizeof name, "%s.%s.output.dense", base, block);
    rc = rc ? rc : linear_register(ps, &w->dense, g ? &g->dense : NULL, c, c, name);
    snprintf(name, sizeof name, "%s.%s.output.LayerNorm", base, block);
    rc = rc ? rc : norm_register(ps, &w->norm, g ? &g->norm : NULL, c, name);
    return rc;
}

/* NLVR2: the second layer of each fusion pair reads the first one's cross
 * key and value weights (aliases, one storage). */
static int tie_cross_kv(param_set *ps, bert_attention_params *w, bert_attention_params *g, const char *from,
                        const char *to)
{
    static const char *const parts[] = {"key.weight", "key.bias", "value.weight", "value.bias"};
    tensor *wslots[] = {&w->key.weight, &w->key.bias, &w->value.weight, &w->value.bias};
    tensor *gslots[] = {g ? &g->key.weight : NULL, g ? &g->key.bias : NULL, g ? &g->value.weight : NULL,
                        g ? &g->value.bias : NULL};
    char a[256], b[256];
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "%s.crossattention.self.%s", from, parts[i]);
        snprintf(b, sizeof b, "%s.crossattention.self.%s", to, parts[i]);
        int rc = params_alias(ps, wslots[i], gslots[i], a, b);
        if (rc)
            return rc;
    }
    return ALBEF_OK;
}

int bert_init(bert_model *m, const bert_config *cfg, param_set *ps, const bert_options *opt)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->has_mlm_head = opt->mlm_head;
    m->causal = opt->causal;
    m->tie_cross_kv = opt->tie_cross_kv;
    const char *prefix = opt->prefix;
    int with_grads = opt->with_grads;
    int n = cfg->num_hidden_layers;
    m->w.layers = calloc((size_t)n, sizeof *m->w.layers);
    m->g.layers = calloc((size_t)n, sizeof *m->g.layers);
    if (!m->w.layers || !m->g.layers)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    bert_params *w = &m->w, *g = with_grads ? &m->g : NULL;
    int64_t c = cfg->hidden_size;
    char base[192], name[256];
    snprintf(base, sizeof base, "%s%s", prefix, opt->bert_prefix ? ".bert" : "");
    int rc = params_add(ps, &w->word, g ? &g->word : NULL, 2, TENSOR_SHAPE(cfg->vocab_size, c),
                        "%s.embeddings.word_embeddings.weight", base);
    rc = rc ? rc
            : params_add(ps, &w->position, g ? &g->position : NULL, 2,
                         TENSOR_SHAPE(cfg->max_position_embeddings, c), "%s.embeddings.position_embeddings.weight",
                         base);
    rc = rc ? rc
            : params_add(ps, &w->type, g ? &g->type : NULL, 2, TENSOR_SHAPE(cfg->type_vocab_size, c),
                         "%s.embeddings.token_type_embeddings.weight", base);
    snprintf(name, sizeof name, "%s.embeddings.LayerNorm", base);
    rc = rc ? rc : norm_register(ps, &w->emb_norm, g ? &g->emb_norm : NULL, c, name);
    for (int i = 0; i < n && !rc; i++) {
        bert_layer_params *lw = &w->layers[i], *lg = g ? &g->layers[i] : NULL;
        char lb[224], prev[224];
        snprintf(lb, sizeof lb, "%s.encoder.layer.%d", base, i);
        snprintf(prev, sizeof prev, "%s.encoder.layer.%d", base, i - 1);
        rc = attention_register(ps, &lw->self, lg ? &lg->self : NULL, c, c, lb, "attention", NULL);
        int tied = opt->tie_cross_kv && (i - cfg->fusion_layer) % 2 == 1;
        if (!rc && i >= cfg->fusion_layer)
            rc = attention_register(ps, &lw->cross, lg ? &lg->cross : NULL, c, cfg->encoder_width, lb,
                                    "crossattention", tied ? prev : NULL);
        snprintf(name, sizeof name, "%s.intermediate.dense", lb);
        rc = rc ? rc : linear_register(ps, &lw->intermediate, lg ? &lg->intermediate : NULL, cfg->intermediate_size, c, name);
        snprintf(name, sizeof name, "%s.output.dense", lb);
        rc = rc ? rc : linear_register(ps, &lw->output, lg ? &lg->output : NULL, c, cfg->intermediate_size, name);
        snprintf(name, sizeof name, "%s.output.LayerNorm", lb);
        rc = rc ? rc : norm_register(ps, &lw->output_norm, lg ? &lg->output_norm : NULL, c, name);
    }
    if (!rc && opt->mlm_head) {
        char hb[224];
        snprintf(hb, sizeof hb, "%s.cls.predictions", prefix);
        rc = params_add(ps, &w->decoder_bias, g ? &g->decoder_bias : NULL, 1, TENSOR_SHAPE(cfg->vocab_size), "%s.bias",
                        hb);
        snprintf(name, sizeof name, "%s.transform.dense", hb);
        rc = rc ? rc : linear_register(ps, &w->transform, g ? &g->transform : NULL, c, c, name);
        snprintf(name, sizeof name, "%s.transform.LayerNorm", hb);
        rc = rc ? rc : norm_register(ps, &w->transform_norm, g ? &g->transform_norm : NULL, c, name);
        /* the decoder is tied: its weight is the word embedding table and its
         * bias is cls.predictions.bias; official files list both names */
        char target[256], alias[256];
        snprintf(target, sizeof target, "%s.embeddings.word_embeddings.weight", base);
        snprintf(alias, sizeof alias, "%s.decoder.weight", hb);
        rc = rc ? rc : params_alias(ps, NULL, NULL, target, alias);
        snprintf(target, sizeof target, "%s.bias", hb);
        snprintf(alias, sizeof alias, "%s.decoder.bias", hb);
        rc = rc ? rc : params_alias(ps, NULL, NULL, target, alias);
    }
    return rc;
}

void bert_free(bert_model *m)
{
    free(m->w.layers);
    free(m->g.layers);
    m->w.layers = m->g.layers = NULL;
}

int bert_acts_init(bert_acts *a, const bert_model *m)
{
    memset(a, 0, sizeof *a);
    a->layers = calloc((size_t)m->cfg.num_hidden_layers, sizeof *a->layers);
    return a->layers ? ALBEF_OK : albef_error(ALBEF_ERR_NOMEM, "out of memory");
}

void bert_acts_free(bert_acts *a)
{
    free(a->layers);
    a->layers = NULL;
}

static attn_params bert_attn(const bert_model *m, int batch, int q_len, int kv_len, int causal, float dropout,
                             uint64_t seed)
{
    int c = m->cfg.hidden_size, h = m->cfg.num_attention_heads;
    attn_params p = {
        .batch = batch,
        .heads = h,
        .q_len = q_len,
        .kv_len = kv_len,
        .head_dim = c / h,
        .q_stride = c,
        .k_stride = c,
        .v_stride = c,
        .scale = 1.0f / sqrtf((float)(c / h)),
        .causal = causal,
        .causal_value = -10000.0f,
        .dropout = dropout,
        .seed = seed,
    };
    return p;
}

/* out = LN(residual + dropout(dense(x))); keeps the pre-LN sum in `pre`.
 * The product lands in `pre` without its bias; the fused op adds the bias,
 * the dropout and the residual and normalises, in place. */
static void dense_dropout_residual_norm(backend *be, const linear_params *dense, const norm_params *norm, float eps,
                                        tensor x, tensor residual, tensor pre, tensor out, tensor mean, tensor rstd,
                                        float p, uint64_t seed)
{
    op_linear_forward(be, pre, x, dense->weight, tensor_none());
    op_residual_layernorm_forward(be, out, mean, rstd, pre, pre, dense->bias, residual, norm->weight, norm->bias, eps,
                                  p, seed);
}

void bert_forward(backend *be, const bert_model *m, bert_acts *a, arena *ar, const bert_inputs *in,
                  dropout_ctx *dropout)
{
    const bert_config *cfg = &m->cfg;
    const bert_params *w = &m->w;
    int64_t C = cfg->hidden_size, I = cfg->intermediate_size;
    int64_t B = in->mode == BERT_FUSION ? in->embeds.shape[0] : in->ids.shape[0];
    int64_t L = in->mode == BERT_FUSION ? in->embeds.shape[1] : in->ids.shape[1];
    float eps = cfg->layer_norm_eps;
    a->mode = in->mode;
    a->batch = (int)B;
    a->len = (int)L;
    a->ids = in->ids;
    a->text_mask = in->text_mask;
    a->enc_mask[0] = in->enc_mask[0];
    a->enc_mask[1] = in->enc_mask[1];
    a->p_hidden = dropout ? dropout->hidden : 0.0f;
    a->p_attn = dropout ? dropout->attention : 0.0f;
    a->first_layer = in->mode == BERT_FUSION ? cfg->fusion_layer : 0;
    a->last_layer = in->mode == BERT_TEXT ? cfg->fusion_layer : cfg->num_hidden_layers;

    tensor x;
    if (in->mode == BERT_FUSION) {
        x = in->embeds;
    } else {
        /* word + token type 0 + position, LayerNorm, dropout */
        a->emb_sum = arena_f32(ar, B, L, C);
        op_embedding_forward(be, a->emb_sum, in->ids, w->word, w->position, tensor_slice(w->type, 0, 1));
        a->emb_norm = arena_f32(ar, B, L, C);
        a->emb_mean = arena_f32(ar, B * L);
        a->emb_rstd = arena_f32(ar, B * L);
        op_layernorm_forward(be, a->emb_norm, a->emb_mean, a->emb_rstd, a->emb_sum, w->emb_norm.weight,
                             w->emb_norm.bias, eps);
        x = a->emb_norm;
        if (a->p_hidden > 0) {
            a->seed_emb = dropout_next_seed(dropout);
            x = arena_f32(ar, B, L, C);
            op_dropout_forward(be, x, a->emb_norm, a->p_hidden, a->seed_emb);
        }
    }

    /* Inference keeps two residual buffers and gives each layer's
     * temporaries back to the arena when the layer is done. */
    tensor spare = a->inference ? arena_f32(ar, B, L, C) : tensor_none();
    for (int i = a->first_layer; i < a->last_layer; i++) {
        const bert_layer_params *lw = &w->layers[i];
        bert_layer_acts *la = &a->layers[i];
        size_t layer_mark = arena_mark(ar);
        la->x_in = x;
        /* self-attention */
        la->q = arena_f32(ar, B, L, C);
        la->k = arena_f32(ar, B, L, C);
        la->v = arena_f32(ar, B, L, C);
        op_linear_forward(be, la->q, x, lw->self.query.weight, lw->self.query.bias);
        op_linear_forward(be, la->k, x, lw->self.key.weight, lw->self.key.bias);
        op_linear_forward(be, la->v, x, lw->self.value.weight, lw->self.value.bias);
        la->seed_self_attn = a->p_attn > 0 ? dropout_next_seed(dropout) : 0;
        attn_params sp = bert_attn(m, (int)B, (int)L, (int)L, m->causal, a->p_attn, la->seed_self_attn);
        la->state = arena_f32(ar, B, cfg->num_attention_heads, L, attention_state_cols(be, L));
        la->ctx = arena_act(ar, be, B, L, C);
        op_attention_forward(be, &sp, la->ctx, la->state, la->q, la->k, la->v, in->text_mask);
        la->h1_pre = arena_f32(ar, B, L, C);
        la->h1 = arena_f32(ar, B, L, C);
        la->h1_mean = arena_f32(ar, B * L);
        la->h1_rstd = arena_f32(ar, B * L);
        la->seed_self_out = a->p_hidden > 0 ? dropout_next_seed(dropout) : 0;
        dense_dropout_residual_norm(be, &lw->self.dense, &lw->self.norm, eps, la->ctx, x, la->h1_pre, la->h1,
                                    la->h1_mean, la->h1_rstd, a->p_hidden, la->seed_self_out);
        tensor h = la->h1;
        /* cross-attention to the encoder states (images alternate for NLVR2) */
        if (i >= cfg->fusion_layer) {
            int e = in->n_enc > 1 ? (i - cfg->fusion_layer) % in->n_enc : 0;
            tensor enc = in->enc[e];
            int64_t S = enc.shape[1], KB = in->enc_shared ? 1 : B;
            la->enc = enc;
            la->enc_index = e;
            la->cq = arena_f32(ar, B, L, C);
            la->ck = arena_f32(ar, KB, S, C);
            la->cv = arena_f32(ar, KB, S, C);
            op_linear_forward(be, la->cq, h, lw->cross.query.weight, lw->cross.query.bias);
            op_linear_forward(be, la->ck, enc, lw->cross.key.weight, lw->cross.key.bias);
            op_linear_forward(be, la->cv, enc, lw->cross.value.weight, lw->cross.value.bias);
            la->seed_cross_attn = a->p_attn > 0 ? dropout_next_seed(dropout) : 0;
            attn_params cp = bert_attn(m, (int)B, (int)L, (int)S, 0, a->p_attn, la->seed_cross_attn);
            cp.kv_shared = in->enc_shared;
            la->cstate = arena_f32(ar, B, cfg->num_attention_heads, L, attention_state_cols(be, S));
            la->cctx = arena_act(ar, be, B, L, C);
            op_attention_forward(be, &cp, la->cctx, la->cstate, la->cq, la->ck, la->cv, in->enc_mask[e]);
            la->h2_pre = arena_f32(ar, B, L, C);
            la->h2 = arena_f32(ar, B, L, C);
            la->h2_mean = arena_f32(ar, B * L);
            la->h2_rstd = arena_f32(ar, B * L);
            la->seed_cross_out = a->p_hidden > 0 ? dropout_next_seed(dropout) : 0;
            dense_dropout_residual_norm(be, &lw->cross.dense, &lw->cross.norm, eps, la->cctx, h, la->h2_pre, la->h2,
                                        la->h2_mean, la->h2_rstd, a->p_hidden, la->seed_cross_out);
            h = la->h2;
        }
        /* feed-forward */
        la->inter = arena_f32(ar, B, L, I);
        la->act = arena_act(ar, be, B, L, I);
        op_linear_forward(be, la->inter, h, lw->intermediate.weight, tensor_none());
        op_bias_gelu_forward(be, la->act, la->inter, la->inter, lw->intermediate.bias);
        la->y_pre = arena_f32(ar, B, L, C);
        la->y = a->inference ? spare : arena_f32(ar, B, L, C);
        la->y_mean = arena_f32(ar, B * L);
        la->y_rstd = arena_f32(ar, B * L);
        la->seed_ffn_out = a->p_hidden > 0 ? dropout_next_seed(dropout) : 0;
        dense_dropout_residual_norm(be, &lw->output, &lw->output_norm, eps, la->act, h, la->y_pre, la->y, la->y_mean,
                                    la->y_rstd, a->p_hidden, la->seed_ffn_out);
        if (a->inference) {
            /* this layer's input is free again, except the first layer's,
             * which may be the caller's */
            int reuse_input = i != a->first_layer;
            arena_reset(ar, layer_mark);
            spare = reuse_input ? x : arena_f32(ar, B, L, C);
        }
        x = la->y;
    }
    a->out = x;
}

/* Backward of out = LN(residual + dropout(dense(x))): given dout, writes
 * d(residual) into dres and d(x) into dx; dpre is scratch for d(dense(x)),
 * needed only with dropout (without, it equals d(residual)). */
static void dense_dropout_residual_norm_backward(backend *be, const linear_params *dw_dense, const norm_params *dw_norm,
                                                 const linear_params *w_dense, const norm_params *w_norm, tensor dout,
                                                 tensor dres, tensor dx, tensor dpre, tensor x, tensor pre, tensor mean,
                                                 tensor rstd, float p, uint64_t seed)
{
    tensor ddense = p > 0 ? dpre : dres;
    op_residual_layernorm_backward(be, dres, 0, ddense, dw_dense->bias, dw_norm->weight, dw_norm->bias, dout, pre,
                                   w_norm->weight, mean, rstd, p, seed);
    op_linear_backward(be, dx, 0, dw_dense->weight, tensor_none(), ddense, x, w_dense->weight);
}

void bert_backward(backend *be, const bert_model *m, bert_acts *a, arena *ar, tensor dout, tensor d_embeds,
                   int accumulate_embeds, tensor d_enc[2])
{
    const bert_config *cfg = &m->cfg;
    const bert_params *w = &m->w, *g = &m->g;
    int64_t B = a->batch, L = a->len, C = cfg->hidden_size, I = cfg->intermediate_size, H = cfg->num_attention_heads;
    size_t mark = arena_mark(ar);

    int64_t S_max = 0;
    for (int i = a->first_layer; i < a->last_layer; i++)
        if (i >= cfg->fusion_layer && a->layers[i].enc.shape[1] > S_max)
            S_max = a->layers[i].enc.shape[1];
    tensor dy = arena_f32(ar, B, L, C), dx = arena_f32(ar, B, L, C), dh = arena_f32(ar, B, L, C);
    tensor dpre = arena_f32(ar, B, L, C), dctx = arena_f32(ar, B, L, C);
    tensor dq = arena_f32(ar, B, L, C), dk = arena_f32(ar, B, L, C), dv = arena_f32(ar, B, L, C);
    tensor dact = arena_f32(ar, B, L, I);
    tensor scratch = arena_f32(ar, B, H, L, attention_scratch_cols(be, L));
    tensor dck = tensor_none(), dcv = tensor_none(), cscratch = tensor_none();
    if (S_max > 0) {
        dck = arena_f32(ar, B, S_max, C);
        dcv = arena_f32(ar, B, S_max, C);
        cscratch = arena_f32(ar, B, H, L, attention_scratch_cols(be, S_max));
    }
    be->ops->copy(be, dy.data, dout.data, tensor_nbytes(dy));

    for (int i = a->last_layer - 1; i >= a->first_layer; i--) {
        const bert_layer_params *lw = &w->layers[i], *lg = &g->layers[i];
        bert_layer_acts *la = &a->layers[i];
        int has_cross = i >= cfg->fusion_layer;
        tensor h = has_cross ? la->h2 : la->h1;
        /* feed-forward: dy -> dh (residual part in dh, then += through the FFN) */
        dense_dropout_residual_norm_backward(be, &lg->output, &lg->output_norm, &lw->output, &lw->output_norm, dy, dh,
                                             dact, dpre, la->act, la->y_pre, la->y_mean, la->y_rstd, a->p_hidden,
                                             la->seed_ffn_out);
        op_bias_gelu_backward(be, dact, lg->intermediate.bias, dact, la->inter);
        op_linear_backward(be, dh, 1, lg->intermediate.weight, tensor_none(), dact, h, lw->intermediate.weight);
        if (has_cross) {
            /* cross-attention: dh = d(h2) -> dy = d(h1) */
            int e = la->enc_index;
            int64_t S = la->enc.shape[1];
            tensor ck = tensor_reshape(tensor_slice(tensor_reshape(dck, 1, TENSOR_SHAPE(B * S_max * C)), 0, B * S * C), 3,
                                       TENSOR_SHAPE(B, S, C));
            tensor cv = tensor_reshape(tensor_slice(tensor_reshape(dcv, 1, TENSOR_SHAPE(B * S_max * C)), 0, B * S * C), 3,
                                       TENSOR_SHAPE(B, S, C));
            int64_t SC = attention_scratch_cols(be, S), SC_max = attention_scratch_cols(be, S_max);
            tensor cs = tensor_reshape(
                tensor_slice(tensor_reshape(cscratch, 1, TENSOR_SHAPE(B * H * L * SC_max)), 0, B * H * L * SC), 4,
                TENSOR_SHAPE(B, H, L, SC));
            dense_dropout_residual_norm_backward(be, &lg->cross.dense, &lg->cross.norm, &lw->cross.dense,
                                                 &lw->cross.norm, dh, dy, dctx, dpre, la->cctx, la->h2_pre, la->h2_mean,
                                                 la->h2_rstd, a->p_hidden, la->seed_cross_out);
            attn_params cp = bert_attn(m, (int)B, (int)L, (int)S, 0, a->p_attn, la->seed_cross_attn);
            op_attention_backward(be, &cp, dq, ck, cv, cs, dctx, la->cctx, la->cstate, la->cq, la->ck, la->cv,
                                  a->enc_mask[e]);
            op_linear_backward(be, dy, 1, lg->cross.query.weight, lg->cross.query.bias, dq, la->h1,
                               lw->cross.query.weight);
            tensor denc = d_enc ? d_enc[e] : tensor_none();
            op_linear_backward(be, denc, 1, lg->cross.key.weight, lg->cross.key.bias, ck, la->enc, lw->cross.key.weight);
            op_linear_backward(be, denc, 1, lg->cross.value.weight, lg->cross.value.bias, cv, la->enc,
                               lw->cross.value.weight);
        } else {
            be->ops->copy(be, dy.data, dh.data, tensor_nbytes(dh));
        }
        /* self-attention: dy = d(h1) -> dx = d(x_in) */
        dense_dropout_residual_norm_backward(be, &lg->self.dense, &lg->self.norm, &lw->self.dense, &lw->self.norm, dy,
                                             dx, dctx, dpre, la->ctx, la->h1_pre, la->h1_mean, la->h1_rstd, a->p_hidden,
                                             la->seed_self_out);
        attn_params sp = bert_attn(m, (int)B, (int)L, (int)L, m->causal, a->p_attn, la->seed_self_attn);
        op_attention_backward(be, &sp, dq, dk, dv, scratch, dctx, la->ctx, la->state, la->q, la->k, la->v,
                              a->text_mask);
        op_linear_backward(be, dx, 1, lg->self.query.weight, lg->self.query.bias, dq, la->x_in, lw->self.query.weight);
        op_linear_backward(be, dx, 1, lg->self.key.weight, lg->self.key.bias, dk, la->x_in, lw->self.key.weight);
        op_linear_backward(be, dx, 1, lg->self.value.weight, lg->self.value.bias, dv, la->x_in, lw->self.value.weight);
        tensor t = dy;
        dy = dx;
        dx = t;
    }
    /* dy = d(input of the first layer run) */
    if (a->mode == BERT_FUSION) {
        if (tensor_present(d_embeds)) {
            if (accumulate_embeds)
                op_accumulate(be, d_embeds, dy);
            else
                be->ops->copy(be, d_embeds.data, dy.data, tensor_nbytes(dy));
        }
    } else {
        if (a->p_hidden > 0)
            op_dropout_backward(be, dy, dy, a->p_hidden, a->seed_emb);
        op_layernorm_backward(be, dpre, 0, g->emb_norm.weight, g->emb_norm.bias, dy, a->emb_sum, w->emb_norm.weight,
                              a->emb_mean, a->emb_rstd);
        op_embedding_backward(be, g->word, g->position, tensor_slice(g->type, 0, 1), dpre, a->ids);
    }
    arena_reset(ar, mark);
}

void bert_mlm_forward(backend *be, const bert_model *m, mlm_head_acts *h, arena *ar, tensor hidden)
{
    const bert_params *w = &m->w;
    int64_t R = hidden.shape[0], C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    h->hidden = hidden;
    h->dense = arena_f32(ar, R, C);
    h->act = arena_f32(ar, R, C);
    h->norm = arena_act(ar, be, R, C);
    h->norm_mean = arena_f32(ar, R);
    h->norm_rstd = arena_f32(ar, R);
    h->logits = arena_f32(ar, R, V);
    op_linear_forward(be, h->dense, hidden, w->transform.weight, tensor_none());
    op_bias_gelu_forward(be, h->act, h->dense, h->dense, w->transform.bias);
    op_layernorm_forward(be, h->norm, h->norm_mean, h->norm_rstd, h->act, w->transform_norm.weight,
                         w->transform_norm.bias, m->cfg.layer_norm_eps);
    op_linear_forward(be, h->logits, h->norm, w->word, w->decoder_bias);
}

void bert_mlm_backward(backend *be, const bert_model *m, mlm_head_acts *h, arena *ar, tensor dlogits, tensor dhidden)
{
    const bert_params *w = &m->w, *g = &m->g;
    int64_t R = h->hidden.shape[0], C = m->cfg.hidden_size;
    size_t mark = arena_mark(ar);
    tensor dnorm = arena_f32(ar, R, C), dact = arena_f32(ar, R, C);
    /* the tied decoder's weight gradient lands in the word embeddings' */
    op_linear_backward(be, dnorm, 0, g->word, g->decoder_bias, dlogits, h->norm, w->word);
    op_layernorm_backward(be, dact, 0, g->transform_norm.weight, g->transform_norm.bias, dnorm, h->act,
                          w->transform_norm.weight, h->norm_mean, h->norm_rstd);
    op_bias_gelu_backward(be, dact, g->transform.bias, dact, h->dense);
    op_linear_backward(be, dhidden, 0, g->transform.weight, tensor_none(), dact, h->hidden, w->transform.weight);
    arena_reset(ar, mark);
}
