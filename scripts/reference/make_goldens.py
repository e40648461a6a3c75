#!/usr/bin/python3
# Produces a golden set for the C model's parity test: the reference model of
# albef_ref.py with seeded random weights, seeded random inputs, one forward of
# the golden scenario (ITC + ITM + MLM, described in README.md), and one
# backward. Writes into OUT:
#   config.json          the model config
#   weights.safetensors  the state dict, official names, tied entries duplicated
#   inputs.safetensors   image, input_ids, attention_mask, mlm_input_ids,
#                        mlm_labels, itm_labels
#   outputs.safetensors  activations, losses and grad.<name> of every parameter
# The committed set is testdata/reference/small/; regenerate it from the
# repository root with
#   /usr/bin/python3 scripts/reference/make_goldens.py \
#       --config testdata/reference/small/config.json --out testdata/reference/small
# --check-grads also compares autograd against central finite differences in
# float64, and the float32 run against a float64 run, and prints the errors.
import argparse
import copy
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import albef_ref  # noqa: E402

FORMAT = "albef-reference-golden-v1"
BERT_VOCAB_SIZE = 30522
FD_ABS_NOISE = 1e-6


def special_ids(vocab_size):
    """(cls, pad, mask, first ordinary word id). bert-base-uncased for the real
    vocabulary; otherwise the synthetic vocabulary, which starts
    [PAD] [UNK] [CLS] [SEP] [MASK]."""
    if vocab_size >= BERT_VOCAB_SIZE:
        return 101, 0, 103, 1000
    return 2, 0, 4, 5


def make_inputs(cfg, batch, length, seed, mlm_probability):
    """Seeded random inputs. Row 0 has no padding, the other rows are shorter
    (so padding is exercised); every row has at least one labelled MLM
    position and [CLS]/[PAD] are never labelled."""
    vocab = cfg["bert_config"]["vocab_size"]
    if length > cfg["bert_config"]["max_position_embeddings"]:
        raise ValueError("text length %d > max_position_embeddings %d"
                         % (length, cfg["bert_config"]["max_position_embeddings"]))
    if length < 3 or batch < 2:
        raise ValueError("need batch >= 2 and length >= 3")
    cls_id, pad_id, mask_id, first_word = special_ids(vocab)
    g = torch.Generator().manual_seed(seed)
    R = cfg["image_res"]
    image = torch.randn(batch, 3, R, R, generator=g)

    lengths = [length] + [int(x) for x in torch.randint(2, length, (batch - 1,), generator=g)]
    ids = torch.full((batch, length), pad_id, dtype=torch.int64)
    mask = torch.zeros(batch, length, dtype=torch.int64)
    for b, n in enumerate(lengths):
        ids[b, 0] = cls_id
        ids[b, 1:n] = torch.randint(first_word, vocab, (n - 1,), generator=g)
        mask[b, :n] = 1

    labels = torch.full_like(ids, -100)
    mlm_ids = ids.clone()
    for b, n in enumerate(lengths):
        chosen = torch.rand(n - 1, generator=g) < mlm_probability
        if not chosen.any():
            chosen[int(torch.randint(0, n - 1, (1,), generator=g))] = True
        for t in (torch.nonzero(chosen).flatten() + 1).tolist():
            labels[b, t] = ids[b, t]
            # 80% [MASK], 10% a random id from the whole vocabulary, 10% kept.
            u = float(torch.rand(1, generator=g))
            if u < 0.8:
                mlm_ids[b, t] = mask_id
            elif u < 0.9:
                mlm_ids[b, t] = int(torch.randint(0, vocab, (1,), generator=g))
    itm_labels = torch.cat([torch.ones(batch, dtype=torch.int64), torch.zeros(batch, dtype=torch.int64)])
    meta = {"cls_id": cls_id, "pad_id": pad_id, "mask_id": mask_id, "lengths": lengths}
    return {"image": image, "input_ids": ids, "attention_mask": mask, "mlm_input_ids": mlm_ids,
            "mlm_labels": labels, "itm_labels": itm_labels}, meta


