"""The two small pieces of Weight-Ensembling MoE (:mod:`fewshot.merging.wemoe`) that are not the
MoE layer itself: its router and E-WEMoE's magnitude pruning of task vectors.

Router (FusionBench ``fusion_bench/models/we_moe.py`` at 54c9e8c, lines 17-76), with ``depth`` linear
maps (FusionBench's ``router_hidden_layers``; its default and config value is 2):

    depth 0:  r(h) = b                               (a learned [n] vector; the input is ignored)
    depth 1:  r(h) = W h + b                         W [n, D]
    depth 2:  r(h) = W₂ · relu(W₁ h + b₁) + b₂       W₁ [D, D], W₂ [n, D]

initialised with every W ~ N(0, 0.01²), b₁ = 0 and the output bias b = ``init_lambda`` (lines 22-52),
so the first routing weights are ``init_lambda`` up to the tiny random weights' share; no softmax,
no clamping: a routing weight is any real number, as a task-arithmetic λ is.

Pruning (``fusion_bench/models/sparse_we_moe.py`` lines 97-126): each tensor of each task vector on
its own (weights and biases alike) keeps the entries whose magnitude is strictly above the
``ratio``-quantile of its magnitudes (``torch.quantile``'s linear interpolation), the rest become 0.
With d distinct magnitudes that keeps the d − 1 − ⌊ratio·(d − 1)⌋ largest: at ratio 0.9, the top
10 % (a 64-entry bias keeps 7).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Router", "prune_magnitude"]


class Router(nn.Module):
    """FusionBench's MLP router (module docstring): hidden states [..., D] -> routing weights [..., n]."""

    def __init__(self, width: int, num_experts: int, depth: int = 2, init_lambda: float = 0.3,
                 device: torch.device | str | None = None):
        super().__init__()
        if depth not in (0, 1, 2):
            raise ValueError(f"router depth must be 0, 1 or 2 (FusionBench's router_hidden_layers), not {depth!r}")
        self.depth, self.num_experts = depth, num_experts
        dims = [width] * depth + [num_experts]
        self.layers = nn.ModuleList(nn.Linear(a, b, device=device) for a, b in zip(dims, dims[1:]))
        self.bias = nn.Parameter(torch.full((num_experts,), float(init_lambda), device=device)) if depth == 0 else None
        with torch.no_grad():
            for i, fc in enumerate(self.layers):
                nn.init.normal_(fc.weight, std=0.01)
                nn.init.constant_(fc.bias, init_lambda if i == depth - 1 else 0.0)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """r(h): [..., D] -> [..., n] (depth 0: the bias broadcast over the leading dimensions)."""
        if self.depth == 0:
            return self.bias.expand(*h.shape[:-1], self.num_experts)
        for fc in self.layers[:-1]:
            h = F.relu(fc(h))
        return self.layers[-1](h)


def prune_magnitude(tau: torch.Tensor, ratio: float) -> torch.Tensor:
    """``tau`` (any shape) with every entry whose |value| is not strictly above the ``ratio``-quantile
    of |tau| set to 0 (module docstring); ``ratio`` 0 keeps all but the smallest. Same shape and dtype.
    (torch.quantile takes at most 2²⁴ entries: ViT-L/14's 4.2M-entry MLP matrices fit.)"""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"prune ratio must be in [0, 1), not {ratio!r}")
    magnitude = tau.abs()
    threshold = magnitude.float().reshape(-1).quantile(ratio)
    return tau * (magnitude > threshold.to(magnitude.dtype))
