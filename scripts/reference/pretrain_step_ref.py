#!/usr/bin/python3
# Produces the golden set of two consecutive ALBEF pre-training steps (ITC
# with momentum encoders and queues, ITM on given hard negatives, MLM with
# distillation, the momentum update, the queue update and AdamW), which the
# C trainer must reproduce. The random choices of each step (MLM masking,
# hard-negative indices) are drawn here, seeded, and stored as inputs.
# Writes into OUT:
#   config.json          the model config
#   weights.safetensors  initial online and momentum weights (official names),
#                        image_queue, text_queue, queue_ptr
#   inputs.safetensors   step0.* and step1.*: batch, masking, negatives, alpha, lr
#   outputs.safetensors  step0.* and step1.*: features, similarities, losses,
#                        gradients, parameters, momentum parameters, AdamW
#                        moments and queues after the step
# The committed set is testdata/reference/step/ (see scripts/reference/STEP.md);
# regenerate it from the repository root with
#   /usr/bin/python3 scripts/reference/pretrain_step_ref.py \
#       --config testdata/reference/step/config.json --out testdata/reference/step
# --check-grads also compares autograd against central finite differences in
# float64, the float32 run against a float64 run, and the stored AdamW and
# momentum results against the formulas of STEP.md.
import argparse
import collections
import copy
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import albef_ref  # noqa: E402
from make_goldens import FD_ABS_NOISE, checked_parameters, save_file, special_ids, unravel  # noqa: E402

FORMAT = "albef-reference-step-v1"
# The modules that have a momentum copy (ALBEF's model_pairs); no itm_head_m, no temp_m.
MOMENTUM_MODULES = ("visual_encoder", "vision_proj", "text_encoder", "text_proj")
STEP_ALPHAS = (0.1, 0.4)
STEP_LRS = (1e-4, 1e-4)
BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
WEIGHT_DECAY = 0.02
# Above the clamp's upper bound, so the in-place clamp of step 0 changes temp.
INITIAL_TEMP = 0.51
# The momentum weights start as online + this noise, so the EMA is visible.
MOMENTUM_NOISE = 0.01
# The standard deviation albef_ref.init_weights draws weight matrices with.
INIT_STD = 0.02


def f32(x):
    """The float32 value nearest x, as a Python float: the step uses exactly
    the scalars the inputs file stores."""
    return float(torch.tensor(x, dtype=torch.float32))


def momentum_name(name):
    head, rest = name.split(".", 1)
    return head + "_m." + rest


def has_momentum_copy(name):
    return name.split(".", 1)[0] in MOMENTUM_MODULES


# ---------------------------------------------------------------- state ----

def make_initial_state(cfg, seed, queue_ptr, model_class=albef_ref.AlbefPretrain):
    """Online model (init_weights from seed), its momentum copy (online +
    noise, drawn from seed+1), the queues (random unit columns, seed+1)."""
    model = model_class(cfg)
    albef_ref.init_weights(model, seed)
    with torch.no_grad():
        # At std 0.02 every text gives the same [CLS] feature and every image
        # nearly the same, so a swapped index would not show in the golden.
        # Matrices at std 1/sqrt(fan in) make each sample's features its own.
        for name, p in model.named_parameters():
            if name.endswith(".weight") and p.ndim >= 2:
                p.mul_((p[0].numel() ** -0.5) / INIT_STD)
        model.temp.fill_(INITIAL_TEMP)
    teacher = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in teacher.named_parameters():
            p.requires_grad_(False)
            if has_momentum_copy(name):
                p.add_(MOMENTUM_NOISE * torch.randn(p.shape, generator=g))
    E, Q = cfg["embed_dim"], cfg["queue_size"]
    queues = {
        "image_queue": F.normalize(torch.randn(E, Q, generator=g), dim=0),
        "text_queue": F.normalize(torch.randn(E, Q, generator=g), dim=0),
        "queue_ptr": torch.tensor([queue_ptr], dtype=torch.int64),
    }
    return model, teacher, queues


