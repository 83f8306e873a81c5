"""LoRA: low-rank updates of a module's weights, ``W + (a/r)·B·A`` (Hu et al., ICLR 2022).

Implemented as a ``torch.nn.utils.parametrize`` parametrization of the weight tensor itself, not
as a wrapper module: CLIP's ResNet attention pool reads ``q_proj.weight`` directly (a wrapping
Linear would be silently skipped, as PEFT's LoRA is there) and ``nn.MultiheadAttention`` keeps its
query/key/value weights in one ``in_proj_weight`` parameter. A parametrized weight is recomputed
on every access, so every reader sees the update, for Linear, Conv2d (the update reshaped to the
kernel) and attention alike. :func:`merge` folds the updates in; ``mix`` scales them (WiSE-FT of
LoRA: α·ΔW).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["LowRank", "add_lora", "lora_parameters", "set_mix", "merge", "lora_targets"]


class LowRank(nn.Module):
    """The parametrization ``W ↦ W + mix·(alpha/rank)·(B·A).view_as(W)`` of a weight of shape
    [out, ...]: A [rank, in] (Kaiming-uniform), B [out, rank] (zeros, so training starts at W)."""

    def __init__(self, shape, rank: int, alpha: float, gen: torch.Generator):
        super().__init__()
        out, fan_in = shape[0], math.prod(shape[1:])
        bound = 1 / math.sqrt(fan_in)
        self.A = nn.Parameter((torch.rand(rank, fan_in, generator=gen) * 2 - 1) * bound)
        self.B = nn.Parameter(torch.zeros(out, rank))
        self.scale, self.mix = alpha / rank, 1.0

    def delta(self) -> torch.Tensor:
        return (self.mix * self.scale) * (self.B @ self.A)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta().view_as(weight).to(weight.dtype)


def lora_targets(visual: nn.Module, what: str = "attention") -> list[tuple[nn.Module, str]]:
    """(module, weight name) pairs to adapt in a CLIP image tower: ``attention`` (ResNet: the
    attention pool's q/k/v/output projections; ViT: every block's in_proj and out_proj),
    ``conv`` (the ResNet's last-stage convolutions), or ``both``."""
    pairs = []
    if what in ("attention", "both"):
        if hasattr(visual, "attnpool"):
            pairs += [(getattr(visual.attnpool, n), "weight") for n in ("q_proj", "k_proj", "v_proj", "c_proj")]
        else:
            for block in visual.transformer.resblocks:
                pairs += [(block.attn, "in_proj_weight"), (block.attn.out_proj, "weight")]
    if what in ("conv", "both") and hasattr(visual, "layer4"):
        pairs += [(m, "weight") for m in visual.layer4.modules() if isinstance(m, nn.Conv2d)]
    if not pairs:
        raise ValueError(f"no LoRA targets {what!r} in {type(visual).__name__}")
    return pairs


def add_lora(visual: nn.Module, rank: int = 4, alpha: float = 8.0, what: str = "attention",
             seed: int = 0) -> list[nn.Parameter]:
    """Parametrize the target weights with :class:`LowRank`; the base weights are frozen. Returns
    the new trainable parameters (the A and B of every target)."""
    gen = torch.Generator().manual_seed(seed)
    params = []
    for module, name in lora_targets(visual, what):
        weight = getattr(module, name)
        weight.requires_grad_(False)
        lr = LowRank(weight.shape, rank, alpha, gen).to(weight.device)
        parametrize.register_parametrization(module, name, lr)
        params += [lr.A, lr.B]
    return params


def lora_parameters(visual: nn.Module) -> list[LowRank]:
    """Every :class:`LowRank` parametrization in ``visual``."""
    return [m for m in visual.modules() if isinstance(m, LowRank)]


def set_mix(visual: nn.Module, mix: float) -> None:
    """Scale every low-rank update by ``mix`` (0: the original weights, 1: fully adapted)."""
    for lr in lora_parameters(visual):
        lr.mix = float(mix)


def merge(visual: nn.Module) -> None:
    """Fold every update into its weight and remove the parametrizations."""
    for module in list(visual.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
