#include "model/vit.h"

#include "core/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vit_init(vit_model *m, const albef_config *cfg, param_set *ps, const char *prefix, int with_grads)
{
    memset(m, 0, sizeof *m);
    m->image_res = cfg->image_res;
    m->patch = cfg->patch_size;
    m->width = cfg->vision_width;
    m->depth = cfg->vision_depth;
    m->heads = cfg->vision_num_heads;
    m->mlp_hidden = cfg->vision_width * cfg->vision_mlp_ratio;
    m->num_patches = config_num_patches(cfg);
    m->eps = cfg->vision_layer_norm_eps;
    m->w.blocks = calloc((size_t)m->depth, sizeof *m->w.blocks);
    m->g.blocks = calloc((size_t)m->depth, sizeof *m->g.blocks);
    if (!m->w.blocks || !m->g.blocks)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    vit_params *w = &m->w, *g = with_grads ? &m->g : NULL;
    int64_t c = m->width, p = m->patch;
    char name[192];
    int rc = params_add(ps, &w->cls_token, g ? &g->cls_token : NULL, 3, TENSOR_SHAPE(1, 1, c), "%s.cls_token", prefix);
    rc = rc ? rc
            : params_add(ps, &w->pos_embed, g ? &g->pos_embed : NULL, 3, TENSOR_SHAPE(1, 1 + m->num_patches, c),
                         "%s.pos_embed", prefix);
    rc = rc ? rc
            : params_add(ps, &w->patch.weight, g ? &g->patch.weight : NULL, 4, TENSOR_SHAPE(c, 3, p, p),
                         "%s.patch_embed.proj.weight", prefix);
    rc = rc ? rc
            : params_add(ps, &w->patch.bias, g ? &g->patch.bias : NULL, 1, TENSOR_SHAPE(c),
                         "%s.patch_embed.proj.bias", prefix);
    for (int i = 0; i < m->depth && !rc; i++) {
        vit_block_params *bw = &w->blocks[i], *bg = g ? &g->blocks[i] : NULL;
#define BLOCK(field) bg ? &bg->field : NULL
        snprintf(name, sizeof name, "%s.blocks.%d.norm1", prefix, i);
        rc = rc ? rc : norm_register(ps, &bw->norm1, BLOCK(norm1), c, name);
        snprintf(name, sizeof name, "%s.blocks.%d.attn.qkv", prefix, i);
        rc = rc ? rc : linear_register(ps, &bw->qkv, BLOCK(qkv), 3 * c, c, name);
        snprintf(name, sizeof name, "%s.blocks.%d.attn.proj", prefix, i);
        rc = rc ? rc : linear_register(ps, &bw->proj, BLOCK(proj), c, c, name);
        snprintf(name, sizeof name, "%s.blocks.%d.norm2", prefix, i);
        rc = rc ? rc : norm_register(ps, &bw->norm2, BLOCK(norm2), c, name);
        snprintf(name, sizeof name, "%s.blocks.%d.mlp.fc1", prefix, i);
        rc = rc ? rc : linear_register(ps, &bw->fc1, BLOCK(fc1), m->mlp_hidden, c, name);
        snprintf(name, sizeof name, "%s.blocks.%d.mlp.fc2", prefix, i);
        rc = rc ? rc : linear_register(ps, &bw->fc2, BLOCK(fc2), c, m->mlp_hidden, name);
#undef BLOCK
    }
    snprintf(name, sizeof name, "%s.norm", prefix);
    rc = rc ? rc : norm_register(ps, &w->norm, g ? &g->norm : NULL, c, name);
    return rc;
}

void vit_free(vit_model *m)
{
    free(m->w.blocks);
    free(m->g.blocks);
    m->w.blocks = m->g.blocks = NULL;
}

int vit_acts_init(vit_acts *a, const vit_model *m)
{
    memset(a, 0, sizeof *a);
    a->blocks = calloc((size_t)m->depth, sizeof *a->blocks);
    return a->blocks ? ALBEF_OK : albef_error(ALBEF_ERR_NOMEM, "out of memory");
}

void vit_acts_free(vit_acts *a)
{
    free(a->blocks);
    a->blocks = NULL;
}

static attn_params vit_attn(const vit_model *m, int batch, int tokens)
{
    int64_t c = m->width;
    attn_params p = {
        .batch = batch,
        .heads = m->heads,
        .q_len = tokens,
        .kv_len = tokens,
        .head_dim = m->width / m->heads,
        .q_stride = 3 * c,
        .k_stride = 3 * c,
        .v_stride = 3 * c,
        .scale = 1.0f / sqrtf((float)(m->width / m->heads)),
    };
    return p;
}

