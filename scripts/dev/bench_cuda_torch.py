#!/usr/bin/python3
# The PyTorch side of bench/bench_cuda.c: a whole ALBEF pre-training step of
# the reference model (scripts/reference/albef_ref.py, albef-base, random
# weights) on the GPU, as model_pretrain.py runs it: momentum update, ITC
# against [batch | queue] with distillation, enqueue, ITM with hard negatives
# drawn from the in-batch similarities, MLM (15 %, 80/10/10) with the
# teacher's soft targets, backward, AdamW. Batch 64, 256 px, L = 25, queue
# 65536, no padding, as the C benchmark. Rows: fp32 (TF32 off), TF32, and
# bf16 autocast (the usual PyTorch mixed precision; fp32 weights).
#
#   python3 scripts/dev/bench_cuda_torch.py [--batch 64] [--steps 10] [--modes fp32,tf32,bf16]
#
# Prints one table: samples/s, ms per step, peak memory (torch.cuda). Run
# from the repository root on a machine with a GPU and PyTorch.
import argparse
import copy
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import albef_ref  # noqa: E402

CLS_ID, MASK_ID, FIRST_WORD = 101, 103, 1000
MOMENTUM_MODULES = ("visual_encoder", "vision_proj", "text_encoder", "text_proj")


def momentum_pairs(model, teacher):
    online = dict(model.named_parameters())
    return [(p_m, online[name]) for name, p_m in teacher.named_parameters()
            if name.split(".", 1)[0] in MOMENTUM_MODULES]


