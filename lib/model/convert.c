#include "model/convert.h"

#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const task_names[] = {"pretrain", "retrieval", "vqa", "nlvr", "ve"};

int convert_task_parse(const char *s)
{
    for (int i = 0; i < (int)(sizeof task_names / sizeof *task_names); i++)
        if (!strcmp(s, task_names[i]))
            return i;
    return -1;
}

const char *convert_task_name(enum convert_task task) { return task_names[task]; }

static int starts(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

__attribute__((format(printf, 2, 3))) static void add(convert_names *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->name[out->n++], CONVERT_NAME_MAX, fmt, ap);
    va_end(ap);
}

static void drop(convert_names *out, const char *why)
{
    out->n = 0;
    out->dropped_why = why;
}

/* The length of the first name component ("visual_encoder_m" of
 * "visual_encoder_m.cls_token"). */
static size_t head_len(const char *name)
{
    const char *dot = strchr(name, '.');
    return dot ? (size_t)(dot - name) : strlen(name);
}

static int is_momentum(const char *name)
{
    size_t n = head_len(name);
    return n > 2 && !strncmp(name + n - 2, "_m", 2);
}

static int is_queue(const char *name)
{
    return !strcmp(name, "image_queue") || !strcmp(name, "text_queue") || !strcmp(name, "queue_ptr") ||
           !strcmp(name, "idx_queue");
}

/* Text-encoder tensors of a pre-training checkpoint. */
static void remap_text(enum convert_task task, int f, const char *name, convert_names *out)
{
    int mom = starts(name, "text_encoder_m.");
    const char *te = mom ? "text_encoder_m" : "text_encoder", *m = mom ? "_m" : "";
    const char *rest = name + strlen(te) + 1;
    if (starts(rest, "cls.")) {
        if (task == CONVERT_VQA)
            add(out, "text_decoder%s.%s", m, rest); /* the decoder's MLM head */
        else
            drop(out, "no MLM head in the task's model");
        return;
    }
    if (!starts(rest, "bert.")) {
        add(out, "%s", name);
        return;
    }
    if (task == CONVERT_NLVR && mom) {
        drop(out, "no momentum model in NLVR");
        return;
    }
    const char *r = rest + 5; /* "embeddings.*", "encoder.layer.N.*" */
    int layer = -1;
    const char *after = "";
    if (starts(r, "encoder.layer.")) {
        char *end;
        long n = strtol(r + 14, &end, 10);
        if (end != r + 14 && *end == '.' && n >= 0 && n < 1000)
            layer = (int)n, after = end;
    }
    switch (task) {
    case CONVERT_VQA:
        add(out, "%s.%s", te, r);
        if (layer < 0)
            add(out, "text_decoder%s.bert.%s", m, r);
        else if (layer >= f)
            add(out, "text_decoder%s.bert.encoder.layer.%d%s", m, layer - f, after);
        return;
    case CONVERT_NLVR:
        if (layer < f) {
            add(out, "%s.%s", te, r);
        } else { /* each fusion layer twice: one per image of the pair */
            add(out, "%s.encoder.layer.%d%s", te, 2 * layer - f, after);
            add(out, "%s.encoder.layer.%d%s", te, 2 * layer - f + 1, after);
        }
        return;
    default:
        add(out, "%s.%s", te, r);
        return;
    }
}

void convert_remap(enum convert_task task, int fusion_layer, const char *name, convert_names *out)
{
    out->n = 0;
    out->dropped_why = NULL;
    if (task == CONVERT_PRETRAIN) {
        add(out, "%s", name);
        return;
    }
    if (starts(name, "text_encoder.") || starts(name, "text_encoder_m.")) {
        remap_text(task, fusion_layer, name, out);
        return;
    }
    if (task == CONVERT_RETRIEVAL) {
        add(out, "%s", name);
        return;
    }
    /* VQA, VE and NLVR models have no queues and no ITM head; VQA and VE no
     * projections or temperature; NLVR no momentum model. */
    if (is_queue(name))
        drop(out, "no feature queues in the task's model");
    else if (starts(name, "itm_head."))
        drop(out, "no ITM head in the task's model");
    else if (task == CONVERT_NLVR && is_momentum(name))
        drop(out, "no momentum model in NLVR");
    else if (task != CONVERT_NLVR && (starts(name, "vision_proj") || starts(name, "text_proj") || !strcmp(name, "temp")))
        drop(out, "no contrastive projections or temperature in the task's model");
    else
        add(out, "%s", name);
}

