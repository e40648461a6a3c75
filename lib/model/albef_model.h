/* The ALBEF model: image encoder, text/fusion encoder (one BERT), the
 * contrastive projections, temperature and ITM head, with the official
 * state-dict names (spec 1.4, 6.3, 6.4), and loading/saving as safetensors.
 *
 * The same definition builds the online model and its momentum copy (names
 * with "_m", no itm_head and no temp). Parameters are registered in the
 * order visual_encoder, vision_proj, text_encoder, text_proj, [itm_head, temp],
 * so the momentum pairs of spec 2.6 are one prefix of the arena, updated by
 * one pass. */
#ifndef ALBEF_MODEL_ALBEF_MODEL_H
#define ALBEF_MODEL_ALBEF_MODEL_H

#include "io/safetensors.h"
#include "model/bert.h"
#include "model/config.h"
#include "model/vit.h"

enum albef_layout {
    LAYOUT_PRETRAIN,  /* text_encoder.bert.* + text_encoder.cls.predictions.* (ALBEF.pth) */
    LAYOUT_RETRIEVAL, /* text_encoder.* without "bert.", no MLM head (mscoco.pth, flickr30k.pth) */
};

typedef struct {
    enum albef_layout layout;
    int momentum_copy; /* the "_m" teacher: no itm_head, no temp, no gradients */
    int with_grads;
} albef_model_options;

typedef struct {
    albef_config cfg;
    albef_model_options opt;
    backend *be;
    param_set params;
    vit_model vit;
    bert_model text;
    linear_params vision_proj, text_proj, itm_head;    /* values */
    linear_params g_vision_proj, g_text_proj, g_itm_head; /* gradients */
    tensor temp, g_temp;                               /* (1) */
    size_t momentum_numel; /* elements of the arena prefix that the momentum copy mirrors */
    int64_t *position_ids;  /* 0..max_position-1, written with the weights */
} albef_model;

/* Registers and allocates the parameters (zeros; load or initialise next). */
int albef_model_init(albef_model *m, const albef_config *cfg, backend *be, const albef_model_options *opt);
void albef_model_free(albef_model *m);

/* Random initialisation as the official code (normal std initializer_range
 * for Linear/Embedding weights, trunc-normal 0.02 for the ViT, zero biases,
 * LayerNorm (1, 0), temp from the config), seeded; except the ITM head's
 * weight, which starts at zero. Retrieval ranks by the raw match logit
 * w1.h + b1 (ALBEF's protocol), and the loss only ever moves w1 - w0: the
 * two rows get opposite gradients, so w1 + w0 keeps its starting value. From
 * a random start that sum adds a fixed random projection of the fused
 * feature to every score (at the tiny preset as large as the learned part;
 * re-ranking fell below ITC alone); from zero the match logit is half the
 * learned log-odds plus a constant. */
void albef_model_init_weights(albef_model *m, uint64_t seed);

/* What loading a checkpoint found. */
typedef struct {
    int loaded;          /* parameters filled */
    int missing;         /* parameters the file lacks (left as they were) */
    int unexpected;      /* file tensors no parameter took (momentum copies, queues, ...) */
    int interpolated;    /* pos_embed resized to this model's grid */
    char missing_names[1024];    /* a comma-separated sample, for messages */
    char unexpected_names[1024];
} load_report;

/* Loads the parameters whose names (after the layout's renaming: "bert."
 * added or stripped, tied aliases, position_ids ignored) appear in the
 * safetensors file. Shapes must match, except pos_embed, which is
 * interpolated bicubically when the patch grid differs. With strict, a
 * missing parameter is an error; unexpected tensors never are. */
int albef_model_load(albef_model *m, const char *path, int strict, load_report *report);

/* Loading weights saved under other names: each file tensor is renamed by
 * the first rule whose `from` prefix it starts with (`to` replaces it; a
 * NULL `to` drops the tensor); LayerNorm "gamma"/"beta" become
 * "weight"/"bias". Parameters the file does not cover keep their values.
 * Used to start from Hugging Face BERT and timm DeiT weights. */
typedef struct {
    const char *from, *to;
} name_rule;
int albef_model_load_renamed(albef_model *m, const char *path, const name_rule *rules, int n_rules,
                             load_report *report);

/* Writes every parameter (tied names written twice, as the official files
 * have them, and position_ids) with the configuration in the metadata. */
int albef_model_save(const albef_model *m, const char *path);

/* The file tensor that parameter `name` loads from: the same name, or the
 * other layout's (with "bert." inserted or removed after the text encoder). */
const safetensors_tensor *albef_model_find_tensor(const safetensors_file *st, const char *name);

struct safetensors_writer;
/* Adds the parameters (and position_ids) to a writer being assembled, for
 * checkpoints that hold more than one model. `host` is a host copy of the
 * parameter arena that must outlive the write. */
int albef_model_add_tensors(const albef_model *m, struct safetensors_writer *w, const float *host);
/* A host copy of the parameter arena (malloc'ed), or NULL when out of memory. */
float *albef_model_download(const albef_model *m);

#endif
