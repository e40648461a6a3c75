#include "train/pretrain.h"

#include "core/error.h"
#include "core/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Host-side buffers of a step and the device tensors of its activations. */
struct pretrain_buffers {
    /* host */
    int32_t *mlm_ids, *mlm_labels, *masked_rows, *masked_labels;
    float *mask_add;
    /* (3B) ITM pairs: the positives and the fixed halves of the negative
     * pairs, set once; the drawn halves are written on the device */
    int32_t *idx_text3, *idx_img3, *itm_labels, *diag;
    int32_t *same;        /* (B) retrieval: the first sample of each sample's image */
    float *w_i2t, *w_t2i; /* (B, B) sampling weights, downloaded on demand */
    float *pos;           /* (B, B + Q) retrieval: the same-image target distribution, scaled by 1 - alpha */
    int64_t *idx;         /* (B) this step's image indices */
    int n_masked, max_masked;
    /* device tensors of the current step */
    tensor images, ids, mlm_in, text_mask, text_mask3, t_idx3, v_idx3, t_itm, t_diag, t_masked_rows, t_masked_labels;
    tensor v_cls, img_proj, image_feat, img_norm, t_cls, txt_proj, text_feat, txt_norm;
    tensor vm_tokens, image_feat_m, text_feat_m; /* teacher */
    tensor sim_i2t, sim_t2i, raw_i2t, raw_t2i, tgt_i2t, tgt_t2i, loss_i2t, loss_t2i, dsim_i2t, dsim_t2i;
    tensor t_w_i2t, t_w_t2i, t_same;              /* (B, B) x 2 sampling weights, (B) image labels */
    int itm_weights_on_device;                    /* t_w_* hold this step's weights */
    tensor fusion_embeds, fusion_enc, m_cls, itm_logits, itm_loss, ditm;
    tensor hid_rows, soft, mlm_loss, dmlm;
    tensor losses; /* (4) */
    /* (6) device memory, allocated once: the last step's losses (4) and temp,
     * then the last update's gradient sum of squares, read in one download */
    tensor step_stats;
    float loss_scale; /* gradient accumulation: 1 / micro-batches */
    int itc_only;     /* this step has no ITM and no MLM */
    int no_mlm;       /* this step has no MLM (retrieval) */
    tensor t_pos;
};

pretrain_options pretrain_options_default(int batch)
{
    pretrain_options o = {
        .batch = batch,
        .max_len = 25,
        .seed = 42,
        .hidden_dropout = 0.1f,
        .attention_dropout = 0.1f,
        .teacher_dropout = 1,
        .weight_decay = 0.02f,
        .beta1 = 0.9f,
        .beta2 = 0.999f,
        .eps = 1e-8f,
    };
    return o;
}

static int max_masked_tokens(const albef_config *cfg, int n_tokens)
{
    /* Masking is Bernoulli(p) per token; a bound ten standard deviations
     * above the mean is never reached in practice (and is enforced). */
    double p = cfg->mlm_probability, mean = p * n_tokens, sd = sqrt(n_tokens * p * (1 - p));
    int r = (int)ceil(mean + 10 * sd + 8);
    return r < n_tokens ? r : n_tokens;
}

/* ---- the step, written once for sizing (null back end) and running ----- */

static tensor upload(backend *be, arena *ar, albef_dtype dt, const void *host, int ndim, const int64_t *shape)
{
    tensor t = arena_tensor(ar, dt, ndim, shape);
    if (t.data && host)
        be->ops->upload(be, t.data, host, tensor_nbytes(t));
    return t;
}

/* [CLS] -> projection -> L2 normalisation; keeps what the backward needs. */
static void project(backend *be, arena *ar, tensor seq, const linear_params *proj, tensor *cls, tensor *p, tensor *feat,
                    tensor *norms)
{
    int64_t B = seq.shape[0], T = seq.shape[1], C = seq.shape[2], E = proj->weight.shape[0];
    *cls = arena_f32(ar, B, C);
    *p = arena_f32(ar, B, E);
    *feat = arena_f32(ar, B, E);
    *norms = arena_f32(ar, B);
    op_copy_rows(be, *cls, C, seq, T * C, B, C, 0);
    op_linear_forward(be, *p, *cls, proj->weight, proj->bias);
    op_l2norm_forward(be, *feat, *norms, *p);
}

/* The seed of a counter-based stream of this step: pass 0 the student's
 * dropout, 1 the teacher's, 2 and 3 ITM's negatives (image-to-text,
 * text-to-image). */
static uint64_t step_seed(pretrainer *t, int pass)
{
    uint64_t x = t->opt.seed ^ 0xa0761d6478bd642full;
    return splitmix64(&x) ^ (t->step_count * 16 + (uint64_t)pass);
}

/* Draws MLM masking on the host: Bernoulli(p) over tokens other than [PAD]
 * and [CLS]; of those, 80 % become [MASK], 10 % a uniform random id over the
 * whole vocabulary, 10 % stay. */
static void draw_masking(pretrainer *t, const pretrain_batch *b)
{
    struct pretrain_buffers *u = t->buf;
    int B = t->opt.batch, L = b->len, V = t->cfg.bert.vocab_size;
    double p = t->cfg.mlm_probability;
    for (int i = 0; i < B * L; i++) {
        int32_t id = b->ids[i];
        u->mlm_ids[i] = id;
        u->mlm_labels[i] = -100;
        if (!b->mask[i] || id == t->special_pad || id == t->special_cls)
            continue;
        if (!rng_bernoulli(&t->rng, p))
            continue;
        u->mlm_labels[i] = id;
        if (rng_bernoulli(&t->rng, 0.8))
            u->mlm_ids[i] = t->special_mask;
        else if (rng_bernoulli(&t->rng, 0.5))
            u->mlm_ids[i] = (int32_t)rng_below(&t->rng, (uint32_t)V);
    }
}

static void collect_masked(pretrainer *t, int L)
{
    struct pretrain_buffers *u = t->buf;
    int B = t->opt.batch, n = 0, dropped = 0;
    for (int i = 0; i < B * L; i++) {
        if (u->mlm_labels[i] == -100)
            continue;
        if (n == u->max_masked) {
            dropped++;
            continue;
        }
        u->masked_rows[n] = i;
        u->masked_labels[n++] = u->mlm_labels[i];
    }
    if (dropped)
        log_warn("MLM: %d masked tokens above the bound of %d left out of this step", dropped, u->max_masked);
    u->n_masked = n;
}

