#!/usr/bin/python3
# A short ALBEF pre-training run in PyTorch on a pretraining manifest (the
# synthetic demo set by default), to see whether ITC/ITM learn from random
# weights with a given recipe. It reuses the model of albef_ref.py and the
# step of pretrain_step_ref.py (momentum model, queues, ITC soft targets,
# ITM hard negatives drawn with torch.multinomial, MLM masking 15/80/10/10,
# AdamW with ALBEF's two groups). No dropout.
#
# Prints every --print-every steps: loss_itc, loss_itm, loss_mlm, temp, lr,
# alpha and the in-batch image->text top-1; every --probe-every steps the mean
# pairwise cosine of the ITC features of six different captions and of 20
# test images; at the end the ITC retrieval recall@1 on the test manifest.
# --log FILE also writes one JSON line per step.
#
# Dev-only, needs /usr/bin/python3 with torch (CPU), torchvision, Pillow and
# (for --init FILE.safetensors) safetensors. Run from the repository root:
#   /usr/bin/python3 scripts/reference/train_ref.py                      # official recipe
#   /usr/bin/python3 scripts/reference/train_ref.py --momentum 0 --alpha 0
#   /usr/bin/python3 scripts/reference/train_ref.py --init /tmp/c-init/checkpoint_00000001.safetensors
#   # ITC learns from scratch with: weights at std 0.2 in both towers, no queue
#   # until the features separate, no crop/flip, ITC alone for the first steps
#   /usr/bin/python3 scripts/reference/train_ref.py --init-std 0.2 --queue-size 0 --augment resize \
#       --itc-only-steps 200 --momentum 0 --alpha 0 --steps 600
# 300 steps of batch 32 on the tiny preset take 1-3 minutes on one thread.
import argparse
import json
import math
import os
import random
import re
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import albef_ref  # noqa: E402
import pretrain_step_ref as step_ref  # noqa: E402

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PAD_ID, UNK_ID, CLS_ID = 0, 1, 2
MAX_TOKENS = 25  # pretraining: truncation to 25 tokens, [CLS] included
MAX_WORDS = 30
PROBE_CAPTIONS = ("a red circle", "a blue square", "two green triangles", "a yellow star on the left",
                  "a purple cross", "a large white circle")
PROBE_IMAGES = 20


# ------------------------------------------------------------------ text ----

def pre_caption(caption, max_words=MAX_WORDS):
    caption = re.sub(r"([,.'!?\"()*#:;~])", "", caption.lower()).replace("-", " ").replace("/", " ")
    caption = caption.replace("<person>", "person")
    caption = re.sub(r"\s{2,}", " ", caption).rstrip("\n").strip(" ")
    return " ".join(caption.split(" ")[:max_words])


