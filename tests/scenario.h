/* The reference scenario (scripts/reference/README.md) on the C model:
 * ITC in batch, ITM over 2B rows with fixed negatives (image b+1 for text b),
 * MLM over labelled positions; loss = itc + itm + mlm; then backward.
 * Shared by the golden comparison and the finite-difference checks. */
#ifndef ALBEF_TESTS_SCENARIO_H
#define ALBEF_TESTS_SCENARIO_H

#include "model/albef_model.h"
#include "ops/arena.h"

typedef struct {
    int B, L, R, n_masked;
    /* host inputs */
    float *image;
    int32_t *ids, *mlm_ids, *mlm_labels_rows, *masked_rows;
    float *mask_add;
} scenario_inputs;

typedef struct {
    vit_acts vit;
    bert_acts text, fusion, mlm;
    mlm_head_acts head;
    /* forward results (arena tensors) */
    tensor image, ids, mlm_ids, text_mask, text_mask2, idx_text2, idx_img2, masked_rows, mlm_labels, itm_labels,
        diag_labels;
    tensor v_cls, img_proj, image_feat, img_norm, t_cls, txt_proj, text_feat, txt_norm;
    tensor raw_i2t, raw_t2i, sim_i2t, sim_t2i, loss_i2t, loss_t2i, dsim_i2t, dsim_t2i;
    tensor fusion_embeds, fusion_enc, m_cls, itm_logits, loss_itm_rows, ditm;
    tensor hid_rows, mlm_loss_rows, dmlm;
    tensor losses; /* (4): itc, itm, mlm, total */
} scenario_state;

/* Uploads the inputs and runs the forward pass; losses[0..3] hold
 * i2t/2, t2i/2, itm, mlm (means). dropout may be NULL. */
void scenario_forward(backend *be, albef_model *m, arena *ar, const scenario_inputs *in, scenario_state *s,
                      dropout_ctx *dropout);
void scenario_backward(backend *be, albef_model *m, arena *ar, const scenario_inputs *in, scenario_state *s);

/* Reads inputs.safetensors of a golden set (ids as I64, masks 0/1). */
int scenario_load_inputs(const char *path, const albef_config *cfg, scenario_inputs *in);
void scenario_free_inputs(scenario_inputs *in);

int scenario_state_init(scenario_state *s, const albef_model *m);
void scenario_state_free(scenario_state *s);

#endif
