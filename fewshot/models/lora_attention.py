"""CLIP-LoRA's adapters (Zanella & Ben Ayed, CVPRW 2024): low-rank updates of the query, key and
value projections of CLIP's attention, with dropout on their input.

Read from ``MaxZanella/CLIP-LoRA`` (commit 358f0d7, ``loralib/layers.py``: ``LinearLoRA`` and
``PlainMultiheadAttentionLoRA``; ``loralib/utils.py``: ``apply_lora``). For an input x of a
projection W (bias b), the adapted projection is

    W·x + b + s·B·A·drop(x),     s = alpha / √rank (the official scaling, not LoRA's alpha/rank)

A [rank, in] Kaiming-uniform (a = √5: bound 1/√in), B [out, rank] zeros, so training starts at
the frozen model; dropout (0.25) acts on the low-rank branch's input only, and only in training.
q, k and v each get their own A, B and dropout mask; the output projection is not adapted.

The dropout is why this is not a weight parametrisation (:mod:`fewshot.models.lora`): the update is an
extra branch of the forward, so the attention module is replaced by one that computes q, k, v
itself (:class:`LoRAMultiheadAttention` for the transformer blocks of both towers,
:class:`LoRAAttentionPool` for a ResNet's attention pool, the suite's stated RN50 variant).
``mix`` scales every update (WiSE-FT of LoRA: α·ΔW); :func:`merge` folds the updates into the
original modules' weights and puts those back.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LoRAProjection", "LoRAMultiheadAttention", "LoRAAttentionPool", "add_clip_lora",
           "lora_modules", "set_mix", "merge"]


class LoRAProjection(nn.Module):
    """The low-rank branch of one projection: x [..., in] -> mix·s·drop(x)·Aᵀ·Bᵀ [..., out]."""

    def __init__(self, d_in: int, d_out: int, rank: int, alpha: float, dropout: float, gen: torch.Generator):
        super().__init__()
        bound = 1 / math.sqrt(d_in)  # kaiming_uniform_(a=√5) on a [rank, d_in] tensor
        self.A = nn.Parameter((torch.rand(rank, d_in, generator=gen) * 2 - 1) * bound)
        self.B = nn.Parameter(torch.zeros(d_out, rank))
        self.drop = nn.Dropout(dropout)
        self.scale, self.mix = alpha / math.sqrt(rank), 1.0

    def delta(self) -> torch.Tensor:
        """The weight update mix·s·B·A [out, in]."""
        return (self.mix * self.scale) * (self.B @ self.A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        A, B = self.A.to(x.dtype), self.B.to(x.dtype)
        return (self.mix * self.scale) * (self.drop(x) @ A.T @ B.T)


def _attend(q, k, v, heads: int, mask=None) -> torch.Tensor:
    """Scaled dot-product attention of sequence-first q [Lq, N, D], k, v [Lk, N, D], split into
    ``heads`` heads as ``nn.MultiheadAttention`` splits them; an additive ``mask`` [Lq, Lk]."""
    lq, n, d = q.shape
    hd = d // heads

    def split(t):
        return t.reshape(t.shape[0], n * heads, hd).transpose(0, 1).reshape(n, heads, t.shape[0], hd)

    if mask is not None:
        mask = mask.to(q.dtype)
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
    return out.permute(2, 0, 1, 3).reshape(lq, n, d)


def _branches(d: int, rank, alpha, dropout, gen, device) -> nn.ModuleDict:
    return nn.ModuleDict({p: LoRAProjection(d, d, rank, alpha, dropout, gen) for p in "qkv"}).to(device)


class LoRAMultiheadAttention(nn.Module):
    """A frozen ``nn.MultiheadAttention`` (sequence-first, as CLIP's blocks call it) with LoRA on
    q, k, v; called like it (``attn(x, x, x, need_weights=False, attn_mask=m)``)."""

    def __init__(self, base: nn.MultiheadAttention, rank: int, alpha: float, dropout: float, gen):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora = _branches(base.embed_dim, rank, alpha, dropout, gen, base.in_proj_weight.device)

    def forward(self, query, key, value, need_weights: bool = False, attn_mask=None):
        ws, bs = self.base.in_proj_weight.chunk(3), self.base.in_proj_bias.chunk(3)
        q, k, v = (F.linear(x, w, b) + self.lora[p](x) for x, w, b, p in zip((query, key, value), ws, bs, "qkv"))
        out = _attend(q, k, v, self.base.num_heads, attn_mask)
        return self.base.out_proj(out), None

    def merged(self) -> nn.MultiheadAttention:
        """The base module with the updates folded into ``in_proj_weight``."""
        with torch.no_grad():
            self.base.in_proj_weight += torch.cat([self.lora[p].delta() for p in "qkv"])
        return self.base


class LoRAAttentionPool(nn.Module):
    """CLIP's ResNet attention pool (``AttentionPool2d``) with LoRA on q, k, v: [N, C, H, W] ->
    [N, D_out], the mean token's output (the query is that token only, which gives the same)."""

    def __init__(self, base: nn.Module, rank: int, alpha: float, dropout: float, gen):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora = _branches(base.q_proj.in_features, rank, alpha, dropout, gen, base.q_proj.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.base
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(2, 0, 1)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0) + p.positional_embedding[:, None, :].to(x.dtype)
        q = p.q_proj(x[:1]) + self.lora["q"](x[:1])
        k, v = p.k_proj(x) + self.lora["k"](x), p.v_proj(x) + self.lora["v"](x)
        return p.c_proj(_attend(q, k, v, p.num_heads))[0]

    def merged(self) -> nn.Module:
        """The base pool with the updates folded into its q/k/v weights."""
        with torch.no_grad():
            for name in "qkv":
                getattr(self.base, f"{name}_proj").weight += self.lora[name].delta()
        return self.base


def _sites(model: nn.Module, towers) -> list[tuple[nn.Module, str, type]]:
    """(parent, attribute, wrapper) of every attention to adapt."""
    sites = []
    if "text" in towers:
        sites += [(b, "attn", LoRAMultiheadAttention) for b in model.transformer.resblocks]
    if "visual" in towers:
        if hasattr(model.visual, "attnpool"):
            sites.append((model.visual, "attnpool", LoRAAttentionPool))
        else:
            sites += [(b, "attn", LoRAMultiheadAttention) for b in model.visual.transformer.resblocks]
    return sites


def add_clip_lora(model: nn.Module, rank: int = 2, alpha: float = 1.0, dropout: float = 0.25,
                  towers=("text", "visual"), seed: int = 0) -> list[nn.Parameter]:
    """Replace the attention of every block of ``towers`` of a CLIP ``model`` (in place: pass a
    copy) by its LoRA version: text, ViT image blocks, or a ResNet's attention pool. Every other
    weight is frozen. Returns the trainable A and B tensors, in module order."""
    model.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    params = []
    for parent, attr, wrapper in _sites(model, towers):
        module = wrapper(getattr(parent, attr), rank, alpha, dropout, gen)
        setattr(parent, attr, module)
        params += [t for p in "qkv" for t in (module.lora[p].A, module.lora[p].B)]
    return params


def lora_modules(model: nn.Module) -> list[LoRAProjection]:
    """Every :class:`LoRAProjection` in ``model``."""
    return [m for m in model.modules() if isinstance(m, LoRAProjection)]


def set_mix(model: nn.Module, mix: float) -> None:
    """Scale every low-rank update by ``mix`` (0: the frozen model, 1: fully adapted)."""
    for m in lora_modules(model):
        m.mix = float(mix)


def merge(model: nn.Module) -> nn.Module:
    """Fold every update (at its current ``mix``) into the weights and put CLIP's own modules back."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (LoRAMultiheadAttention, LoRAAttentionPool)):
                setattr(parent, name, child.merged())
    return model
