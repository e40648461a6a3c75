/* Model configuration: the keys of ALBEF's YAML files (image_res, embed_dim,
 * temp, queue_size, momentum, alpha, ...) with the BERT configuration
 * (config_bert.json's keys) nested under "bert_config", as a JSON object.
 * Named presets: "albef-base" (the paper's model, 256 px pre-training),
 * "albef-base-384" (the same at the fine-tuning resolution) and "tiny" (a
 * few narrow layers at 64 px, for tests and demos). */
#ifndef ALBEF_MODEL_CONFIG_H
#define ALBEF_MODEL_CONFIG_H

typedef struct {
    int vocab_size;
    int hidden_size;
    int num_hidden_layers;
    int num_attention_heads;
    int intermediate_size;
    int max_position_embeddings;
    int type_vocab_size;
    int fusion_layer;  /* layers >= fusion_layer cross-attend the image */
    int encoder_width; /* width of the cross-attention keys/values input */
    int pad_token_id;
    float layer_norm_eps;
    float hidden_dropout_prob;
    float attention_probs_dropout_prob;
    float initializer_range;
} bert_config;

typedef struct {
    /* image encoder */
    int image_res;
    int patch_size;
    int vision_width;
    int vision_depth;
    int vision_num_heads;
    int vision_mlp_ratio;
    float vision_layer_norm_eps;
    float vision_initializer_range; /* trunc-normal std of the ViT's initial weights (timm: 0.02) */
    /* heads and the momentum-distillation objective */
    int embed_dim;
    float temp;
    int queue_size;
    float momentum;
    float alpha;
    float mlm_probability;
    bert_config bert;
} albef_config;

/* A preset name or a path to a JSON file. Missing keys take the albef-base
 * values; known keys of the wrong type or out of range are errors naming the
 * file and the key; other keys (training settings) are left to their users. */
int config_load(const char *name_or_path, albef_config *cfg);
int config_preset(const char *name, albef_config *cfg);
int config_parse(const char *json, const char *source, albef_config *cfg);

/* The configuration as JSON (malloc'ed), in the same layout config_parse reads. */
char *config_to_json(const albef_config *cfg);

/* Checks the numbers fit together (widths divisible by heads, image size by
 * patch size, fusion_layer <= layers, ...). */
int config_validate(const albef_config *cfg, const char *source);

static inline int config_num_patches(const albef_config *cfg)
{
    int g = cfg->image_res / cfg->patch_size;
    return g * g;
}

#endif