static void forward(pretrainer *t, backend *be, const pretrain_batch *b, int sizing)
{
    struct pretrain_buffers *u = t->buf;
    albef_model *m = &t->online, *mm = &t->momentum;
    const albef_config *cfg = &t->cfg;
    int64_t B = t->opt.batch, L = b->len, T = config_num_patches(cfg) + 1, Cv = cfg->vision_width;
    int64_t H = cfg->bert.hidden_size, V = cfg->bert.vocab_size, R = sizing ? u->max_masked : u->n_masked;
    int64_t Q = cfg->queue_size, RES = cfg->image_res;
    /* contrast against [batch | queue], or the batch alone while the queue is off */
    int64_t NC = B + (b->no_queue && !sizing ? 0 : Q);
    int itc_only = b->itc_only && !sizing;
    int retrieval = t->opt.task == TASK_RETRIEVAL;
    u->itc_only = itc_only;
    u->no_mlm = retrieval;
    tensor txt_all = tensor_slice(t->txt_all, 0, NC), img_all = tensor_slice(t->img_all, 0, NC);
    arena *ar = &t->ar, *sc = &t->scratch;
    float alpha = b->alpha;
    dropout_ctx drop = {.hidden = t->opt.hidden_dropout, .attention = t->opt.attention_dropout,
                        .seed = step_seed(t, 0)};
    dropout_ctx drop_m = drop;
    drop_m.seed = step_seed(t, 1);
    dropout_ctx *dm = t->opt.teacher_dropout ? &drop_m : NULL;

    arena_reset(ar, 0);
    u->images = upload(be, ar, DTYPE_F32, sizing ? NULL : b->images, 4, TENSOR_SHAPE(B, 3, RES, RES));
    u->ids = upload(be, ar, DTYPE_I32, sizing ? NULL : b->ids, 2, TENSOR_SHAPE(B, L));
    u->mlm_in = upload(be, ar, DTYPE_I32, sizing ? NULL : u->mlm_ids, 2, TENSOR_SHAPE(B, L));
    u->text_mask = upload(be, ar, DTYPE_F32, sizing ? NULL : u->mask_add, 2, TENSOR_SHAPE(B, L));
    u->t_diag = upload(be, ar, DTYPE_I32, sizing ? NULL : u->diag, 1, TENSOR_SHAPE(B));
    u->t_masked_rows = upload(be, ar, DTYPE_I32, sizing ? NULL : u->masked_rows, 1, TENSOR_SHAPE(R));
    u->t_masked_labels = upload(be, ar, DTYPE_I32, sizing ? NULL : u->masked_labels, 1, TENSOR_SHAPE(R));

    /* 1. temperature: clamped in pre-training only (Retrieval.py does not) */
    if (!retrieval)
        op_clamp(be, m->temp, 0.001f, 0.5f);
    /* 2. student features */
    vit_forward(be, &m->vit, &t->vit, ar, u->images);
    project(be, ar, t->vit.out, &m->vision_proj, &u->v_cls, &u->img_proj, &u->image_feat, &u->img_norm);
    bert_inputs ti = {.mode = BERT_TEXT, .ids = u->ids, .text_mask = u->text_mask};
    bert_forward(be, &m->text, &t->text, ar, &ti, &drop);
    project(be, ar, t->text.out, &m->text_proj, &u->t_cls, &u->txt_proj, &u->text_feat, &u->txt_norm);

    /* 3. momentum update, then teacher features into rows [0, B) of the
     * [batch | queue] buffers */
    op_ema(be, params_all_values(&mm->params), tensor_slice(params_all_values(&m->params), 0, (int64_t)mm->params.numel),
           cfg->momentum);
    arena_reset(sc, 0);
    vit_forward(be, &mm->vit, &t->vit_m, sc, u->images);
    u->vm_tokens = arena_f32(ar, B, T, Cv);
    be->ops->copy(be, u->vm_tokens.data, t->vit_m.out.data, tensor_nbytes(u->vm_tokens));
    tensor c1, p1, n1;
    project(be, sc, t->vit_m.out, &mm->vision_proj, &c1, &p1, &u->image_feat_m, &n1);
    be->ops->copy(be, t->img_all.data, u->image_feat_m.data, tensor_nbytes(u->image_feat_m));
    arena_reset(sc, 0);
    bert_forward(be, &mm->text, &t->text_m, sc, &ti, dm);
    project(be, sc, t->text_m.out, &mm->text_proj, &c1, &p1, &u->text_feat_m, &n1);
    be->ops->copy(be, t->txt_all.data, u->text_feat_m.data, tensor_nbytes(u->text_feat_m));

    /* teacher targets: alpha * softmax(sim_m) + (1 - alpha) * one-hot */
    tensor img_feat_m = tensor_slice(t->img_all, 0, B), txt_feat_m = tensor_slice(t->txt_all, 0, B);
    u->tgt_i2t = arena_f32(ar, B, NC);
    u->tgt_t2i = arena_f32(ar, B, NC);
    tensor raw_m = arena_f32(sc, B, NC);
    op_matmul(be, raw_m, img_feat_m, txt_all, 0, 1, 1.0f, 0.0f);
    op_div_scalar_forward(be, raw_m, raw_m, m->temp);
    op_softmax_rows(be, u->tgt_i2t, raw_m);
    op_matmul(be, raw_m, txt_feat_m, img_all, 0, 1, 1.0f, 0.0f);
    op_div_scalar_forward(be, raw_m, raw_m, m->temp);
    op_softmax_rows(be, u->tgt_t2i, raw_m);
    if (retrieval) {
        /* q = alpha * softmax(teacher) + (1 - alpha) * pos / pos.sum(row), the
         * positives being every entry of [batch | queue] of the same image */
        if (!sizing)
            for (int64_t i = 0; i < B; i++) {
                float *row = u->pos + i * NC;
                int n = 0;
                for (int64_t j = 0; j < NC; j++) {
                    int64_t other = j < B ? b->idx[j] : t->idx_queue[j - B];
                    row[j] = other == b->idx[i];
                    n += other == b->idx[i];
                }
                for (int64_t j = 0; j < NC; j++)
                    row[j] *= (1.0f - alpha) / (float)n;
            }
        u->t_pos = upload(be, ar, DTYPE_F32, sizing ? NULL : u->pos, 2, TENSOR_SHAPE(B, NC));
        /* the same-image matrix is symmetric between the two directions */
        op_scale(be, u->tgt_i2t, alpha);
        op_accumulate(be, u->tgt_i2t, u->t_pos);
        op_scale(be, u->tgt_t2i, alpha);
        op_accumulate(be, u->tgt_t2i, u->t_pos);
    }

    /* 4. student ITC against [teacher batch | queue] */
    u->raw_i2t = arena_f32(ar, B, NC);
    u->raw_t2i = arena_f32(ar, B, NC);
    u->sim_i2t = arena_f32(ar, B, NC);
    u->sim_t2i = arena_f32(ar, B, NC);
    op_matmul(be, u->raw_i2t, u->image_feat, txt_all, 0, 1, 1.0f, 0.0f);
    op_matmul(be, u->raw_t2i, u->text_feat, img_all, 0, 1, 1.0f, 0.0f);
    op_div_scalar_forward(be, u->sim_i2t, u->raw_i2t, m->temp);
    op_div_scalar_forward(be, u->sim_t2i, u->raw_t2i, m->temp);
    u->loss_i2t = arena_f32(ar, B);
    u->loss_t2i = arena_f32(ar, B);
    u->dsim_i2t = arena_f32(ar, B, NC);
    u->dsim_t2i = arena_f32(ar, B, NC);
    xent_params itc = {.hard_weight = 1.0f - alpha, .soft_weight = alpha, .grad_scale = u->loss_scale / (2.0f * (float)B)};
    tensor diag = u->t_diag;
    if (retrieval) {
        /* the targets are complete distributions already */
        itc.hard_weight = 0.0f, itc.soft_weight = 1.0f;
        diag = tensor_none();
    }
    op_softmax_xent(be, &itc, u->loss_i2t, u->dsim_i2t, u->sim_i2t, diag, u->tgt_i2t);
    op_softmax_xent(be, &itc, u->loss_t2i, u->dsim_t2i, u->sim_t2i, diag, u->tgt_t2i);

    /* 5. the enqueue of the teacher features happens after the backward pass,
     * which still reads the queue as this step's ITC saw it (enqueue()) */

    u->losses = arena_f32(ar, 4);
    op_reduce_sum(be, tensor_slice(u->losses, 0, 1), u->loss_i2t, 0.5f / (float)B);
    op_reduce_sum(be, tensor_slice(u->losses, 1, 1), u->loss_t2i, 0.5f / (float)B);
    u->itm_weights_on_device = 0;
    if (itc_only) {
        /* a contrastive warm-up step: no ITM, no MLM, no sampling weights */
        memset(u->w_i2t, 0, sizeof(float) * (size_t)(B * B));
        memset(u->w_t2i, 0, sizeof(float) * (size_t)(B * B));
        op_fill(be, tensor_slice(u->losses, 2, 2), 0.0f);
        return;
    }

    /* 6. ITM: hard negatives from the student's in-batch ITC softmax, drawn
     * on the device (no synchronisation): rows [0, B) of the pairs are the
     * positives, [B, 2B) text i with its drawn image, [2B, 3B) its drawn text
     * with image i */
    const pretrain_choices *ch = sizing ? NULL : b->choices;
    u->t_idx3 = upload(be, ar, DTYPE_I32, sizing ? NULL : u->idx_text3, 1, TENSOR_SHAPE(3 * B));
    u->v_idx3 = upload(be, ar, DTYPE_I32, sizing ? NULL : u->idx_img3, 1, TENSOR_SHAPE(3 * B));
    u->t_itm = upload(be, ar, DTYPE_I32, sizing ? NULL : u->itm_labels, 1, TENSOR_SHAPE(3 * B));
    u->t_same = retrieval ? upload(be, ar, DTYPE_I32, sizing ? NULL : u->same, 1, TENSOR_SHAPE(B)) : tensor_none();
    u->t_w_i2t = arena_f32(ar, B, B);
    u->t_w_t2i = arena_f32(ar, B, B);
    tensor neg_img = tensor_slice(u->v_idx3, B, B), neg_txt = tensor_slice(u->t_idx3, 2 * B, B);
    op_itm_negatives(be, u->t_w_i2t, neg_txt, u->sim_i2t, u->t_same, b->random_negatives, step_seed(t, 2));
    op_itm_negatives(be, u->t_w_t2i, neg_img, u->sim_t2i, u->t_same, b->random_negatives, step_seed(t, 3));
    u->itm_weights_on_device = !sizing;
    /* negatives given by the caller replace the drawn ones */
    if (ch && ch->neg_image_idx)
        be->ops->upload(be, neg_img.data, ch->neg_image_idx, tensor_nbytes(neg_img));
    if (ch && ch->neg_text_idx)
        be->ops->upload(be, neg_txt.data, ch->neg_text_idx, tensor_nbytes(neg_txt));
    u->text_mask3 = arena_f32(ar, 3 * B, L);
    op_gather_rows(be, u->text_mask3, u->text_mask, u->t_idx3);
    u->fusion_embeds = arena_f32(ar, 3 * B, L, H);
    u->fusion_enc = arena_f32(ar, 3 * B, T, Cv);
    op_gather_rows(be, u->fusion_embeds, t->text.out, u->t_idx3);
    op_gather_rows(be, u->fusion_enc, t->vit.out, u->v_idx3);
    bert_inputs fi = {.mode = BERT_FUSION, .embeds = u->fusion_embeds, .text_mask = u->text_mask3,
                      .enc = {u->fusion_enc}, .n_enc = 1};
    bert_forward(be, &m->text, &t->fusion, ar, &fi, &drop);
    u->m_cls = arena_f32(ar, 3 * B, H);
    op_copy_rows(be, u->m_cls, H, t->fusion.out, L * H, 3 * B, H, 0);
    u->itm_logits = arena_f32(ar, 3 * B, 2);
    op_linear_forward(be, u->itm_logits, u->m_cls, m->itm_head.weight, m->itm_head.bias);
    u->itm_loss = arena_f32(ar, 3 * B);
    u->ditm = arena_f32(ar, 3 * B, 2);
    xent_params itm = {.hard_weight = 1, .soft_weight = 0, .grad_scale = u->loss_scale / (3.0f * (float)B)};
    op_softmax_xent(be, &itm, u->itm_loss, u->ditm, u->itm_logits, u->t_itm, tensor_none());

    if (u->no_mlm) {
        op_reduce_sum(be, tensor_slice(u->losses, 2, 1), u->itm_loss, 1.0f / (3.0f * (float)B));
        op_fill(be, tensor_slice(u->losses, 3, 1), 0.0f);
        return;
    }

    /* 7. MLM with the teacher's distribution over the vocabulary */
    u->soft = arena_f32(ar, R, V);
    u->hid_rows = arena_f32(ar, R, H);
    u->mlm_loss = arena_f32(ar, R);
    u->dmlm = arena_f32(ar, R, V);
    if (R > 0) {
        arena_reset(sc, 0);
        bert_inputs mi_m = {.mode = BERT_MULTI_MODAL, .ids = u->mlm_in, .text_mask = u->text_mask,
                            .enc = {u->vm_tokens}, .n_enc = 1};
        bert_forward(be, &mm->text, &t->mlm_m, sc, &mi_m, dm);
        tensor rows_m = arena_f32(sc, R, H);
        op_gather_rows(be, rows_m, tensor_reshape(t->mlm_m.out, 2, TENSOR_SHAPE(B * L, H)), u->t_masked_rows);
        bert_mlm_forward(be, &mm->text, &t->head_m, sc, rows_m);
        op_softmax_rows(be, u->soft, t->head_m.logits);

        bert_inputs mi = {.mode = BERT_MULTI_MODAL, .ids = u->mlm_in, .text_mask = u->text_mask,
                          .enc = {t->vit.out}, .n_enc = 1};
        bert_forward(be, &m->text, &t->mlm, ar, &mi, &drop);
        op_gather_rows(be, u->hid_rows, tensor_reshape(t->mlm.out, 2, TENSOR_SHAPE(B * L, H)), u->t_masked_rows);
        bert_mlm_forward(be, &m->text, &t->head, ar, u->hid_rows);
        xent_params mlm = {.hard_weight = 1.0f - alpha, .soft_weight = alpha, .grad_scale = u->loss_scale / (float)R};
        op_softmax_xent(be, &mlm, u->mlm_loss, u->dmlm, t->head.logits, u->t_masked_labels, u->soft);
    }
    op_reduce_sum(be, tensor_slice(u->losses, 2, 1), u->itm_loss, 1.0f / (3.0f * (float)B));
    if (R > 0)
        op_reduce_sum(be, tensor_slice(u->losses, 3, 1), u->mlm_loss, 1.0f / (float)R);
    else
        op_fill(be, tensor_slice(u->losses, 3, 1), 0.0f);
}

