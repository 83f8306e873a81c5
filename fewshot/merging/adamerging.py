"""AdaMerging (Yang et al., ICLR 2024): task arithmetic whose coefficients are learned by entropy
minimisation on unlabeled images, task-wise or layer-wise.

With θ₀ the pre-trained encoder and τᵢ = θᵢ − θ₀ the task vectors (:mod:`fewshot.merging.rules`):

    task-wise:   θ(λ) = θ₀ + Σᵢ λᵢ · τᵢ                 λ [n]
    layer-wise:  θ(λ)_l = θ₀_l + Σᵢ λᵢₗ · τᵢ_l           λ [n, L], one per model and tensor l
    loss(λ)     = Σ_t  H(softmax(s · f(x_t; θ(λ)) · W_tᵀ))   one unlabeled batch x_t per task t
    H(p)        = −mean over the batch of Σ_c p_c · log(p_c + 1e-8)

λ starts at 0.3 everywhere (so zero steps are task arithmetic at λ = 0.3, bit for bit: the merge
sums λᵢ·τᵢ in the order :func:`fewshot.merging.rules.task_arithmetic` does); Adam at lr 1e-3, the
per-task losses' gradients summed before each step, no clamping (FusionBench's
``config/method/adamerging/clip.yaml`` at 54c9e8c: ``lr 1e-3, init_values 0.3, clamp_weights
false, batch_size 16, max_steps 1000``; ``layer_wise_adamerging.py``). Only floating-point
tensors that some task vector changes are weighted; BatchNorm's running statistics stay θ₀'s.

Which unlabeled images it adapts on is the caller's (:mod:`fewshot.merging.study`): the tasks'
training images with their labels unused (``tuned_on: unlabeled-train``), or, as FusionBench and the
paper do, the test images themselves (``tuned_on: test-unlabeled``, reported beside the honest rows).
"""
from __future__ import annotations

from typing import Callable

import torch

from fewshot.base.errors import NonFiniteError

__all__ = ["entropy", "entropy_backward", "merge", "names_of", "adamerge", "INIT", "LR", "BATCH"]

INIT, LR, BATCH = 0.3, 1e-3, 16


def entropy(logits: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean Shannon entropy (nats) of softmax(logits) [B, C] over the batch: a scalar."""
    p = torch.softmax(logits, dim=-1)
    return -(p * torch.log(p + eps)).sum(-1).mean()


def entropy_backward(logits_of, model, batches: list, step: int, what: str, retain: bool = True) -> float:
    """Σ_t the entropy of task t's logits ``logits_of(model, t, batches[t](step))``, back-propagated
    task by task (each loss checked for NaN: :class:`NonFiniteError` naming ``what``); ``retain``
    keeps the graph between the tasks (they share the merged tensors). Returns the sum."""
    total = 0.0
    for t, batch in enumerate(batches):
        loss = entropy(logits_of(model, t, batch(step)))
        if not bool(torch.isfinite(loss)):
            raise NonFiniteError(f"{what}: the entropy of task {t} is not finite at step {step}; lower the learning rate")
        loss.backward(retain_graph=retain and t < len(batches) - 1)
        total += float(loss.detach())
    return total


def merge(base: dict, taus: list[dict], weights: torch.Tensor, names: list[str]) -> dict:
    """θ₀ + Σᵢ wᵢ·τᵢ for the tensors ``names`` (weights [n] task-wise or [n, len(names)]
    layer-wise); every other tensor of ``base`` as it is. Differentiable in ``weights``."""
    out = dict(base)
    for j, k in enumerate(names):
        w = weights if weights.dim() == 1 else weights[:, j]
        out[k] = base[k] + sum(w[i] * t[k] for i, t in enumerate(taus))
    return out


def adamerge(logits_of: Callable[[dict, int, torch.Tensor], torch.Tensor], base: dict, taus: list[dict],
             batches: list[Callable[[int], torch.Tensor]], steps: int, layer_wise: bool = True,
             lr: float = LR, init: float = INIT) -> tuple[torch.Tensor, list[float]]:
    """Learn AdaMerging's coefficients (module docstring). ``logits_of(state, t, x)`` gives task
    ``t``'s logits [B, C] of pixels ``x`` through the encoder ``state``; ``batches[t](step)`` gives
    task t's unlabeled batch at that step. Returns (λ [n] or [n, L] over the tensors the task
    vectors change, in sorted order; the summed entropy before each step)."""
    names = names_of(base, taus)
    shape = (len(taus), len(names)) if layer_wise else (len(taus),)
    lam = torch.nn.Parameter(torch.full(shape, init, dtype=torch.float32, device=next(iter(base.values())).device))
    opt = torch.optim.Adam([lam], lr=lr)
    history = []
    for step in range(steps):
        total = entropy_backward(logits_of, merge(base, taus, lam, names), batches, step, "AdaMerging")
        opt.step()
        opt.zero_grad(set_to_none=True)
        history.append(total)
    return lam.detach(), history


def names_of(base: dict, taus: list[dict]) -> list[str]:
    """The tensors AdaMerging weights: floating-point ones that some task vector changes, sorted."""
    return sorted(k for k in base if base[k].is_floating_point() and any(bool((t[k] != 0).any()) for t in taus))
