#!/usr/bin/python3
# The PyTorch side of bench/bench_pretrain.c: one full ALBEF pre-training
# step of the reference (scripts/reference/pretrain_step_ref.py), timed at the
# same configurations, batch sizes, text length and thread count as the C
# benchmark, in float32 on the CPU. A step: MLM masking (15 %, 80/10/10),
# temp clamp, momentum update, student and teacher forward, ITC against
# [batch | queue] with soft targets, ITM on hard negatives drawn with
# torch.multinomial, MLM with distillation (logits over every position, as
# the official model computes them), backward, enqueue, AdamW with ALBEF's
# two groups. Random weights (bench_model_torch.init_like_c), N(0, 1) images
# (as if normalised), the C benchmark's token ids (no padding), alpha from the
# config, lr 1e-4. The reference has no dropout.
#
# Presets are config files (the C benchmark writes its own configs and passes
# them); by hand, from the repository root, it times each and prints one JSON
# object {"torch_version", "threads", "openblas_threads",
# "presets": {NAME: {"batch", "iters", "best_s", "median_s", "rate", "peak_rss_kb"}}}:
#   /usr/bin/python3 scripts/dev/bench_pretrain_torch.py --threads 2 --presets tiny
#   /usr/bin/python3 scripts/dev/bench_pretrain_torch.py --presets base --base-batch 2 --min-iters 1
#
# With --serve, the C benchmark drives it so that its steps and ours
# alternate and see the same load on a shared machine. One JSON line answers
# each command line:
#   (start)       {"ready": true, "torch_version", "threads", "openblas_threads"}
#   run NAME N    builds preset NAME (dropping the previous one) and runs one
#                 warm-up step if NAME is not the current preset, then times N
#                 steps: {"preset", "batch", "times": [s, ...], "peak_rss_kb"}
#   quit          {"peak_rss_kb"}, then exits
# Errors answer {"error": "..."}.
import argparse
import copy
import gc
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import albef_ref  # noqa: E402
import pretrain_step_ref as step_ref  # noqa: E402
from bench_model_torch import init_like_c  # noqa: E402
from bench_serve import peak_rss_kb, pick, reply, serve, set_threads, summary, timed  # noqa: E402
from make_goldens import special_ids  # noqa: E402

PRESETS = ("tiny", "base")
LR = 1e-4


def text_ids(batch, length, vocab):
    """The C benchmark's ids: [CLS] then ordinary words, no padding."""
    cls_id, _, _, first_word = special_ids(vocab)
    ids = torch.empty(batch, length, dtype=torch.int64)
    for b in range(batch):
        ids[b, 0] = cls_id
        for t in range(1, length):
            ids[b, t] = first_word + (b * 7919 + t * 104729) % (vocab - first_word)
    return ids


class Trainer:
    """Online model, teacher, queues and AdamW of one preset, and its step."""

    def __init__(self, cfg, batch, length, seed=0):
        Q = cfg["queue_size"]
        if Q % batch:
            raise ValueError("queue_size %d is not a multiple of the batch %d" % (Q, batch))
        torch.manual_seed(seed)
        self.cfg, self.batch = cfg, batch
        self.model = albef_ref.AlbefPretrain(cfg)
        init_like_c(self.model)
        self.teacher = copy.deepcopy(self.model)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        E, R = cfg["embed_dim"], cfg["image_res"]
        g = torch.Generator().manual_seed(seed + 1)
        self.queues = {
            "image_queue": torch.nn.functional.normalize(torch.randn(E, Q, generator=g), dim=0),
            "text_queue": torch.nn.functional.normalize(torch.randn(E, Q, generator=g), dim=0),
            "queue_ptr": torch.zeros(1, dtype=torch.int64),
        }
        self.optimizer = step_ref.make_optimizer(self.model, LR)
        self.vocab = cfg["bert_config"]["vocab_size"]
        self.inputs = {
            "image": torch.randn(batch, 3, R, R, generator=g),
            "input_ids": text_ids(batch, length, self.vocab),
            "attention_mask": torch.ones(batch, length, dtype=torch.int64),
        }
        self.g_mask = torch.Generator().manual_seed(seed + 2)
        self.choose_negatives = step_ref.multinomial_negatives(torch.Generator().manual_seed(seed + 3))

    def step(self):
        cfg, model = self.cfg, self.model
        mlm_ids, labels = step_ref.albef_mask(self.inputs["input_ids"], self.vocab, cfg["mlm_probability"],
                                              self.g_mask)
        inp = dict(self.inputs, mlm_input_ids=mlm_ids, mlm_labels=labels)
        model.clamp_temp()
        step_ref.momentum_update(model, self.teacher, cfg["momentum"])
        model.zero_grad(set_to_none=True)
        _, loss, _, feats_m = step_ref.step_forward(model, self.teacher, self.queues, inp, cfg["alpha"],
                                                    self.choose_negatives)
        loss.backward()
        step_ref.enqueue(self.queues, *feats_m)
        self.optimizer.step()


class Presets:
    """One trainer at a time: building the next drops the previous, so that
    the peak RSS is that of the largest preset, not of two together."""

    def __init__(self, args):
        self.args = args
        self.current, self.trainer = None, None

    def get(self, name):
        if name == self.current:
            return self.trainer
        if name not in PRESETS:
            raise ValueError("unknown preset %r (known: %s)" % (name, ",".join(PRESETS)))
        self.current, self.trainer = None, None
        gc.collect()
        a = self.args
        cfg = albef_ref.load_config(a.tiny_config if name == "tiny" else a.base_config)
        self.trainer = Trainer(cfg, a.tiny_batch if name == "tiny" else a.base_batch, a.len)
        self.trainer.step()
        self.current = name
        return self.trainer


def answer(presets):
    """The commands of the header comment."""

    def command(words):
        if words[0] != "run" or len(words) != 3:
            return None
        t = presets.get(words[1])
        n = int(words[2])
        return {"preset": words[1], "batch": t.batch, "times": timed(t.step, n, 0.0, n),
                "peak_rss_kb": peak_rss_kb()}

    return command


def main():
    ap = argparse.ArgumentParser(description="The PyTorch side of bench/bench_pretrain.c.")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--tiny-config", default="testdata/configs/tiny.json")
    ap.add_argument("--base-config", default="testdata/configs/albef-base.json")
    ap.add_argument("--tiny-batch", type=int, default=32)
    ap.add_argument("--base-batch", type=int, default=2)
    ap.add_argument("--len", type=int, default=25, help="text length L, [CLS] included")
    ap.add_argument("--min-iters", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--max-iters", type=int, default=20)
    ap.add_argument("--serve", action="store_true")
    args = ap.parse_args()

    info = set_threads(args.threads)
    presets = Presets(args)
    if args.serve:
        serve(info, answer(presets))
        return

    result = {}
    for name in pick(ap, args.presets, PRESETS, "presets"):
        t = presets.get(name)
        times = timed(t.step, args.min_iters, args.min_time, args.max_iters)
        result[name] = dict(summary(times, t.batch), peak_rss_kb=peak_rss_kb())
    reply(dict(info, presets=result))


if __name__ == "__main__":
    main()