def make_optimizer(model, lr):
    """ALBEF's two groups (timm's add_weight_decay): no decay for 1-D tensors
    and names ending in .bias; decay for the rest, the 0-dim temp included."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if decays(name, p) else no_decay).append(p)
    groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": WEIGHT_DECAY}]
    return torch.optim.AdamW(groups, lr=lr, betas=BETAS, eps=ADAM_EPS, foreach=False)


def decays(name, p):
    return not (p.ndim == 1 or name.endswith(".bias"))


# --------------------------------------------------------------- inputs ----

def make_batch(cfg, batch, length, g):
    """Image N(0, 1) (as if normalised); [CLS] then ordinary ids then [PAD];
    row 0 fills the length, the other rows are shorter."""
    vocab = cfg["bert_config"]["vocab_size"]
    cls_id, pad_id, _, first_word = special_ids(vocab)
    R = cfg["image_res"]
    image = torch.randn(batch, 3, R, R, generator=g)
    lengths = [length] + [int(x) for x in torch.randint(2, length, (batch - 1,), generator=g)]
    ids = torch.full((batch, length), pad_id, dtype=torch.int64)
    mask = torch.zeros(batch, length, dtype=torch.int64)
    for b, n in enumerate(lengths):
        ids[b, 0] = cls_id
        ids[b, 1:n] = torch.randint(first_word, vocab, (n - 1,), generator=g)
        mask[b, :n] = 1
    return {"image": image, "input_ids": ids, "attention_mask": mask}, lengths


def albef_mask(ids, vocab, probability, g):
    """ALBEF's mask(): Bernoulli(p) per position, never [PAD] or [CLS]; of the
    chosen, Bernoulli(0.8) -> [MASK], else Bernoulli(0.5) -> a random id from
    the whole vocabulary, else kept. Redrawn while nothing is chosen (the
    official code would give a NaN loss there)."""
    cls_id, pad_id, mask_id, _ = special_ids(vocab)
    while True:
        masked = torch.bernoulli(torch.full(ids.shape, probability), generator=g).bool()
        masked &= (ids != pad_id) & (ids != cls_id)
        replaced = torch.bernoulli(torch.full(ids.shape, 0.8), generator=g).bool() & masked
        randomised = torch.bernoulli(torch.full(ids.shape, 0.5), generator=g).bool() & masked & ~replaced
        random_words = torch.randint(vocab, ids.shape, generator=g)
        if masked.any():
            break
    labels = torch.where(masked, ids, torch.full_like(ids, -100))
    mlm_ids = ids.clone()
    mlm_ids[replaced] = mask_id
    mlm_ids[randomised] = random_words[randomised]
    return mlm_ids, labels


def multinomial_negatives(g):
    """Hard negatives as ALBEF draws them: one index per text from w_t2i (its
    image), then one per image from w_i2t (its text)."""
    def choose(w_i2t, w_t2i):
        B = w_i2t.shape[0]
        neg_image = [int(torch.multinomial(w_t2i[b], 1, generator=g)) for b in range(B)]
        neg_text = [int(torch.multinomial(w_i2t[b], 1, generator=g)) for b in range(B)]
        return torch.tensor(neg_image, dtype=torch.int64), torch.tensor(neg_text, dtype=torch.int64)
    return choose


def given_negatives(inp):
    return lambda w_i2t, w_t2i: (inp["neg_image_idx"], inp["neg_text_idx"])


# ----------------------------------------------------------------- step ----

def momentum_update(model, teacher, m):
    """theta_m <- m * theta_m + (1 - m) * theta over the four module pairs;
    named_parameters() lists the tied decoder weight once, so it moves once."""
    online = dict(model.named_parameters())
    with torch.no_grad():
        for name, p_m in teacher.named_parameters():
            if has_momentum_copy(name):
                p_m.copy_(p_m * m + online[name] * (1.0 - m))


def student_features(model, image, ids, mask):
    """The online ViT and text passes and their unit ITC features."""
    image_embeds = model.vit(image)                                          # (B, 1+N, C)
    image_feat = model.image_feat(image_embeds)                              # (B, E)
    text_embeds = model.bert(ids, mask, mode="text")                         # (B, L, H)
    text_feat = model.text_feat(text_embeds)                                 # (B, E)
    return image_embeds, image_feat, text_embeds, text_feat


@torch.no_grad()
def teacher_features(teacher, queues, image, ids, mask):
    """The momentum ViT and text features, and [batch | queue] for each
    modality, with the queues as they were before this step's enqueue."""
    dtype = image.dtype
    image_embeds_m = teacher.vit(image)
    image_feat_m = teacher.image_feat(image_embeds_m)
    image_feat_all = torch.cat([image_feat_m.t(), queues["image_queue"].to(dtype)], dim=1)  # (E, B+Q)
    text_feat_m = teacher.text_feat(teacher.bert(ids, mask, mode="text"))
    text_feat_all = torch.cat([text_feat_m.t(), queues["text_queue"].to(dtype)], dim=1)    # (E, B+Q)
    return image_embeds_m, image_feat_m, text_feat_m, image_feat_all, text_feat_all