/* Writes the teacher features of this step (rows [0, B)) into the queue at
 * queue_ptr; ptr <- (ptr + B) mod Q. */
/* Writes the teacher features of this step (rows [0, B)) of every rank, in
 * rank order, into the queue at queue_ptr; ptr <- (ptr + W B) mod Q. Only
 * the local batch is contrasted in the step itself (as the original). */
static int enqueue(pretrainer *t)
{
    backend *be = t->be;
    comm *c = t->opt.comm;
    int64_t B = t->opt.batch, E = t->cfg.embed_dim, W = c->world;
    size_t row = (size_t)E * sizeof(float);
    if (t->cfg.queue_size == 0)
        return ALBEF_OK;
    tensor *all[2] = {&t->img_all, &t->txt_all};
    for (int k = 0; k < 2; k++) {
        char *dst = (char *)all[k]->data + (size_t)(B + t->queue_ptr) * row;
        int rc = W > 1 ? c->ops->all_gather(c, be, t->gathered.data, all[k]->data, (size_t)(B * E)) : ALBEF_OK;
        if (rc)
            return rc;
        be->ops->copy(be, dst, W > 1 ? t->gathered.data : all[k]->data, (size_t)(W * B) * row);
    }
    if (t->opt.task == TASK_RETRIEVAL) {
        if (W > 1)
            return albef_error(ALBEF_ERR_UNSUPPORTED, "retrieval fine-tuning runs in one process for now");
        for (int64_t i = 0; i < B; i++)
            t->idx_queue[t->queue_ptr + i] = t->buf->idx[i];
    }
    t->queue_ptr = (t->queue_ptr + W * B) % t->cfg.queue_size;
    return ALBEF_OK;
}

