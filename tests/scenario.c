#include "scenario.h"

#include "core/error.h"
#include "io/safetensors.h"

#include <stdlib.h>
#include <string.h>

static tensor upload(backend *be, arena *ar, albef_dtype dt, const void *host, int ndim, const int64_t *shape)
{
    tensor t = arena_tensor(ar, dt, ndim, shape);
    if (t.data)
        be->ops->upload(be, t.data, host, tensor_nbytes(t));
    return t;
}

void scenario_forward(backend *be, albef_model *m, arena *ar, const scenario_inputs *in, scenario_state *s,
                      dropout_ctx *dropout)
{
    const albef_config *cfg = &m->cfg;
    int64_t B = in->B, L = in->L, R = in->n_masked, T = config_num_patches(cfg) + 1;
    int64_t Cv = cfg->vision_width, H = cfg->bert.hidden_size, E = cfg->embed_dim, V = cfg->bert.vocab_size;
    int64_t RES = cfg->image_res;
    s->image = upload(be, ar, DTYPE_F32, in->image, 4, TENSOR_SHAPE(B, 3, RES, RES));
    s->ids = upload(be, ar, DTYPE_I32, in->ids, 2, TENSOR_SHAPE(B, L));
    s->mlm_ids = upload(be, ar, DTYPE_I32, in->mlm_ids, 2, TENSOR_SHAPE(B, L));
    s->text_mask = upload(be, ar, DTYPE_F32, in->mask_add, 2, TENSOR_SHAPE(B, L));
    float *mask2 = malloc(sizeof(float) * (size_t)(2 * B * L));
    int32_t *idx_t = malloc(sizeof(int32_t) * (size_t)(2 * B)), *idx_v = malloc(sizeof(int32_t) * (size_t)(2 * B));
    int32_t *itm = malloc(sizeof(int32_t) * (size_t)(2 * B)), *diag = malloc(sizeof(int32_t) * (size_t)B);
    for (int64_t b = 0; b < 2 * B; b++) {
        idx_t[b] = (int32_t)(b % B);
        idx_v[b] = (int32_t)(b < B ? b : (b - B + 1) % B);
        itm[b] = b < B ? 1 : 0;
        memcpy(mask2 + b * L, in->mask_add + (b % B) * L, sizeof(float) * (size_t)L);
    }
    for (int64_t b = 0; b < B; b++)
        diag[b] = (int32_t)b;
    s->text_mask2 = upload(be, ar, DTYPE_F32, mask2, 2, TENSOR_SHAPE(2 * B, L));
    s->idx_text2 = upload(be, ar, DTYPE_I32, idx_t, 1, TENSOR_SHAPE(2 * B));
    s->idx_img2 = upload(be, ar, DTYPE_I32, idx_v, 1, TENSOR_SHAPE(2 * B));
    s->itm_labels = upload(be, ar, DTYPE_I32, itm, 1, TENSOR_SHAPE(2 * B));
    s->diag_labels = upload(be, ar, DTYPE_I32, diag, 1, TENSOR_SHAPE(B));
    s->masked_rows = upload(be, ar, DTYPE_I32, in->masked_rows, 1, TENSOR_SHAPE(R));
    s->mlm_labels = upload(be, ar, DTYPE_I32, in->mlm_labels_rows, 1, TENSOR_SHAPE(R));
    free(mask2), free(idx_t), free(idx_v), free(itm), free(diag);

    op_clamp(be, m->temp, 0.001f, 0.5f);
    /* image side */
    vit_forward(be, &m->vit, &s->vit, ar, s->image);
    s->v_cls = arena_f32(ar, B, Cv);
    op_copy_rows(be, s->v_cls, Cv, s->vit.out, T * Cv, B, Cv, 0);
    s->img_proj = arena_f32(ar, B, E);
    op_linear_forward(be, s->img_proj, s->v_cls, m->vision_proj.weight, m->vision_proj.bias);
    s->image_feat = arena_f32(ar, B, E);
    s->img_norm = arena_f32(ar, B);
    op_l2norm_forward(be, s->image_feat, s->img_norm, s->img_proj);
    /* text side */
    bert_inputs ti = {.mode = BERT_TEXT, .ids = s->ids, .text_mask = s->text_mask};
    bert_forward(be, &m->text, &s->text, ar, &ti, dropout);
    s->t_cls = arena_f32(ar, B, H);
    op_copy_rows(be, s->t_cls, H, s->text.out, L * H, B, H, 0);
    s->txt_proj = arena_f32(ar, B, E);
    op_linear_forward(be, s->txt_proj, s->t_cls, m->text_proj.weight, m->text_proj.bias);
    s->text_feat = arena_f32(ar, B, E);
    s->txt_norm = arena_f32(ar, B);
    op_l2norm_forward(be, s->text_feat, s->txt_norm, s->txt_proj);
    /* ITC */
    xent_params mean2 = {.hard_weight = 1, .soft_weight = 0, .grad_scale = 1.0f / (2.0f * (float)B)};
    s->raw_i2t = arena_f32(ar, B, B);
    s->raw_t2i = arena_f32(ar, B, B);
    s->sim_i2t = arena_f32(ar, B, B);
    s->sim_t2i = arena_f32(ar, B, B);
    op_matmul(be, s->raw_i2t, s->image_feat, s->text_feat, 0, 1, 1.0f, 0.0f);
    op_matmul(be, s->raw_t2i, s->text_feat, s->image_feat, 0, 1, 1.0f, 0.0f);
    op_div_scalar_forward(be, s->sim_i2t, s->raw_i2t, m->temp);
    op_div_scalar_forward(be, s->sim_t2i, s->raw_t2i, m->temp);
    s->loss_i2t = arena_f32(ar, B);
    s->loss_t2i = arena_f32(ar, B);
    s->dsim_i2t = arena_f32(ar, B, B);
    s->dsim_t2i = arena_f32(ar, B, B);
    op_softmax_xent(be, &mean2, s->loss_i2t, s->dsim_i2t, s->sim_i2t, s->diag_labels, tensor_none());
    op_softmax_xent(be, &mean2, s->loss_t2i, s->dsim_t2i, s->sim_t2i, s->diag_labels, tensor_none());
    /* ITM: one fusion pass over [T; T] x [V; roll(V)] */
    s->fusion_embeds = arena_f32(ar, 2 * B, L, H);
    op_gather_rows(be, s->fusion_embeds, s->text.out, s->idx_text2);
    s->fusion_enc = arena_f32(ar, 2 * B, T, Cv);
    op_gather_rows(be, s->fusion_enc, s->vit.out, s->idx_img2);
    bert_inputs fi = {.mode = BERT_FUSION, .embeds = s->fusion_embeds, .text_mask = s->text_mask2,
                      .enc = {s->fusion_enc}, .n_enc = 1};
    bert_forward(be, &m->text, &s->fusion, ar, &fi, dropout);
    s->m_cls = arena_f32(ar, 2 * B, H);
    op_copy_rows(be, s->m_cls, H, s->fusion.out, L * H, 2 * B, H, 0);
    s->itm_logits = arena_f32(ar, 2 * B, 2);
    op_linear_forward(be, s->itm_logits, s->m_cls, m->itm_head.weight, m->itm_head.bias);
    s->loss_itm_rows = arena_f32(ar, 2 * B);
    s->ditm = arena_f32(ar, 2 * B, 2);
    xent_params mean_itm = {.hard_weight = 1, .soft_weight = 0, .grad_scale = 1.0f / (2.0f * (float)B)};
    op_softmax_xent(be, &mean_itm, s->loss_itm_rows, s->ditm, s->itm_logits, s->itm_labels, tensor_none());
    /* MLM over the labelled positions */
    bert_inputs mi = {.mode = BERT_MULTI_MODAL, .ids = s->mlm_ids, .text_mask = s->text_mask, .enc = {s->vit.out},
                      .n_enc = 1};
    bert_forward(be, &m->text, &s->mlm, ar, &mi, dropout);
    s->hid_rows = arena_f32(ar, R, H);
    op_gather_rows(be, s->hid_rows, tensor_reshape(s->mlm.out, 2, TENSOR_SHAPE(B * L, H)), s->masked_rows);
    bert_mlm_forward(be, &m->text, &s->head, ar, s->hid_rows);
    s->mlm_loss_rows = arena_f32(ar, R);
    s->dmlm = arena_f32(ar, R, V);
    xent_params mean_mlm = {.hard_weight = 1, .soft_weight = 0, .grad_scale = 1.0f / (float)R};
    op_softmax_xent(be, &mean_mlm, s->mlm_loss_rows, s->dmlm, s->head.logits, s->mlm_labels, tensor_none());
    /* losses: itc = (mean_i2t + mean_t2i) / 2, itm, mlm, total */
    s->losses = arena_f32(ar, 8);
    tensor l = s->losses;
    op_reduce_sum(be, tensor_slice(l, 0, 1), s->loss_i2t, 0.5f / (float)B);
    op_reduce_sum(be, tensor_slice(l, 1, 1), s->loss_t2i, 0.5f / (float)B);
    op_reduce_sum(be, tensor_slice(l, 2, 1), s->loss_itm_rows, 1.0f / (2.0f * (float)B));
    op_reduce_sum(be, tensor_slice(l, 3, 1), s->mlm_loss_rows, 1.0f / (float)R);
}