int convert_is_pretrain_layout(const safetensors_file *st)
{
    for (size_t i = 0; i < safetensors_count(st); i++)
        if (starts(safetensors_tensor_at(st, i)->name, "text_encoder.bert."))
            return 1;
    return 0;
}

int convert_is_training_state(const char *name)
{
    return is_momentum(name) || is_queue(name) || starts(name, "optimizer.");
}

int convert_is_known(const char *name)
{
    static const char *const heads[] = {"visual_encoder", "text_encoder", "text_decoder", "vision_proj",
                                        "text_proj",      "itm_head",     "cls_head",     "ta_head"};
    if (!strcmp(name, "temp") || is_queue(name) || starts(name, "optimizer."))
        return 1;
    size_t n = head_len(name);
    if (is_momentum(name))
        n -= 2;
    if (!name[n] && !is_momentum(name))
        return 0;
    for (size_t i = 0; i < sizeof heads / sizeof *heads; i++)
        if (strlen(heads[i]) == n && !strncmp(name, heads[i], n))
            return 1;
    return 0;
}

/* ---- configuration from shapes -------------------------------------------- */

/* The tensor under `name` with "text_encoder.bert." or "text_encoder." in front. */
static const safetensors_tensor *find_text(const safetensors_file *st, const char *name)
{
    char buf[CONVERT_NAME_MAX];
    snprintf(buf, sizeof buf, "text_encoder.bert.%s", name);
    const safetensors_tensor *t = safetensors_find(st, buf);
    if (!t) {
        snprintf(buf, sizeof buf, "text_encoder.%s", name);
        t = safetensors_find(st, buf);
    }
    return t;
}

/* Layers 0, 1, ... present under `fmt` (a "%d" then "%s" for the rest);
 * *first_with: the first layer with cross-attention, or -1. */
static int count_layers(const safetensors_file *st, const char *fmt, int *first_with)
{
    char buf[CONVERT_NAME_MAX];
    if (first_with)
        *first_with = -1;
    for (int n = 0;; n++) {
        snprintf(buf, sizeof buf, fmt, n, "");
        size_t len = strlen(buf);
        int has = 0;
        for (size_t i = 0; i < safetensors_count(st); i++) {
            const char *name = safetensors_tensor_at(st, i)->name;
            if (strncmp(name, buf, len))
                continue;
            has = 1;
            if (first_with && *first_with < 0 && starts(name + len, "crossattention."))
                *first_with = n;
        }
        if (!has)
            return n;
    }
}

