#!/usr/bin/python3
# Produces the golden set of two consecutive ALBEF retrieval fine-tuning steps
# (models/model_retrieval.py with Retrieval.py's loss = loss_ita + loss_itm):
# ITC whose positives are every entry of [batch | queue] with the same image
# index, mixed with the teacher's softmax; ITM on hard negatives drawn with
# every same-image pair masked out; no MLM; no temp clamp; the momentum
# update, the queue and idx_queue update, and AdamW. The C trainer
# (TASK_RETRIEVAL) must reproduce these numbers. The batches share the
# pre-training golden's code (pretrain_step_ref.py); the image indices are
# fixed so that captions of one image meet in the batch and in the queue.
# Writes into OUT:
#   config.json          the model config
#   weights.safetensors  initial online and momentum weights (official
#                        retrieval names), image_queue, text_queue, idx_queue,
#                        queue_ptr
#   inputs.safetensors   step0.* and step1.*: batch, image indices, negatives,
#                        alpha, lr
#   outputs.safetensors  step0.* and step1.*: features, similarities, targets,
#                        losses, gradients, parameters, momentum parameters,
#                        AdamW moments and queues after the step
# The committed set is testdata/reference/retrieval_step/ (see
# scripts/reference/STEP.md); regenerate it from the repository root with
#   /usr/bin/python3 scripts/reference/retrieval_step_ref.py \
#       --config testdata/reference/retrieval_step/config.json --out testdata/reference/retrieval_step
# --check-grads runs the self-check of pretrain_step_ref.py on this objective.
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import albef_ref  # noqa: E402
import pretrain_step_ref as step_ref  # noqa: E402
from make_goldens import checked_parameters, save_file, special_ids  # noqa: E402

FORMAT = "albef-reference-retrieval-step-v1"
BATCH = 4
# The image index of each sample, per step (cycled for --steps > 2). Step 0
# has two captions of image 3; step 1 two of image 6.
STEP_IDX = ((0, 3, 3, 5), (6, 2, 3, 6))
# idx_queue before step 0 (Q = 12; the official init is -100 everywhere).
# Step 0 reads 2 queue positives for image 0, 2 for image 3 and 1 for image 5,
# then overwrites entries 8..11 (images 2, 6, 0 and an empty one) with its own
# indices, so that step 1 finds image 3 in four queue entries and images 2
# and 6 in none.
INITIAL_IDX_QUEUE = (3, -100, 0, 7, 1, -100, 3, 5, 2, 6, 0, -100)
INITIAL_QUEUE_PTR = 8