static void backward(pretrainer *t, backend *be, int len)
{
    struct pretrain_buffers *u = t->buf;
    albef_model *m = &t->online;
    const albef_config *cfg = &t->cfg;
    int64_t B = t->opt.batch, L = len, T = config_num_patches(cfg) + 1, Cv = cfg->vision_width;
    int64_t H = cfg->bert.hidden_size, E = cfg->embed_dim, R = u->itc_only || u->no_mlm ? 0 : u->hid_rows.shape[0];
    int64_t NC = u->sim_i2t.shape[1];
    tensor txt_all = tensor_slice(t->txt_all, 0, NC), img_all = tensor_slice(t->img_all, 0, NC);
    arena *ar = &t->ar;
    tensor dV = arena_f32(ar, B, T, Cv), dT = arena_f32(ar, B, L, H);
    op_fill(be, dV, 0.0f);
    op_fill(be, dT, 0.0f);
    tensor none2[2] = {tensor_none(), tensor_none()};
    /* MLM */
    if (R > 0) {
        tensor drows = arena_f32(ar, R, H), dH = arena_f32(ar, B, L, H);
        bert_mlm_backward(be, &m->text, &t->head, ar, u->dmlm, drows);
        op_fill(be, dH, 0.0f);
        op_scatter_add_rows(be, tensor_reshape(dH, 2, TENSOR_SHAPE(B * L, H)), drows, u->t_masked_rows);
        tensor denc[2] = {dV, tensor_none()};
        bert_backward(be, &m->text, &t->mlm, ar, dH, tensor_none(), 0, denc);
    }
    /* ITM */
    if (!u->itc_only) {
        tensor dm_cls = arena_f32(ar, 3 * B, H), dM = arena_f32(ar, 3 * B, L, H);
        op_linear_backward(be, dm_cls, 0, m->g_itm_head.weight, m->g_itm_head.bias, u->ditm, u->m_cls,
                           m->itm_head.weight);
        op_fill(be, dM, 0.0f);
        op_copy_rows(be, dM, L * H, dm_cls, H, 3 * B, H, 1);
        tensor dE = arena_f32(ar, 3 * B, L, H), dEnc = arena_f32(ar, 3 * B, T, Cv);
        op_fill(be, dEnc, 0.0f);
        tensor denc3[2] = {dEnc, tensor_none()};
        bert_backward(be, &m->text, &t->fusion, ar, dM, dE, 0, denc3);
        op_scatter_add_rows(be, dT, dE, u->t_idx3);
        op_scatter_add_rows(be, dV, dEnc, u->v_idx3);
    }
    /* ITC: the [batch | queue] side is the teacher's, without gradient */
    tensor draw_i2t = arena_f32(ar, B, NC), draw_t2i = arena_f32(ar, B, NC);
    op_div_scalar_backward(be, draw_i2t, m->g_temp, u->dsim_i2t, u->sim_i2t, m->temp);
    op_div_scalar_backward(be, draw_t2i, m->g_temp, u->dsim_t2i, u->sim_t2i, m->temp);
    tensor dimg = arena_f32(ar, B, E), dtxt = arena_f32(ar, B, E);
    op_matmul(be, dimg, draw_i2t, txt_all, 0, 0, 1.0f, 0.0f);
    op_matmul(be, dtxt, draw_t2i, img_all, 0, 0, 1.0f, 0.0f);
    tensor dpi = arena_f32(ar, B, E), dpt = arena_f32(ar, B, E);
    op_l2norm_backward(be, dpi, dimg, u->image_feat, u->img_norm);
    op_l2norm_backward(be, dpt, dtxt, u->text_feat, u->txt_norm);
    tensor dv_cls = arena_f32(ar, B, Cv), dt_cls = arena_f32(ar, B, H);
    op_linear_backward(be, dv_cls, 0, m->g_vision_proj.weight, m->g_vision_proj.bias, dpi, u->v_cls,
                       m->vision_proj.weight);
    op_linear_backward(be, dt_cls, 0, m->g_text_proj.weight, m->g_text_proj.bias, dpt, u->t_cls, m->text_proj.weight);
    op_copy_rows(be, dV, T * Cv, dv_cls, Cv, B, Cv, 1);
    op_copy_rows(be, dT, L * H, dt_cls, H, B, H, 1);
    /* encoders */
    bert_backward(be, &m->text, &t->text, ar, dT, tensor_none(), 0, none2);
    vit_backward(be, &m->vit, &t->vit, ar, dV);
}

