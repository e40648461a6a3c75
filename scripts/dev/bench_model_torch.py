#!/usr/bin/python3
# The PyTorch side of bench/bench_model.c: the reference model of
# scripts/reference/albef_ref.py at the albef-base configuration (random
# weights), timed on the same passes, batch sizes and thread count as the C
# benchmark, in float32 on the CPU. Rows:
#   vit256, vit384  ViT-B/16 forward, images (B, 3, R, R)
#   text            text encoder (mode "text"), ids (B, L)
#   fusion          fusion encoder + ITM head, text tokens (B, L, H), image tokens (B, 257, C)
#   scenario        forward + backward of the reference scenario (ITC + ITM over 2B rows + MLM
#                   over the labelled positions), as tests/scenario.c does it
# Inference rows run under torch.no_grad(). Every row is called once to warm
# up before it is timed.
#
# By hand (from the repository root) it times the rows and prints one JSON
# object: {"torch_version", "threads", "openblas_threads", "peak_rss_kb",
# "rows": {NAME: {"batch", "iters", "best_s", "median_s", "rate"}}, "profile"}
#   /usr/bin/python3 scripts/dev/bench_model_torch.py --threads 2 --rows vit256,text
# (--profile adds "profile": the ops of one vit256 forward by self CPU time,
# torch.profiler, as [{"op", "seconds", "calls"}], largest first).
#
# With --serve, the C benchmark drives it so that its runs and ours alternate
# and see the same load on a shared machine. One JSON line answers each
# command line:
#   (start)           {"ready": true, "torch_version", "threads", "openblas_threads"}
#   run NAME N        prepares row NAME (and calls it once) if it is not the
#                     current row, then times N calls: {"row", "batch", "times": [s, ...]}
#   profile NAME      {"profile": [...]} for one call of row NAME
#   quit              {"peak_rss_kb"}, then exits
# Errors answer {"error": "..."}.
import argparse
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import albef_ref  # noqa: E402
from bench_serve import peak_rss_kb, pick, reply, serve, set_threads, summary, timed  # noqa: E402

ROWS = ("vit256", "vit384", "text", "fusion", "scenario")
CLS_ID, MASK_ID, FIRST_WORD = 101, 103, 1000


def init_like_c(model):
    """The initialisation of albef_model_init_weights (normal 0.02 weights,
    zero biases, LayerNorm (1, 0)): the values that flow through GELU, exp
    and erf are then of the same size on both sides."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
            elif isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.normal_(0.0, 0.02)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Embedding):
                m.weight.normal_(0.0, 0.02)
        for m in model.modules():
            if isinstance(m, albef_ref.VisionTransformer):
                m.cls_token.normal_(0.0, 0.02)
                m.pos_embed.normal_(0.0, 0.02)


def text_ids(batch, length, vocab):
    """The C benchmark's token ids: [CLS] then ordinary words, no padding."""
    ids = torch.empty(batch, length, dtype=torch.int64)
    for b in range(batch):
        ids[b, 0] = CLS_ID
        for t in range(1, length):
            ids[b, t] = FIRST_WORD + (b * 7919 + t * 104729) % (vocab - FIRST_WORD)
    return ids


def mlm_labels(ids):
    """Labelled positions as the C benchmark picks them: (t + b) % 7 == 1,
    t >= 1 (about 14%, near mlm_probability 0.15), replaced by [MASK]."""
    B, L = ids.shape
    labels = torch.full_like(ids, -100)
    mlm_ids = ids.clone()
    for b in range(B):
        for t in range(1, L):
            if (t + b) % 7 == 1:
                labels[b, t] = ids[b, t]
                mlm_ids[b, t] = MASK_ID
    return labels, mlm_ids


def scenario_step(model, image, ids, mask, mlm_ids, labels, itm_labels):
    """tests/scenario.c in torch: make_goldens.golden_forward, except that the
    MLM head runs on the labelled rows only, as the C scenario does; then
    backward."""
    model.clamp_temp()
    B = ids.shape[0]
    V = model.vit(image)
    image_feat = model.image_feat(V)
    T = model.bert(ids, mask, mode="text")
    text_feat = model.text_feat(T)
    sim_i2t = image_feat @ text_feat.t() / model.temp
    sim_t2i = text_feat @ image_feat.t() / model.temp
    targets = torch.arange(B)
    loss_itc = (F.cross_entropy(sim_i2t, targets) + F.cross_entropy(sim_t2i, targets)) / 2
    V_neg = torch.roll(V, shifts=-1, dims=0)
    M = model.bert(mask=torch.cat([mask, mask]), mode="fusion", encoder_hidden_states=torch.cat([V, V_neg]),
                   encoder_embeds=torch.cat([T, T]))
    loss_itm = F.cross_entropy(model.itm_logits(M), itm_labels)
    H = model.bert(mlm_ids, mask, mode="multi_modal", encoder_hidden_states=V)
    picked = labels != -100
    loss_mlm = F.cross_entropy(model.mlm_logits(H[picked]), labels[picked])
    loss = loss_itc + loss_itm + loss_mlm
    model.zero_grad(set_to_none=True)
    loss.backward()
    return loss