def retrieval_step_forward(model, teacher, queues, inp, alpha, choose_negatives, teacher_temp=None):
    """model_retrieval.ALBEF.forward (distill on) after the momentum update:
    the loss of one step; reads the queues, does not write them. Arguments
    and results as pretrain_step_ref.step_forward; the enqueue arguments
    include the image indices."""
    dtype = model.temp.dtype
    image = inp["image"].to(dtype)
    ids, mask = inp["input_ids"], inp["attention_mask"]
    B = ids.shape[0]
    temp = model.temp
    temp_m = temp if teacher_temp is None else teacher_temp

    image_embeds, image_feat, text_embeds, text_feat = step_ref.student_features(model, image, ids, mask)

    # Every entry of [batch | queue] with this sample's image index is a
    # positive, with equal weight.
    idx = inp["idx"].view(-1, 1)                                              # (B, 1)
    idx_all = torch.cat([idx.t(), queues["idx_queue"].clone()], dim=1)        # (1, B+Q)
    pos_idx = torch.eq(idx, idx_all).to(dtype)                                # (B, B+Q)
    sim_targets = pos_idx / pos_idx.sum(1, keepdim=True)

    image_embeds_m, image_feat_m, text_feat_m, image_feat_all, text_feat_all = step_ref.teacher_features(
        teacher, queues, image, ids, mask)
    with torch.no_grad():
        sim_i2t_m = image_feat_m @ text_feat_all / temp_m                    # (B, B+Q)
        sim_t2i_m = text_feat_m @ image_feat_all / temp_m
        targets_i2t = alpha * F.softmax(sim_i2t_m, dim=1) + (1 - alpha) * sim_targets
        targets_t2i = alpha * F.softmax(sim_t2i_m, dim=1) + (1 - alpha) * sim_targets

    sim_i2t, sim_t2i, loss_i2t, loss_t2i, loss_ita = step_ref.itc_losses(
        image_feat, text_feat, image_feat_all, text_feat_all, temp, targets_i2t, targets_t2i)
    # (The official enqueue happens here; nothing below reads the queues.)

    with torch.no_grad():
        # The +1e-4 is the official code's; softmax ignores it.
        w_i2t = F.softmax(sim_i2t[:, :B] + 1e-4, dim=1)
        w_t2i = F.softmax(sim_t2i[:, :B] + 1e-4, dim=1)
        same_image = torch.eq(idx, idx.t())                                   # (B, B)
        w_i2t.masked_fill_(same_image, 0)
        w_t2i.masked_fill_(same_image, 0)
    itm_logits, loss_itm, negatives = step_ref.itm_loss(model, text_embeds, mask, image_embeds, w_i2t, w_t2i,
                                                        choose_negatives)

    loss = loss_ita + loss_itm
    out = {
        "temp_used": temp, "image_embeds": image_embeds, "text_embeds": text_embeds,
        "image_embeds_m": image_embeds_m,
        "image_feat": image_feat, "text_feat": text_feat, "image_feat_m": image_feat_m, "text_feat_m": text_feat_m,
        "sim_targets": sim_targets,
        "sim_i2t": sim_i2t, "sim_t2i": sim_t2i, "sim_i2t_m": sim_i2t_m, "sim_t2i_m": sim_t2i_m,
        "loss_i2t": loss_i2t, "loss_t2i": loss_t2i, "loss_ita": loss_ita,
        "w_i2t": w_i2t, "w_t2i": w_t2i, "itm_logits": itm_logits, "loss_itm": loss_itm,
        "loss": loss,
    }
    return out, loss, negatives, (image_feat_m, text_feat_m, inp["idx"])


def make_initial_state(cfg, args):
    """As the pre-training golden's, in the retrieval layout, plus idx_queue."""
    model, teacher, queues = step_ref.make_initial_state(cfg, args.seed, args.queue_ptr, albef_ref.AlbefRetrieval)
    queues["idx_queue"] = torch.tensor([INITIAL_IDX_QUEUE], dtype=torch.int64)
    return model, teacher, queues


def retrieval_checked_parameters(cfg):
    """The pre-training golden's list in the retrieval names, without the MLM head."""
    return [n.replace("text_encoder.bert.", "text_encoder.") for n in checked_parameters(cfg)
            if not n.startswith("text_encoder.cls.")]


RETRIEVAL = step_ref.Objective(initial_state=make_initial_state, forward=retrieval_step_forward,
                               clamps_temp=False, checked_parameters=retrieval_checked_parameters)