void scenario_backward(backend *be, albef_model *m, arena *ar, const scenario_inputs *in, scenario_state *s)
{
    const albef_config *cfg = &m->cfg;
    int64_t B = in->B, L = in->L, R = in->n_masked, T = config_num_patches(cfg) + 1;
    int64_t Cv = cfg->vision_width, H = cfg->bert.hidden_size, E = cfg->embed_dim;
    tensor dV = arena_f32(ar, B, T, Cv), dT = arena_f32(ar, B, L, H);
    op_fill(be, dV, 0.0f);
    op_fill(be, dT, 0.0f);
    /* MLM */
    tensor dhid_rows = arena_f32(ar, R, H), dH = arena_f32(ar, B, L, H);
    bert_mlm_backward(be, &m->text, &s->head, ar, s->dmlm, dhid_rows);
    op_fill(be, dH, 0.0f);
    op_scatter_add_rows(be, tensor_reshape(dH, 2, TENSOR_SHAPE(B * L, H)), dhid_rows, s->masked_rows);
    tensor denc1[2] = {dV, tensor_none()};
    bert_backward(be, &m->text, &s->mlm, ar, dH, tensor_none(), 0, denc1);
    /* ITM */
    tensor dm_cls = arena_f32(ar, 2 * B, H), dM = arena_f32(ar, 2 * B, L, H);
    op_linear_backward(be, dm_cls, 0, m->g_itm_head.weight, m->g_itm_head.bias, s->ditm, s->m_cls, m->itm_head.weight);
    op_fill(be, dM, 0.0f);
    op_copy_rows(be, dM, L * H, dm_cls, H, 2 * B, H, 1);
    tensor dE = arena_f32(ar, 2 * B, L, H), dEnc = arena_f32(ar, 2 * B, T, Cv);
    op_fill(be, dEnc, 0.0f);
    tensor denc2[2] = {dEnc, tensor_none()};
    bert_backward(be, &m->text, &s->fusion, ar, dM, dE, 0, denc2);
    op_scatter_add_rows(be, dT, dE, s->idx_text2);
    op_scatter_add_rows(be, dV, dEnc, s->idx_img2);
    /* ITC: sim = raw / temp, raw_i2t = I T^T, raw_t2i = T I^T */
    tensor draw_i2t = arena_f32(ar, B, B), draw_t2i = arena_f32(ar, B, B);
    op_div_scalar_backward(be, draw_i2t, m->g_temp, s->dsim_i2t, s->sim_i2t, m->temp);
    op_div_scalar_backward(be, draw_t2i, m->g_temp, s->dsim_t2i, s->sim_t2i, m->temp);
    tensor dimg = arena_f32(ar, B, E), dtxt = arena_f32(ar, B, E);
    op_matmul(be, dimg, draw_i2t, s->text_feat, 0, 0, 1.0f, 0.0f);
    op_matmul(be, dimg, draw_t2i, s->text_feat, 1, 0, 1.0f, 1.0f);
    op_matmul(be, dtxt, draw_t2i, s->image_feat, 0, 0, 1.0f, 0.0f);
    op_matmul(be, dtxt, draw_i2t, s->image_feat, 1, 0, 1.0f, 1.0f);
    tensor dproj_i = arena_f32(ar, B, E), dproj_t = arena_f32(ar, B, E);
    op_l2norm_backward(be, dproj_i, dimg, s->image_feat, s->img_norm);
    op_l2norm_backward(be, dproj_t, dtxt, s->text_feat, s->txt_norm);
    tensor dv_cls = arena_f32(ar, B, Cv), dt_cls = arena_f32(ar, B, H);
    op_linear_backward(be, dv_cls, 0, m->g_vision_proj.weight, m->g_vision_proj.bias, dproj_i, s->v_cls,
                       m->vision_proj.weight);
    op_linear_backward(be, dt_cls, 0, m->g_text_proj.weight, m->g_text_proj.bias, dproj_t, s->t_cls,
                       m->text_proj.weight);
    op_copy_rows(be, dV, T * Cv, dv_cls, Cv, B, Cv, 1);
    op_copy_rows(be, dT, L * H, dt_cls, H, B, H, 1);
    /* encoders */
    tensor none2[2] = {tensor_none(), tensor_none()};
    bert_backward(be, &m->text, &s->text, ar, dT, tensor_none(), 0, none2);
    vit_backward(be, &m->vit, &s->vit, ar, dV);
}


