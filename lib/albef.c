/* The public API (albef.h) over the model: a loaded model, a back end and
 * one activation arena sized at load time for the largest pass. */
#include "albef.h"
#include "albef_internal.h"

#include "io/pth.h"
#include "io/safetensors.h"
#include "model/albef_model.h"
#include "ops/arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *albef_version(void) { return ALBEF_VERSION; }

struct albef_ctx {
    albef_model *m;    /* &own, or a trainer's model (borrowed) */
    albef_model own;
    int borrowed;
    backend *be;
    arena ar;
    int max_batch, max_len, mlm_batch;
    size_t bytes_per_image;
    vit_acts vit;
    bert_acts bert;
    mlm_head_acts head;
};

albef_params albef_params_default(void)
{
    albef_params p = {.device = "cpu", .config = NULL, .max_batch = 32, .max_text_len = 40};
    return p;
}

int albef_image_res(const albef_ctx *c) { return c->m->cfg.image_res; }
int albef_image_tokens(const albef_ctx *c) { return config_num_patches(&c->m->cfg) + 1; }
int albef_vision_width(const albef_ctx *c) { return c->m->cfg.vision_width; }
int albef_text_width(const albef_ctx *c) { return c->m->cfg.bert.hidden_size; }
int albef_embed_dim(const albef_ctx *c) { return c->m->cfg.embed_dim; }
int albef_vocab_size(const albef_ctx *c) { return c->m->cfg.bert.vocab_size; }
size_t albef_bytes_per_image(const albef_ctx *c) { return c->bytes_per_image; }

float albef_temp(const albef_ctx *c)
{
    float t = 0;
    if (c->m->temp.data)
        c->be->ops->download(c->be, &t, c->m->temp.data, sizeof t);
    return t;
}

/* ---- the inference passes, written once for sizing and for running ---- */

static tensor upload(albef_ctx *c, albef_dtype dt, const void *host, int ndim, const int64_t *shape)
{
    tensor t = arena_tensor(&c->ar, dt, ndim, shape);
    if (t.data && host)
        c->be->ops->upload(c->be, t.data, host, tensor_nbytes(t));
    return t;
}

/* projection of token 0 of each sequence, then L2 normalisation */
static tensor project_cls(albef_ctx *c, backend *be, tensor seq, const linear_params *proj)
{
    int64_t B = seq.shape[0], T = seq.shape[1], C = seq.shape[2], E = c->m->cfg.embed_dim;
    tensor cls = arena_f32(&c->ar, B, C), p = arena_f32(&c->ar, B, E), f = arena_f32(&c->ar, B, E);
    tensor norms = arena_f32(&c->ar, B);
    op_copy_rows(be, cls, C, seq, T * C, B, C, 0);
    op_linear_forward(be, p, cls, proj->weight, proj->bias);
    op_l2norm_forward(be, f, norms, p);
    return f;
}

static void image_pass(albef_ctx *c, backend *be, const float *images, int n, tensor *feat)
{
    int64_t R = c->m->cfg.image_res;
    tensor img = upload(c, DTYPE_F32, images, 4, TENSOR_SHAPE(n, 3, R, R));
    vit_forward(be, &c->m->vit, &c->vit, &c->ar, img);
    *feat = project_cls(c, be, c->vit.out, &c->m->vision_proj);
}

static tensor text_mask(albef_ctx *c, const int32_t *mask, int n, int len)
{
    float *add = NULL;
    if (mask) {
        add = malloc(sizeof(float) * (size_t)n * len);
        for (int i = 0; add && i < n * len; i++)
            add[i] = mask[i] ? 0.0f : -10000.0f;
    }
    tensor t = upload(c, DTYPE_F32, add, 2, TENSOR_SHAPE(n, len));
    free(add);
    return t;
}

static void text_pass(albef_ctx *c, backend *be, const int32_t *ids, const int32_t *mask, int n, int len,
                      tensor *feat)
{
    bert_inputs in = {.mode = BERT_TEXT};
    in.ids = upload(c, DTYPE_I32, ids, 2, TENSOR_SHAPE(n, len));
    in.text_mask = text_mask(c, mask, n, len);
    bert_forward(be, &c->m->text, &c->bert, &c->ar, &in, NULL);
    *feat = project_cls(c, be, c->bert.out, &c->m->text_proj);
}

