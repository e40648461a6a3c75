#include "model/config.h"

#include "core/error.h"
#include "core/file.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const albef_config albef_base = {
    .image_res = 256,
    .patch_size = 16,
    .vision_width = 768,
    .vision_depth = 12,
    .vision_num_heads = 12,
    .vision_mlp_ratio = 4,
    .vision_layer_norm_eps = 1e-6f,
    .vision_initializer_range = 0.02f,
    .embed_dim = 256,
    .temp = 0.07f,
    .queue_size = 65536,
    .momentum = 0.995f,
    .alpha = 0.4f,
    .mlm_probability = 0.15f,
    .bert =
        {
            .vocab_size = 30522,
            .hidden_size = 768,
            .num_hidden_layers = 12,
            .num_attention_heads = 12,
            .intermediate_size = 3072,
            .max_position_embeddings = 512,
            .type_vocab_size = 2,
            .fusion_layer = 6,
            .encoder_width = 768,
            .pad_token_id = 0,
            .layer_norm_eps = 1e-12f,
            .hidden_dropout_prob = 0.1f,
            .attention_probs_dropout_prob = 0.1f,
            .initializer_range = 0.02f,
        },
};

int config_preset(const char *name, albef_config *cfg)
{
    *cfg = albef_base;
    if (!strcmp(name, "albef-base"))
        return ALBEF_OK;
    if (!strcmp(name, "albef-base-384")) {
        cfg->image_res = 384;
        return ALBEF_OK;
    }
    if (!strcmp(name, "tiny")) {
        cfg->image_res = 64;
        cfg->vision_width = 64;
        cfg->vision_depth = 2;
        cfg->vision_num_heads = 2;
        cfg->embed_dim = 32;
        cfg->queue_size = 256;
        cfg->bert.vocab_size = 512;
        cfg->bert.hidden_size = 64;
        cfg->bert.num_hidden_layers = 4;
        cfg->bert.num_attention_heads = 2;
        cfg->bert.intermediate_size = 256;
        cfg->bert.max_position_embeddings = 64;
        cfg->bert.fusion_layer = 2;
        cfg->bert.encoder_width = 64;
        /* At width 64, BERT's 0.02 leaves the attention path ~3 % of the
         * residual stream: every caption then gives the same [CLS] feature
         * and contrastive learning from scratch never starts. */
        cfg->bert.initializer_range = 0.2f;
        cfg->vision_initializer_range = 0.2f;
        return ALBEF_OK;
    }
    return albef_error(ALBEF_ERR_INVALID, "unknown configuration preset '%s' (presets: albef-base, albef-base-384, tiny)",
                       name);
}

/* Reads an optional number into *dst; a present key of another type is an error. */
static int get_number(const cJSON *obj, const char *key, double *dst, const char *source, const char *prefix)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item)
        return ALBEF_OK;
    if (!cJSON_IsNumber(item))
        return albef_error(ALBEF_ERR_INVALID, "%s: '%s%s' must be a number", source, prefix, key);
    *dst = item->valuedouble;
    return ALBEF_OK;
}

static int get_int(const cJSON *obj, const char *key, int *dst, const char *source, const char *prefix)
{
    double v = *dst;
    int rc = get_number(obj, key, &v, source, prefix);
    if (rc)
        return rc;
    if (v != floor(v) || v < 0 || v > 1e9)
        return albef_error(ALBEF_ERR_INVALID, "%s: '%s%s' must be a non-negative integer, got %g", source, prefix,
                           key, v);
    *dst = (int)v;
    return ALBEF_OK;
}

static int get_float(const cJSON *obj, const char *key, float *dst, const char *source, const char *prefix)
{
    double v = *dst;
    int rc = get_number(obj, key, &v, source, prefix);
    if (rc)
        return rc;
    *dst = (float)v;
    return ALBEF_OK;
}

