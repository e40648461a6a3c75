/* The recorded pre-training steps of testdata/reference/step (see
 * scripts/reference/STEP.md): the configuration, weights and queues, each
 * step's batch with its recorded choices, and a pre-trainer set up from
 * them. Shared by the tests that run those steps on more than one back end
 * or precision; failures end the calling test (cmocka). */
#ifndef ALBEF_TESTS_STEP_FIXTURE_H
#define ALBEF_TESTS_STEP_FIXTURE_H

#include "io/safetensors.h"
#include "train/pretrain.h"

#include <stdint.h>

typedef struct {
    albef_config cfg;
    safetensors_file *w, *in;
    int B, L, cls, mask_id;
    int64_t E, Q, ptr;
    float *iq, *tq;
} step_fixture;

void step_fixture_open(step_fixture *f);
void step_fixture_close(step_fixture *f);

/* Step k's batch with its recorded choices (MLM masking, ITM negatives). */
typedef struct {
    float *image;
    int32_t *ids, *mask, *mlm_ids, *mlm_labels, *neg_img, *neg_txt;
    float lr;
    pretrain_choices ch;
    pretrain_batch b;
} step_batch;

void step_batch_read(const step_fixture *f, int k, step_batch *s);
void step_batch_free(step_batch *s);

/* pretrainer_init on `be`, then the fixture's weights in the online and
 * momentum models and its queues. */
void step_pretrainer_init(pretrainer *t, backend *be, const step_fixture *f, const pretrain_options *opt);

/* An I64 tensor of n elements read as int32 (malloc'ed). */
int32_t *step_read_ints(safetensors_file *st, const char *name, size_t n);

#endif