static tensor itm_pass(albef_ctx *c, backend *be, const float *text_tokens, const int32_t *mask, int n, int len,
                       const float *image_tokens, int one_image)
{
    const albef_config *cfg = &c->m->cfg;
    int64_t T = config_num_patches(cfg) + 1, H = cfg->bert.hidden_size;
    bert_inputs in = {.mode = BERT_FUSION, .n_enc = 1, .enc_shared = one_image};
    in.embeds = upload(c, DTYPE_F32, text_tokens, 3, TENSOR_SHAPE(n, len, H));
    in.text_mask = text_mask(c, mask, n, len);
    in.enc[0] = upload(c, DTYPE_F32, image_tokens, 3, TENSOR_SHAPE(one_image ? 1 : n, T, cfg->vision_width));
    bert_forward(be, &c->m->text, &c->bert, &c->ar, &in, NULL);
    tensor cls = arena_f32(&c->ar, n, H), logits = arena_f32(&c->ar, n, 2);
    op_copy_rows(be, cls, H, c->bert.out, len * H, n, H, 0);
    op_linear_forward(be, logits, cls, c->m->itm_head.weight, c->m->itm_head.bias);
    return logits;
}

static tensor mlm_pass(albef_ctx *c, backend *be, const int32_t *ids, const int32_t *mask, int n, int len,
                       const float *image_tokens)
{
    const albef_config *cfg = &c->m->cfg;
    int64_t T = config_num_patches(cfg) + 1;
    bert_inputs in = {.mode = BERT_MULTI_MODAL, .n_enc = 1};
    in.ids = upload(c, DTYPE_I32, ids, 2, TENSOR_SHAPE(n, len));
    in.text_mask = text_mask(c, mask, n, len);
    in.enc[0] = upload(c, DTYPE_F32, image_tokens, 3, TENSOR_SHAPE(n, T, cfg->vision_width));
    bert_forward(be, &c->m->text, &c->bert, &c->ar, &in, NULL);
    bert_mlm_forward(be, &c->m->text, &c->head, &c->ar,
                     tensor_reshape(c->bert.out, 2, TENSOR_SHAPE((int64_t)n * len, cfg->bert.hidden_size)));
    return c->head.logits;
}

/* Runs every pass at its largest size on the null back end. */
static size_t measure(albef_ctx *c, int batch, int images_only)
{
    arena saved = c->ar;
    arena_init_measuring(&c->ar);
    backend *nb = backend_null_for(c->be);
    size_t peak = 0;
    tensor f;
    image_pass(c, nb, NULL, batch, &f);
    peak = c->ar.peak;
    if (!images_only) {
        arena_reset(&c->ar, 0);
        text_pass(c, nb, NULL, NULL, batch, c->max_len, &f);
        arena_reset(&c->ar, 0);
        itm_pass(c, nb, NULL, NULL, batch, c->max_len, NULL, 0);
        if (c->m->text.has_mlm_head) {
            arena_reset(&c->ar, 0);
            mlm_pass(c, nb, NULL, NULL, c->mlm_batch, c->max_len, NULL);
        }
        peak = c->ar.peak;
    }
    c->ar = saved;
    return peak;
}

/* Sizes the activation memory for the context's model. */
static int ctx_setup(albef_ctx *c, const albef_params *p)
{
    const albef_config *cfg = &c->m->cfg;
    c->max_batch = p->max_batch;
    c->max_len = p->max_text_len > cfg->bert.max_position_embeddings ? cfg->bert.max_position_embeddings
                                                                       : p->max_text_len;
    c->mlm_batch = p->max_batch / 4 > 0 ? p->max_batch / 4 : 1;
    int rc = vit_acts_init(&c->vit, &c->m->vit);
    rc = rc ? rc : bert_acts_init(&c->bert, &c->m->text);
    c->vit.inference = c->bert.inference = 1;
    if (!rc) {
        size_t one = measure(c, 1, 1), two = measure(c, 2, 1);
        c->bytes_per_image = two - one;
        size_t need = measure(c, c->max_batch, 0);
        log_info("activation memory: %.1f MiB for batches of %d (%.2f MiB per image at %d px)", need / 1048576.0,
                  c->max_batch, c->bytes_per_image / 1048576.0, cfg->image_res);
        rc = arena_init(&c->ar, c->be, need);
    }
    return rc;
}