int scenario_state_init(scenario_state *s, const albef_model *m)
{
    memset(s, 0, sizeof *s);
    int rc = vit_acts_init(&s->vit, &m->vit);
    rc = rc ? rc : bert_acts_init(&s->text, &m->text);
    rc = rc ? rc : bert_acts_init(&s->fusion, &m->text);
    rc = rc ? rc : bert_acts_init(&s->mlm, &m->text);
    return rc;
}

void scenario_state_free(scenario_state *s)
{
    vit_acts_free(&s->vit);
    bert_acts_free(&s->text);
    bert_acts_free(&s->fusion);
    bert_acts_free(&s->mlm);
}

/* ---- inputs from a golden set ---- */

static int64_t *read_i64(safetensors_file *st, const char *name, size_t n)
{
    int64_t *v = malloc(sizeof(int64_t) * n);
    if (safetensors_read_raw(st, name, DTYPE_I64, v, n) != 0) {
        free(v);
        return NULL;
    }
    return v;
}

int scenario_load_inputs(const char *path, const albef_config *cfg, scenario_inputs *in)
{
    safetensors_file *st;
    int rc = safetensors_open(path, &st);
    if (rc)
        return rc;
    const safetensors_tensor *ids_t = safetensors_find(st, "input_ids");
    if (!ids_t || ids_t->ndim != 2) {
        safetensors_close(st);
        return albef_error(ALBEF_ERR_INVALID, "%s: no 2-D 'input_ids'", path);
    }
    in->B = (int)ids_t->shape[0];
    in->L = (int)ids_t->shape[1];
    size_t BL = (size_t)in->B * in->L, RES = (size_t)cfg->image_res;
    in->image = malloc(sizeof(float) * in->B * 3 * RES * RES);
    rc = safetensors_read_f32(st, "image", in->image, in->B * 3 * RES * RES);
    int64_t *ids = read_i64(st, "input_ids", BL), *mask = read_i64(st, "attention_mask", BL);
    int64_t *mids = read_i64(st, "mlm_input_ids", BL), *labels = read_i64(st, "mlm_labels", BL);
    in->ids = malloc(sizeof(int32_t) * BL);
    in->mlm_ids = malloc(sizeof(int32_t) * BL);
    in->mask_add = malloc(sizeof(float) * BL);
    in->masked_rows = malloc(sizeof(int32_t) * BL);
    in->mlm_labels_rows = malloc(sizeof(int32_t) * BL);
    in->n_masked = 0;
    if (rc || !ids || !mask || !mids || !labels) {
        free(ids), free(mask), free(mids), free(labels);
        safetensors_close(st);
        return rc ? rc : albef_error(ALBEF_ERR_INVALID, "%s: missing integer inputs", path);
    }
    for (size_t i = 0; i < BL; i++) {
        in->ids[i] = (int32_t)ids[i];
        in->mlm_ids[i] = (int32_t)mids[i];
        in->mask_add[i] = (1.0f - (float)mask[i]) * -10000.0f;
        if (labels[i] != -100) {
            in->masked_rows[in->n_masked] = (int32_t)i;
            in->mlm_labels_rows[in->n_masked++] = (int32_t)labels[i];
        }
    }
    free(ids), free(mask), free(mids), free(labels);
    safetensors_close(st);
    return rc;
}

void scenario_free_inputs(scenario_inputs *in)
{
    free(in->image), free(in->ids), free(in->mlm_ids), free(in->mask_add), free(in->masked_rows),
        free(in->mlm_labels_rows);
}