/* ---- setup --------------------------------------------------------------- */

static int alloc_host(struct pretrain_buffers *u, int B, int L, int max_masked)
{
    size_t bl = (size_t)B * L;
    u->mlm_ids = calloc(bl, sizeof(int32_t));
    u->mlm_labels = calloc(bl, sizeof(int32_t));
    u->masked_rows = calloc((size_t)max_masked + 1, sizeof(int32_t));
    u->masked_labels = calloc((size_t)max_masked + 1, sizeof(int32_t));
    u->mask_add = calloc(bl, sizeof(float));
    u->idx_text3 = calloc(3 * (size_t)B, sizeof(int32_t));
    u->idx_img3 = calloc(3 * (size_t)B, sizeof(int32_t));
    u->itm_labels = calloc(3 * (size_t)B, sizeof(int32_t));
    u->diag = calloc((size_t)B, sizeof(int32_t));
    u->w_i2t = calloc((size_t)B * B, sizeof(float));
    u->w_t2i = calloc((size_t)B * B, sizeof(float));
    u->same = calloc((size_t)B, sizeof(int32_t));
    u->idx = calloc((size_t)B, sizeof(int64_t));
    u->max_masked = max_masked;
    if (!u->mlm_ids || !u->mlm_labels || !u->masked_rows || !u->masked_labels || !u->mask_add || !u->idx_text3 ||
        !u->idx_img3 || !u->itm_labels || !u->diag || !u->w_i2t || !u->w_t2i || !u->same || !u->idx)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < B; i++) {
        u->diag[i] = i;
        u->itm_labels[i] = 1;
        u->idx_text3[i] = u->idx_img3[i] = i;
        u->idx_text3[B + i] = i, u->idx_img3[B + i] = 0;     /* image drawn on the device */
        u->idx_text3[2 * B + i] = 0, u->idx_img3[2 * B + i] = i; /* text drawn on the device */
    }
    return ALBEF_OK;
}

static void free_host(struct pretrain_buffers *u)
{
    if (!u)
        return;
    free(u->mlm_ids), free(u->mlm_labels), free(u->masked_rows), free(u->masked_labels), free(u->mask_add),
        free(u->idx_text3), free(u->idx_img3), free(u->itm_labels), free(u->diag), free(u->w_i2t), free(u->w_t2i),
        free(u->same), free(u->idx), free(u->pos);
    free(u);
}

/* Queues start as random unit vectors (per feature), as randn + normalize. */
static void random_unit_rows(pretrainer *t, tensor dst, float *host)
{
    int64_t n = tensor_rows(dst), e = tensor_cols(dst);
    for (int64_t r = 0; r < n; r++) {
        double s = 0;
        for (int64_t k = 0; k < e; k++) {
            float v = (float)rng_normal(&t->rng);
            host[r * e + k] = v;
            s += (double)v * v;
        }
        float inv = (float)(1.0 / (sqrt(s) > 1e-12 ? sqrt(s) : 1e-12));
        for (int64_t k = 0; k < e; k++)
            host[r * e + k] *= inv;
    }
    t->be->ops->upload(t->be, dst.data, host, tensor_nbytes(dst));
}

/* AdamW's two groups as one flag per arena element, uploaded once, so that
 * the update is one pass over the arena: 1 for the weights that decay, 0 for
 * the no_decay group (1-D tensors, biases) and the arena's alignment padding
 * (zero values, gradients and moments, which AdamW leaves at zero). */
