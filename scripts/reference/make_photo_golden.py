#!/usr/bin/python3
# Produces the end-to-end golden for tests/test_photos.c: the seven real photos
# of ../shared/data/real-images and their fourteen captions through ALBEF's
# evaluation pipeline (Pillow BICUBIC square resize, ToTensor, CLIP Normalize;
# pre_caption(30), the ALBEF tokenizer with padding='max_length',
# truncation=True, max_length=30) and the reference model of albef_ref.py with
# seeded random weights. Writes into testdata/reference/photos/:
#   vocab.txt            a small BERT-format vocabulary built from the captions
#   config.json          the model config (the small one at 64 px, 16 patches)
#   weights.safetensors  the state dict, official names, config in the metadata
#   outputs.safetensors  pixels, input_ids, attention_mask, image_tokens,
#                        text_tokens, image_feat, text_feat, sim, itm_logits
#
# Run from the repository root, with transformers 4.x for the slow
# BertTokenizer (installed as the header of scripts/dev/make_text_goldens.py says):
#   PYTHONPATH=/tmp/tf4 /usr/bin/python3 scripts/reference/make_photo_golden.py
# ALBEF_SHARED_DATA overrides ../shared/data. A rerun writes the same bytes.
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "dev"))
import albef_ref  # noqa: E402
from make_goldens import save_file  # noqa: E402
from make_text_goldens import AlbefBertTokenizer, pre_caption  # noqa: E402