static int parse_bert(const cJSON *b, bert_config *bc, const char *source)
{
    const char *p = "bert_config.";
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(b, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu")))
        return albef_error(ALBEF_ERR_UNSUPPORTED, "%s: 'bert_config.hidden_act' must be \"gelu\" (exact GELU)", source);
    int rc = 0;
    rc = rc ? rc : get_int(b, "vocab_size", &bc->vocab_size, source, p);
    rc = rc ? rc : get_int(b, "hidden_size", &bc->hidden_size, source, p);
    rc = rc ? rc : get_int(b, "num_hidden_layers", &bc->num_hidden_layers, source, p);
    rc = rc ? rc : get_int(b, "num_attention_heads", &bc->num_attention_heads, source, p);
    rc = rc ? rc : get_int(b, "intermediate_size", &bc->intermediate_size, source, p);
    rc = rc ? rc : get_int(b, "max_position_embeddings", &bc->max_position_embeddings, source, p);
    rc = rc ? rc : get_int(b, "type_vocab_size", &bc->type_vocab_size, source, p);
    rc = rc ? rc : get_int(b, "fusion_layer", &bc->fusion_layer, source, p);
    rc = rc ? rc : get_int(b, "encoder_width", &bc->encoder_width, source, p);
    rc = rc ? rc : get_int(b, "pad_token_id", &bc->pad_token_id, source, p);
    rc = rc ? rc : get_float(b, "layer_norm_eps", &bc->layer_norm_eps, source, p);
    rc = rc ? rc : get_float(b, "hidden_dropout_prob", &bc->hidden_dropout_prob, source, p);
    rc = rc ? rc : get_float(b, "attention_probs_dropout_prob", &bc->attention_probs_dropout_prob, source, p);
    rc = rc ? rc : get_float(b, "initializer_range", &bc->initializer_range, source, p);
    return rc;
}

int config_parse(const char *json, const char *source, albef_config *cfg)
{
    *cfg = albef_base;
    cJSON *root = cJSON_Parse(json);
    if (!root)
        return albef_error(ALBEF_ERR_INVALID, "%s: not valid JSON", source);
    int rc = ALBEF_OK;
    if (!cJSON_IsObject(root)) {
        rc = albef_error(ALBEF_ERR_INVALID, "%s: a configuration must be a JSON object", source);
        goto done;
    }
    rc = rc ? rc : get_int(root, "image_res", &cfg->image_res, source, "");
    rc = rc ? rc : get_int(root, "patch_size", &cfg->patch_size, source, "");
    rc = rc ? rc : get_int(root, "vision_width", &cfg->vision_width, source, "");
    rc = rc ? rc : get_int(root, "vision_depth", &cfg->vision_depth, source, "");
    rc = rc ? rc : get_int(root, "vision_num_heads", &cfg->vision_num_heads, source, "");
    rc = rc ? rc : get_int(root, "vision_mlp_ratio", &cfg->vision_mlp_ratio, source, "");
    rc = rc ? rc : get_float(root, "vision_layer_norm_eps", &cfg->vision_layer_norm_eps, source, "");
    rc = rc ? rc : get_float(root, "vision_initializer_range", &cfg->vision_initializer_range, source, "");
    rc = rc ? rc : get_int(root, "embed_dim", &cfg->embed_dim, source, "");
    rc = rc ? rc : get_float(root, "temp", &cfg->temp, source, "");
    rc = rc ? rc : get_int(root, "queue_size", &cfg->queue_size, source, "");
    rc = rc ? rc : get_float(root, "momentum", &cfg->momentum, source, "");
    rc = rc ? rc : get_float(root, "alpha", &cfg->alpha, source, "");
    rc = rc ? rc : get_float(root, "mlm_probability", &cfg->mlm_probability, source, "");
    if (rc)
        goto done;
    const cJSON *bert = cJSON_GetObjectItemCaseSensitive(root, "bert_config");
    if (bert && cJSON_IsString(bert)) {
        rc = albef_error(ALBEF_ERR_UNSUPPORTED,
                         "%s: 'bert_config' is a path (\"%s\"); put config_bert.json's keys inline as an object",
                         source, bert->valuestring);
        goto done;
    }
    if (bert && !cJSON_IsObject(bert)) {
        rc = albef_error(ALBEF_ERR_INVALID, "%s: 'bert_config' must be an object", source);
        goto done;
    }
    if (bert)
        rc = parse_bert(bert, &cfg->bert, source);
    if (!rc)
        rc = config_validate(cfg, source);
done:
    cJSON_Delete(root);
    return rc;
}

int config_load(const char *name_or_path, albef_config *cfg)
{
    if (!strchr(name_or_path, '/') && !strstr(name_or_path, ".json"))
        return config_preset(name_or_path, cfg);
    char *text;
    int rc = file_read_all(name_or_path, &text, NULL);
    if (rc)
        return rc;
    rc = config_parse(text, name_or_path, cfg);
    free(text);
    return rc;
}

int config_validate(const albef_config *c, const char *source)
{
#define REQUIRE(cond, ...)                                                                                          \
    do {                                                                                                            \
        if (!(cond))                                                                                                \
            return albef_error(ALBEF_ERR_INVALID, __VA_ARGS__);                                                     \
    } while (0)
    const bert_config *b = &c->bert;
    REQUIRE(c->patch_size > 0 && c->image_res > 0 && c->image_res % c->patch_size == 0,
            "%s: image_res %d must be a positive multiple of patch_size %d", source, c->image_res, c->patch_size);
    REQUIRE(c->vision_width > 0 && c->vision_num_heads > 0 && c->vision_width % c->vision_num_heads == 0,
            "%s: vision_width %d must be divisible by vision_num_heads %d", source, c->vision_width,
            c->vision_num_heads);
    REQUIRE(c->vision_depth > 0 && c->vision_mlp_ratio > 0, "%s: vision_depth and vision_mlp_ratio must be positive",
            source);
    REQUIRE(b->hidden_size > 0 && b->num_attention_heads > 0 && b->hidden_size % b->num_attention_heads == 0,
            "%s: bert_config.hidden_size %d must be divisible by num_attention_heads %d", source, b->hidden_size,
            b->num_attention_heads);
    REQUIRE(b->num_hidden_layers > 0 && b->fusion_layer <= b->num_hidden_layers,
            "%s: bert_config.fusion_layer %d must be at most num_hidden_layers %d", source, b->fusion_layer,
            b->num_hidden_layers);
    REQUIRE(b->encoder_width == c->vision_width,
            "%s: bert_config.encoder_width %d must equal vision_width %d (cross-attention reads the image tokens)",
            source, b->encoder_width, c->vision_width);
    REQUIRE(b->vocab_size > 0 && b->max_position_embeddings > 0 && b->type_vocab_size > 0 && b->intermediate_size > 0,
            "%s: bert_config sizes must be positive", source);
    REQUIRE(c->embed_dim > 0, "%s: embed_dim must be positive", source);
    REQUIRE(c->temp > 0, "%s: temp must be positive", source);
    REQUIRE(b->hidden_dropout_prob >= 0 && b->hidden_dropout_prob < 1 && b->attention_probs_dropout_prob >= 0 &&
                b->attention_probs_dropout_prob < 1,
            "%s: dropout probabilities must be in [0, 1)", source);
    return ALBEF_OK;
#undef REQUIRE
}

/* A float as the shortest decimal that reads back to it, so that 1e-6 is
 * written as 1e-06 rather than 9.9999999747524271e-07. */
static double short_float(float f)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", f);
    return strtod(buf, NULL);
}

