/* Converting checkpoints between ALBEF's layouts (spec 6.3-6.5): the key
 * remaps each fine-tuning script applies to a pre-training checkpoint, the
 * names that are training state, and a model configuration told from the
 * tensors' shapes (official checkpoints carry none albef can read). */
#ifndef ALBEF_MODEL_CONVERT_H
#define ALBEF_MODEL_CONVERT_H

#include "io/safetensors.h"
#include "model/albef_model.h"
#include "model/config.h"

enum convert_task {
    CONVERT_PRETRAIN,  /* names as they are (Pretrain.py resuming) */
    CONVERT_RETRIEVAL, /* Retrieval.py, Grounding.py */
    CONVERT_VQA,       /* VQA.py */
    CONVERT_NLVR,      /* Pretrain_nlvr.py: the 18-layer text encoder */
    CONVERT_VE,        /* VE.py */
};

/* "pretrain", "retrieval", "vqa", "nlvr", "ve"; -1 for another string. */
int convert_task_parse(const char *s);
const char *convert_task_name(enum convert_task task);

#define CONVERT_NAME_MAX 320

typedef struct {
    int n;                        /* names the tensor goes under: 0 (dropped), 1 or 2 */
    char name[2][CONVERT_NAME_MAX];
    const char *dropped_why;      /* when n == 0 */
} convert_names;

/* Where tensor `name` of a pre-training checkpoint (text_encoder.bert.*,
 * text_encoder.cls.*) goes in the task's layout, as the task's script
 * renames it before load_state_dict; tensors the task's model lacks are
 * dropped. The scripts write 6 for the fusion layer; `fusion_layer` is that
 * number (6 for every released model). */
void convert_remap(enum convert_task task, int fusion_layer, const char *name, convert_names *out);

/* 1 when a checkpoint is in the pre-training layout (text_encoder.bert.*). */
int convert_is_pretrain_layout(const safetensors_file *st);

/* 1 for training state: momentum copies (*_m.*), the feature and index
 * queues, and albef's optimizer moments ("optimizer.*"). */
int convert_is_training_state(const char *name);

/* 1 for a name some ALBEF layout has (any task, online or momentum). */
int convert_is_known(const char *name);

/* The configuration of the model whose tensors `st` holds, over the
 * albef-base preset: widths, depths, vocabulary, positions, fusion layer,
 * image resolution (from pos_embed), embed_dim, queue_size and temp. Heads
 * are not visible in the shapes: 64 channels per head is assumed (BERT-base,
 * ViT-B). */
int convert_infer_config(const safetensors_file *st, albef_config *cfg);

/* The paper's starting point over m's current (random) weights: Hugging
 * Face BERT weights (bert-base-uncased: embeddings, the 12 layers without
 * cross-attention, the MLM head) and timm DeiT weights (the ViT, pos_embed
 * resized to the model's grid), each a .bin/.pth or a .safetensors; either
 * path may be NULL. The reports say what each file gave. */
int convert_load_bert_vit(albef_model *m, const char *bert, const char *vit, load_report *bert_rep,
                          load_report *vit_rep);

#endif