int convert_infer_config(const safetensors_file *st, albef_config *cfg)
{
    const char *path = safetensors_path(st);
    int rc = config_preset("albef-base", cfg);
    if (rc)
        return rc;
    const safetensors_tensor *pos = safetensors_find(st, "visual_encoder.pos_embed");
    const safetensors_tensor *patch = safetensors_find(st, "visual_encoder.patch_embed.proj.weight");
    const safetensors_tensor *fc1 = safetensors_find(st, "visual_encoder.blocks.0.mlp.fc1.weight");
    const safetensors_tensor *words = find_text(st, "embeddings.word_embeddings.weight");
    const safetensors_tensor *positions = find_text(st, "embeddings.position_embeddings.weight");
    const safetensors_tensor *types = find_text(st, "embeddings.token_type_embeddings.weight");
    const safetensors_tensor *inter = find_text(st, "encoder.layer.0.intermediate.dense.weight");
    if (!pos || pos->ndim != 3 || !patch || patch->ndim != 4 || !fc1 || fc1->ndim != 2 || !words ||
        words->ndim != 2 || !positions || positions->ndim != 2 || !inter || inter->ndim != 2)
        return albef_error(ALBEF_ERR_INVALID,
                           "%s: not an ALBEF model (visual_encoder.pos_embed, patch_embed, blocks.0.mlp.fc1 and "
                           "the text encoder's embeddings and layer 0 are needed to tell its configuration)",
                           path);
    int C = (int)pos->shape[2], P = (int)patch->shape[2], grid = 0;
    while ((int64_t)(grid + 1) * (grid + 1) <= pos->shape[1] - 1)
        grid++;
    cfg->vision_width = C;
    cfg->patch_size = P;
    cfg->image_res = grid * P;
    cfg->vision_num_heads = C % 64 ? 1 : C / 64;
    cfg->vision_mlp_ratio = (int)(fc1->shape[0] / C);
    cfg->vision_depth = count_layers(st, "visual_encoder.blocks.%d.%s", NULL);
    bert_config *b = &cfg->bert;
    b->vocab_size = (int)words->shape[0];
    b->hidden_size = (int)words->shape[1];
    b->num_attention_heads = b->hidden_size % 64 ? 1 : b->hidden_size / 64;
    b->max_position_embeddings = (int)positions->shape[0];
    if (types && types->ndim == 2)
        b->type_vocab_size = (int)types->shape[0];
    b->intermediate_size = (int)inter->shape[0];
    const char *layer_fmt = safetensors_find(st, "text_encoder.bert.embeddings.word_embeddings.weight")
                                ? "text_encoder.bert.encoder.layer.%d.%s"
                                : "text_encoder.encoder.layer.%d.%s";
    int fusion;
    b->num_hidden_layers = count_layers(st, layer_fmt, &fusion);
    b->fusion_layer = fusion >= 0 ? fusion : b->num_hidden_layers;
    b->encoder_width = C;
    const safetensors_tensor *proj = safetensors_find(st, "vision_proj.weight");
    if (proj && proj->ndim == 2)
        cfg->embed_dim = (int)proj->shape[0];
    const safetensors_tensor *queue = safetensors_find(st, "image_queue");
    if (queue && queue->ndim == 2)
        cfg->queue_size = (int)queue->shape[1];
    const safetensors_tensor *temp = safetensors_find(st, "temp");
    float t;
    if (temp && temp->numel == 1 && dtype_is_float(temp->dtype) && !safetensors_tensor_to_f32(st, temp, &t))
        cfg->temp = t;
    return config_validate(cfg, path);
}

/* ---- BERT and DeiT initial weights ----------------------------------------- */

int convert_load_bert_vit(albef_model *m, const char *bert, const char *vit, load_report *bert_rep,
                          load_report *vit_rep)
{
    static const name_rule bert_rules[] = {
        {"bert.pooler.", NULL},          {"cls.seq_relationship.", NULL},
        {"bert.", "text_encoder.bert."}, {"cls.predictions.", "text_encoder.cls.predictions."},
        {"embeddings.", "text_encoder.bert.embeddings."}, {"encoder.", "text_encoder.bert.encoder."},
    };
    static const name_rule vit_rules[] = {
        {"head", NULL}, {"dist_token", NULL}, {"fc_norm.", NULL}, {"", "visual_encoder."},
    };
    int rc = ALBEF_OK;
    if (bert)
        rc = albef_model_load_renamed(m, bert, bert_rules, (int)(sizeof bert_rules / sizeof *bert_rules), bert_rep);
    if (!rc && vit)
        rc = albef_model_load_renamed(m, vit, vit_rules, (int)(sizeof vit_rules / sizeof *vit_rules), vit_rep);
    return rc;
}
