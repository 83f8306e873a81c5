"""Optimisers: AdamW with its state kept at fp16 precision, as the official Tip-Adapter-F trains.

The official Tip-Adapter-F (its ImageNet script and the coursework notebook) trains the cache keys
as an fp16 ``nn.Linear`` with ``torch.optim.AdamW(lr=1e-3, eps=1e-4)``. For an fp16 parameter
torch keeps Adam's moments in fp16 too, and rounds every stored value. The second moment
``v ← β₂v + (1−β₂)g²`` then flushes to zero wherever ``0.001·g²`` is below fp16's smallest
subnormal (2⁻²⁴ ≈ 6e-8, i.e. ``|g| < ~5.5e-3``), and there the update is ``lr·m̂/eps`` instead of
``lr·m̂/√v̂``: with eps = 1e-4, tens of times larger than fp32 Adam's. The published Tip-Adapter-F
numbers come from these dynamics.

:class:`AdamWFp16State` reproduces them on purpose, on any device and torch version: it computes
in fp32 and rounds the parameter, both moments and each intermediate to fp16 exactly where torch's
single-tensor AdamW rounds them for an fp16 parameter (tested against torch's own fp16 AdamW).
"""
from __future__ import annotations

import math

import torch

__all__ = ["AdamWFp16State", "to_fp16_precision"]


def to_fp16_precision(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to the nearest fp16 value (round-to-nearest-even, subnormals kept), in x's
    dtype."""
    return x.to(torch.float16).to(x.dtype)


class AdamWFp16State(torch.optim.Optimizer):
    """AdamW (decoupled weight decay) whose parameters, moments and intermediates are rounded to
    fp16 precision as torch rounds them for fp16 parameters; parameters stay fp32 tensors (holding
    fp16 values), so the forward and backward pass may run in fp32."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-4,
                 weight_decay: float = 0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        for group in self.param_groups:
            for p in group["params"]:
                with torch.no_grad():
                    p.copy_(to_fp16_precision(p))

    @torch.no_grad()
    def step(self, closure=None):
        r = to_fp16_precision
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = r(p.grad.float())
                state = self.state[p]
                if not state:
                    state.update(step=0, m=torch.zeros_like(g), v=torch.zeros_like(g))
                state["step"] += 1
                t, m, v = state["step"], state["m"], state["v"]
                p.copy_(r(p * (1 - lr * wd)))
                m.copy_(r(m + (1 - b1) * (g - m)))  # lerp
                v.copy_(r(r(v * b2) + (1 - b2) * g * g))  # mul_, then addcmul_
                denom = r(r(r(v.sqrt()) / math.sqrt(1 - b2 ** t)) + eps)
                p.copy_(r(p - (lr / (1 - b1 ** t)) * m / denom))  # addcdiv_
        return None