def golden_forward(model, inp):
    """The golden scenario. Returns (outputs dict, loss)."""
    model.clamp_temp()
    image = inp["image"].to(model.temp.dtype)
    ids, mask = inp["input_ids"], inp["attention_mask"]
    B = ids.shape[0]

    # ITC, in-batch only: no momentum features, no queue.
    V = model.vit(image)                                   # (B, 1+N, C)
    image_feat = model.image_feat(V)                       # (B, E)
    T = model.bert(ids, mask, mode="text")                 # (B, L, H)
    text_feat = model.text_feat(T)                         # (B, E)
    sim_i2t = image_feat @ text_feat.t() / model.temp      # (B, B)
    sim_t2i = text_feat @ image_feat.t() / model.temp      # (B, B)
    targets = torch.arange(B)
    loss_itc = (F.cross_entropy(sim_i2t, targets) + F.cross_entropy(sim_t2i, targets)) / 2

    # ITM: rows 0..B-1 pair text b with image b, rows B..2B-1 with image (b+1) mod B.
    V_neg = torch.roll(V, shifts=-1, dims=0)
    M = model.bert(mask=torch.cat([mask, mask]), mode="fusion",
                   encoder_hidden_states=torch.cat([V, V_neg]), encoder_embeds=torch.cat([T, T]))  # (2B, L, H)
    itm_logits = model.itm_logits(M)                       # (2B, 2)
    loss_itm = F.cross_entropy(itm_logits, inp["itm_labels"])

    # MLM over the full text encoder, cross-attending the image tokens.
    H = model.bert(inp["mlm_input_ids"], mask, mode="multi_modal", encoder_hidden_states=V)  # (B, L, H)
    logits = model.mlm_logits(H)                           # (B, L, vocab)
    labels = inp["mlm_labels"]
    loss_mlm = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)

    loss = loss_itc + loss_itm + loss_mlm
    out = {
        "vit_out": V, "text_out": T, "image_feat": image_feat, "text_feat": text_feat,
        "sim_i2t": sim_i2t, "sim_t2i": sim_t2i, "fusion_out": M, "itm_logits": itm_logits,
        "mlm_hidden": H,
        "mlm_logits": logits[labels != -100],              # (n_masked, vocab), row-major (b, t)
        "loss_itc": loss_itc, "loss_itm": loss_itm, "loss_mlm": loss_mlm, "loss": loss,
    }
    return out, loss


def run_scenario(model, inp):
    model.zero_grad(set_to_none=True)
    out, loss = golden_forward(model, inp)
    loss.backward()
    params = dict(model.named_parameters())
    result = {k: v.detach().clone() for k, v in out.items()}
    for name in model.unique_parameter_names():
        g = params[name].grad
        result["grad." + name] = torch.zeros_like(params[name]) if g is None else g.detach().clone()
    return result


SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}