static int upload_decay_flags(pretrainer *t)
{
    const param_set *ps = &t->online.params;
    uint8_t *flags = calloc(ps->numel ? ps->numel : 1, 1);
    if (!flags)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory for %zu weight decay flags", ps->numel);
    for (int i = 0; i < ps->count; i++) {
        const param_info *p = &ps->items[i];
        if (p->alias_of < 0 && !p->no_decay)
            memset(flags + p->offset, 1, p->numel);
    }
    t->be->ops->upload(t->be, t->adam_decay, flags, ps->numel);
    free(flags);
    return ALBEF_OK;
}

static void init_queues(pretrainer *t)
{
    float *host = malloc(tensor_nbytes(t->img_all));
    if (!host)
        return;
    random_unit_rows(t, t->img_all, host);
    random_unit_rows(t, t->txt_all, host);
    free(host);
}

int pretrainer_init(pretrainer *t, const albef_config *cfg, backend *be, const pretrain_options *opt, int cls_id,
                    int mask_id)
{
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->opt = *opt;
    t->be = be;
    t->special_pad = cfg->bert.pad_token_id;
    t->special_cls = cls_id;
    t->special_mask = mask_id;
    int B = opt->batch, L = opt->max_len;
    if (!t->opt.comm)
        t->opt.comm = comm_single();
    int W = t->opt.comm->world;
    if (B < 2)
        return albef_error(ALBEF_ERR_INVALID, "pre-training needs a batch of at least 2 (hard negatives)");
    if (cfg->queue_size % (W * B))
        return albef_error(ALBEF_ERR_INVALID, "queue_size %d must be a multiple of the batch size x processes (%d x %d)",
                           cfg->queue_size, B, W);
    if (L < 1 || L > cfg->bert.max_position_embeddings)
        return albef_error(ALBEF_ERR_INVALID, "text length %d is outside 1..%d", L, cfg->bert.max_position_embeddings);
    rng_seed_stream(&t->rng, opt->seed, 0x9e37);
    enum albef_layout layout = opt->task == TASK_RETRIEVAL ? LAYOUT_RETRIEVAL : LAYOUT_PRETRAIN;
    albef_model_options on = {.layout = layout, .with_grads = 1};
    albef_model_options mo = {.layout = layout, .momentum_copy = 1};
    int rc = albef_model_init(&t->online, cfg, be, &on);
    rc = rc ? rc : albef_model_init(&t->momentum, cfg, be, &mo);
    if (rc)
        return rc;
    if (t->momentum.params.numel != t->online.momentum_numel)
        return albef_error(ALBEF_ERR_INVALID, "internal: momentum layout (%zu) differs from the online prefix (%zu)",
                           t->momentum.params.numel, t->online.momentum_numel);
    t->buf = calloc(1, sizeof *t->buf);
    if (!t->buf)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    rc = alloc_host(t->buf, B, L, max_masked_tokens(cfg, B * L));
    if (!rc && opt->task == TASK_RETRIEVAL) {
        t->buf->pos = calloc((size_t)B * (size_t)(B + cfg->queue_size), sizeof(float));
        t->idx_queue = malloc(sizeof(int64_t) * (size_t)(cfg->queue_size ? cfg->queue_size : 1));
        if (!t->buf->pos || !t->idx_queue)
            rc = albef_error(ALBEF_ERR_NOMEM, "out of memory");
        for (int i = 0; !rc && i < cfg->queue_size; i++)
            t->idx_queue[i] = -100;
    }
    rc = rc ? rc : vit_acts_init(&t->vit, &t->online.vit);
    rc = rc ? rc : vit_acts_init(&t->vit_m, &t->momentum.vit);
    rc = rc ? rc : bert_acts_init(&t->text, &t->online.text);
    rc = rc ? rc : bert_acts_init(&t->text_m, &t->momentum.text);
    rc = rc ? rc : bert_acts_init(&t->fusion, &t->online.text);
    rc = rc ? rc : bert_acts_init(&t->mlm, &t->online.text);
    rc = rc ? rc : bert_acts_init(&t->mlm_m, &t->momentum.text);
    if (rc)
        return rc;
    /* teacher passes have no backward */
    t->vit_m.inference = t->text_m.inference = t->mlm_m.inference = 1;
    /* optimizer state, queues */
    size_t bytes = t->online.params.numel * sizeof(float);
    t->adam_m = be->ops->alloc(be, bytes);
    t->adam_v = be->ops->alloc(be, bytes);
    t->adam_decay = be->ops->alloc(be, t->online.params.numel);
    int64_t E = cfg->embed_dim, N = (int64_t)B + cfg->queue_size;
    t->img_all = tensor_f32(be->ops->alloc(be, sizeof(float) * (size_t)(N * E)), N, E);
    t->txt_all = tensor_f32(be->ops->alloc(be, sizeof(float) * (size_t)(N * E)), N, E);
    if (W > 1) {
        t->gathered = tensor_f32(be->ops->alloc(be, sizeof(float) * (size_t)(W * B * E)), W * B, E);
        if (!t->gathered.data)
            return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    }
    if (!t->adam_m || !t->adam_v || !t->adam_decay || !t->img_all.data || !t->txt_all.data)
        return albef_error(ALBEF_ERR_NOMEM, "cannot allocate the optimizer state and queues (%.1f MiB)",
                           (2.25 * bytes + 2.0 * N * E * 4) / 1048576.0);
    be->ops->zero(be, t->adam_m, bytes);
    be->ops->zero(be, t->adam_v, bytes);
    rc = upload_decay_flags(t);
    if (rc)
        return rc;
    t->buf->step_stats = tensor_f32(be->ops->alloc(be, 6 * sizeof(float)), 6);
    if (!t->buf->step_stats.data)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    be->ops->zero(be, t->buf->step_stats.data, 6 * sizeof(float));
    init_queues(t);

    /* size the activation memory with a dry run at the longest text */
    pretrain_batch dry = {.len = L, .alpha = 0.4f};
    arena_init_measuring(&t->ar);
    arena_init_measuring(&t->scratch);
    t->buf->loss_scale = 1.0f;
    forward(t, backend_null_for(be), &dry, 1);
    backward(t, backend_null_for(be), L);
    t->ar_bytes = t->ar.peak;
    t->scratch_bytes = t->scratch.peak;
    rc = arena_init(&t->ar, be, t->ar_bytes);
    rc = rc ? rc : arena_init(&t->scratch, be, t->scratch_bytes);
    if (rc)
        return albef_error_context(rc, "activation memory for batch %d, text length %d: ", B, L);
    log_info("activation memory: %.1f MiB + %.1f MiB teacher scratch for batch %d, text length %d", t->ar_bytes / 1048576.0,
             t->scratch_bytes / 1048576.0, B, L);
    return ALBEF_OK;
}