int albef_load(const char *checkpoint, const albef_params *params, albef_ctx **out)
{
    *out = NULL;
    albef_params p = params ? *params : albef_params_default();
    if (p.max_batch <= 0 || p.max_text_len <= 0)
        return albef_error(ALBEF_ERR_INVALID, "max_batch and max_text_len must be positive");
    albef_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    c->m = &c->own;
    safetensors_file *st = NULL;
    int rc = weights_open(checkpoint, &st);
    albef_config cfg;
    if (!rc) {
        const char *json = safetensors_metadata_get(st, "config");
        if (json)
            rc = config_parse(json, checkpoint, &cfg);
        else if (p.config)
            rc = config_load(p.config, &cfg);
        else
            rc = albef_error(ALBEF_ERR_INVALID,
                             "%s: no 'config' in the metadata; name the model configuration (--config)", checkpoint);
    }
    int pretrain_layout = st && safetensors_find(st, "text_encoder.bert.embeddings.word_embeddings.weight") != NULL;
    if (st)
        safetensors_close(st);
    if (!rc)
        rc = backend_create(p.device ? p.device : "cpu", &c->be);
    if (!rc) {
        albef_model_options opt = {.layout = pretrain_layout ? LAYOUT_PRETRAIN : LAYOUT_RETRIEVAL};
        rc = albef_model_init(c->m, &cfg, c->be, &opt);
    }
    if (rc) {
        backend_destroy(c->be);
        free(c);
        return rc;
    }
    load_report rep;
    rc = albef_model_load(c->m, checkpoint, 1, &rep);
    if (!rc && rep.unexpected)
        log_debug("%s: %d tensors not used for inference (momentum model, queues, training state: %s)", checkpoint,
                  rep.unexpected, rep.unexpected_names);
    rc = rc ? rc : ctx_setup(c, &p);
    if (rc) {
        albef_free(c);
        return rc;
    }
    *out = c;
    return ALBEF_OK;
}

int albef_wrap_model(albef_model *model, backend *be, const albef_params *params, albef_ctx **out)
{
    *out = NULL;
    albef_params p = params ? *params : albef_params_default();
    if (p.max_batch <= 0 || p.max_text_len <= 0)
        return albef_error(ALBEF_ERR_INVALID, "max_batch and max_text_len must be positive");
    albef_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    c->m = model;
    c->borrowed = 1;
    c->be = be;
    int rc = ctx_setup(c, &p);
    if (rc) {
        albef_free(c);
        return rc;
    }
    *out = c;
    return ALBEF_OK;
}

void albef_free(albef_ctx *c)
{
    if (!c)
        return;
    arena_free(&c->ar);
    vit_acts_free(&c->vit);
    bert_acts_free(&c->bert);
    if (!c->borrowed) {
        albef_model_free(c->m);
        backend_destroy(c->be);
    }
    free(c);
}

static void download(albef_ctx *c, float *dst, tensor t)
{
    if (dst)
        c->be->ops->download(c->be, dst, t.data, tensor_nbytes(t));
}

int albef_embed_images(albef_ctx *c, const float *images, int n, float *feat, float *tokens)
{
    int64_t R = c->m->cfg.image_res, T = albef_image_tokens(c), Cv = c->m->cfg.vision_width;
    int64_t E = c->m->cfg.embed_dim;
    for (int i = 0; i < n; i += c->max_batch) {
        int b = n - i < c->max_batch ? n - i : c->max_batch;
        arena_reset(&c->ar, 0);
        tensor f;
        image_pass(c, c->be, images + (size_t)i * 3 * R * R, b, &f);
        download(c, feat ? feat + (size_t)i * E : NULL, f);
        download(c, tokens ? tokens + (size_t)i * T * Cv : NULL, c->vit.out);
    }
    return c->ar.overflow ? albef_error(ALBEF_ERR_NOMEM, "activation arena too small") : ALBEF_OK;
}

