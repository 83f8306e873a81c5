"""Merging: one model from several fine-tuned ones, as pure functions over state dicts.

Notation: θ₀ the pre-trained weights, θ₁ … θₙ the fine-tuned ones, τᵢ = θᵢ − θ₀ their task
vectors. Every function takes and returns ``{name: tensor}`` dicts with equal keys and shapes.

- :func:`simple_average`: ``mean_i θᵢ`` (a "model soup" when the θᵢ are seeds of one task);
- :func:`task_arithmetic`: ``θ₀ + λ·Σᵢ τᵢ`` (Ilharco et al., ICLR 2023);
- :func:`ties`: TIES-merging (Yadav et al., NeurIPS 2023): keep each τᵢ's entries whose
  magnitude is at least its (d − ⌊k·d⌋)-th smallest over the whole model (the reference code's
  rule for "the top k share"), elect each entry's sign by the sum of the kept values
  (the "mass"; zeros take the majority sign), then aggregate the kept values that agree with it:
  their mean (``merge_func="mean"``, the paper's disjoint mean) or their sum (``"sum"``,
  FusionBench's default, whose λ is therefore on another scale), ``θ₀ + λ·τ``;
- :func:`fisher_merge`: ``Σᵢ cᵢFᵢθᵢ / Σᵢ cᵢFᵢ`` with diagonal Fishers (Matena & Raffel, NeurIPS
  2022); with two models and c = (1−α, α) it is WiSE-FT's Fisher-weighted merge. With
  ``normalize=True`` (FusionBench's ``normalize_fisher_weight``), each cᵢ is first scaled by
  ``(1/(‖Fᵢ‖+ε)) / Σⱼ 1/(‖Fⱼ‖+ε)``, ‖Fᵢ‖ the L2 norm of model i's whole Fisher, and ε is added
  to every F (FusionBench's ``minimal_fisher_weight``) instead of clamping: experts whose Fisher
  norms differ by orders of magnitude then weigh alike, rather than the most peaked one ruling;
- :func:`regmean`: for each linear map W [out, in] with input Gram matrices Gᵢ = XᵢᵀXᵢ,
  ``W = (Σᵢ G̃ᵢ)⁻¹ Σᵢ G̃ᵢ Wᵢᵀ`` (transposed back), G̃ = a·G + (1−a)·diag(G) shrinking the
  off-diagonal (Jin et al., ICLR 2023); every other tensor is averaged.
"""
from __future__ import annotations

import torch

from fewshot.base.errors import NonFiniteError

__all__ = ["task_vectors", "simple_average", "task_arithmetic", "ties", "fisher_merge", "regmean",
           "cosine_matrix"]


def _check(models):
    if not models:
        raise ValueError("nothing to merge")
    keys = set(models[0])
    for m in models[1:]:
        if set(m) != keys:
            raise KeyError(f"state dicts differ in keys: {sorted(keys ^ set(m))}")


def task_vectors(base: dict, models: list) -> list[dict]:
    """τᵢ = θᵢ − θ₀ for every model."""
    _check([base, *models])
    return [{k: m[k] - base[k] for k in base} for m in models]


def simple_average(models: list) -> dict:
    """``mean_i θᵢ``."""
    _check(models)
    return {k: torch.stack([m[k] for m in models]).mean(0) for k in models[0]}


def task_arithmetic(base: dict, models: list, lam: float) -> dict:
    """``θ₀ + λ·Σᵢ τᵢ``, summed as ``θ₀ + Σᵢ λ·τᵢ`` (AdaMerging's merge at equal λ, bit for bit)."""
    taus = task_vectors(base, models)
    return {k: base[k] + sum(lam * t[k] for t in taus) for k in base}