void pretrainer_free(pretrainer *t)
{
    backend *be = t->be;
    if (be) {
        if (t->adam_m)
            be->ops->free(be, t->adam_m);
        if (t->adam_v)
            be->ops->free(be, t->adam_v);
        if (t->adam_decay)
            be->ops->free(be, t->adam_decay);
        if (t->img_all.data)
            be->ops->free(be, t->img_all.data);
        if (t->txt_all.data)
            be->ops->free(be, t->txt_all.data);
        if (t->gathered.data)
            be->ops->free(be, t->gathered.data);
        if (t->buf && t->buf->step_stats.data)
            be->ops->free(be, t->buf->step_stats.data);
    }
    arena_free(&t->ar);
    arena_free(&t->scratch);
    vit_acts_free(&t->vit), vit_acts_free(&t->vit_m);
    bert_acts_free(&t->text), bert_acts_free(&t->text_m), bert_acts_free(&t->fusion), bert_acts_free(&t->mlm),
        bert_acts_free(&t->mlm_m);
    free_host(t->buf);
    albef_model_free(&t->online);
    albef_model_free(&t->momentum);
    free(t->vocab_text);
    free(t->idx_queue);
    memset(t, 0, sizeof *t);
}

int pretrainer_set_vocab(pretrainer *t, const char *vocab_text)
{
    free(t->vocab_text);
    t->vocab_text = vocab_text ? strdup(vocab_text) : NULL;
    return !vocab_text || t->vocab_text ? ALBEF_OK : albef_error(ALBEF_ERR_NOMEM, "out of memory");
}

void pretrainer_sync_momentum(pretrainer *t)
{
    t->be->ops->copy(t->be, t->momentum.params.values, t->online.params.values,
                     t->momentum.params.numel * sizeof(float));
}

size_t pretrainer_bytes_per_sample(const backend *be, const albef_config *cfg, int max_len)
{
    size_t per[2];
    for (int k = 0; k < 2; k++) {
        pretrainer t;
        memset(&t, 0, sizeof t);
        t.cfg = *cfg;
        t.opt = pretrain_options_default(2 + 2 * k);
        t.opt.max_len = max_len;
        t.be = backend_null_for(be);
        albef_model_options on = {.layout = LAYOUT_PRETRAIN, .with_grads = 1};
        albef_model_options mo = {.layout = LAYOUT_PRETRAIN, .momentum_copy = 1};
        if (albef_model_init(&t.online, cfg, t.be, &on) || albef_model_init(&t.momentum, cfg, t.be, &mo))
            return 0;
        t.buf = calloc(1, sizeof *t.buf);
        int B = t.opt.batch;
        alloc_host(t.buf, B, max_len, max_masked_tokens(cfg, B * max_len));
        vit_acts_init(&t.vit, &t.online.vit), vit_acts_init(&t.vit_m, &t.momentum.vit);
        bert_acts_init(&t.text, &t.online.text), bert_acts_init(&t.text_m, &t.momentum.text);
        bert_acts_init(&t.fusion, &t.online.text), bert_acts_init(&t.mlm, &t.online.text);
        bert_acts_init(&t.mlm_m, &t.momentum.text);
        int64_t N = (int64_t)B + cfg->queue_size;
        t.img_all = tensor_f32(NULL, N, cfg->embed_dim);
        t.txt_all = tensor_f32(NULL, N, cfg->embed_dim);
        pretrain_batch dry = {.len = max_len, .alpha = 0.4f};
        arena_init_measuring(&t.ar);
        arena_init_measuring(&t.scratch);
        forward(&t, t.be, &dry, 1);
        backward(&t, t.be, max_len);
        per[k] = t.ar.peak + t.scratch.peak;
        t.be = NULL;
        pretrainer_free(&t);
    }
    return (per[1] - per[0]) / 2;
}

/* ---- queues in the official layout ------------------------------------------ */

/* rows [B, B + Q) of the (B + Q, E) buffer <-> columns of an (E, Q) matrix */
static int queue_transfer(const pretrainer *t, tensor all, float *official, int to_device)
{
    int64_t B = t->opt.batch, Q = t->cfg.queue_size, E = t->cfg.embed_dim;
    float *rows = malloc(sizeof(float) * (size_t)(Q * E));
    if (!rows)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    size_t row_bytes = sizeof(float) * (size_t)E;
    char *dev = (char *)all.data + (size_t)B * row_bytes;
    if (to_device) {
        for (int64_t q = 0; q < Q; q++)
            for (int64_t e = 0; e < E; e++)
                rows[q * E + e] = official[e * Q + q];
        t->be->ops->upload(t->be, dev, rows, (size_t)Q * row_bytes);
    } else {
        t->be->ops->download(t->be, rows, dev, (size_t)Q * row_bytes);
        for (int64_t q = 0; q < Q; q++)
            for (int64_t e = 0; e < E; e++)
                official[e * Q + q] = rows[q * E + e];
    }
    free(rows);
    return ALBEF_OK;
}

int pretrainer_set_queues(pretrainer *t, const float *image_queue, const float *text_queue, int64_t ptr)
{
    if (ptr < 0 || ptr >= t->cfg.queue_size || ptr % t->opt.batch)
        return albef_error(ALBEF_ERR_INVALID, "queue_ptr %lld must be a multiple of the batch %d below %d",
                           (long long)ptr, t->opt.batch, t->cfg.queue_size);
    int rc = queue_transfer(t, t->img_all, (float *)image_queue, 1);
    rc = rc ? rc : queue_transfer(t, t->txt_all, (float *)text_queue, 1);
    if (!rc)
        t->queue_ptr = ptr;
    return rc;
}

int pretrainer_set_idx_queue(pretrainer *t, const int64_t *idx_queue)
{
    if (!t->idx_queue)
        return albef_error(ALBEF_ERR_INVALID, "idx_queue belongs to the retrieval task");
    memcpy(t->idx_queue, idx_queue, sizeof(int64_t) * (size_t)t->cfg.queue_size);
    return ALBEF_OK;
}