def profile_ops(fn, top=12):
    """Self CPU time per op of one call of fn, largest first."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "seconds": e.self_cpu_time_total * 1e-6, "calls": e.count} for e in events[:top]]


class Rows:
    """Builds the model once; prepare(name) returns (batch, fn), fn being one
    timed call of the row with its inputs made once."""

    def __init__(self, args):
        self.args = args
        self.cfg = albef_ref.load_config(args.config)
        self.model = albef_ref.AlbefPretrain(self.cfg)
        init_like_c(self.model)
        self.model.train()  # the reference has no dropout: train() and eval() run the same code

    def prepare(self, name):
        a, cfg, model = self.args, self.cfg, self.model
        bc = cfg["bert_config"]
        tokens = 1 + (cfg["image_res"] // cfg["patch_size"]) ** 2
        if name in ("vit256", "vit384"):
            if name == "vit256":
                vit, R, B = model.visual_encoder, cfg["image_res"], a.vit256_batch
            else:
                cfg384 = albef_ref.load_config(a.config_384)
                vit, R, B = albef_ref.VisionTransformer(cfg384), cfg384["image_res"], a.vit384_batch
                init_like_c(vit)
            image = torch.randn(B, 3, R, R)
            return B, no_grad(lambda: vit(image))
        if name == "text":
            B, L = a.text_batch, a.text_len
            ids, mask = text_ids(B, L, bc["vocab_size"]), torch.ones(B, L, dtype=torch.int64)
            return B, no_grad(lambda: model.bert(ids, mask, mode="text"))
        if name == "fusion":
            B, L = a.fusion_batch, a.text_len
            text = torch.randn(B, L, bc["hidden_size"])
            image = torch.randn(B, tokens, cfg["vision_width"])
            mask = torch.ones(B, L, dtype=torch.int64)
            return B, no_grad(lambda: model.itm_logits(
                model.bert(mask=mask, mode="fusion", encoder_hidden_states=image, encoder_embeds=text)))
        if name == "scenario":
            B, L = a.scenario_batch, a.scenario_len
            ids = text_ids(B, L, bc["vocab_size"])
            labels, mlm_ids = mlm_labels(ids)
            mask = torch.ones(B, L, dtype=torch.int64)
            image = torch.randn(B, 3, cfg["image_res"], cfg["image_res"])
            itm = torch.cat([torch.ones(B, dtype=torch.int64), torch.zeros(B, dtype=torch.int64)])
            return B, lambda: scenario_step(model, image, ids, mask, mlm_ids, labels, itm)
        raise ValueError("unknown row %r (known: %s)" % (name, ",".join(ROWS)))


def no_grad(fn):
    def call():
        with torch.no_grad():
            return fn()
    return call


def answer(rows):
    """The commands of the header comment: one row prepared at a time."""
    current, batch, fn = None, 0, None

    def command(words):
        nonlocal current, batch, fn
        if words[0] not in ("run", "profile") or len(words) != (3 if words[0] == "run" else 2):
            return None
        if words[1] != current:
            current, fn = None, None
            batch, fn = rows.prepare(words[1])
            current = words[1]
            fn()
        if words[0] == "run":
            return {"row": current, "batch": batch, "times": timed(fn, int(words[2]), 0.0, int(words[2]))}
        return {"profile": profile_ops(fn)}

    return command


def main():
    ap = argparse.ArgumentParser(description="The PyTorch side of bench/bench_model.c.")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--config", default="testdata/configs/albef-base.json")
    ap.add_argument("--config-384", default="testdata/configs/albef-base-384.json")
    ap.add_argument("--vit256-batch", type=int, default=4)
    ap.add_argument("--vit384-batch", type=int, default=2)
    ap.add_argument("--text-batch", type=int, default=32)
    ap.add_argument("--text-len", type=int, default=30)
    ap.add_argument("--fusion-batch", type=int, default=16)
    ap.add_argument("--scenario-batch", type=int, default=4)
    ap.add_argument("--scenario-len", type=int, default=25)
    ap.add_argument("--min-iters", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--max-iters", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--serve", action="store_true")
    args = ap.parse_args()

    info = set_threads(args.threads)
    torch.manual_seed(0)
    rows = Rows(args)
    if args.serve:
        serve(info, answer(rows))
        return

    result, profile = {}, None
    for name in pick(ap, args.rows, ROWS, "rows"):
        batch, fn = rows.prepare(name)
        fn()
        result[name] = summary(timed(fn, args.min_iters, args.min_time, args.max_iters), batch)
        if args.profile and name == "vit256":
            profile = profile_ops(fn)
        del fn
    out = dict(info, peak_rss_kb=peak_rss_kb(), rows=result)
    if profile is not None:
        out["profile"] = profile
    reply(out)


if __name__ == "__main__":
    main()
