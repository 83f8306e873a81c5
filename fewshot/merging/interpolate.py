"""WiSE-FT: weight-space ensembling of a zero-shot (or training-free) and a fine-tuned model.

For the adapter, θ₀ are Tip-Adapter's cache keys and θ₁ Tip-Adapter-F's: λ = 0 is training-free
Tip-Adapter, λ = 1 is Tip-Adapter-F (Wortsman et al., CVPR 2022).
"""
from __future__ import annotations

import torch

__all__ = ["interpolate", "DEFAULT_LAMBDA"]

DEFAULT_LAMBDA = 0.5  # the WiSE-FT paper's recommendation when nothing can be tuned


def interpolate(theta0: dict, theta1: dict, alpha: float, fishers=None,
                fisher_floor: float = 1e-8) -> dict:
    """Merge two state dicts of equal keys and shapes.

    Plain: ``(1−α)·θ₀ + α·θ₁``. With ``fishers=(F₀, F₁)`` (dicts of diagonal Fishers, same shapes),
    the Fisher-weighted merge ``((1−α)F₀θ₀ + αF₁θ₁) / ((1−α)F₀ + αF₁)``, each F clamped below at
    ``fisher_floor``; a key with no Fisher entry uses ones (plain interpolation), as in the
    WiSE-FT code. At α = 0 or 1 both forms return θ₀ or θ₁.
    """
    if set(theta0) != set(theta1):
        raise KeyError(f"state dicts differ in keys: {sorted(set(theta0) ^ set(theta1))}")
    if fishers is None:
        return {k: (1 - alpha) * theta0[k] + alpha * theta1[k] for k in theta0}
    fisher0, fisher1 = fishers
    merged = {}
    for k in theta0:
        if (k in fisher0) != (k in fisher1):
            raise KeyError(f"Fisher given for {k!r} in only one of the two models")
        ones = torch.ones_like(theta0[k])
        c0 = (1 - alpha) * torch.clamp(fisher0.get(k, ones), min=fisher_floor)
        c1 = alpha * torch.clamp(fisher1.get(k, ones), min=fisher_floor)
        merged[k] = (c0 * theta0[k] + c1 * theta1[k]) / (c0 + c1)
    return merged