def itc_losses(image_feat, text_feat, image_feat_all, text_feat_all, temp, targets_i2t, targets_t2i):
    """Student logits against the momentum [batch | queue] features and the
    soft cross-entropy of each direction against its targets."""
    sim_i2t = image_feat @ text_feat_all / temp                              # (B, B+Q)
    sim_t2i = text_feat @ image_feat_all / temp
    loss_i2t = -torch.sum(F.log_softmax(sim_i2t, dim=1) * targets_i2t, dim=1).mean()
    loss_t2i = -torch.sum(F.log_softmax(sim_t2i, dim=1) * targets_t2i, dim=1).mean()
    return sim_i2t, sim_t2i, loss_i2t, loss_t2i, (loss_i2t + loss_t2i) / 2


def itm_loss(model, text_embeds, mask, image_embeds, w_i2t, w_t2i, choose_negatives):
    """The positive fusion pass, the 2B hard negatives chosen from the
    sampling weights, and the ITM cross-entropy over the 3B rows. Returns
    (itm_logits, loss_itm, (neg_image_idx, neg_text_idx))."""
    B = text_embeds.shape[0]
    pos = model.bert(mask=mask, mode="fusion", encoder_hidden_states=image_embeds,
                     encoder_embeds=text_embeds)                             # (B, L, H)
    neg_image_idx, neg_text_idx = choose_negatives(w_i2t, w_t2i)
    text_embeds_all = torch.cat([text_embeds, text_embeds[neg_text_idx]], dim=0)       # (2B, L, H)
    mask_all = torch.cat([mask, mask[neg_text_idx]], dim=0)
    image_embeds_all = torch.cat([image_embeds[neg_image_idx], image_embeds], dim=0)   # (2B, 1+N, C)
    neg = model.bert(mask=mask_all, mode="fusion", encoder_hidden_states=image_embeds_all,
                     encoder_embeds=text_embeds_all)                         # (2B, L, H)
    itm_logits = model.itm_logits(torch.cat([pos, neg], dim=0))              # (3B, 2)
    itm_labels = torch.cat([torch.ones(B, dtype=torch.int64), torch.zeros(2 * B, dtype=torch.int64)])
    return itm_logits, F.cross_entropy(itm_logits, itm_labels), (neg_image_idx, neg_text_idx)