void vit_forward(backend *be, const vit_model *m, vit_acts *a, arena *ar, tensor images)
{
    int64_t B = images.shape[0], N = m->num_patches, T = N + 1, C = m->width, P = m->patch;
    a->batch = (int)B;
    const vit_params *w = &m->w;

    /* patch embedding: (B*N, 3*P*P) x (C, 3*P*P)^T, then [CLS] and positions */
    a->patches = arena_f32(ar, B * N, 3 * P * P);
    op_patchify(be, a->patches, images, (int)P);
    tensor tokens = arena_f32(ar, B * N, C);
    op_linear_forward(be, tokens, a->patches, tensor_reshape(w->patch.weight, 2, TENSOR_SHAPE(C, 3 * P * P)),
                      w->patch.bias);
    tensor x = arena_f32(ar, B, T, C);
    op_vit_embed_forward(be, x, tensor_reshape(tokens, 3, TENSOR_SHAPE(B, N, C)),
                         tensor_reshape(w->cls_token, 1, TENSOR_SHAPE(C)),
                         tensor_reshape(w->pos_embed, 2, TENSOR_SHAPE(T, C)));

    attn_params ap = vit_attn(m, (int)B, (int)T);
    /* Each residual add is fused with the layer norm that reads its sum:
     * proj's with norm2, fc2's with the next block's norm1 (the last block's
     * with the final norm), so only block 0's norm1 runs alone. */
    a->out = arena_f32(ar, B, T, C);
    a->norm_mean = arena_f32(ar, B * T);
    a->norm_rstd = arena_f32(ar, B * T);
    /* Inference keeps two residual buffers and one set of norm1 outputs, and
     * gives each block's temporaries back to the arena when it is done. */
    tensor spare = tensor_none(), ln1 = tensor_none(), ln1_mean = tensor_none(), ln1_rstd = tensor_none();
    if (a->inference) {
        spare = arena_f32(ar, B, T, C);
        ln1 = arena_act(ar, be, B, T, C);
        ln1_mean = arena_f32(ar, B * T);
        ln1_rstd = arena_f32(ar, B * T);
    }
    if (m->depth > 0) {
        vit_block_acts *ba = &a->blocks[0];
        ba->ln1 = a->inference ? ln1 : arena_act(ar, be, B, T, C);
        ba->ln1_mean = a->inference ? ln1_mean : arena_f32(ar, B * T);
        ba->ln1_rstd = a->inference ? ln1_rstd : arena_f32(ar, B * T);
        op_layernorm_forward(be, ba->ln1, ba->ln1_mean, ba->ln1_rstd, x, w->blocks[0].norm1.weight,
                             w->blocks[0].norm1.bias, m->eps);
    } else {
        op_layernorm_forward(be, a->out, a->norm_mean, a->norm_rstd, x, w->norm.weight, w->norm.bias, m->eps);
    }
    for (int i = 0; i < m->depth; i++) {
        const vit_block_params *bw = &w->blocks[i];
        vit_block_acts *ba = &a->blocks[i];
        size_t block_mark = arena_mark(ar);
        ba->x_in = x;
        /* x_mid = x + proj(attn(LN1(x))); ln1 came from the previous block */
        ba->qkv = arena_f32(ar, B, T, 3 * C);
        op_linear_forward(be, ba->qkv, ba->ln1, bw->qkv.weight, bw->qkv.bias);
        ba->state = arena_f32(ar, B, m->heads, T, attention_state_cols(be, T));
        ba->attn = arena_act(ar, be, B, T, C);
        tensor q = ba->qkv, k = ba->qkv, v = ba->qkv;
        k.data = ba->qkv.data ? (float *)ba->qkv.data + C : NULL;
        v.data = ba->qkv.data ? (float *)ba->qkv.data + 2 * C : NULL;
        op_attention_forward(be, &ap, ba->attn, ba->state, q, k, v, tensor_none());
        ba->x_mid = arena_f32(ar, B, T, C);
        ba->ln2 = arena_act(ar, be, B, T, C);
        ba->ln2_mean = arena_f32(ar, B * T);
        ba->ln2_rstd = arena_f32(ar, B * T);
        op_linear_forward(be, ba->x_mid, ba->attn, bw->proj.weight, tensor_none());
        op_residual_layernorm_forward(be, ba->ln2, ba->ln2_mean, ba->ln2_rstd, ba->x_mid, ba->x_mid, bw->proj.bias, x,
                                      bw->norm2.weight, bw->norm2.bias, m->eps, 0.0f, 0);
        /* x_out = x_mid + fc2(GELU(fc1(LN2(x_mid)))), and its norm */
        ba->fc1 = arena_f32(ar, B, T, m->mlp_hidden);
        ba->act = arena_act(ar, be, B, T, m->mlp_hidden);
        op_linear_forward(be, ba->fc1, ba->ln2, bw->fc1.weight, tensor_none());
        op_bias_gelu_forward(be, ba->act, ba->fc1, ba->fc1, bw->fc1.bias);
        tensor x_out = a->inference ? spare : arena_f32(ar, B, T, C);
        int last = i == m->depth - 1;
        vit_block_acts *next = last ? NULL : &a->blocks[i + 1];
        const norm_params *next_norm = last ? &w->norm : &w->blocks[i + 1].norm1;
        if (next) {
            next->ln1 = a->inference ? ln1 : arena_act(ar, be, B, T, C);
            next->ln1_mean = a->inference ? ln1_mean : arena_f32(ar, B * T);
            next->ln1_rstd = a->inference ? ln1_rstd : arena_f32(ar, B * T);
        }
        op_linear_forward(be, x_out, ba->act, bw->fc2.weight, tensor_none());
        op_residual_layernorm_forward(be, next ? next->ln1 : a->out, next ? next->ln1_mean : a->norm_mean,
                                      next ? next->ln1_rstd : a->norm_rstd, x_out, x_out, bw->fc2.bias, ba->x_mid,
                                      next_norm->weight, next_norm->bias, m->eps, 0.0f, 0);
        if (a->inference) {
            spare = x;
            arena_reset(ar, block_mark);
        }
        x = x_out;
    }
    a->x_final = x;
}

