/* ALBEF pre-training with momentum distillation (spec 2): one object that
 * owns the online model, its momentum copy, the feature queues, the AdamW
 * state and the activation memory, and runs training steps.
 *
 * A step, in the official order: clamp temp; student image and text
 * features; momentum update of the teacher; teacher features; ITC against
 * [batch | queue] with soft targets alpha * softmax(teacher) + (1 - alpha) *
 * one-hot; enqueue the teacher features; ITM on the positive pairs and on
 * 2B hard negatives drawn from the student's in-batch ITC softmax; MLM
 * (15 % masking, 80/10/10) with the teacher's MLM distribution as soft
 * targets; loss = itc + itm + mlm; backward; AdamW.
 *
 * The queues are kept as rows (B + Q, E): rows [0, B) hold the current
 * batch's momentum features and rows [B, B + Q) the queue, so the ITC
 * logits against [batch | queue] are one matrix product. Checkpoints store
 * them in the official layout, image_queue / text_queue (E, Q). */
#ifndef ALBEF_TRAIN_PRETRAIN_H
#define ALBEF_TRAIN_PRETRAIN_H

#include "core/rng.h"
#include "dist/comm.h"
#include "model/albef_model.h"
#include "ops/arena.h"

/* What the trainer trains: ALBEF pre-training (ITC + ITM + MLM), or the
 * retrieval fine-tuning of Retrieval.py (spec 5.1): ITC whose positives are
 * every caption of the same image (in the batch and in an idx_queue), ITM
 * whose negatives skip every pair of the same image, no MLM, no temperature
 * clamp, the retrieval layout (no "bert.", no MLM head). */
enum albef_task { TASK_PRETRAIN, TASK_RETRIEVAL };

typedef struct {
    enum albef_task task;
    int batch;          /* samples per step (B); the queue size must be a multiple */
    int max_len;        /* longest text (ALBEF pre-training: 25) */
    uint64_t seed;      /* drives masking, negatives, dropout, queue init */
    float hidden_dropout, attention_dropout; /* BERT's, 0.1; 0 for parity runs */
    int teacher_dropout; /* the official teacher runs in train mode, dropout on (1) */
    float weight_decay; /* 0.02 */
    float beta1, beta2, eps;
    comm *comm;         /* data parallel: gradients averaged, momentum features all-gathered
                         * into the queue (ALBEF's concat_all_gather); NULL: one process */
} pretrain_options;

pretrain_options pretrain_options_default(int batch);

/* The random choices of a step, normally drawn by the step itself (MLM
 * masking from the trainer's RNG on the host, ITM negatives on the device
 * from the step's seed, op itm_negatives); given here, they make a step
 * reproducible against another implementation. */
typedef struct {
    const int32_t *mlm_ids;       /* (B, L) masked input ids */
    const int32_t *mlm_labels;    /* (B, L) original id at masked positions, -100 elsewhere */
    const int32_t *neg_image_idx; /* (B) hard-negative image for each text */
    const int32_t *neg_text_idx;  /* (B) hard-negative text for each image */
} pretrain_choices;

typedef struct {
    const float *images;   /* (B, 3, R, R), normalised */
    const int32_t *ids;    /* (B, L), [CLS] first, [PAD] = pad_token_id after the text */
    const int32_t *mask;   /* (B, L) 1 for real tokens */
    int len;               /* L */
    float alpha;           /* distillation weight for this step */
    const pretrain_choices *choices; /* NULL: draw them */
    const int64_t *idx;    /* (B) image index of each sample (retrieval: captions of one image share it) */
    /* Training from random weights needs a gentler start (ALBEF itself
     * starts from BERT and DeiT): while no_queue is set, ITC contrasts the
     * batch alone (the queue keeps filling); itc_only leaves ITM and MLM out;
     * random_negatives draws ITM negatives uniformly from the other images
     * of the batch instead of from the ITC softmax. */
    int no_queue, itc_only, random_negatives;
} pretrain_batch;

typedef struct {
    float loss_ita, loss_itm, loss_mlm;
    float grad_norm;       /* of the gradients of this step, before the update */
    float temp;
    int masked_tokens;
} pretrain_stats;