def step_forward(model, teacher, queues, inp, alpha, choose_negatives, teacher_temp=None):
    """The loss of one step after the temp clamp and the momentum update, in
    model_pretrain.py's order. Reads the queues, does not write them.
    teacher_temp (default: temp) divides the teacher similarities; the finite
    differences hold it fixed, as autograd does. Returns (outputs, loss,
    chosen negatives, the arguments of enqueue after the queues)."""
    dtype = model.temp.dtype
    image = inp["image"].to(dtype)
    ids, mask = inp["input_ids"], inp["attention_mask"]
    B = ids.shape[0]
    temp = model.temp
    temp_m = temp if teacher_temp is None else teacher_temp

    image_embeds, image_feat, text_embeds, text_feat = student_features(model, image, ids, mask)
    image_embeds_m, image_feat_m, text_feat_m, image_feat_all, text_feat_all = teacher_features(
        teacher, queues, image, ids, mask)
    with torch.no_grad():
        sim_i2t_m = image_feat_m @ text_feat_all / temp_m                    # (B, B+Q)
        sim_t2i_m = text_feat_m @ image_feat_all / temp_m
        onehot = torch.zeros_like(sim_i2t_m)
        onehot.fill_diagonal_(1)
        targets_i2t = alpha * F.softmax(sim_i2t_m, dim=1) + (1 - alpha) * onehot
        targets_t2i = alpha * F.softmax(sim_t2i_m, dim=1) + (1 - alpha) * onehot

    sim_i2t, sim_t2i, loss_i2t, loss_t2i, loss_ita = itc_losses(
        image_feat, text_feat, image_feat_all, text_feat_all, temp, targets_i2t, targets_t2i)
    # (The official enqueue happens here; nothing below reads the queues.)

    with torch.no_grad():
        w_i2t = F.softmax(sim_i2t[:, :B], dim=1)
        w_t2i = F.softmax(sim_t2i[:, :B], dim=1)
        w_i2t.fill_diagonal_(0)
        w_t2i.fill_diagonal_(0)
    itm_logits, loss_itm, negatives = itm_loss(model, text_embeds, mask, image_embeds, w_i2t, w_t2i,
                                               choose_negatives)

    mlm_ids, labels = inp["mlm_input_ids"], inp["mlm_labels"]
    with torch.no_grad():
        logits_m = teacher.mlm_logits(teacher.bert(mlm_ids, mask, mode="multi_modal",
                                                   encoder_hidden_states=image_embeds_m))  # (B, L, V)
        soft_labels = F.softmax(logits_m, dim=-1)
    logits = model.mlm_logits(model.bert(mlm_ids, mask, mode="multi_modal",
                                         encoder_hidden_states=image_embeds))  # (B, L, V)
    V = logits.shape[-1]
    loss_mlm_ce = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100)
    distill = -torch.sum(F.log_softmax(logits, dim=-1) * soft_labels, dim=-1)  # (B, L)
    loss_mlm_distill = distill[labels != -100].mean()
    loss_mlm = (1 - alpha) * loss_mlm_ce + alpha * loss_mlm_distill

    loss = loss_mlm + loss_ita + loss_itm
    labelled = labels != -100
    out = {
        "temp_used": temp, "image_embeds": image_embeds, "text_embeds": text_embeds,
        "image_embeds_m": image_embeds_m,
        "image_feat": image_feat, "text_feat": text_feat, "image_feat_m": image_feat_m, "text_feat_m": text_feat_m,
        "sim_i2t": sim_i2t, "sim_t2i": sim_t2i, "sim_i2t_m": sim_i2t_m, "sim_t2i_m": sim_t2i_m,
        "loss_i2t": loss_i2t, "loss_t2i": loss_t2i, "loss_ita": loss_ita,
        "w_i2t": w_i2t, "w_t2i": w_t2i, "itm_logits": itm_logits, "loss_itm": loss_itm,
        "mlm_logits": logits[labelled], "mlm_logits_m": logits_m[labelled],
        "loss_mlm_ce": loss_mlm_ce, "loss_mlm_distill": loss_mlm_distill, "loss_mlm": loss_mlm,
        "loss": loss,
    }
    return out, loss, negatives, (image_feat_m, text_feat_m)


def enqueue(queues, image_feat_m, text_feat_m, idx=None):
    """_dequeue_and_enqueue with one process: columns [ptr, ptr+B) <- features
    (and, for retrieval, idx_queue's entries <- the image indices),
    ptr <- (ptr + B) mod Q."""
    B, Q = image_feat_m.shape[0], queues["image_queue"].shape[1]
    ptr = int(queues["queue_ptr"][0])
    if idx is not None:
        queues["idx_queue"][0, ptr:ptr + B] = idx
    queues["image_queue"][:, ptr:ptr + B] = image_feat_m.t().to(queues["image_queue"].dtype)
    queues["text_queue"][:, ptr:ptr + B] = text_feat_m.t().to(queues["text_queue"].dtype)
    queues["queue_ptr"][0] = (ptr + B) % Q