def main():
    ap = argparse.ArgumentParser(description="Writes the two-step ALBEF retrieval fine-tuning golden set "
                                             "(see scripts/reference/STEP.md).")
    ap.add_argument("--config", required=True, help="model config JSON (queue_size %d)" % len(INITIAL_IDX_QUEUE))
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--length", type=int, default=8, help="text length L, [CLS] included")
    ap.add_argument("--seed", type=int, default=0,
                    help="weights from SEED, momentum noise and queues from SEED+1, batches from SEED+2, "
                         "negatives from SEED+3")
    ap.add_argument("--steps", type=int, default=2,
                    help="consecutive steps (alpha and the image indices cycle; the committed golden has 2)")
    ap.add_argument("--check-grads", action="store_true",
                    help="also check gradients by finite differences in float64, the float32 run against "
                         "float64, and the update formulas")
    args = ap.parse_args()
    args.queue_ptr = INITIAL_QUEUE_PTR

    torch.set_num_threads(1)
    cfg = albef_ref.load_config(args.config)
    B, L, Q = BATCH, args.length, cfg["queue_size"]
    if Q != len(INITIAL_IDX_QUEUE):
        ap.error("queue_size must be %d (the fixed idx_queue)" % len(INITIAL_IDX_QUEUE))
    if L < 3 or L > cfg["bert_config"]["max_position_embeddings"]:
        ap.error("need 3 <= length <= max_position_embeddings")
    vocab = cfg["bert_config"]["vocab_size"]
    cls_id, pad_id, mask_id, _ = special_ids(vocab)
    momentum = cfg["momentum"]

    t0 = time.time()
    model, teacher, queues = make_initial_state(cfg, args)
    weights = step_ref.weights_tensors(model, teacher, queues)

    g_inputs = torch.Generator().manual_seed(args.seed + 2)
    step_inputs, lengths = [], []
    for k in range(args.steps):
        alpha = step_ref.STEP_ALPHAS[k % len(step_ref.STEP_ALPHAS)]
        lr = step_ref.STEP_LRS[k % len(step_ref.STEP_LRS)]
        inp, n = step_ref.make_batch(cfg, B, L, g_inputs)
        inp["idx"] = torch.tensor(STEP_IDX[k % len(STEP_IDX)], dtype=torch.int64)
        inp["alpha"], inp["lr"] = step_ref.f32(alpha), step_ref.f32(lr)
        step_inputs.append(inp)
        lengths.append(n)

    g_neg = torch.Generator().manual_seed(args.seed + 3)
    t1 = time.time()
    results, negatives = step_ref.run_steps(model, teacher, queues, step_inputs, momentum,
                                            lambda k, inp: step_ref.multinomial_negatives(g_neg), RETRIEVAL)
    t2 = time.time()
    for inp, (neg_image, neg_text) in zip(step_inputs, negatives):
        inp["neg_image_idx"], inp["neg_text_idx"] = neg_image, neg_text

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2) + "\n")
    common = {
        "format": FORMAT, "task": "retrieval", "seed": str(args.seed), "batch_size": str(B),
        "text_length": str(L), "queue_size": str(Q), "steps": str(len(step_inputs)),
        "initial_queue_ptr": str(args.queue_ptr), "cls_id": str(cls_id), "pad_id": str(pad_id),
        "mask_id": str(mask_id), "torch_version": torch.__version__,
    }
    inputs_out, outputs_out = {}, {}
    for k, (inp, r) in enumerate(zip(step_inputs, results)):
        scalars = {"alpha": torch.tensor(inp["alpha"]), "lr": torch.tensor(inp["lr"])}
        tensors = {n: v for n, v in inp.items() if n not in scalars}
        inputs_out.update(step_ref.prefixed("step%d." % k, {**tensors, **scalars}))
        outputs_out.update(step_ref.prefixed("step%d." % k, r))
    save_file(weights, os.path.join(args.out, "weights.safetensors"),
              metadata={**common, "config": json.dumps(cfg), "momentum_noise": repr(step_ref.MOMENTUM_NOISE)})
    save_file(inputs_out, os.path.join(args.out, "inputs.safetensors"),
              metadata={**common, "text_lengths": json.dumps(lengths)})
    save_file(outputs_out, os.path.join(args.out, "outputs.safetensors"), metadata=common)
    t3 = time.time()

    n_params = sum(p.numel() for p in model.parameters())
    print("wrote %s: %d parameters, batch %d, length %d, queue %d" % (args.out, n_params, B, L, Q))
    for k, r in enumerate(results):
        inp = step_inputs[k]
        positives = (r["sim_targets"] > 0).sum(1).tolist()
        print("  step%d: alpha %.3g lr %.3g  loss %.7f = ita %.7f + itm %.7f; temp %.7f; idx %s (positives %s); "
              "queue_ptr %d, idx_queue %s; neg_image_idx %s neg_text_idx %s" % (
                  k, inp["alpha"], inp["lr"], float(r["loss"]), float(r["loss_ita"]), float(r["loss_itm"]),
                  float(r["temp_used"]), inp["idx"].tolist(), positives, int(r["queue_ptr"][0]),
                  r["idx_queue"][0].tolist(), inp["neg_image_idx"].tolist(), inp["neg_text_idx"].tolist()))
    print("time: init %.1f s, steps %.1f s, write %.1f s" % (t1 - t0, t2 - t1, t3 - t2))
    for name in ("config.json", "weights.safetensors", "inputs.safetensors", "outputs.safetensors"):
        print("  %-20s %10d bytes" % (name, os.path.getsize(os.path.join(args.out, name))))
    if args.check_grads:
        worst_fd, worst_formula = step_ref.self_check(cfg, args, step_inputs, results, RETRIEVAL)
        if worst_fd > 1e-4 or worst_formula > 1e-6:
            print("FAILED: finite differences or update formulas disagree", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
