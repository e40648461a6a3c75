#!/usr/bin/python3
# Writes the PyTorch checkpoint fixtures under testdata/pth/ with torch.save,
# and the same tensors as safetensors (contiguous copies) for the C tests to
# compare against, tensor by tensor.
#
#   /usr/bin/python3 scripts/dev/make_pth_fixtures.py
#       raw.pth          a raw state dict (an nn.Module's, with _metadata):
#                        float32, int64, int32, uint8, bool, a scalar, an
#                        empty tensor; pickle protocol 2 (torch.save's default)
#       wrapped.pth      {'model': sd, 'optimizer', 'config', 'epoch'}, protocol 4:
#                        float16, bfloat16, float64, a transposed (non-contiguous)
#                        view, a strided slice with an offset, a tied pair (one
#                        tensor under two names), two views of one storage, a
#                        Parameter
#       expected_raw.safetensors, expected_wrapped.safetensors
#                        the state dicts as contiguous tensors
#       malicious.pth    a pickle that would run os.system under torch.load
#       legacy.pth       wrapped.pth's checkpoint in the pre-1.6 format
#                        (_use_new_zipfile_serialization=False)
#       albef_small.pth  the reference model of testdata/reference/small
#                        (scripts/reference/albef_ref.py) with its golden
#                        weights, saved as Pretrain.py saves, plus small queues
#                        and momentum projections
#
#       bert_small.bin   Hugging Face BERT names (LayerNorm gamma/beta as in the
#                        original upload, pooler, NSP head, the tied decoder)
#                        shaped for testdata/reference/small
#       deit_small.pth   timm DeiT names under 'model' (head, 224 px: 197
#                        position rows), shaped for the same config
#
#   /usr/bin/python3 scripts/dev/make_pth_fixtures.py --synthetic-base /tmp/albef_base.pth
#       a checkpoint shaped like the released ALBEF.pth (albef-base at 256 px:
#       the online model, its momentum copy, 65536-entry queues; about 1.7 GB)
#       with random weights, wrapped as Pretrain.py saves it, for timing
#       `albef-export convert` (README.md, "Importing checkpoints")
#
#   /usr/bin/python3 scripts/dev/make_pth_fixtures.py --check-strict OUT.safetensors
#       loads a file written by `albef-export convert` into the reference model
#       with load_state_dict(strict=True) (momentum copies and queues dropped
#       first: the reference model has none) and checks every tensor against
#       the golden weights.
import argparse
import collections
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "testdata", "pth")
SMALL = os.path.join(ROOT, "testdata", "reference", "small")
sys.path.insert(0, os.path.join(ROOT, "scripts", "reference"))
import albef_ref  # noqa: E402


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.norm = torch.nn.LayerNorm(2)
        self.register_buffer("position_ids", torch.arange(5).view(1, 5))
        self.register_buffer("counts", torch.tensor([7, -3, 2**31 - 1], dtype=torch.int32))
        self.register_buffer("bytes", torch.tensor([0, 1, 255], dtype=torch.uint8))
        self.register_buffer("flags", torch.tensor([True, False, True]))
        self.register_buffer("scale", torch.tensor(0.07))
        self.register_buffer("empty", torch.zeros(0, 4))


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/albef-pwned",))


