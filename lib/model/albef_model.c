#include "model/albef_model.h"

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "io/pth.h"
#include "io/safetensors.h"
#include "model/pos_embed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int albef_model_init(albef_model *m, const albef_config *cfg, backend *be, const albef_model_options *opt)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->opt = *opt;
    m->be = be;
    params_init(&m->params);
    int rc = config_validate(cfg, "model configuration");
    if (rc)
        return rc;
    const char *sfx = opt->momentum_copy ? "_m" : "";
    int grads = opt->with_grads && !opt->momentum_copy;
    param_set *ps = &m->params;
    char name[64];

    snprintf(name, sizeof name, "visual_encoder%s", sfx);
    rc = vit_init(&m->vit, cfg, ps, name, grads);
    snprintf(name, sizeof name, "vision_proj%s", sfx);
    rc = rc ? rc
            : linear_register(ps, &m->vision_proj, grads ? &m->g_vision_proj : NULL, cfg->embed_dim,
                              cfg->vision_width, name);
    snprintf(name, sizeof name, "text_encoder%s", sfx);
    bert_options bo = {
        .prefix = name,
        .bert_prefix = opt->layout == LAYOUT_PRETRAIN,
        .mlm_head = opt->layout == LAYOUT_PRETRAIN,
        .with_grads = grads,
    };
    rc = rc ? rc : bert_init(&m->text, &cfg->bert, ps, &bo);
    snprintf(name, sizeof name, "text_proj%s", sfx);
    rc = rc ? rc
            : linear_register(ps, &m->text_proj, grads ? &m->g_text_proj : NULL, cfg->embed_dim,
                              cfg->bert.hidden_size, name);
    m->momentum_numel = ps->numel;
    if (!opt->momentum_copy) {
        rc = rc ? rc
                : linear_register(ps, &m->itm_head, grads ? &m->g_itm_head : NULL, 2, cfg->bert.hidden_size,
                                  "itm_head");
        /* a 0-dim tensor in the official files */
        rc = rc ? rc : params_add(ps, &m->temp, grads ? &m->g_temp : NULL, 0, NULL, "temp");
    }
    rc = rc ? rc : params_alloc(ps, be, grads);
    m->position_ids = malloc(sizeof(int64_t) * (size_t)cfg->bert.max_position_embeddings);
    if (!rc && !m->position_ids)
        rc = albef_error(ALBEF_ERR_NOMEM, "out of memory");
    for (int i = 0; !rc && i < cfg->bert.max_position_embeddings; i++)
        m->position_ids[i] = i;
    if (rc)
        albef_model_free(m);
    return rc;
}

