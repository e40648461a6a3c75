# The PyTorch reference of the ALBEF pretraining model, and of the retrieval
# model's modules (online model only: no momentum copies, no queues), used to
# produce the golden files that the C model is checked against. Dev-only:
# nothing in the build or `make test` imports it. See
# scripts/reference/README.md.
#
# The architecture follows ALBEF-SPEC.md section 1: a pre-LN ViT
# (LayerNorm eps 1e-6) and a post-LN BERT (eps 1e-12) whose layers at or above
# `fusion_layer` add cross-attention to all image tokens. State-dict keys are
# the official names (spec sections 6.3 and 6.4). Dropout is left out
# entirely: the reference exists for deterministic parity runs.
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# Added to masked attention scores, as the official BertModel does (fp32).
TEXT_MASK_VALUE = -10000.0


def load_config(path):
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- ViT ----

class PatchEmbed(nn.Module):
    def __init__(self, patch_size, width):
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, image):  # (B, 3, R, R) -> (B, N, C), patches y-major
        return self.proj(image).flatten(2).transpose(1, 2)


class VitAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x):  # (B, N, C)
        B, N, C = x.shape
        d = C // self.heads
        # Output columns are [q | k | v], each split into heads of d.
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, h, N, d)
        att = torch.softmax((q @ k.transpose(-2, -1)) * d ** -0.5, dim=-1)
        out = (att @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(out)


class VitMlp(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class VitBlock(nn.Module):
    def __init__(self, width, heads, mlp_hidden, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = VitAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = VitMlp(width, mlp_hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        width = cfg["vision_width"]
        grid = cfg["image_res"] // cfg["patch_size"]
        eps = cfg.get("vision_layer_norm_eps", 1e-6)
        mlp_hidden = int(width * cfg.get("vision_mlp_ratio", 4))
        self.patch_embed = PatchEmbed(cfg["patch_size"], width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, width))
        self.blocks = nn.ModuleList(
            VitBlock(width, cfg["vision_num_heads"], mlp_hidden, eps) for _ in range(cfg["vision_depth"]))
        self.norm = nn.LayerNorm(width, eps=eps)

    def forward(self, image):  # (B, 3, R, R) -> (B, 1+N, C), all tokens after the final LN
        x = self.patch_embed(image)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed[:, :x.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


# --------------------------------------------------------------- BERT ----

class BertEmbeddings(nn.Module):
    def __init__(self, bc):
        super().__init__()
        H = bc["hidden_size"]
        self.word_embeddings = nn.Embedding(bc["vocab_size"], H)
        self.position_embeddings = nn.Embedding(bc["max_position_embeddings"], H)
        self.token_type_embeddings = nn.Embedding(bc["type_vocab_size"], H)
        self.LayerNorm = nn.LayerNorm(H, eps=bc["layer_norm_eps"])
        # Saved like the official checkpoints so that loaders learn to skip it.
        self.register_buffer("position_ids", torch.arange(bc["max_position_embeddings"]).unsqueeze(0))

    def forward(self, ids):  # (B, L) -> (B, L, H)
        L = ids.shape[1]
        # The token type is always 0: row 0 is added to every token.
        e = (self.word_embeddings(ids) + self.token_type_embeddings.weight[0]
             + self.position_embeddings(self.position_ids[:, :L]))
        return self.LayerNorm(e)


class BertSelfAttention(nn.Module):
    def __init__(self, H, heads, kv_width):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(H, H)
        self.key = nn.Linear(kv_width, H)
        self.value = nn.Linear(kv_width, H)

    def split(self, x):  # (B, n, H) -> (B, h, n, d)
        B, n, H = x.shape
        return x.reshape(B, n, self.heads, H // self.heads).transpose(1, 2)

    def forward(self, h, context, additive_mask):
        q = self.split(self.query(h))
        k = self.split(self.key(context))
        v = self.split(self.value(context))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if additive_mask is not None:
            scores = scores + additive_mask  # (B, 1, 1, n_keys)
        out = torch.softmax(scores, dim=-1) @ v  # (B, h, L, d)
        B, _, L, _ = out.shape
        return out.transpose(1, 2).reshape(B, L, -1)


class BertSelfOutput(nn.Module):  # also the output of the cross-attention
    def __init__(self, H, eps):
        super().__init__()
        self.dense = nn.Linear(H, H)
        self.LayerNorm = nn.LayerNorm(H, eps=eps)

    def forward(self, x, residual):
        return self.LayerNorm(residual + self.dense(x))


class BertAttention(nn.Module):
    def __init__(self, H, heads, kv_width, eps):
        super().__init__()
        self.self = BertSelfAttention(H, heads, kv_width)
        self.output = BertSelfOutput(H, eps)

    def forward(self, h, context, additive_mask):
        return self.output(self.self(h, context, additive_mask), h)


class BertIntermediate(nn.Module):
    def __init__(self, H, I):
        super().__init__()
        self.dense = nn.Linear(H, I)

    def forward(self, x):
        return F.gelu(self.dense(x))


class BertOutput(nn.Module):
    def __init__(self, I, H, eps):
        super().__init__()
        self.dense = nn.Linear(I, H)
        self.LayerNorm = nn.LayerNorm(H, eps=eps)

    def forward(self, x, residual):
        return self.LayerNorm(residual + self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, bc, has_cross):
        super().__init__()
        H, eps, heads = bc["hidden_size"], bc["layer_norm_eps"], bc["num_attention_heads"]
        self.attention = BertAttention(H, heads, H, eps)
        if has_cross:
            self.crossattention = BertAttention(H, heads, bc["encoder_width"], eps)
        self.has_cross = has_cross
        self.intermediate = BertIntermediate(H, bc["intermediate_size"])
        self.output = BertOutput(bc["intermediate_size"], H, eps)

    def forward(self, h, text_mask, image):
        h = self.attention(h, h, text_mask)
        if self.has_cross:
            # The image mask is all ones, so cross-attention adds nothing.
            h = self.crossattention(h, image, None)
        return self.output(self.intermediate(h), h)


class BertEncoder(nn.Module):
    def __init__(self, bc):
        super().__init__()
        self.layer = nn.ModuleList(
            BertLayer(bc, i >= bc["fusion_layer"]) for i in range(bc["num_hidden_layers"]))


class BertModel(nn.Module):
    def __init__(self, bc):
        super().__init__()
        self.fusion_layer = bc["fusion_layer"]
        self.embeddings = BertEmbeddings(bc)
        self.encoder = BertEncoder(bc)

    def forward(self, input_ids=None, attention_mask=None, mode="multi_modal",
                encoder_hidden_states=None, encoder_embeds=None):
        """mode 'text': layers [0, fusion_layer) on input_ids;
        'fusion': layers [fusion_layer, n) on encoder_embeds (the text output);
        'multi_modal': all layers on input_ids. Returns (B, L, H)."""
        if mode == "fusion":
            h = encoder_embeds
            layers = self.encoder.layer[self.fusion_layer:]
        else:
            h = self.embeddings(input_ids)
            layers = self.encoder.layer[:self.fusion_layer] if mode == "text" else self.encoder.layer
        if mode != "text" and encoder_hidden_states is None:
            raise ValueError("mode %r needs encoder_hidden_states (the image tokens)" % mode)
        mask = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * TEXT_MASK_VALUE
        for layer in layers:
            h = layer(h, mask, encoder_hidden_states)
        return h


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, bc):
        super().__init__()
        H = bc["hidden_size"]
        self.dense = nn.Linear(H, H)
        self.LayerNorm = nn.LayerNorm(H, eps=bc["layer_norm_eps"])

    def forward(self, x):
        return self.LayerNorm(F.gelu(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, bc, word_embeddings):
        super().__init__()
        self.transform = BertPredictionHeadTransform(bc)
        self.bias = nn.Parameter(torch.zeros(bc["vocab_size"]))
        self.decoder = nn.Linear(bc["hidden_size"], bc["vocab_size"])
        # Tied as in HF: the decoder weight is the word-embedding table and the
        # decoder bias is `bias`; the state dict lists each under both names.
        self.decoder.weight = word_embeddings.weight
        self.decoder.bias = self.bias

    def forward(self, h):  # (B, L, H) -> (B, L, V)
        return self.decoder(self.transform(h))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, bc, word_embeddings):
        super().__init__()
        self.predictions = BertLMPredictionHead(bc, word_embeddings)


class BertForMaskedLM(nn.Module):
    def __init__(self, bc):
        super().__init__()
        self.bert = BertModel(bc)
        self.cls = BertOnlyMLMHead(bc, self.bert.embeddings.word_embeddings)


# -------------------------------------------------------------- ALBEF ----

class AlbefPretrain(nn.Module):
    text_encoder_class = BertForMaskedLM

    def __init__(self, cfg):
        super().__init__()
        bc = cfg["bert_config"]
        if bc["encoder_width"] != cfg["vision_width"]:
            raise ValueError("bert_config.encoder_width %d != vision_width %d"
                             % (bc["encoder_width"], cfg["vision_width"]))
        self.cfg = cfg
        self.visual_encoder = VisionTransformer(cfg)
        self.text_encoder = self.text_encoder_class(bc)
        self.vision_proj = nn.Linear(cfg["vision_width"], cfg["embed_dim"])
        self.text_proj = nn.Linear(bc["hidden_size"], cfg["embed_dim"])
        self.itm_head = nn.Linear(bc["hidden_size"], 2)
        self.temp = nn.Parameter(torch.tensor(float(cfg["temp"])))

    def vit(self, image):
        return self.visual_encoder(image)

    def bert(self, ids=None, mask=None, mode="multi_modal", encoder_hidden_states=None, encoder_embeds=None):
        return self.text_encoder.bert(ids, mask, mode, encoder_hidden_states, encoder_embeds)

    def mlm_logits(self, hidden):  # (..., H) -> (..., V)
        return self.text_encoder.cls.predictions(hidden)

    def image_feat(self, V):  # (B, 1+N, C) -> (B, E), unit rows
        return F.normalize(self.vision_proj(V[:, 0]), dim=-1)

    def text_feat(self, T):  # (B, L, H) -> (B, E), unit rows
        return F.normalize(self.text_proj(T[:, 0]), dim=-1)

    def itm_logits(self, M):  # (n, L, H) -> (n, 2); class 1 = match
        return self.itm_head(M[:, 0])

    def clamp_temp(self):
        # The pretraining forward clamps temp in place before every step.
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)

    def unique_parameter_names(self):
        """Every parameter once, under its first name (the word embeddings and
        cls.predictions.bias, not the decoder aliases)."""
        return [name for name, _ in self.named_parameters()]


class AlbefRetrieval(AlbefPretrain):
    """The modules of model_retrieval.ALBEF (ALBEF-SPEC.md 5.1, 6.4): the text
    encoder is a plain BertModel, so its names have no "bert." and there is
    no MLM head. Its forward never clamps temp."""
    text_encoder_class = BertModel

    def bert(self, ids=None, mask=None, mode="multi_modal", encoder_hidden_states=None, encoder_embeds=None):
        return self.text_encoder(ids, mask, mode, encoder_hidden_states, encoder_embeds)

    def mlm_logits(self, hidden):
        raise TypeError("the retrieval model has no MLM head")

    def clamp_temp(self):
        raise TypeError("the retrieval model does not clamp temp")


def init_weights(model, seed):
    """Golden-file initialisation: every weight ~ N(0, 0.02) (pos_embed and
    cls_token too), every bias ~ N(0, 0.02) so bias gradients are not
    trivially tested, LayerNorm weight 1 + N(0, 0.1), bias N(0, 0.1),
    temp = config temp. Drawn in named_parameters() order from one seed."""
    torch.manual_seed(seed)
    layer_norms = {id(m) for m in model.modules() if isinstance(m, nn.LayerNorm)}
    owner = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            owner.setdefault(id(p), m)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "temp":
                p.fill_(float(model.cfg["temp"]))
            elif id(owner[id(p)]) in layer_norms:
                if name.endswith(".weight"):
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.02 * torch.randn_like(p))


def state_dict_for_saving(model):
    """The state dict with every entry its own contiguous tensor (the tied
    entries duplicated), as safetensors cannot store shared storage."""
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