# What the objectives of the step goldens differ in: the initial state
# (model class, queues) from (cfg, args), the loss of one step (step_forward's
# signature), whether temp is clamped before the step, and the parameters whose
# gradients the finite differences check (from cfg).
Objective = collections.namedtuple("Objective", "initial_state forward clamps_temp checked_parameters")
PRETRAIN = Objective(initial_state=lambda cfg, args: make_initial_state(cfg, args.seed, args.queue_ptr),
                     forward=step_forward, clamps_temp=True, checked_parameters=checked_parameters)


def train_step(model, teacher, queues, optimizer, inp, alpha, lr, momentum, choose_negatives, objective=PRETRAIN):
    """One full step. Returns (outputs, negatives); outputs hold the step's
    values, the gradients and the state after the step."""
    if objective.clamps_temp:
        model.clamp_temp()
    momentum_update(model, teacher, momentum)
    model.zero_grad(set_to_none=True)
    out, loss, negatives, feats_m = objective.forward(model, teacher, queues, inp, alpha, choose_negatives)
    loss.backward()
    enqueue(queues, *feats_m)
    result = {k: v.detach().clone() for k, v in out.items()}
    for name, p in model.named_parameters():
        result["grad." + name] = torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    state = optimizer.state
    for name, p in model.named_parameters():
        result["param." + name] = p.detach().clone()
        result["exp_avg." + name] = state[p]["exp_avg"].clone()
        result["exp_avg_sq." + name] = state[p]["exp_avg_sq"].clone()
    for name, p in teacher.named_parameters():
        if has_momentum_copy(name):
            result["param_m." + name] = p.detach().clone()
    for k, v in queues.items():
        result[k] = v.clone()
    return result, negatives


def run_steps(model, teacher, queues, step_inputs, momentum, choose_negatives_per_step, objective=PRETRAIN):
    """Runs the steps in order with a fresh AdamW; returns one result per step."""
    optimizer = make_optimizer(model, step_inputs[0]["lr"])
    results, negatives = [], []
    for k, inp in enumerate(step_inputs):
        r, neg = train_step(model, teacher, queues, optimizer, inp, inp["alpha"], inp["lr"], momentum,
                            choose_negatives_per_step(k, inp), objective)
        results.append(r)
        negatives.append(neg)
    return results, negatives


# --------------------------------------------------------------- output ----

def weights_tensors(model, teacher, queues):
    """Official names: the online state dict, the momentum modules' entries
    under their _m names (tied entries duplicated, like a torch.save'd
    state dict), the queues and the pointer."""
    tensors = albef_ref.state_dict_for_saving(model)
    for name, v in albef_ref.state_dict_for_saving(teacher).items():
        if has_momentum_copy(name):
            tensors[momentum_name(name)] = v
    for k, v in queues.items():
        tensors[k] = v.clone()
    return tensors


def prefixed(prefix, d):
    out = {}
    for k, v in d.items():
        v = v.detach()
        out[prefix + k] = (v.float() if v.is_floating_point() else v).contiguous()
    return out


# --------------------------------------------------------- --check-grads ----

def to_double(model, teacher, queues):
    m64, t64 = copy.deepcopy(model).double(), copy.deepcopy(teacher).double()
    q64 = {k: (v.double() if v.is_floating_point() else v.clone()) for k, v in queues.items()}
    return m64, t64, q64


def check_finite_differences(model, teacher, queues, inp, alpha, label, objective, step=1e-4):
    """Autograd against a 4-point central difference of the float64 loss at
    two elements of each checked parameter, with the step's state already
    clamped and momentum-updated (the teacher is a constant of the loss)."""
    model.zero_grad(set_to_none=True)
    fixed = given_negatives(inp)
    _, loss, _, _ = objective.forward(model, teacher, queues, inp, alpha, fixed)
    loss.backward()
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(4321)
    temp_m = model.temp.detach().clone()

    def loss_at():
        with torch.no_grad():
            return float(objective.forward(model, teacher, queues, inp, alpha, fixed, temp_m)[1])

    print("%s: finite differences (float64, 4-point stencil, step %g):" % (label, step))
    worst = 0.0
    for name in objective.checked_parameters(model.cfg):
        p = params[name]
        grad = p.grad.detach().clone()
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
            err = abs(fd - ag) / (abs(ag) + FD_ABS_NOISE)
            worst = max(worst, err)
            print("  %-68s %-12s autograd % .10e  fd % .10e  err %.1e" % (name, list(idx), ag, fd, err))
    model.zero_grad(set_to_none=True)
    return worst