void vit_backward(backend *be, const vit_model *m, vit_acts *a, arena *ar, tensor dout)
{
    int64_t B = a->batch, N = m->num_patches, T = N + 1, C = m->width, P = m->patch, H4 = m->mlp_hidden;
    const vit_params *w = &m->w;
    const vit_params *g = &m->g;
    size_t mark = arena_mark(ar);

    /* dres carries the gradient of the residual stream down through the
     * blocks. Each norm's backward is fused with the bias gradient of the
     * linear whose output entered its sum (as in the forward pass). */
    tensor dres = arena_f32(ar, B, T, C);
    const vit_block_params *last = m->depth > 0 ? &g->blocks[m->depth - 1] : NULL;
    op_residual_layernorm_backward(be, dres, 0, dres, last ? last->fc2.bias : tensor_none(), g->norm.weight,
                                   g->norm.bias, dout, a->x_final, w->norm.weight, a->norm_mean, a->norm_rstd, 0.0f, 0);
    tensor dact = arena_f32(ar, B, T, H4);
    tensor dln = arena_f32(ar, B, T, C);
    tensor dattn = arena_f32(ar, B, T, C);
    tensor dqkv = arena_f32(ar, B, T, 3 * C);
    tensor scratch = arena_f32(ar, B, m->heads, T, attention_scratch_cols(be, T));
    attn_params ap = vit_attn(m, (int)B, (int)T);
    for (int i = m->depth - 1; i >= 0; i--) {
        const vit_block_params *bw = &w->blocks[i], *bg = &g->blocks[i];
        vit_block_acts *ba = &a->blocks[i];
        /* MLP branch: dres is d(x_out) = d(x_mid) through the skip */
        op_linear_backward(be, dact, 0, bg->fc2.weight, tensor_none(), dres, ba->act, bw->fc2.weight);
        op_bias_gelu_backward(be, dact, bg->fc1.bias, dact, ba->fc1);
        op_linear_backward(be, dln, 0, bg->fc1.weight, tensor_none(), dact, ba->ln2, bw->fc1.weight);
        op_residual_layernorm_backward(be, dres, 1, dres, bg->proj.bias, bg->norm2.weight, bg->norm2.bias, dln,
                                       ba->x_mid, bw->norm2.weight, ba->ln2_mean, ba->ln2_rstd, 0.0f, 0);
        /* attention branch: dres is now d(x_mid) = d(x_in) through the skip */
        op_linear_backward(be, dattn, 0, bg->proj.weight, tensor_none(), dres, ba->attn, bw->proj.weight);
        tensor q = ba->qkv, k = ba->qkv, v = ba->qkv, dq = dqkv, dk = dqkv, dv = dqkv;
        if (ba->qkv.data) {
            k.data = (float *)ba->qkv.data + C;
            v.data = (float *)ba->qkv.data + 2 * C;
            dk.data = (float *)dqkv.data + C;
            dv.data = (float *)dqkv.data + 2 * C;
        }
        op_attention_backward(be, &ap, dq, dk, dv, scratch, dattn, ba->attn, ba->state, q, k, v, tensor_none());
        op_linear_backward(be, dln, 0, bg->qkv.weight, bg->qkv.bias, dqkv, ba->ln1, bw->qkv.weight);
        /* block 0's x_in is the embedding, with no bias of a linear to take */
        tensor dbias_prev = i > 0 ? g->blocks[i - 1].fc2.bias : tensor_none();
        op_residual_layernorm_backward(be, dres, 1, dres, dbias_prev, bg->norm1.weight, bg->norm1.bias, dln, ba->x_in,
                                       bw->norm1.weight, ba->ln1_mean, ba->ln1_rstd, 0.0f, 0);
    }
    /* dres = d(embedded tokens): to [CLS], positions and the patch projection */
    tensor dtokens = arena_f32(ar, B * N, C);
    op_vit_embed_backward(be, tensor_reshape(dtokens, 3, TENSOR_SHAPE(B, N, C)),
                          tensor_reshape(g->cls_token, 1, TENSOR_SHAPE(C)),
                          tensor_reshape(g->pos_embed, 2, TENSOR_SHAPE(T, C)), dres);
    op_linear_backward(be, tensor_none(), 0, tensor_reshape(g->patch.weight, 2, TENSOR_SHAPE(C, 3 * P * P)),
                       g->patch.bias, dtokens, a->patches,
                       tensor_reshape(w->patch.weight, 2, TENSOR_SHAPE(C, 3 * P * P)));
    arena_reset(ar, mark);
}