def contiguous(sd):
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def write_fixtures():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)

    tiny = Tiny()
    raw = tiny.state_dict()
    torch.save(raw, os.path.join(OUT, "raw.pth"))
    save_file(contiguous(raw), os.path.join(OUT, "expected_raw.safetensors"))

    base = torch.randn(3, 4)
    shared = torch.randn(2, 3)
    sd = collections.OrderedDict()
    sd["half"] = torch.randn(2, 3).half()
    sd["bfloat"] = torch.randn(4).bfloat16()
    sd["double"] = torch.randn(2).double()
    sd["transposed"] = base.t()                       # (4, 3), strides (1, 4)
    sd["sliced"] = torch.randn(5, 6)[1:4, ::2]        # offset 6, strides (6, 2)
    sd["embeddings.word_embeddings.weight"] = shared  # the tied pair
    sd["cls.predictions.decoder.weight"] = shared
    sd["row0"] = base[0]                              # views of base's storage
    sd["row2"] = base[2]
    sd["param"] = torch.nn.Parameter(torch.randn(3))
    sd["temp"] = torch.tensor(0.07)
    sd["queue_ptr"] = torch.zeros(1, dtype=torch.long)
    ckpt = {"model": sd,
            "optimizer": {"state": {0: {"exp_avg": torch.zeros(3)}},
                          "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}]},
            "config": {"image_res": 256, "schedular": {"sched": "cosine", "lr": 1e-4}, "bert_config": None,
                       "flags": [True, False], "name": "tiny \u00e9\u4e2d"},
            "epoch": 3}
    assert not sd["transposed"].is_contiguous() and not sd["sliced"].is_contiguous()
    torch.save(ckpt, os.path.join(OUT, "wrapped.pth"), pickle_protocol=4)
    save_file(contiguous(sd), os.path.join(OUT, "expected_wrapped.safetensors"))

    torch.save({"model": Evil()}, os.path.join(OUT, "malicious.pth"))
    torch.save(ckpt, os.path.join(OUT, "legacy.pth"), _use_new_zipfile_serialization=False)

    cfg = albef_ref.load_config(os.path.join(SMALL, "config.json"))
    model = albef_ref.AlbefPretrain(cfg)
    golden = load_file(os.path.join(SMALL, "weights.safetensors"))
    model.load_state_dict(golden, strict=True)
    sd = model.state_dict()  # the tied MLM decoder shares word_embeddings' storage
    E, Q = cfg["embed_dim"], cfg["queue_size"]
    g = torch.Generator().manual_seed(1)
    for name in ("vision_proj", "text_proj"):
        sd[name + "_m.weight"] = sd[name + ".weight"].clone()
        sd[name + "_m.bias"] = sd[name + ".bias"].clone()
    sd["image_queue"] = torch.nn.functional.normalize(torch.randn(E, Q, generator=g), dim=0)
    sd["text_queue"] = torch.nn.functional.normalize(torch.randn(E, Q, generator=g), dim=0)
    sd["queue_ptr"] = torch.zeros(1, dtype=torch.long)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.02)
    torch.save({"model": sd, "optimizer": optimizer.state_dict(), "config": cfg, "epoch": 0},
               os.path.join(OUT, "albef_small.pth"))

    write_bert_deit(cfg)
    for name in sorted(os.listdir(OUT)):
        print("  %-32s %8d bytes" % (name, os.path.getsize(os.path.join(OUT, name))))