void albef_model_free(albef_model *m)
{
    free(m->position_ids);
    m->position_ids = NULL;
    vit_free(&m->vit);
    bert_free(&m->text);
    params_free(&m->params);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static double truncated_normal(rng_state *r, double std)
{
    /* timm's trunc_normal_: N(0, std) cut at +-2 (absolute, not in stds) */
    for (;;) {
        double v = rng_normal(r) * std;
        if (v >= -2.0 && v <= 2.0)
            return v;
    }
}

void albef_model_init_weights(albef_model *m, uint64_t seed)
{
    param_set *ps = &m->params;
    float *host = calloc(ps->numel ? ps->numel : 1, sizeof(float));
    if (!host)
        return;
    rng_state r;
    for (int i = 0; i < ps->count; i++) {
        const param_info *p = &ps->items[i];
        if (p->alias_of >= 0)
            continue;
        float *dst = host + p->offset;
        rng_seed_stream(&r, seed, (uint64_t)i);
        int vit = !strncmp(p->name, "visual_encoder", 14);
        if (!strcmp(p->name, "temp")) {
            dst[0] = m->cfg.temp;
        } else if (ends_with(p->name, ".bias") || !strcmp(p->name, "itm_head.weight")) {
            /* zeros */
        } else if (p->ndim == 1 && ends_with(p->name, ".weight")) {
            for (size_t k = 0; k < p->numel; k++)
                dst[k] = 1.0f;
        } else {
            double std = vit ? m->cfg.vision_initializer_range : m->cfg.bert.initializer_range;
            for (size_t k = 0; k < p->numel; k++)
                dst[k] = (float)(vit ? truncated_normal(&r, std) : rng_normal(&r) * std);
            /* BERT zeroes the [PAD] embedding row */
            if (ends_with(p->name, "word_embeddings.weight")) {
                int64_t c = p->shape[1], pad = m->cfg.bert.pad_token_id;
                memset(dst + pad * c, 0, sizeof(float) * (size_t)c);
            }
        }
    }
    m->be->ops->upload(m->be, ps->values, host, ps->numel * sizeof(float));
    free(host);
}

/* ---- loading ------------------------------------------------------------- */

static void note_name(char *list, size_t cap, const char *name)
{
    size_t n = strlen(list);
    if (n + strlen(name) + 8 >= cap) {
        if (n + 5 < cap && !ends_with(list, "..."))
            strcat(list, ", ...");
        return;
    }
    if (n)
        strcat(list, ", ");
    strcat(list, name);
}

/* The file's name for a parameter: exact, or with "bert." inserted/removed
 * after the text encoder prefix (pretraining vs fine-tuned layouts). */
const safetensors_tensor *albef_model_find_tensor(const safetensors_file *st, const char *name)
{
    const safetensors_tensor *t = safetensors_find(st, name);
    if (t)
        return t;
    char alt[320];
    const char *bert = strstr(name, ".bert.");
    if (bert) {
        snprintf(alt, sizeof alt, "%.*s.%s", (int)(bert - name), name, bert + 6);
    } else {
        const char *dot = strchr(name, '.');
        if (!dot || strncmp(name, "text_encoder", 12) || !strncmp(dot, ".cls.", 5))
            return NULL;
        snprintf(alt, sizeof alt, "%.*s.bert%s", (int)(dot - name), name, dot);
    }
    return safetensors_find(st, alt);
}

static int is_pos_embed(const char *name) { return ends_with(name, ".pos_embed"); }

/* Reads file tensor t into parameter p of the host copy, interpolating
 * pos_embed when only its token count differs. */
static int load_tensor(const safetensors_file *st, const safetensors_tensor *t, const param_info *p, float *host,
                       load_report *rep)
{
    const char *path = safetensors_path(st);
    char shape_a[96], shape_b[96];
    int rc;
    int same_shape = t->ndim == p->ndim;
    for (int d = 0; same_shape && d < p->ndim; d++)
        same_shape = t->shape[d] == p->shape[d];
    float *dst = host + p->offset;
    if (same_shape) {
        rc = safetensors_tensor_to_f32(st, t, dst);
    } else if (is_pos_embed(p->name) && t->ndim == 3 && t->shape[0] == 1 && t->shape[2] == p->shape[2]) {
        float *src = malloc(sizeof(float) * t->numel);
        if (!src)
            return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", path);
        rc = safetensors_tensor_to_f32(st, t, src);
        if (!rc)
            rc = pos_embed_interpolate(src, (int)t->shape[1], dst, (int)p->shape[1], (int)p->shape[2]);
        free(src);
        if (!rc) {
            rep->interpolated++;
            log_info("%s: reshape position embedding %s from %lld to %lld tokens", path, p->name,
                     (long long)t->shape[1], (long long)p->shape[1]);
        }
    } else {
        rc = albef_error(ALBEF_ERR_INVALID, "%s: tensor '%s' has shape %s, the model expects %s", path, t->name,
                         safetensors_shape_str(shape_a, sizeof shape_a, t->ndim, t->shape),
                         safetensors_shape_str(shape_b, sizeof shape_b, p->ndim, p->shape));
    }
    if (rc)
        return albef_error_context(rc, "loading '%s': ", p->name);
    rep->loaded++;
    return ALBEF_OK;
}

int albef_model_load(albef_model *m, const char *path, int strict, load_report *report)
{
    load_report local;
    load_report *rep = report ? report : &local;
    memset(rep, 0, sizeof *rep);
    safetensors_file *st;
    int rc = weights_open(path, &st);
    if (rc)
        return rc;
    param_set *ps = &m->params;
    float *host = calloc(ps->numel ? ps->numel : 1, sizeof(float));
    char *used = calloc(safetensors_count(st) + 1, 1);
    if (!host || !used) {
        rc = albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    m->be->ops->download(m->be, host, ps->values, ps->numel * sizeof(float));
    for (int i = 0; i < ps->count; i++) {
        const param_info *p = &ps->items[i];
        const safetensors_tensor *t = albef_model_find_tensor(st, p->name);
        if (!t && p->alias_of >= 0)
            continue; /* the tied target's own name carries the data */
        if (!t) {
            /* a tied parameter is loaded when any of its names is present */
            int found_alias = 0;
            for (int j = 0; j < ps->count && !found_alias; j++)
                found_alias = ps->items[j].alias_of == i && albef_model_find_tensor(st, ps->items[j].name);
            if (found_alias)
                continue;
            rep->missing++;
            note_name(rep->missing_names, sizeof rep->missing_names, p->name);
            continue;
        }
        for (size_t k = 0; k < safetensors_count(st); k++)
            if (safetensors_tensor_at(st, k) == t)
                used[k] = 1;
        if (p->alias_of >= 0) {
            /* both names present: the target's copy wins; they should agree */
            continue;
        }
        rc = load_tensor(st, t, p, host, rep);
        if (rc)
            goto done;
    }
    for (size_t k = 0; k < safetensors_count(st); k++) {
        const char *name = safetensors_tensor_at(st, k)->name;
        if (!used[k] && !ends_with(name, "position_ids")) {
            rep->unexpected++;
            note_name(rep->unexpected_names, sizeof rep->unexpected_names, name);
        }
    }
    if (strict && rep->missing) {
        rc = albef_error(ALBEF_ERR_INVALID, "%s: %d parameter(s) missing: %s", path, rep->missing,
                         rep->missing_names);
        goto done;
    }
    m->be->ops->upload(m->be, ps->values, host, ps->numel * sizeof(float));
done:
    free(host);
    free(used);
    safetensors_close(st);
    return rc;
}

/* The model's name for a file tensor under the rules, or 0 when dropped. */
static int rename_tensor(const char *name, const name_rule *rules, int n_rules, char *out, size_t cap)
{
    for (int r = 0; r < n_rules; r++) {
        size_t n = strlen(rules[r].from);
        if (strncmp(name, rules[r].from, n))
            continue;
        if (!rules[r].to)
            return 0;
        snprintf(out, cap, "%s%s", rules[r].to, name + n);
        /* TensorFlow-era BERT names LayerNorm parameters gamma and beta */
        size_t len = strlen(out);
        if (len > 6 && !strcmp(out + len - 6, ".gamma"))
            snprintf(out + len - 6, cap - (len - 6), ".weight");
        else if (len > 5 && !strcmp(out + len - 5, ".beta"))
            snprintf(out + len - 5, cap - (len - 5), ".bias");
        return 1;
    }
    return 0;
}

int albef_model_load_renamed(albef_model *m, const char *path, const name_rule *rules, int n_rules,
                             load_report *report)
{
    load_report local;
    load_report *rep = report ? report : &local;
    memset(rep, 0, sizeof *rep);
    safetensors_file *st;
    int rc = weights_open(path, &st);
    if (rc)
        return rc;
    param_set *ps = &m->params;
    float *host = calloc(ps->numel ? ps->numel : 1, sizeof(float));
    if (!host) {
        safetensors_close(st);
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", path);
    }
    m->be->ops->download(m->be, host, ps->values, ps->numel * sizeof(float));
    for (size_t k = 0; k < safetensors_count(st) && !rc; k++) {
        const safetensors_tensor *t = safetensors_tensor_at(st, k);
        char name[320];
        int i = rename_tensor(t->name, rules, n_rules, name, sizeof name) ? params_index(ps, name) : -1;
        if (i >= 0 && ps->items[i].alias_of >= 0)
            i = ps->items[i].alias_of;
        if (i < 0) {
            if (!ends_with(t->name, "position_ids")) {
                rep->unexpected++;
                note_name(rep->unexpected_names, sizeof rep->unexpected_names, t->name);
            }
            continue;
        }
        rc = load_tensor(st, t, &ps->items[i], host, rep);
    }
    if (!rc)
        m->be->ops->upload(m->be, ps->values, host, ps->numel * sizeof(float));
    free(host);
    safetensors_close(st);
    return rc;
}

/* ---- saving --------------------------------------------------------------- */

float *albef_model_download(const albef_model *m)
{
    const param_set *ps = &m->params;
    float *host = malloc(sizeof(float) * (ps->numel ? ps->numel : 1));
    if (host)
        m->be->ops->download(m->be, host, ps->values, ps->numel * sizeof(float));
    return host;
}

int albef_model_add_tensors(const albef_model *m, safetensors_writer *w, const float *host)
{
    const param_set *ps = &m->params;
    int rc = ALBEF_OK;
    for (int i = 0; i < ps->count && !rc; i++) {
        const param_info *p = &ps->items[i];
        rc = safetensors_writer_add(w, p->name, DTYPE_F32, p->ndim, p->shape, host + p->offset);
    }
    /* transformers 4.8 keeps position_ids as a persistent buffer, so a strict
     * load_state_dict in PyTorch expects it */
    if (!rc) {
        char name[96];
        snprintf(name, sizeof name, "text_encoder%s%s.embeddings.position_ids", m->opt.momentum_copy ? "_m" : "",
                 m->opt.layout == LAYOUT_PRETRAIN ? ".bert" : "");
        rc = safetensors_writer_add(w, name, DTYPE_I64, 2,
                                    TENSOR_SHAPE(1, m->cfg.bert.max_position_embeddings), m->position_ids);
    }
    return rc;
}

int albef_model_save(const albef_model *m, const char *path)
{
    float *host = albef_model_download(m);
    safetensors_writer *w = NULL;
    char *config = NULL;
    if (!host)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", path);
    int rc = safetensors_writer_init(&w);
    rc = rc ? rc : albef_model_add_tensors(m, w, host);
    config = config_to_json(&m->cfg);
    if (!rc)
        rc = safetensors_writer_set_metadata(w, "config", config ? config : "{}");
    if (!rc)
        rc = safetensors_writer_set_metadata(w, "format", "albef");
    if (!rc)
        rc = safetensors_writer_write(w, path);
    safetensors_writer_free(w);
    free(config);
    free(host);
    return rc;
}