int pretrainer_get_queues(const pretrainer *t, float *image_queue, float *text_queue, int64_t *ptr)
{
    int rc = queue_transfer(t, t->img_all, image_queue, 0);
    rc = rc ? rc : queue_transfer(t, t->txt_all, text_queue, 0);
    *ptr = t->queue_ptr;
    return rc;
}

/* ---- the step --------------------------------------------------------------- */

static void read_step_stats(const pretrainer *t, pretrain_stats *stats, int with_grad_norm)
{
    const struct pretrain_buffers *u = t->buf;
    float host[6];
    t->be->ops->download(t->be, host, u->step_stats.data, sizeof host);
    stats->loss_ita = host[0] + host[1];
    stats->loss_itm = host[2];
    stats->loss_mlm = host[3];
    stats->temp = host[4];
    if (with_grad_norm)
        stats->grad_norm = sqrtf(host[5]);
    stats->masked_tokens = u->n_masked;
}

void pretrainer_last_stats(const pretrainer *t, pretrain_stats *stats) { read_step_stats(t, stats, 1); }

int pretrainer_accumulate(pretrainer *t, const pretrain_batch *b, float loss_scale, pretrain_stats *stats)
{
    struct pretrain_buffers *u = t->buf;
    backend *be = t->be;
    int B = t->opt.batch, L = b->len;
    if (L < 1 || L > t->opt.max_len)
        return albef_error(ALBEF_ERR_INVALID, "text length %d is outside 1..%d", L, t->opt.max_len);
    for (int i = 0; i < B * L; i++) {
        if (b->ids[i] < 0 || b->ids[i] >= t->cfg.bert.vocab_size)
            return albef_error(ALBEF_ERR_INVALID, "token id %d is outside the vocabulary (%d)", b->ids[i],
                               t->cfg.bert.vocab_size);
        u->mask_add[i] = b->mask[i] ? 0.0f : -10000.0f;
    }
    if (t->opt.task != TASK_PRETRAIN) {
        u->n_masked = 0; /* no MLM */
    } else if (b->choices && b->choices->mlm_ids) {
        memcpy(u->mlm_ids, b->choices->mlm_ids, sizeof(int32_t) * (size_t)(B * L));
        memcpy(u->mlm_labels, b->choices->mlm_labels, sizeof(int32_t) * (size_t)(B * L));
        collect_masked(t, L);
    } else {
        draw_masking(t, b);
        collect_masked(t, L);
    }
    if (t->opt.task == TASK_RETRIEVAL) {
        if (!b->idx)
            return albef_error(ALBEF_ERR_INVALID, "retrieval steps need each sample's image index");
        memcpy(u->idx, b->idx, sizeof(int64_t) * (size_t)B);
        /* the device compares 32-bit labels: name each image by its first sample */
        for (int i = 0; i < B; i++) {
            int first = 0;
            while (b->idx[first] != b->idx[i])
                first++;
            u->same[i] = first;
        }
    }
    u->loss_scale = loss_scale;
    forward(t, be, b, 0);
    backward(t, be, L);
    int rc = enqueue(t);
    if (rc)
        return rc;
    t->step_count++;
    if (t->ar.overflow || t->scratch.overflow)
        return albef_error(ALBEF_ERR_NOMEM, "internal: activation memory smaller than the step needs");
    /* kept on the device: the temperature changes in the update */
    be->ops->copy(be, u->step_stats.data, u->losses.data, 4 * sizeof(float));
    be->ops->copy(be, (float *)u->step_stats.data + 4, t->online.temp.data, sizeof(float));
    if (stats)
        read_step_stats(t, stats, 0);
    return ALBEF_OK;
}

int pretrainer_update(pretrainer *t, float lr, float *grad_norm)
{
    backend *be = t->be;
    param_set *ps = &t->online.params;
    comm *c = t->opt.comm;
    if (c->world > 1) {
        /* data parallel: the mean of every rank's gradients */
        int rc = c->ops->all_reduce_sum(c, be, ps->grads, ps->numel);
        if (rc)
            return rc;
        op_scale(be, params_all_grads(ps), 1.0f / (float)c->world);
    }
    /* gradient norm (before the update), then AdamW with ALBEF's two groups */
    tensor sumsq = tensor_slice(t->buf->step_stats, 5, 1);
    op_reduce_sumsq(be, sumsq, params_all_grads(ps), 1.0f);
    t->adam_step++;
    int64_t n = (int64_t)ps->numel;
    op_adamw(be, params_all_values(ps), params_all_grads(ps), tensor_f32(t->adam_m, n), tensor_f32(t->adam_v, n),
             tensor_make(t->adam_decay, DTYPE_U8, 1, TENSOR_SHAPE(n)), lr, t->opt.beta1, t->opt.beta2, t->opt.eps,
             t->opt.weight_decay, (int)t->adam_step);
    params_zero_grads(ps);
    if (grad_norm) {
        float ss = 0;
        be->ops->download(be, &ss, sumsq.data, sizeof ss);
        *grad_norm = sqrtf(ss);
    }
    return t->ar.overflow ? albef_error(ALBEF_ERR_NOMEM, "internal: activation memory exhausted") : ALBEF_OK;
}

int pretrainer_step(pretrainer *t, const pretrain_batch *b, float lr, pretrain_stats *stats)
{
    /* one synchronisation, at the end, for all the numbers of the step */
    int rc = pretrainer_accumulate(t, b, 1.0f, NULL);
    rc = rc ? rc : pretrainer_update(t, lr, NULL);
    if (!rc && stats)
        pretrainer_last_stats(t, stats);
    return rc;
}

tensor pretrainer_last_sim_i2t(const pretrainer *t) { return t->buf->sim_i2t; }
tensor pretrainer_last_sim_t2i(const pretrainer *t) { return t->buf->sim_t2i; }

void pretrainer_last_itm_weights(const pretrainer *t, const float **w_i2t, const float **w_t2i)
{
    struct pretrain_buffers *u = t->buf;
    if (u->itm_weights_on_device) {
        backend *be = t->be;
        be->ops->download(be, u->w_i2t, u->t_w_i2t.data, tensor_nbytes(u->t_w_i2t));
        be->ops->download(be, u->w_t2i, u->t_w_t2i.data, tensor_nbytes(u->t_w_t2i));
    }
    *w_i2t = u->w_i2t;
    *w_t2i = u->w_t2i;
}