def write_bert_deit(cfg):
    bc = cfg["bert_config"]
    H, I, V, P = bc["hidden_size"], bc["intermediate_size"], bc["vocab_size"], bc["max_position_embeddings"]
    g = torch.Generator().manual_seed(2)

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    bert = collections.OrderedDict()
    bert["bert.embeddings.word_embeddings.weight"] = rnd(V, H)
    bert["bert.embeddings.position_embeddings.weight"] = rnd(P, H)
    bert["bert.embeddings.token_type_embeddings.weight"] = rnd(2, H)
    bert["bert.embeddings.LayerNorm.gamma"] = 1 + rnd(H)
    bert["bert.embeddings.LayerNorm.beta"] = rnd(H)
    for i in range(bc["num_hidden_layers"]):
        p = "bert.encoder.layer.%d." % i
        for m in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            bert[p + m + ".weight"], bert[p + m + ".bias"] = rnd(H, H), rnd(H)
        bert[p + "attention.output.LayerNorm.gamma"], bert[p + "attention.output.LayerNorm.beta"] = 1 + rnd(H), rnd(H)
        bert[p + "intermediate.dense.weight"], bert[p + "intermediate.dense.bias"] = rnd(I, H), rnd(I)
        bert[p + "output.dense.weight"], bert[p + "output.dense.bias"] = rnd(H, I), rnd(H)
        bert[p + "output.LayerNorm.gamma"], bert[p + "output.LayerNorm.beta"] = 1 + rnd(H), rnd(H)
    bert["bert.pooler.dense.weight"], bert["bert.pooler.dense.bias"] = rnd(H, H), rnd(H)
    bert["cls.predictions.bias"] = rnd(V)
    bert["cls.predictions.transform.dense.weight"], bert["cls.predictions.transform.dense.bias"] = rnd(H, H), rnd(H)
    bert["cls.predictions.transform.LayerNorm.gamma"] = 1 + rnd(H)
    bert["cls.predictions.transform.LayerNorm.beta"] = rnd(H)
    bert["cls.predictions.decoder.weight"] = bert["bert.embeddings.word_embeddings.weight"]
    bert["cls.seq_relationship.weight"], bert["cls.seq_relationship.bias"] = rnd(2, H), rnd(2)
    torch.save(bert, os.path.join(OUT, "bert_small.bin"))

    C, D, ps = cfg["vision_width"], cfg["vision_depth"], cfg["patch_size"]
    M = C * cfg["vision_mlp_ratio"]
    deit = collections.OrderedDict()
    deit["cls_token"] = rnd(1, 1, C)
    deit["pos_embed"] = rnd(1, 1 + (224 // ps) ** 2, C)
    deit["patch_embed.proj.weight"], deit["patch_embed.proj.bias"] = rnd(C, 3, ps, ps), rnd(C)
    for i in range(D):
        p = "blocks.%d." % i
        deit[p + "norm1.weight"], deit[p + "norm1.bias"] = 1 + rnd(C), rnd(C)
        deit[p + "attn.qkv.weight"], deit[p + "attn.qkv.bias"] = rnd(3 * C, C), rnd(3 * C)
        deit[p + "attn.proj.weight"], deit[p + "attn.proj.bias"] = rnd(C, C), rnd(C)
        deit[p + "norm2.weight"], deit[p + "norm2.bias"] = 1 + rnd(C), rnd(C)
        deit[p + "mlp.fc1.weight"], deit[p + "mlp.fc1.bias"] = rnd(M, C), rnd(M)
        deit[p + "mlp.fc2.weight"], deit[p + "mlp.fc2.bias"] = rnd(C, M), rnd(C)
    deit["norm.weight"], deit["norm.bias"] = 1 + rnd(C), rnd(C)
    deit["head.weight"], deit["head.bias"] = rnd(10, C), rnd(10)
    torch.save({"model": deit}, os.path.join(OUT, "deit_small.pth"))


def write_synthetic_base(path):
    cfg = albef_ref.load_config(os.path.join(ROOT, "testdata", "configs", "albef-base.json"))
    model = albef_ref.AlbefPretrain(cfg)
    sd = model.state_dict()
    for k, v in list(sd.items()):
        head, rest = k.split(".", 1) if "." in k else (k, "")
        if head in ("visual_encoder", "text_encoder", "vision_proj", "text_proj"):
            sd[head + "_m." + rest] = v.clone()
    E, Q = cfg["embed_dim"], cfg["queue_size"]
    sd["image_queue"] = torch.nn.functional.normalize(torch.randn(E, Q), dim=0)
    sd["text_queue"] = torch.nn.functional.normalize(torch.randn(E, Q), dim=0)
    sd["queue_ptr"] = torch.zeros(1, dtype=torch.long)
    torch.save({"model": sd, "config": cfg, "epoch": 29}, path)
    print("%s: %d tensors, %d bytes" % (path, len(sd), os.path.getsize(path)))


def check_strict(path):
    cfg = albef_ref.load_config(os.path.join(SMALL, "config.json"))
    model = albef_ref.AlbefPretrain(cfg)
    ours = load_file(path)
    training = [k for k in ours if "_m." in k or k in ("image_queue", "text_queue", "queue_ptr", "idx_queue")]
    for k in training:
        del ours[k]
    model.load_state_dict(ours, strict=True)
    golden = load_file(os.path.join(SMALL, "weights.safetensors"))
    sd = model.state_dict()
    worst = max(float((sd[k].float() - v.float()).abs().max()) if v.numel() else 0.0 for k, v in golden.items())
    exact = all(v.dtype == torch.float32 for v in ours.values() if v.is_floating_point())
    print("%s: load_state_dict(strict=True) into the reference model: ok; %d tensors (%d training entries "
          "left out), max |difference| to the golden weights %.3g%s"
          % (path, len(ours), len(training), worst, "" if exact else " (stored in 16 bits)"))
    return 0 if worst == 0 or not exact else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check-strict", metavar="SAFETENSORS")
    ap.add_argument("--synthetic-base", metavar="PTH")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.synthetic_base:
        write_synthetic_base(args.synthetic_base)
        return 0
    if args.check_strict:
        return check_strict(args.check_strict)
    write_fixtures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