def check_update_formulas(model0, teacher0, results, step_inputs, momentum, clamps_temp):
    """The stored float32 parameters, moments and momentum parameters after
    each step, recomputed from the stored gradients with the formulas that
    STEP.md gives (float32 tensors, scalars as torch forms them)."""
    names = [n for n, _ in model0.named_parameters()]
    shape_of = dict(model0.named_parameters())
    param = {n: p.detach().clone() for n, p in model0.named_parameters()}
    param_m = {n: p.detach().clone() for n, p in teacher0.named_parameters() if has_momentum_copy(n)}
    exp_avg = {n: torch.zeros_like(param[n]) for n in names}
    exp_avg_sq = {n: torch.zeros_like(param[n]) for n in names}
    b1, b2 = BETAS
    worst = 0.0
    for k, (r, inp) in enumerate(zip(results, step_inputs)):
        lr, t = inp["lr"], k + 1
        if clamps_temp:
            param["temp"] = param["temp"].clamp(0.001, 0.5)
        for n in param_m:
            param_m[n] = param_m[n] * momentum + param[n] * (1.0 - momentum)
        for n in names:
            g = r["grad." + n]
            wd = WEIGHT_DECAY if decays(n, shape_of[n]) else 0.0
            p = param[n] * (1 - lr * wd)
            exp_avg[n] = exp_avg[n] * b1 + g * (1 - b1)
            exp_avg_sq[n] = exp_avg_sq[n] * b2 + g * g * (1 - b2)
            denom = exp_avg_sq[n].sqrt() / ((1 - b2 ** t) ** 0.5) + ADAM_EPS
            param[n] = p - (lr / (1 - b1 ** t)) * (exp_avg[n] / denom)
        for store, key in ((param, "param."), (param_m, "param_m."), (exp_avg, "exp_avg."),
                           (exp_avg_sq, "exp_avg_sq.")):
            for n, v in store.items():
                ref = r[key + n]
                scale = float(ref.abs().max())
                d = float((v - ref).abs().max())
                worst = max(worst, d / scale if scale > 0 else d)
    print("AdamW / momentum formulas of STEP.md vs the stored float32 results: worst max|a-b|/max|b| %.2e" % worst)
    return worst


def check_against_float64(model0, teacher0, queues0, step_inputs, results32, momentum, objective):
    """Reruns the steps in float64 and prints how far the float32 results are.
    Elements whose gradient is 0 in exact arithmetic (the attention key
    biases: softmax ignores a per-row constant) get float32 noise as their
    gradient, which AdamW scales up to an update of about lr; they are
    reported apart, by absolute difference."""
    m64, t64, q64 = to_double(model0, teacher0, queues0)
    results64, _ = run_steps(m64, t64, q64, step_inputs, momentum, lambda k, inp: given_negatives(inp), objective)
    print("float32 run vs float64 run, max |a-b| / max |b| per tensor, exact-zero-gradient elements "
          "left out (worst 6 of each step):")
    zero_grad = {}
    worst_rel, worst_abs = {}, {}
    for k in range(len(step_inputs)):
        for name, g64 in results64[k].items():
            if name.startswith("grad."):
                n = name[len("grad."):]
                zero_grad[n] = zero_grad.get(n, torch.zeros_like(g64, dtype=torch.bool)) | (g64.abs() < 1e-12)
        errs = []
        for name, v64 in results64[k].items():
            if not v64.is_floating_point():
                continue
            kind, _, n = name.partition(".")
            if kind not in ("grad", "param", "param_m", "exp_avg", "exp_avg_sq"):
                kind, n = "activations/losses", None
            diff = (results32[k][name].double() - v64.double()).abs()
            zero = zero_grad[n] if n is not None and kind != "grad" else torch.zeros_like(diff, dtype=torch.bool)
            if kind == "grad":
                zero = v64.abs() < 1e-12
            if zero.any():
                worst_abs[kind] = max(worst_abs.get(kind, 0.0), float(diff[zero].max()))
            if (~zero).any():
                scale = float(v64.abs()[~zero].max())
                e = float(diff[~zero].max()) / scale
                errs.append((e, name, scale))
                worst_rel[kind] = max(worst_rel.get(kind, 0.0), e)
        for e, name, scale in sorted(errs, reverse=True)[:6]:
            print("  step%d.%-70s %.2e  (max |b| %.2e)" % (k, name, e, scale))
    print("worst relative per kind: " + ", ".join("%s %.1e" % kv for kv in sorted(worst_rel.items())))
    print("exact-zero-gradient elements (%s), worst absolute difference per kind: %s" % (
        ", ".join(sorted(n for n, z in zero_grad.items() if z.any())),
        ", ".join("%s %.1e" % kv for kv in sorted(worst_abs.items()))))
    return results64