class Tokenizer:
    """ALBEF's rule on a WordPiece vocabulary: [CLS] then the word pieces, no
    [SEP]. Words are split on whitespace and punctuation, then greedy
    longest-match WordPiece ('##' continuations), [UNK] when no split exists."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.ids = {line.rstrip("\n"): i for i, line in enumerate(f)}

    def word_pieces(self, word):
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.ids:
                    break
                end -= 1
            if end == start:
                return [UNK_ID]
            pieces.append(self.ids[piece])
            start = end
        return pieces

    def encode(self, text):
        ids = [CLS_ID]
        for word in re.findall(r"\w+|[^\w\s]", text.lower()):
            ids.extend(self.word_pieces(word))
        return ids[:MAX_TOKENS]

    def batch(self, texts):
        """Padded to the longest: (ids, attention_mask), both (B, L) int64."""
        rows = [self.encode(t) for t in texts]
        L = max(len(r) for r in rows)
        ids = torch.full((len(rows), L), PAD_ID, dtype=torch.int64)
        mask = torch.zeros(len(rows), L, dtype=torch.int64)
        for b, r in enumerate(rows):
            ids[b, :len(r)] = torch.tensor(r)
            mask[b, :len(r)] = 1
        return ids, mask


# ----------------------------------------------------------------- data ----

def image_path(manifest_dir, root, path):
    if os.path.isabs(path):
        return path
    return os.path.join(root if root else manifest_dir, path)


class PretrainData:
    """The manifest's items with their images decoded once; one epoch is a
    shuffled pass with the last partial batch dropped."""

    def __init__(self, manifest, image_root, res, augment, seed):
        with open(manifest) as f:
            items = json.load(f)
        base = os.path.dirname(os.path.abspath(manifest))
        self.captions = [it["caption"] if isinstance(it["caption"], list) else [it["caption"]] for it in items]
        self.images = [Image.open(image_path(base, image_root, it["image"])).convert("RGB") for it in items]
        normalize = [transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)]
        bicubic = transforms.InterpolationMode.BICUBIC
        if augment == "crop":
            ops = [transforms.RandomResizedCrop(res, scale=(0.5, 1.0), interpolation=bicubic),
                   transforms.RandomHorizontalFlip()]
        else:
            ops = [transforms.Resize((res, res), interpolation=bicubic)]
        self.transform = transforms.Compose(ops + normalize)
        self.rng = random.Random(seed)
        self.order, self.pos = [], 0

    def __len__(self):
        return len(self.images)

    def next_batch(self, B):
        if self.pos + B > len(self.order):
            self.order = list(range(len(self.images)))
            self.rng.shuffle(self.order)
            self.pos = 0
        idx = self.order[self.pos:self.pos + B]
        self.pos += B
        images = torch.stack([self.transform(self.images[i]) for i in idx])
        texts = [pre_caption(self.rng.choice(self.captions[i])) for i in idx]
        return images, texts


def test_transform(res):
    return transforms.Compose([transforms.Resize((res, res), interpolation=transforms.InterpolationMode.BICUBIC),
                               transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)])


# ----------------------------------------------------------------- init ----

def init_official(model, std_bert, std_vit):
    """What ALBEF's constructors give before loading BERT/DeiT: HF BERT's
    _init_weights on the text encoder (Linear/Embedding N(0, range), biases 0,
    [PAD] row 0, LayerNorm (1, 0)); timm's ViT init (trunc-normal on Linear,
    pos_embed, cls_token; biases 0; LayerNorm (1, 0)), the patch Conv2d left at
    torch's default; vision_proj, text_proj and itm_head left at torch's
    default (uniform +-1/sqrt(fan_in), biases too)."""
    with torch.no_grad():
        for m in model.text_encoder.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0.0, std_bert)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
        model.text_encoder.bert.embeddings.word_embeddings.weight[PAD_ID].zero_()
        model.text_encoder.cls.predictions.bias.zero_()
        vit = model.visual_encoder
        for m in vit.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std_vit, a=-2.0, b=2.0)
                m.bias.zero_()
            elif isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
        nn.init.trunc_normal_(vit.pos_embed, std=std_vit, a=-2.0, b=2.0)
        nn.init.trunc_normal_(vit.cls_token, std=std_vit, a=-2.0, b=2.0)


def init_normal(model, std_bert, std_vit):
    """Every weight matrix, conv and embedding table N(0, std) (the ViT's
    trunc-normal), the projections and itm_head included; biases 0;
    LayerNorm (1, 0); [PAD] row 0. This is the C trainer's initialisation."""
    init_official(model, std_bert, std_vit)
    with torch.no_grad():
        nn.init.trunc_normal_(model.visual_encoder.patch_embed.proj.weight, std=std_vit, a=-2.0, b=2.0)
        model.visual_encoder.patch_embed.proj.bias.zero_()
        for lin in (model.vision_proj, model.text_proj, model.itm_head):
            lin.weight.normal_(0.0, std_bert)
            lin.bias.zero_()


def init_from_checkpoint(model, path):
    """The online weights (official names) from a safetensors file."""
    from safetensors.torch import load_file
    tensors = load_file(path)
    missing = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name not in tensors:
                missing.append(name)
                continue
            t = tensors[name]
            if tuple(t.shape) != tuple(p.shape):
                raise ValueError("%s: tensor %s has shape %s, the model wants %s"
                                 % (path, name, tuple(t.shape), tuple(p.shape)))
            p.copy_(t.to(p.dtype))
    if missing:
        raise ValueError("%s: missing %d tensors, first %s" % (path, len(missing), missing[:3]))