char *config_to_json(const albef_config *c)
{
    cJSON *root = cJSON_CreateObject(), *b = cJSON_CreateObject();
    const bert_config *bc = &c->bert;
    cJSON_AddNumberToObject(root, "image_res", c->image_res);
    cJSON_AddNumberToObject(root, "patch_size", c->patch_size);
    cJSON_AddNumberToObject(root, "vision_width", c->vision_width);
    cJSON_AddNumberToObject(root, "vision_depth", c->vision_depth);
    cJSON_AddNumberToObject(root, "vision_num_heads", c->vision_num_heads);
    cJSON_AddNumberToObject(root, "vision_mlp_ratio", c->vision_mlp_ratio);
    cJSON_AddNumberToObject(root, "vision_layer_norm_eps", short_float(c->vision_layer_norm_eps));
    cJSON_AddNumberToObject(root, "vision_initializer_range", short_float(c->vision_initializer_range));
    cJSON_AddNumberToObject(root, "embed_dim", c->embed_dim);
    cJSON_AddNumberToObject(root, "temp", short_float(c->temp));
    cJSON_AddNumberToObject(root, "queue_size", c->queue_size);
    cJSON_AddNumberToObject(root, "momentum", short_float(c->momentum));
    cJSON_AddNumberToObject(root, "alpha", short_float(c->alpha));
    cJSON_AddNumberToObject(root, "mlm_probability", short_float(c->mlm_probability));
    cJSON_AddNumberToObject(b, "vocab_size", bc->vocab_size);
    cJSON_AddNumberToObject(b, "hidden_size", bc->hidden_size);
    cJSON_AddNumberToObject(b, "num_hidden_layers", bc->num_hidden_layers);
    cJSON_AddNumberToObject(b, "num_attention_heads", bc->num_attention_heads);
    cJSON_AddNumberToObject(b, "intermediate_size", bc->intermediate_size);
    cJSON_AddStringToObject(b, "hidden_act", "gelu");
    cJSON_AddNumberToObject(b, "hidden_dropout_prob", short_float(bc->hidden_dropout_prob));
    cJSON_AddNumberToObject(b, "attention_probs_dropout_prob", short_float(bc->attention_probs_dropout_prob));
    cJSON_AddNumberToObject(b, "max_position_embeddings", bc->max_position_embeddings);
    cJSON_AddNumberToObject(b, "type_vocab_size", bc->type_vocab_size);
    cJSON_AddNumberToObject(b, "layer_norm_eps", short_float(bc->layer_norm_eps));
    cJSON_AddNumberToObject(b, "fusion_layer", bc->fusion_layer);
    cJSON_AddNumberToObject(b, "encoder_width", bc->encoder_width);
    cJSON_AddNumberToObject(b, "pad_token_id", bc->pad_token_id);
    cJSON_AddNumberToObject(b, "initializer_range", short_float(bc->initializer_range));
    cJSON_AddItemToObject(root, "bert_config", b);
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}