def make_inputs(cfg, B, L, dev):
    vocab = cfg["bert_config"]["vocab_size"]
    first = min(FIRST_WORD, vocab // 2)  # small vocabularies (the tiny config)
    ids = torch.empty(B, L, dtype=torch.int64)
    for b in range(B):
        ids[b, 0] = CLS_ID
        for t in range(1, L):
            ids[b, t] = first + (b * 7919 + t * 104729) % (vocab - first)
    R = cfg["image_res"]
    image = torch.randn(B, 3, R, R, generator=torch.Generator().manual_seed(7))
    return image.to(dev), ids.to(dev), torch.ones(B, L, dtype=torch.int64, device=dev)


def mask_tokens(ids, vocab, p):
    masked = (torch.rand(ids.shape, device=ids.device) < p) & (ids != CLS_ID)
    replaced = (torch.rand(ids.shape, device=ids.device) < 0.8) & masked
    randomised = (torch.rand(ids.shape, device=ids.device) < 0.5) & masked & ~replaced
    mlm_ids = torch.where(replaced, torch.full_like(ids, MASK_ID), ids)
    mlm_ids = torch.where(randomised, torch.randint_like(ids, vocab), mlm_ids)
    return mlm_ids, torch.where(masked, ids, torch.full_like(ids, -100))


def step(model, teacher, pairs, queues, opt, image, ids, mask, cfg, alpha, autocast):
    B = ids.shape[0]
    vocab = cfg["bert_config"]["vocab_size"]
    with torch.no_grad():
        model.temp.clamp_(0.001, 0.5)
        for p_m, p in pairs:
            p_m.mul_(cfg["momentum"]).add_(p, alpha=1 - cfg["momentum"])
    with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=autocast):
        image_embeds = model.vit(image)
        image_feat = model.image_feat(image_embeds)
        text_embeds = model.bert(ids, mask, mode="text")
        text_feat = model.text_feat(text_embeds)
        with torch.no_grad():
            image_embeds_m = teacher.vit(image)
            image_feat_m = teacher.image_feat(image_embeds_m)
            text_feat_m = teacher.text_feat(teacher.bert(ids, mask, mode="text"))
            image_feat_all = torch.cat([image_feat_m.t(), queues["image"].clone()], dim=1)
            text_feat_all = torch.cat([text_feat_m.t(), queues["text"].clone()], dim=1)
            sim_i2t_m = image_feat_m @ text_feat_all / model.temp
            sim_t2i_m = text_feat_m @ image_feat_all / model.temp
            onehot = torch.zeros_like(sim_i2t_m)
            onehot.fill_diagonal_(1)
            targets_i2t = alpha * F.softmax(sim_i2t_m, dim=1) + (1 - alpha) * onehot
            targets_t2i = alpha * F.softmax(sim_t2i_m, dim=1) + (1 - alpha) * onehot
        sim_i2t = image_feat @ text_feat_all / model.temp
        sim_t2i = text_feat @ image_feat_all / model.temp
        loss_ita = (-torch.sum(F.log_softmax(sim_i2t, dim=1) * targets_i2t, dim=1).mean()
                    - torch.sum(F.log_softmax(sim_t2i, dim=1) * targets_t2i, dim=1).mean()) / 2
        with torch.no_grad():  # enqueue
            ptr = queues["ptr"]
            queues["image"][:, ptr:ptr + B] = image_feat_m.t().float()
            queues["text"][:, ptr:ptr + B] = text_feat_m.t().float()
            queues["ptr"] = (ptr + B) % queues["image"].shape[1]
        pos = model.bert(mask=mask, mode="fusion", encoder_hidden_states=image_embeds, encoder_embeds=text_embeds)
        with torch.no_grad():
            w_i2t = F.softmax(sim_i2t[:, :B].float(), dim=1)
            w_t2i = F.softmax(sim_t2i[:, :B].float(), dim=1)
            w_i2t.fill_diagonal_(0)
            w_t2i.fill_diagonal_(0)
            neg_image = torch.multinomial(w_t2i + 1e-9, 1).squeeze(1)
            neg_text = torch.multinomial(w_i2t + 1e-9, 1).squeeze(1)
        neg = model.bert(mask=torch.cat([mask, mask[neg_text]]), mode="fusion",
                         encoder_hidden_states=torch.cat([image_embeds[neg_image], image_embeds]),
                         encoder_embeds=torch.cat([text_embeds, text_embeds[neg_text]]))
        itm_labels = torch.cat([torch.ones(B, dtype=torch.int64, device=ids.device),
                                torch.zeros(2 * B, dtype=torch.int64, device=ids.device)])
        loss_itm = F.cross_entropy(model.itm_logits(torch.cat([pos, neg])), itm_labels)
        mlm_ids, labels = mask_tokens(ids, vocab, cfg["mlm_probability"])
        with torch.no_grad():
            soft = F.softmax(teacher.mlm_logits(teacher.bert(mlm_ids, mask, mode="multi_modal",
                                                             encoder_hidden_states=image_embeds_m)), dim=-1)
        logits = model.mlm_logits(model.bert(mlm_ids, mask, mode="multi_modal", encoder_hidden_states=image_embeds))
        picked = labels != -100
        loss_mlm = ((1 - alpha) * F.cross_entropy(logits[picked], labels[picked])
                    - alpha * torch.sum(F.log_softmax(logits[picked], dim=-1) * soft[picked], dim=-1).mean())
        loss = loss_ita + loss_itm + loss_mlm
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def run(mode, args, dev):
    torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    torch.backends.cudnn.allow_tf32 = mode == "tf32"
    cfg = albef_ref.load_config(args.config)
    cfg.setdefault("momentum", 0.995)
    cfg.setdefault("mlm_probability", 0.15)
    model = albef_ref.AlbefPretrain(cfg).to(dev)
    albef_ref.init_weights(model, 1)
    teacher = copy.deepcopy(model)
    for p in teacher.parameters():
        p.requires_grad_(False)
    pairs = momentum_pairs(model, teacher)
    E, Q = cfg["embed_dim"], cfg["queue_size"]
    queues = {"image": F.normalize(torch.randn(E, Q, device=dev), dim=0),
              "text": F.normalize(torch.randn(E, Q, device=dev), dim=0), "ptr": 0}
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and not n.endswith(".bias")]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and not n.endswith(".bias"))]
    groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.02}]
    cuda = dev.type == "cuda"
    opt = torch.optim.AdamW(groups, lr=1e-5, fused=True) if cuda else torch.optim.AdamW(groups, lr=1e-5)
    image, ids, mask = make_inputs(cfg, args.batch, args.len, dev)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for s in range(args.steps + 2):
        sync()
        t0 = time.perf_counter()
        loss = step(model, teacher, pairs, queues, opt, image, ids, mask, cfg, 0.4, mode == "bf16")
        sync()
        if s >= 2:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    print(f"torch {mode:5s} {args.batch:6d} {args.batch / med:12.1f} samples/s {1e3 * med:9.1f} ms"
          f" {peak:8.2f} GiB   (loss {float(loss):.3f})", flush=True)
    del model, teacher, opt, queues
    if cuda:
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="testdata/configs/albef-base.json")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--len", type=int, default=25)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--modes", default="fp32,tf32,bf16")
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # cpu: a check of the script itself
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("bench_cuda_torch: skipped: no CUDA device")
        return
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    print(f"PyTorch {torch.__version__}, {name}: {os.path.basename(args.config)} pre-training step, "
          f"L = {args.len}")
    print(f"{'':11s} {'batch':>6s} {'rate':>12s} {'':9s} {'ms/step':>9s} {'':2s} {'peak GiB':>8s}")
    for mode in args.modes.split(","):
        run(mode, args, dev)


if __name__ == "__main__":
    main()