# ------------------------------------------------------------- schedule ----

def lr_at(step, args):
    """Linear warm-up from warmup_lr to lr over warmup_steps, then a cosine
    from lr to min_lr over the remaining steps."""
    if step < args.warmup_steps:
        return args.warmup_lr + (args.lr - args.warmup_lr) * step / args.warmup_steps
    t = (step - args.warmup_steps) / max(1, args.steps - args.warmup_steps)
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * t))


# --------------------------------------------------------------- probes ----

def mean_pairwise_cosine(feat):  # (n, E) unit rows
    n = feat.shape[0]
    sim = feat @ feat.t()
    return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


@torch.no_grad()
def probe(model, tok, probe_images):
    ids, mask = tok.batch(PROBE_CAPTIONS)
    text_feat = model.text_feat(model.bert(ids, mask, mode="text"))
    image_feat = model.image_feat(model.vit(probe_images))
    return mean_pairwise_cosine(text_feat), mean_pairwise_cosine(image_feat)


@torch.no_grad()
def retrieval_recall(model, tok, items, root, res):
    """ITC recall@1 both ways on a retrieval manifest (each image with its
    captions), by raw cosine as ALBEF's first retrieval stage ranks."""
    tf = test_transform(res)
    images = torch.stack([tf(Image.open(os.path.join(root, it["image"])).convert("RGB")) for it in items])
    texts, owner = [], []
    for i, it in enumerate(items):
        for c in (it["caption"] if isinstance(it["caption"], list) else [it["caption"]]):
            texts.append(pre_caption(c))
            owner.append(i)
    owner = torch.tensor(owner)
    image_feat = model.image_feat(model.vit(images))
    text_feat = torch.cat([model.text_feat(model.bert(*tok.batch(texts[k:k + 256]), mode="text"))
                           for k in range(0, len(texts), 256)])
    sim = image_feat @ text_feat.t()  # (N_img, N_txt)
    i2t = float((owner[sim.argmax(1)] == torch.arange(len(items))).float().mean())
    t2i = float((sim.argmax(0) == owner).float().mean())
    return i2t, t2i, len(items), len(texts)


# ----------------------------------------------------------------- main ----