typedef struct {
    albef_config cfg;
    pretrain_options opt;
    backend *be;
    albef_model online, momentum;
    tensor img_all, txt_all;   /* (B + Q, E) */
    tensor gathered;           /* (world * B, E): every rank's momentum features, for the queue */
    int64_t queue_ptr;
    int64_t *idx_queue;        /* (Q) host: image index of each queue entry, -100 when empty (retrieval) */
    float *adam_m, *adam_v;    /* back-end memory, the online arena's layout */
    uint8_t *adam_decay;       /* back-end memory, one flag per arena element: 1 where weight decay applies */
    int64_t adam_step;
    rng_state rng;
    uint64_t step_count;       /* forward passes run, for dropout seeds */
    int special_pad, special_cls, special_mask;
    /* activations */
    arena ar;                  /* kept for the backward pass */
    arena scratch;             /* teacher passes, reset after each */
    size_t ar_bytes, scratch_bytes;
    vit_acts vit, vit_m;
    bert_acts text, text_m, fusion, mlm, mlm_m;
    mlm_head_acts head, head_m;
    struct pretrain_buffers *buf;
    char *vocab_text;          /* the tokenizer's vocab.txt, stored in checkpoints (may be NULL) */
} pretrainer;

/* Builds the models (online with gradients, momentum = a copy), the queues
 * (random unit columns, as the official initialisation) and the optimizer
 * state, and sizes the activation memory for (batch, max_len). The online
 * weights start zero: initialise or load them, then call
 * pretrainer_sync_momentum() to copy them into the teacher. */
int pretrainer_init(pretrainer *t, const albef_config *cfg, backend *be, const pretrain_options *opt,
                    int cls_id, int mask_id);
void pretrainer_free(pretrainer *t);

/* Keeps a copy of the vocabulary text, which checkpoints then carry (their
 * "vocab" metadata), so that a checkpoint is enough to tokenise for it. */
int pretrainer_set_vocab(pretrainer *t, const char *vocab_text);

/* theta_m <- theta (ALBEF's copy_params). */
void pretrainer_sync_momentum(pretrainer *t);

/* The queues in the official layout, image_queue / text_queue (E, Q), and
 * the write position; used by checkpoints. */
int pretrainer_set_queues(pretrainer *t, const float *image_queue, const float *text_queue, int64_t ptr);
/* The retrieval task's idx_queue (Q), as the official [1, Q] int64 buffer. */
int pretrainer_set_idx_queue(pretrainer *t, const int64_t *idx_queue);
int pretrainer_get_queues(const pretrainer *t, float *image_queue, float *text_queue, int64_t *ptr);

/* The student's ITC logits image-to-[batch | queue] (B, B + Q) of the last
 * step, in back-end memory. */
tensor pretrainer_last_sim_i2t(const pretrainer *t);
tensor pretrainer_last_sim_t2i(const pretrainer *t);
/* The ITM sampling weights of the last step, (B, B) host memory: row i of
 * w_i2t weighs the texts for image i, row i of w_t2i the images for text i;
 * softmax of the in-batch student logits, zero at the diagonal (retrieval:
 * at every pair of the same image), not renormalised; all zero after a step
 * without ITM. They live on the device during the step: this call downloads
 * them (a synchronisation; for tests and inspection, not every step). The
 * pointers stay valid until the next call. */
void pretrainer_last_itm_weights(const pretrainer *t, const float **w_i2t, const float **w_t2i);

/* One step: forward, backward, AdamW at rate lr. */
int pretrainer_step(pretrainer *t, const pretrain_batch *b, float lr, pretrain_stats *stats);

/* Gradient accumulation: each micro-batch runs forward and backward (with
 * its own momentum update and enqueue, as a separate step would) and adds
 * loss_scale times its gradients; pretrainer_update then applies AdamW to
 * the sum and clears it. pretrainer_step = accumulate(1) + update. */
int pretrainer_accumulate(pretrainer *t, const pretrain_batch *b, float loss_scale, pretrain_stats *stats);
int pretrainer_update(pretrainer *t, float lr, float *grad_norm);
/* The losses, temperature and masked-token count of the last accumulated
 * micro-batch and the gradient norm of the last update, in one download.
 * Passing NULL stats and grad_norm above and calling this after the update
 * leaves one synchronisation per step, at its end. */
void pretrainer_last_stats(const pretrainer *t, pretrain_stats *stats);

/* Activation bytes per sample at this configuration and text length on back
 * end `be` (its attention layout), from a dry run. */
size_t pretrainer_bytes_per_sample(const backend *be, const albef_config *cfg, int max_len);

#endif
