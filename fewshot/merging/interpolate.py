"""WiSE-FT: weight-space ensembling of a zero-shot (or training-free) and a fine-tuned model.

For the adapter, θ₀ are Tip-Adapter's cache keys and θ₁ Tip-Adapter-F's: λ = 0 is training-free
Tip-Adapter, λ = 1 is Tip-Adapter-F (Wortsman et al., CVPR 2022).
"""
from __future__ import annotations

from fewshot.merging.rules import fisher_merge

__all__ = ["interpolate", "DEFAULT_LAMBDA"]

DEFAULT_LAMBDA = 0.5  # the WiSE-FT paper's recommendation when nothing can be tuned


def interpolate(theta0: dict, theta1: dict, alpha: float, fishers=None,
                fisher_floor: float = 1e-8) -> dict:
    """Merge two state dicts of equal keys and shapes.

    Plain: ``(1−α)·θ₀ + α·θ₁``. With ``fishers=(F₀, F₁)`` (dicts of diagonal Fishers, same shapes),
    the Fisher-weighted merge ``((1−α)F₀θ₀ + αF₁θ₁) / ((1−α)F₀ + αF₁)``, each F clamped below at
    ``fisher_floor``; a key with no Fisher entry is interpolated plainly, as in the WiSE-FT code
    (the two-model case of :func:`fewshot.merging.rules.fisher_merge`). At α = 0 or 1 both forms return θ₀ or θ₁.
    """
    if set(theta0) != set(theta1):
        raise KeyError(f"state dicts differ in keys: {sorted(set(theta0) ^ set(theta1))}")
    if fishers is None:
        return {k: (1 - alpha) * theta0[k] + alpha * theta1[k] for k in theta0}
    fisher0, fisher1 = fishers
    for k in theta0:
        if (k in fisher0) != (k in fisher1):
            raise KeyError(f"Fisher given for {k!r} in only one of the two models")
    return fisher_merge([theta0, theta1], [fisher0, fisher1], coefficients=(1 - alpha, alpha), floor=fisher_floor)