def save_file(tensors, path, metadata):
    """Writes safetensors with tensors and metadata in a fixed order, so the
    same inputs give the same bytes (the Python package orders metadata by
    hash). Tensors go by element size, largest first, then by name, and the
    header is padded to a multiple of 8 bytes, so every tensor is aligned."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors, key=lambda n: (-tensors[n].element_size(), n)):
        t = tensors[name].detach().contiguous()
        data = t.numpy().tobytes()  # little-endian on every machine we run
        header[name] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for data in blobs:
            f.write(data)
    os.replace(tmp, path)


def to_f32_contiguous(d):
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in d.items()}


# ------------------------------------------------------ --check-grads ----

def unravel(flat, shape):
    idx = []
    for n in reversed(shape):
        idx.append(flat % n)
        flat //= n
    return tuple(reversed(idx))


def checked_parameters(cfg):
    """A spread of parameters over every part of the model."""
    vd, bc = cfg["vision_depth"], cfg["bert_config"]
    fl, nl = bc["fusion_layer"], bc["num_hidden_layers"]
    ve, te = "visual_encoder.", "text_encoder.bert."
    return [
        "temp", ve + "cls_token", ve + "pos_embed", ve + "patch_embed.proj.weight", ve + "patch_embed.proj.bias",
        ve + "blocks.0.norm1.weight", ve + "blocks.0.attn.qkv.weight", ve + "blocks.0.attn.qkv.bias",
        ve + "blocks.%d.mlp.fc1.weight" % (vd - 1), ve + "blocks.%d.mlp.fc2.bias" % (vd - 1), ve + "norm.bias",
        te + "embeddings.word_embeddings.weight", te + "embeddings.position_embeddings.weight",
        te + "embeddings.token_type_embeddings.weight", te + "embeddings.LayerNorm.weight",
        te + "encoder.layer.0.attention.self.query.weight", te + "encoder.layer.0.attention.output.dense.bias",
        te + "encoder.layer.%d.crossattention.self.query.weight" % fl,
        te + "encoder.layer.%d.crossattention.self.key.weight" % fl,
        te + "encoder.layer.%d.crossattention.self.value.bias" % (nl - 1),
        te + "encoder.layer.%d.crossattention.output.LayerNorm.bias" % fl,
        te + "encoder.layer.%d.intermediate.dense.weight" % (nl - 1),
        te + "encoder.layer.%d.output.LayerNorm.weight" % (nl - 1),
        "text_encoder.cls.predictions.bias", "text_encoder.cls.predictions.transform.dense.weight",
        "text_encoder.cls.predictions.transform.LayerNorm.bias",
        "vision_proj.weight", "text_proj.bias", "itm_head.weight", "itm_head.bias",
    ]


def check_grads(model32, inp, result32, step=1e-4):
    """Central differences of the float64 loss at two elements per checked
    parameter (the largest |grad| and a random one) against autograd, and the
    float32 results against a float64 run. Returns the worst FD relative error."""
    model = copy.deepcopy(model32).double()
    tied = model.text_encoder.cls.predictions
    assert tied.decoder.weight is model.text_encoder.bert.embeddings.word_embeddings.weight
    assert tied.decoder.bias is tied.bias
    result64 = run_scenario(model, inp)
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(1234)

    def loss_at():
        with torch.no_grad():
            return float(golden_forward(model, inp)[1])

    print("finite differences (float64, 4-point stencil, step %g):" % step)
    worst = 0.0
    for name in checked_parameters(model.cfg):
        p, grad = params[name], result64["grad." + name]
        flat_indices = [int(grad.abs().argmax()), int(torch.randint(0, p.numel(), (1,), generator=g))]
        for flat in sorted(set(flat_indices)):
            idx = unravel(flat, p.shape)
            orig = float(p.data[idx])
            f = {}
            for k in (-2, -1, 1, 2):
                p.data[idx] = orig + k * step
                f[k] = loss_at()
            p.data[idx] = orig
            fd = (f[-2] - 8 * f[-1] + 8 * f[1] - f[2]) / (12 * step)
            ag = float(grad[idx])
            # Rounding in the loss differences leaves about 1e-10 of absolute
            # noise, which dominates where the gradient is tiny or exactly 0
            # (the key biases: softmax ignores a per-row constant).
            err = abs(fd - ag) / (abs(ag) + FD_ABS_NOISE)
            worst = max(worst, err)
            print("  %-68s %-14s autograd % .10e  fd % .10e  err %.1e" % (name, list(idx), ag, fd, err))

    # Multi-modal mode must equal text mode then fusion mode (ALBEF-SPEC.md 1.1).
    with torch.no_grad():
        V = model.vit(inp["image"].double())
        ids, mask = inp["mlm_input_ids"], inp["attention_mask"]
        full = model.bert(ids, mask, mode="multi_modal", encoder_hidden_states=V)
        split = model.bert(mask=mask, mode="fusion", encoder_hidden_states=V,
                           encoder_embeds=model.bert(ids, mask, mode="text"))
        print("multi_modal vs text+fusion: max abs diff %.3e" % float((full - split).abs().max()))

    print("float32 run vs float64 run, max |a-b| / max |b| per tensor (worst 8):")
    errs, zeros = [], []
    for k, v64 in result64.items():
        scale = float(v64.abs().max())
        diff = float((result32[k].double() - v64).abs().max())
        if scale < 1e-15:
            zeros.append("%s (float32 max %.1e)" % (k, float(result32[k].abs().max())))
        else:
            errs.append((diff / scale, k, scale))
    for e, k, scale in sorted(errs, reverse=True)[:8]:
        print("  %-72s %.2e  (max |b| %.2e)" % (k, e, scale))
    print("zero in exact arithmetic: %s" % (", ".join(zeros) or "none"))
    print("worst finite-difference error |fd - ag| / (|ag| + %g): %.2e" % (FD_ABS_NOISE, worst))
    return worst


def main():
    ap = argparse.ArgumentParser(description="Writes an ALBEF reference golden set (see scripts/reference/README.md).")
    ap.add_argument("--config", required=True, help="model config JSON")
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--length", type=int, default=7, help="text length L, [CLS] included")
    ap.add_argument("--seed", type=int, default=0, help="weights from SEED, inputs from SEED+1")
    ap.add_argument("--check-grads", action="store_true",
                    help="also check gradients by finite differences in float64 (small configs)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    cfg = albef_ref.load_config(args.config)
    t0 = time.time()
    model = albef_ref.AlbefPretrain(cfg)
    albef_ref.init_weights(model, args.seed)
    inp, meta = make_inputs(cfg, args.batch, args.length, args.seed + 1, cfg.get("mlm_probability", 0.15))
    t1 = time.time()
    result = run_scenario(model, inp)
    t2 = time.time()

    os.makedirs(args.out, exist_ok=True)
    config_text = json.dumps(cfg, indent=2) + "\n"
    with open(os.path.join(args.out, "config.json"), "w") as f:
        f.write(config_text)
    n_masked = int((inp["mlm_labels"] != -100).sum())
    common = {
        "format": FORMAT, "seed": str(args.seed), "input_seed": str(args.seed + 1),
        "batch_size": str(args.batch), "text_length": str(args.length),
        "cls_id": str(meta["cls_id"]), "pad_id": str(meta["pad_id"]), "mask_id": str(meta["mask_id"]),
        "torch_version": torch.__version__,
    }
    save_file(albef_ref.state_dict_for_saving(model), os.path.join(args.out, "weights.safetensors"),
              metadata={**common, "config": json.dumps(cfg)})
    save_file({k: v.contiguous() for k, v in inp.items()}, os.path.join(args.out, "inputs.safetensors"),
              metadata={**common, "text_lengths": json.dumps(meta["lengths"])})
    save_file(to_f32_contiguous(result), os.path.join(args.out, "outputs.safetensors"),
              metadata={**common, "n_masked": str(n_masked)})
    t3 = time.time()

    print("wrote %s: %d parameters, batch %d, length %d, %d masked positions, loss %.6f "
          "(itc %.6f itm %.6f mlm %.6f)" % (args.out, sum(p.numel() for p in model.parameters()), args.batch,
                                            args.length, n_masked, float(result["loss"]), float(result["loss_itc"]),
                                            float(result["loss_itm"]), float(result["loss_mlm"])))
    print("time: init %.1f s, forward+backward %.1f s, write %.1f s" % (t1 - t0, t2 - t1, t3 - t2))
    for name in ("config.json", "weights.safetensors", "inputs.safetensors", "outputs.safetensors"):
        print("  %-20s %10d bytes" % (name, os.path.getsize(os.path.join(args.out, name))))
    if args.check_grads:
        worst = check_grads(model, inp, result)
        if worst > 1e-4:
            print("FAILED: finite differences disagree with autograd", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