SHARED = os.environ.get("ALBEF_SHARED_DATA", "../shared/data")
PHOTOS = os.path.join(SHARED, "real-images")
OUT = "testdata/reference/photos"
FORMAT = "albef-photo-golden-v1"
SEED = 0
MAX_WORDS = 30   # pre_caption in ALBEF's retrieval dataset
TEXT_LENGTH = 30  # the retrieval evaluation's tokenizer max_length
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Caption words of this many letters or more are left out of the vocabulary,
# so they fall apart into word pieces, and the first caption (four such
# words, one of them 9 letters) runs past 30 tokens and is truncated.
SPLIT_WORD_LEN = 7
SUBWORDS = ["##ing", "##ed", "##er", "##es"]
PUNCTUATION = [".", ",", "'", "-", "!", "?"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def model_config(vocab_size):
    """The small golden config (testdata/reference/small) at 64 px, with
    position embeddings for 30 tokens and the photo vocabulary."""
    return {
        "image_res": 64, "patch_size": 16, "vision_width": 32, "vision_depth": 2, "vision_num_heads": 2,
        "vision_mlp_ratio": 4, "vision_layer_norm_eps": 1e-06, "embed_dim": 16, "temp": 0.07,
        "queue_size": 48, "momentum": 0.995, "alpha": 0.4, "mlm_probability": 0.15,
        "bert_config": {
            "vocab_size": vocab_size, "hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2,
            "intermediate_size": 128, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 32, "type_vocab_size": 2,
            "layer_norm_eps": 1e-12, "fusion_layer": 2, "encoder_width": 32, "pad_token_id": 0,
            "initializer_range": 0.02,
        },
    }


def build_vocab(captions):
    """[PAD] [UNK] [CLS] [SEP] [MASK], letters, digits, their ## forms, a few
    suffixes and punctuation marks, the short caption words in order of first
    appearance, then [unusedN] up to a multiple of 16 entries."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    digits = [str(d) for d in range(10)]
    tokens = SPECIALS + letters + digits + ["##" + c for c in letters + digits] + SUBWORDS + PUNCTUATION
    seen = set(tokens)
    for caption in captions:
        for word in caption.split(" "):
            if len(word) < SPLIT_WORD_LEN and word not in seen:
                tokens.append(word)
                seen.add(word)
    n = 0
    while len(tokens) % 16:
        tokens.append("[unused%d]" % n)
        n += 1
    if len(tokens) > 256:
        raise ValueError("vocabulary of %d tokens; at most 256 wanted" % len(tokens))
    return tokens


def preprocess(path, res):
    """ALBEF's test transform: square BICUBIC resize, ToTensor, Normalize."""
    img = Image.open(path).convert("RGB").resize((res, res), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)  # (3, R, R)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(CLIP_STD, dtype=torch.float32)[:, None, None]
    return (x - mean) / std


def main():
    torch.set_num_threads(1)
    with open(os.path.join(PHOTOS, "captions.json")) as f:
        entries = json.load(f)
    raw_captions = [c for e in entries for c in e["caption"]]
    captions = [pre_caption(c, MAX_WORDS) for c in raw_captions]

    os.makedirs(OUT, exist_ok=True)
    vocab = build_vocab(captions)
    vocab_path = os.path.join(OUT, "vocab.txt")
    with open(vocab_path, "w") as f:
        f.write("\n".join(vocab) + "\n")
    cfg = model_config(len(vocab))
    with open(os.path.join(OUT, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2) + "\n")

    tok = AlbefBertTokenizer(vocab_path, do_lower_case=True)
    enc = tok(captions, padding="max_length", truncation=True, max_length=TEXT_LENGTH)
    ids = torch.tensor(enc["input_ids"], dtype=torch.int64)            # (n_txt, L)
    mask = torch.tensor(enc["attention_mask"], dtype=torch.int64)      # (n_txt, L)

    R = cfg["image_res"]
    pixels = torch.stack([preprocess(os.path.join(PHOTOS, e["image"]), R) for e in entries])  # (n_img, 3, R, R)

    model = albef_ref.AlbefPretrain(cfg)
    albef_ref.init_weights(model, SEED)
    model.eval()
    n_img, n_txt = pixels.shape[0], ids.shape[0]
    with torch.no_grad():
        V = model.vit(pixels)                                 # (n_img, 1+N, C)
        image_feat = model.image_feat(V)                      # (n_img, E)
        T = model.bert(ids, mask, mode="text")                # (n_txt, L, H)
        text_feat = model.text_feat(T)                        # (n_txt, E)
        sim = image_feat @ text_feat.t()                      # (n_img, n_txt), raw cosine
        # Every (image, caption) pair, image-major: row i * n_txt + t.
        M = model.bert(mask=mask.repeat(n_img, 1), mode="fusion",
                       encoder_hidden_states=V.repeat_interleave(n_txt, dim=0),
                       encoder_embeds=T.repeat(n_img, 1, 1))  # (n_img * n_txt, L, H)
        itm_logits = model.itm_logits(M)                      # (n_img * n_txt, 2)

    meta = {
        "format": FORMAT, "seed": str(SEED), "torch_version": torch.__version__,
        "images": json.dumps([e["image"] for e in entries]),
        "text_length": str(TEXT_LENGTH), "max_words": str(MAX_WORDS),
    }
    save_file(albef_ref.state_dict_for_saving(model), os.path.join(OUT, "weights.safetensors"),
              metadata={**meta, "config": json.dumps(cfg)})
    outputs = {
        "pixels": pixels, "input_ids": ids, "attention_mask": mask, "image_tokens": V, "text_tokens": T,
        "image_feat": image_feat, "text_feat": text_feat, "sim": sim, "itm_logits": itm_logits,
    }
    save_file({k: v.contiguous() for k, v in outputs.items()}, os.path.join(OUT, "outputs.safetensors"),
              metadata={**meta, "captions": json.dumps(captions)})

    lengths = mask.sum(1).tolist()
    split = sorted({w for c in captions for w in c.split(" ") if len(w) >= SPLIT_WORD_LEN})
    print("%d images, %d captions; vocabulary %d tokens (%d caption words split into pieces); "
          "token counts %s" % (n_img, n_txt, len(vocab), len(split), lengths))
    print("first caption: %s" % " ".join(tok.convert_ids_to_tokens(ids[0].tolist())))
    print("sim range [%.4f, %.4f]; itm logits range [%.4f, %.4f]"
          % (float(sim.min()), float(sim.max()), float(itm_logits.min()), float(itm_logits.max())))
    total = 0
    for name in ("vocab.txt", "config.json", "weights.safetensors", "outputs.safetensors"):
        size = os.path.getsize(os.path.join(OUT, name))
        total += size
        print("  %-20s %8d bytes" % (name, size))
    print("  %-20s %8d bytes" % ("total", total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