static int check_text(const albef_ctx *c, const int32_t *ids, int n, int len)
{
    if (len <= 0 || len > c->max_len)
        return albef_error(ALBEF_ERR_INVALID, "text length %d is outside 1..%d", len, c->max_len);
    for (int i = 0; ids && i < n * len; i++)
        if (ids[i] < 0 || ids[i] >= c->m->cfg.bert.vocab_size)
            return albef_error(ALBEF_ERR_INVALID, "token id %d at %d is outside the vocabulary (%d)", ids[i], i,
                               c->m->cfg.bert.vocab_size);
    return ALBEF_OK;
}

int albef_embed_texts(albef_ctx *c, const int32_t *ids, const int32_t *mask, int n, int len, float *feat,
                      float *tokens)
{
    int rc = check_text(c, ids, n, len);
    if (rc)
        return rc;
    int64_t H = c->m->cfg.bert.hidden_size, E = c->m->cfg.embed_dim;
    for (int i = 0; i < n; i += c->max_batch) {
        int b = n - i < c->max_batch ? n - i : c->max_batch;
        arena_reset(&c->ar, 0);
        tensor f;
        text_pass(c, c->be, ids + (size_t)i * len, mask ? mask + (size_t)i * len : NULL, b, len, &f);
        download(c, feat ? feat + (size_t)i * E : NULL, f);
        download(c, tokens ? tokens + (size_t)i * len * H : NULL, c->bert.out);
    }
    return ALBEF_OK;
}

void albef_itc_similarity(const float *img_feat, int n_img, const float *txt_feat, int n_txt, int dim, float *sim)
{
    backend *be = backend_cpu();
    op_matmul(be, tensor_f32(sim, n_img, n_txt), tensor_f32((void *)img_feat, n_img, dim),
              tensor_f32((void *)txt_feat, n_txt, dim), 0, 1, 1.0f, 0.0f);
}

/* ITM logits of n texts against n images, or against one image for all */
static int itm_logits(albef_ctx *c, const float *text_tokens, const int32_t *mask, int n, int len,
                      const float *image_tokens, int one_image, float *logits)
{
    int rc = check_text(c, NULL, n, len);
    if (rc)
        return rc;
    if (!c->m->itm_head.weight.data)
        return albef_error(ALBEF_ERR_UNSUPPORTED, "this model has no ITM head");
    int64_t H = c->m->cfg.bert.hidden_size, T = albef_image_tokens(c), Cv = c->m->cfg.vision_width;
    for (int i = 0; i < n; i += c->max_batch) {
        int b = n - i < c->max_batch ? n - i : c->max_batch;
        arena_reset(&c->ar, 0);
        const float *img = one_image ? image_tokens : image_tokens + (size_t)i * T * Cv;
        tensor l = itm_pass(c, c->be, text_tokens + (size_t)i * len * H, mask ? mask + (size_t)i * len : NULL, b,
                            len, img, one_image);
        download(c, logits + (size_t)i * 2, l);
    }
    return ALBEF_OK;
}

int albef_itm_logits(albef_ctx *c, const float *text_tokens, const int32_t *mask, int n, int len,
                     const float *image_tokens, float *logits)
{
    return itm_logits(c, text_tokens, mask, n, len, image_tokens, 0, logits);
}

int albef_itm_logits_one_image(albef_ctx *c, const float *text_tokens, const int32_t *mask, int n, int len,
                               const float *image_tokens, float *logits)
{
    return itm_logits(c, text_tokens, mask, n, len, image_tokens, 1, logits);
}

int albef_mlm_logits(albef_ctx *c, const int32_t *ids, const int32_t *mask, int n, int len,
                     const float *image_tokens, float *logits)
{
    int rc = check_text(c, ids, n, len);
    if (rc)
        return rc;
    if (!c->m->text.has_mlm_head)
        return albef_error(ALBEF_ERR_UNSUPPORTED, "this checkpoint has no MLM head (not a pre-training checkpoint)");
    int64_t T = albef_image_tokens(c), Cv = c->m->cfg.vision_width, V = c->m->cfg.bert.vocab_size;
    for (int i = 0; i < n; i += c->mlm_batch) {
        int b = n - i < c->mlm_batch ? n - i : c->mlm_batch;
        arena_reset(&c->ar, 0);
        tensor l = mlm_pass(c, c->be, ids + (size_t)i * len, mask ? mask + (size_t)i * len : NULL, b, len,
                            image_tokens + (size_t)i * T * Cv);
        download(c, logits + (size_t)i * len * V, l);
    }
    return ALBEF_OK;
}