def self_check(cfg, args, step_inputs, results32, objective=PRETRAIN):
    model0, teacher0, queues0 = objective.initial_state(cfg, args)
    momentum = cfg["momentum"]
    worst_formula = check_update_formulas(model0, teacher0, results32, step_inputs, momentum, objective.clamps_temp)
    check_against_float64(model0, teacher0, queues0, step_inputs, results32, momentum, objective)

    # Finite differences at each step's state: rerun the float64 steps,
    # checking each step's loss before taking it.
    m64, t64, q64 = to_double(model0, teacher0, queues0)
    optimizer = make_optimizer(m64, step_inputs[0]["lr"])
    worst_fd = 0.0
    for k, inp in enumerate(step_inputs):
        if objective.clamps_temp:
            m64.clamp_temp()
        momentum_update(m64, t64, momentum)
        worst_fd = max(worst_fd, check_finite_differences(m64, t64, q64, inp, inp["alpha"], "step%d" % k, objective))
        # The rest of train_step, from the state just checked.
        m64.zero_grad(set_to_none=True)
        _, loss, _, feats_m = objective.forward(m64, t64, q64, inp, inp["alpha"], given_negatives(inp))
        loss.backward()
        enqueue(q64, *feats_m)
        for group in optimizer.param_groups:
            group["lr"] = inp["lr"]
        optimizer.step()
    print("worst finite-difference error |fd - ag| / (|ag| + %g): %.2e" % (FD_ABS_NOISE, worst_fd))
    return worst_fd, worst_formula


# ----------------------------------------------------------------- main ----