def parse_args():
    ap = argparse.ArgumentParser(description="A short ALBEF pre-training run in PyTorch (dev-only diagnosis).")
    ap.add_argument("--config", default="testdata/configs/tiny.json")
    ap.add_argument("--train", default="demo/data/pretrain.json")
    ap.add_argument("--image-root", default=None, help="root of relative image paths (default: the manifest's folder)")
    ap.add_argument("--vocab", default="demo/data/vocab.txt")
    ap.add_argument("--test-images", default="demo/data/images/test", help="probe images (the first 20 .png)")
    ap.add_argument("--retrieval", default="demo/data/retrieval_test.json", help="'' to skip the final recall")
    ap.add_argument("--retrieval-root", default="demo/data/images")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--min-lr", type=float, default=1e-5)
    ap.add_argument("--warmup-lr", type=float, default=1e-5)
    ap.add_argument("--warmup-steps", type=int, default=20)
    ap.add_argument("--weight-decay", type=float, default=step_ref.WEIGHT_DECAY)
    ap.add_argument("--momentum", type=float, default=None, help="default: the config's")
    ap.add_argument("--alpha", type=float, default=None, help="default: the config's")
    ap.add_argument("--alpha-ramp", type=int, default=None,
                    help="steps over which alpha ramps from 0 (default: one epoch)")
    ap.add_argument("--queue-size", type=int, default=None, help="default: the config's; 0 = no queue")
    ap.add_argument("--queue-start", type=int, default=0,
                    help="ITC reads the queue only from this step on (it is filled all along)")
    ap.add_argument("--itc-only-steps", type=int, default=0, help="ITM and MLM weights are 0 before this step")
    ap.add_argument("--itm-negatives", choices=("hard", "random"), default="hard",
                    help="hard: drawn from the ITC similarities (ALBEF); random: uniform over the other samples")
    ap.add_argument("--temp", type=float, default=None, help="initial temp (default: the config's)")
    ap.add_argument("--fixed-temp", action="store_true", help="do not learn temp")
    ap.add_argument("--init", default="official",
                    help="official | normal | a .safetensors file with the online weights")
    ap.add_argument("--init-std", type=float, default=None,
                    help="std of the BERT (and, without --vit-init-std, ViT) weights (default: initializer_range)")
    ap.add_argument("--vit-init-std", type=float, default=None,
                    help="std of the ViT weights (default: --init-std, else 0.02)")
    ap.add_argument("--augment", choices=("crop", "resize"), default="crop")
    ap.add_argument("--w-itc", type=float, default=1.0)
    ap.add_argument("--w-itm", type=float, default=1.0)
    ap.add_argument("--w-mlm", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1,
                    help="1 by default: on a busy 2-core machine 2 OpenMP threads made the steps 6-40x slower")
    ap.add_argument("--print-every", type=int, default=10)
    ap.add_argument("--probe-every", type=int, default=50)
    ap.add_argument("--log", default=None, help="JSON lines, one per step")
    return ap.parse_args()


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = albef_ref.load_config(args.config)
    bc = cfg["bert_config"]
    momentum = cfg["momentum"] if args.momentum is None else args.momentum
    alpha_max = cfg["alpha"] if args.alpha is None else args.alpha
    Q = cfg["queue_size"] if args.queue_size is None else args.queue_size
    if Q % args.batch:
        sys.exit("queue size %d must be a multiple of the batch %d" % (Q, args.batch))
    cfg = dict(cfg, queue_size=Q)
    if args.temp is not None:
        cfg["temp"] = args.temp
    vocab = bc["vocab_size"]
    res = cfg["image_res"]

    tok = Tokenizer(args.vocab)
    data = PretrainData(args.train, args.image_root, res, args.augment, args.seed)
    steps_per_epoch = len(data) // args.batch
    alpha_ramp = steps_per_epoch if args.alpha_ramp is None else args.alpha_ramp
    tf = test_transform(res)
    names = sorted(n for n in os.listdir(args.test_images) if n.endswith(".png"))[:PROBE_IMAGES]
    probe_images = torch.stack([tf(Image.open(os.path.join(args.test_images, n)).convert("RGB")) for n in names])

    model = albef_ref.AlbefPretrain(cfg)
    std_bert = bc["initializer_range"] if args.init_std is None else args.init_std
    if args.vit_init_std is None and args.init_std is None:
        args.vit_init_std = 0.02
    std_vit = std_bert if args.vit_init_std is None else args.vit_init_std
    if args.init == "official":
        init_official(model, std_bert, std_vit)
    elif args.init == "normal":
        init_normal(model, std_bert, std_vit)
    else:
        init_from_checkpoint(model, args.init)
    with torch.no_grad():
        model.temp.fill_(float(cfg["temp"]))
    if args.fixed_temp:
        model.temp.requires_grad_(False)
    teacher = albef_ref.AlbefPretrain(cfg)
    teacher.load_state_dict(model.state_dict())
    for p in teacher.parameters():
        p.requires_grad_(False)
    E = cfg["embed_dim"]
    g_queue = torch.Generator().manual_seed(args.seed + 1)
    queues = {
        "image_queue": F.normalize(torch.randn(E, Q, generator=g_queue), dim=0),
        "text_queue": F.normalize(torch.randn(E, Q, generator=g_queue), dim=0),
        "queue_ptr": torch.zeros(1, dtype=torch.int64),
    }
    optimizer = step_ref.make_optimizer(model, args.lr)
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if p.requires_grad]
        if group["weight_decay"]:
            group["weight_decay"] = args.weight_decay
    g_mask = torch.Generator().manual_seed(args.seed + 2)
    choose_negatives = step_ref.multinomial_negatives(torch.Generator().manual_seed(args.seed + 3))
    if args.itm_negatives == "random":
        hard = choose_negatives
        off_diagonal = 1.0 - torch.eye(args.batch)
        choose_negatives = lambda w_i2t, w_t2i: hard(off_diagonal, off_diagonal)  # noqa: E731

    print("config %s: %d parameters; init %s (std BERT %g, ViT %g); %d items, %d steps/epoch; batch %d, "
          "steps %d, lr %g (warm-up %d from %g, cosine to %g), momentum %g, alpha %g (ramp %d), queue %d from "
          "step %d, ITC only for %d steps, %s ITM negatives, temp %g%s, augment %s, weights itc/itm/mlm %g/%g/%g" % (
              args.config, sum(p.numel() for p in model.parameters()), args.init, std_bert, std_vit, len(data),
              steps_per_epoch, args.batch, args.steps, args.lr, args.warmup_steps, args.warmup_lr, args.min_lr,
              momentum, alpha_max, alpha_ramp, Q, args.queue_start, args.itc_only_steps, args.itm_negatives,
              cfg["temp"], " (fixed)" if args.fixed_temp else "", args.augment, args.w_itc, args.w_itm, args.w_mlm))
    log = open(args.log, "w") if args.log else None
    c_text, c_image = probe(model, tok, probe_images)
    print("step %4d probe: text cosine %.4f  image cosine %.4f" % (0, c_text, c_image))
    print("step    itc     itm     mlm    temp       lr   alpha  i2t@1")
    t0 = time.time()
    for step in range(args.steps):
        lr = lr_at(step, args)
        alpha = alpha_max * min(1.0, step / alpha_ramp) if alpha_ramp > 0 else alpha_max
        images, texts = data.next_batch(args.batch)
        ids, mask = tok.batch(texts)
        mlm_ids, labels = step_ref.albef_mask(ids, vocab, cfg["mlm_probability"], g_mask)
        inp = {"image": images, "input_ids": ids, "attention_mask": mask,
               "mlm_input_ids": mlm_ids, "mlm_labels": labels}

        model.clamp_temp()
        step_ref.momentum_update(model, teacher, momentum)
        model.zero_grad(set_to_none=True)
        read = queues if step >= args.queue_start else {k: v[:, :0] for k, v in queues.items() if v.ndim == 2}
        out, _, _, feats_m = step_ref.step_forward(model, teacher, read, inp, alpha, choose_negatives)
        fused = 0.0 if step < args.itc_only_steps else 1.0
        loss = (args.w_itc * out["loss_ita"] + fused * args.w_itm * out["loss_itm"]
                + fused * args.w_mlm * out["loss_mlm"])
        loss.backward()
        if Q:
            step_ref.enqueue(queues, *feats_m)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()

        B = args.batch
        top1 = float((out["sim_i2t"][:, :B].argmax(1) == torch.arange(B)).float().mean())
        rec = {"step": step + 1, "loss_itc": float(out["loss_ita"]), "loss_itm": float(out["loss_itm"]),
               "loss_mlm": float(out["loss_mlm"]), "temp": float(out["temp_used"]), "lr": lr, "alpha": alpha,
               "i2t_top1": top1}
        if (step + 1) % args.probe_every == 0 or step + 1 == args.steps:
            rec["text_cosine"], rec["image_cosine"] = probe(model, tok, probe_images)
        if log:
            log.write(json.dumps(rec) + "\n")
        if (step + 1) % args.print_every == 0 or step == 0:
            print("%4d %7.4f %7.4f %7.4f %7.4f %8.2e %6.3f %6.3f" % (
                step + 1, rec["loss_itc"], rec["loss_itm"], rec["loss_mlm"], rec["temp"], lr, alpha, top1))
        if "text_cosine" in rec:
            print("step %4d probe: text cosine %.4f  image cosine %.4f" % (step + 1, rec["text_cosine"],
                                                                        rec["image_cosine"]))
        sys.stdout.flush()
    elapsed = time.time() - t0
    print("%d steps in %.1f s (%.3f s/step); log(B+Q) = %.4f" % (args.steps, elapsed, elapsed / args.steps,
                                                                 math.log(args.batch + Q)))
    if args.retrieval:
        with open(args.retrieval) as f:
            items = json.load(f)
        i2t, t2i, n_img, n_txt = retrieval_recall(model, tok, items, args.retrieval_root, res)
        print("ITC retrieval on %s (%d images, %d captions): i2t R@1 %.3f  t2i R@1 %.3f  (chance %.3f)" % (
            args.retrieval, n_img, n_txt, i2t, t2i, 1.0 / n_img))
    if log:
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