def ties(base: dict, models: list, lam: float = 1.0, keep: float = 0.2, merge_func: str = "mean") -> dict:
    """TIES-merging (module docstring): trim each task vector to its ``keep`` share of entries by
    magnitude over all tensors, elect signs by mass, aggregate the agreeing kept values by their
    ``merge_func`` ("mean": the paper's disjoint mean; "sum": FusionBench's default), ``θ₀ + λ·τ``."""
    if merge_func not in ("mean", "sum"):
        raise ValueError(f"TIES merge_func must be 'mean' or 'sum', not {merge_func!r}")
    taus = task_vectors(base, models)
    names = sorted(base)
    flat = torch.stack([torch.cat([t[k].reshape(-1).float() for k in names]) for t in taus])  # [n, d]
    d = flat.shape[1]
    position = max(1, d - int(d * keep))  # as the reference code: |τ| at least its k-th smallest
    thresh = flat.abs().kthvalue(position, dim=1, keepdim=True).values
    trimmed = torch.where(flat.abs() >= thresh, flat, torch.zeros_like(flat))
    sign = torch.sign(trimmed.sum(0))
    majority = torch.sign(sign.sum())
    sign[sign == 0] = majority if majority != 0 else 1.0  # zero mass: the majority sign
    agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
    merged = (trimmed * agree).sum(0)
    if merge_func == "mean":
        merged = merged / agree.sum(0).clamp(min=1)
    out, start = {}, 0
    for name in names:
        n = base[name].numel()
        out[name] = base[name] + lam * merged[start:start + n].view_as(base[name]).to(base[name].dtype)
        start += n
    return out


def fisher_merge(models: list, fishers: list, coefficients=None, floor: float = 1e-6,
                 normalize: bool = False) -> dict:
    """``Σᵢ cᵢFᵢθᵢ / Σᵢ cᵢFᵢ`` over tensors of any shape (each Fᵢ[k] the shape of θᵢ[k]); a tensor
    without a Fisher in every model is averaged with the coefficients (c: uniform by default).
    ``normalize=False``: each F clamped below at ``floor`` (Matena & Raffel; WiSE-FT's Fisher merge).
    ``normalize=True``: FusionBench's form (module docstring): ``floor`` added to every F and each
    cᵢ scaled by the normalised inverse of ‖Fᵢ‖ over the tensors merged."""
    _check(models)
    c = [1 / len(models)] * len(models) if coefficients is None else list(coefficients)
    merged = [k for k in models[0] if all(k in f for f in fishers)]
    if normalize:
        norms = [torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(f[k].double()) for k in merged]))
                 for f in fishers]
        inverse = [1.0 / (n + floor) for n in norms]
        c = [ci * float(v / sum(inverse)) for ci, v in zip(c, inverse)]
    out = {}
    for k in models[0]:
        if k in merged:
            w = [ci * (f[k] + floor if normalize else torch.clamp(f[k], min=floor)) for ci, f in zip(c, fishers)]
            out[k] = sum(wi * m[k] for wi, m in zip(w, models)) / sum(w)
        else:
            out[k] = sum(ci * m[k] for ci, m in zip(c, models)) / sum(c)
    return out


def regmean(models: list, grams: list, reduce: float = 0.95) -> dict:
    """RegMean: the linear weights named in every ``grams[i]`` (their input Gram matrices
    [in, in]) solved in closed form, every other tensor averaged."""
    _check(models)
    out = simple_average(models)
    for name in grams[0]:
        gs = []
        for g in grams:
            diag = torch.diag(torch.diag(g[name]))
            gs.append((reduce * g[name] + (1 - reduce) * diag).double())
        ws = [m[name].reshape(m[name].shape[0], -1).double() for m in models]  # [out, in]
        lhs = sum(gs)
        rhs = sum(g @ w.T for g, w in zip(gs, ws))  # [in, out]
        # On the CPU with an SVD solver: a Gram of post-ReLU inputs is singular where a channel
        # is never active, and CUDA's only driver (gels) assumes full rank (it returned NaN for
        # RN50's 1x1 convolutions on an H100); gelsd gives the minimum-norm solution on every
        # torch (gelsy did not on torch 2.0).
        solved = torch.linalg.lstsq(lhs.cpu(), rhs.cpu(), driver="gelsd").solution.T  # [out, in]
        if not bool(torch.isfinite(solved).all()):
            raise NonFiniteError(f"RegMean: the solution for {name} is not finite")
        out[name] = solved.reshape(models[0][name].shape).to(models[0][name].device, models[0][name].dtype)
    return out


def cosine_matrix(taus: list[dict]) -> torch.Tensor:
    """Cosine similarities between flattened task vectors: [n, n]."""
    flat = torch.stack([torch.cat([t[k].reshape(-1).float() for k in sorted(t)]) for t in taus])
    flat = flat / flat.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return flat @ flat.T