def main():
    ap = argparse.ArgumentParser(description="Writes the two-step ALBEF pre-training golden set "
                                             "(see scripts/reference/STEP.md).")
    ap.add_argument("--config", required=True, help="model config JSON (queue_size a multiple of --batch)")
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--length", type=int, default=10, help="text length L, [CLS] included")
    ap.add_argument("--seed", type=int, default=0,
                    help="weights from SEED, momentum noise and queues from SEED+1, batches and masking "
                         "from SEED+2, negatives from SEED+3")
    ap.add_argument("--queue-ptr", type=int, default=6, help="initial queue_ptr, a multiple of --batch")
    ap.add_argument("--steps", type=int, default=2,
                    help="consecutive steps (alpha cycles through 0.1, 0.4; the committed golden has 2)")
    ap.add_argument("--check-grads", action="store_true",
                    help="also check gradients by finite differences in float64, the float32 run against "
                         "float64, and the update formulas")
    args = ap.parse_args()

    torch.set_num_threads(1)
    cfg = albef_ref.load_config(args.config)
    B, L, Q = args.batch, args.length, cfg["queue_size"]
    if B < 2 or L < 3 or L > cfg["bert_config"]["max_position_embeddings"]:
        ap.error("need batch >= 2 and 3 <= length <= max_position_embeddings")
    if Q % B or args.queue_ptr % B or not 0 <= args.queue_ptr < Q:
        ap.error("queue_size %d and queue_ptr %d must be multiples of batch %d, ptr < queue_size"
                 % (Q, args.queue_ptr, B))
    vocab = cfg["bert_config"]["vocab_size"]
    cls_id, pad_id, mask_id, _ = special_ids(vocab)
    momentum = cfg["momentum"]

    t0 = time.time()
    model, teacher, queues = make_initial_state(cfg, args.seed, args.queue_ptr)
    weights = weights_tensors(model, teacher, queues)

    g_inputs = torch.Generator().manual_seed(args.seed + 2)
    step_inputs, lengths = [], []
    for k in range(args.steps):
        alpha, lr = STEP_ALPHAS[k % len(STEP_ALPHAS)], STEP_LRS[k % len(STEP_LRS)]
        inp, n = make_batch(cfg, B, L, g_inputs)
        inp["mlm_input_ids"], inp["mlm_labels"] = albef_mask(inp["input_ids"], vocab,
                                                             cfg.get("mlm_probability", 0.15), g_inputs)
        inp["alpha"], inp["lr"] = f32(alpha), f32(lr)
        step_inputs.append(inp)
        lengths.append(n)

    g_neg = torch.Generator().manual_seed(args.seed + 3)
    t1 = time.time()
    results, negatives = run_steps(model, teacher, queues, step_inputs, momentum,
                                   lambda k, inp: multinomial_negatives(g_neg))
    t2 = time.time()
    for inp, (neg_image, neg_text) in zip(step_inputs, negatives):
        inp["neg_image_idx"], inp["neg_text_idx"] = neg_image, neg_text

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2) + "\n")
    common = {
        "format": FORMAT, "seed": str(args.seed), "batch_size": str(B), "text_length": str(L),
        "queue_size": str(Q), "steps": str(len(step_inputs)), "initial_queue_ptr": str(args.queue_ptr),
        "cls_id": str(cls_id), "pad_id": str(pad_id), "mask_id": str(mask_id),
        "torch_version": torch.__version__,
    }
    n_masked = [int((inp["mlm_labels"] != -100).sum()) for inp in step_inputs]
    inputs_out, outputs_out = {}, {}
    for k, (inp, r) in enumerate(zip(step_inputs, results)):
        scalars = {"alpha": torch.tensor(inp["alpha"]), "lr": torch.tensor(inp["lr"])}
        tensors = {n: v for n, v in inp.items() if n not in scalars}
        inputs_out.update(prefixed("step%d." % k, {**tensors, **scalars}))
        outputs_out.update(prefixed("step%d." % k, r))
    save_file(weights, os.path.join(args.out, "weights.safetensors"),
              metadata={**common, "config": json.dumps(cfg), "momentum_noise": repr(MOMENTUM_NOISE)})
    save_file(inputs_out, os.path.join(args.out, "inputs.safetensors"),
              metadata={**common, "text_lengths": json.dumps(lengths)})
    save_file(outputs_out, os.path.join(args.out, "outputs.safetensors"),
              metadata={**common, "n_masked": json.dumps(n_masked)})
    t3 = time.time()

    n_params = sum(p.numel() for p in model.parameters())
    print("wrote %s: %d parameters, batch %d, length %d, queue %d, masked %s" % (args.out, n_params, B, L, Q, n_masked))
    for k, r in enumerate(results):
        print("  step%d: alpha %.3g lr %.3g  loss %.7f = ita %.7f + itm %.7f + mlm %.7f; temp %.7f; queue_ptr %d; "
              "neg_image_idx %s neg_text_idx %s" % (
                  k, step_inputs[k]["alpha"], step_inputs[k]["lr"], float(r["loss"]), float(r["loss_ita"]),
                  float(r["loss_itm"]), float(r["loss_mlm"]), float(r["temp_used"]), int(r["queue_ptr"][0]),
                  step_inputs[k]["neg_image_idx"].tolist(), step_inputs[k]["neg_text_idx"].tolist()))
    print("time: init %.1f s, steps %.1f s, write %.1f s" % (t1 - t0, t2 - t1, t3 - t2))
    for name in ("config.json", "weights.safetensors", "inputs.safetensors", "outputs.safetensors"):
        print("  %-20s %10d bytes" % (name, os.path.getsize(os.path.join(args.out, name))))
    if args.check_grads:
        worst_fd, worst_formula = self_check(cfg, args, step_inputs, results)
        if worst_fd > 1e-4 or worst_formula > 1e-6:
            print("FAILED: finite differences or update formulas disagree", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
