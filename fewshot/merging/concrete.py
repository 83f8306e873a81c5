"""Concrete subspace merging (Tang et al., 2023, "Concrete Subspace Learning based Interference
Elimination for Multi-task Model Fusion"): one mask shared by all task vectors, learned by entropy
minimisation on unlabeled images, then task arithmetic or AdaMerging inside the masked subspace.

With θ₀ the pre-trained encoder, τᵢ = θᵢ − θ₀ (:mod:`fewshot.merging.rules`) and x_l the mask's
logits (one per entry of every tensor l that some task vector changes):

    Concrete sample:  m̂ = σ((x + log u − log(1 − u)) / T)      u ~ U(0, 1) per entry, T = 0.5
    rescaled mask:    m_l = m̂_l / mean(m̂_l)                    per tensor, so its mean is 1
    masked merge:     θ(m, λ) = θ₀ + Σᵢ λᵢ · (m ⊙ τᵢ)          λ [n] task-wise or [n, L] layer-wise
    loss(θ)         = Σ_t H(softmax(f(x_t; θ) · W_tᵀ))          :func:`fewshot.merging.adamerging.entropy`

As torch's ``RelaxedBernoulli`` (which FusionBench samples with), u is clamped to [ε, 1 − ε] and m̂ to
[tiny, 1 − ε] of its dtype. The logits start at 0 (every entry kept with probability ½).

- :func:`concrete_task_arithmetic`: λ = 0.3 for every model, fixed; each step draws a fresh mask,
  and Adam (lr 1e-3, 2000 steps) moves the logits down the entropy's gradient.
- :func:`concrete_adamerge`: the mask is meta-learned (1000 steps), first order. Step s draws m,
  takes the inner loss on θ(m without gradient, λ) and a first batch, resets λ to 0.3, and takes one
  inner Adam step on λ (lr 1, its Adam state kept across the outer steps) to λ'_s; then the outer
  loss on θ(m, λ'_s) and a second batch gives one Adam step on the logits (lr 1e-3), λ'_s a
  constant there (no gradient through the inner step). The reset comes after the inner loss as in
  FusionBench, whose inner forward reads the merge cached before its reset (``merge_weights`` :423,
  reset :428, forward :436): the inner gradient is taken at λ'_{s−1} (at 0.3 for s = 0) and applied
  from 0.3. Then AdaMerging proper (:func:`fewshot.merging.adamerging.adamerge`, λ from 0.3 again,
  a fresh Adam at lr 1e-3, 1000 steps) on the task vectors under the final mask. The inner step
  at lr 1 makes this loop amplify rounding (on a toy, about tenfold every four steps, in float64
  too), so two correct implementations agree only to their rounding for the first few dozen steps.

The final mask is what FusionBench's ``eval_mask_type: continuous`` gives: one more random Concrete
draw of the learned logits, rescaled (neither the expected mask σ(x) nor a threshold at ½; its
"discrete" option is a Bernoulli(σ(x)) draw, rescaled alike). Here it is drawn from a seeded
generator, so it is the same on every run.

FusionBench at 54c9e8c: ``config/method/concrete_subspace/clip_concrete_task_arithmetic.yaml``
(optimizer adam :7, lr 1e-3 :8, scaling_factor 0.3 :9, max_steps 2000 :10, initial_logits 0 :12,
temperature 0.5 :13, eval_mask_type continuous :16, clamp_weights false :19) and
``clip_concrete_layer_wise_adamerging.yaml`` (lr 1e-3 :8, base_lr 1 :9, adamerging_lr 1e-3 :10,
scaling_factor 0.3 :11, max_steps 1000 :12, max_adamerging_steps 1000 :13, initial_logits 0 :15,
temperature 0.5 :16, eval_mask_type continuous :19, clamp_weights false :22);
``fusion_bench/models/masks/mask_model.py`` (logits zeros_like each parameter :85, RelaxedBernoulli
:107-110, rsample :140); ``fusion_bench/method/concrete_subspace/clip_concrete_task_arithmetic.py``
(fill with initial_logits :80, Adam :126-129, sample and rescale m/mean(m) :163-170, final
sample :255-261); ``clip_concrete_adamerging.py``, class ``ConcreteLayerWiseAdaMergingForCLIP``
(inner Adam at base_lr :385-388, detached mask :422-425, λ reset :428, inner step :440-445,
outer merge and step :447-468, final sample :583-589, AdaMerging with a fresh Adam :496-501).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from fewshot.base.errors import NonFiniteError
from fewshot.merging import adamerging

__all__ = ["concrete", "init_logits", "sample_mask", "masked", "masked_merge", "concrete_task_arithmetic",
           "concrete_adamerge", "Concrete", "TEMPERATURE", "INIT_LOGITS", "LR", "INNER_LR", "SCALE",
           "TA_STEPS", "MASK_STEPS", "ADAMERGING_STEPS"]

TEMPERATURE, INIT_LOGITS, LR, INNER_LR, SCALE = 0.5, 0.0, 1e-3, 1.0, 0.3
TA_STEPS, MASK_STEPS, ADAMERGING_STEPS = 2000, 1000, 1000


class Concrete(NamedTuple):
    """What a Concrete merge learned; the merged encoder is ``masked_merge(base, taus, mask, lam, names)``."""

    names: list  # the L tensors masked and weighted, sorted (:func:`fewshot.merging.adamerging.names_of`)
    logits: dict  # {name: [shape of τ[name]]} the mask's learned logits x
    mask: dict  # {name: [shape of τ[name]]} the final rescaled mask m (mean 1 per tensor)
    lam: torch.Tensor  # [n] (0.3 each for task arithmetic) or [n, L] layer-wise AdaMerging's λ
    history: list  # the summed entropy before each mask step (the outer loss for AdaMerging)
    lam_history: list  # AdaMerging's summed entropy before each of its steps; [] for task arithmetic


def concrete(logits: torch.Tensor, u: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """The binary Concrete sample σ((x + log u − log(1 − u)) / T) of logits x [...] for uniforms u
    [same shape], u clamped to [ε, 1 − ε] and the sample to [tiny, 1 − ε] as torch's RelaxedBernoulli.
    Differentiable in ``logits``."""
    fi = torch.finfo(logits.dtype)
    u = u.clamp(fi.eps, 1 - fi.eps)
    return torch.sigmoid((logits + u.log() - (-u).log1p()) / temperature).clamp(fi.tiny, 1 - fi.eps)


def init_logits(base: dict, names: list[str], value: float = INIT_LOGITS) -> dict:
    """The mask's starting logits: ``value`` in the shape, dtype and device of each ``base[name]``."""
    return {k: torch.full_like(base[k], value) for k in names}


def sample_mask(logits: dict, temperature: float = TEMPERATURE, generator: torch.Generator | None = None,
                discrete: bool = False) -> dict:
    """A rescaled mask {name: m̂/mean(m̂)} (each the shape of ``logits[name]``): a Concrete draw
    (differentiable in the logits), or with ``discrete`` a Bernoulli(σ(x)) draw. Uniforms are drawn
    from ``generator`` tensor by tensor, in the order of ``logits``."""
    out = {}
    for k, x in logits.items():
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        m = (u < torch.sigmoid(x.detach())).to(x.dtype) if discrete else concrete(x, u, temperature)
        out[k] = m / m.mean()
        if not bool(torch.isfinite(out[k]).all()):
            raise NonFiniteError(f"Concrete mask: the mask of {k} is not finite (all entries dropped?); "
                                 f"use the continuous mask")
    return out


def masked(taus: list[dict], mask: dict) -> list[dict]:
    """The masked task vectors {name: m[name] ⊙ τᵢ[name]} (each the shape of τᵢ[name]) for the
    tensors in ``mask``; every other tensor of τᵢ as it is."""
    return [{k: t[k] * mask[k] if k in mask else t[k] for k in t} for t in taus]


def masked_merge(base: dict, taus: list[dict], mask: dict, weights: torch.Tensor, names: list[str]) -> dict:
    """θ₀ + Σᵢ wᵢ·(m ⊙ τᵢ) for the tensors ``names`` (weights [n] or [n, len(names)], as
    :func:`fewshot.merging.adamerging.merge`); with an all-ones mask it is that merge bit for bit."""
    return adamerging.merge(base, masked(taus, mask), weights, names)


def _entropy_backward(logits_of, state: dict, batches: list, step: int, what: str) -> float:
    """Σ_t entropy of task t's logits on ``batches[t](step)`` through ``state``, back-propagated task
    by task (as :func:`fewshot.merging.adamerging.adamerge`); every loss checked for NaN."""
    return adamerging.entropy_backward(logits_of, state, batches, step, f"Concrete {what}")


def _setup(base: dict, taus: list[dict], seed: int):
    """The tensors masked and weighted (:func:`fewshot.merging.adamerging.names_of`), the trainable
    logits at 0, a generator on the tensors' device seeded with ``seed``, and that device."""
    names, device = adamerging.names_of(base, taus), next(iter(base.values())).device
    logits = {k: torch.nn.Parameter(v) for k, v in init_logits(base, names).items()}
    return names, logits, torch.Generator(device=device).manual_seed(seed), device


def concrete_task_arithmetic(logits_of: Callable[[dict, int, torch.Tensor], torch.Tensor], base: dict,
                             taus: list[dict], batches: list[Callable[[int], torch.Tensor]], steps: int = TA_STEPS,
                             lam: float = SCALE, lr: float = LR, temperature: float = TEMPERATURE,
                             seed: int = 0, discrete_eval: bool = False) -> Concrete:
    """Concrete task arithmetic (module docstring). ``logits_of(state, t, x)`` gives task t's logits
    [B, C] of pixels x through the encoder ``state``; ``batches[t](step)`` its unlabeled batch for
    step 0 … steps − 1. Returns the learned logits, the final mask (one more draw, rescaled; a
    Bernoulli draw with ``discrete_eval``), λ = [n] filled with ``lam``, the entropy per step."""
    names, logits, gen, device = _setup(base, taus, seed)
    weights = torch.full((len(taus),), lam, dtype=torch.float32, device=device)
    opt = torch.optim.Adam(list(logits.values()), lr=lr)
    history = []
    for step in range(steps):
        mask = sample_mask(logits, temperature, gen)
        history.append(_entropy_backward(logits_of, masked_merge(base, taus, mask, weights, names), batches,
                                         step, "task arithmetic"))
        opt.step()
        opt.zero_grad(set_to_none=True)
    learned = {k: v.detach() for k, v in logits.items()}
    return Concrete(names, learned, sample_mask(learned, temperature, gen, discrete_eval), weights, history, [])


def concrete_adamerge(logits_of: Callable[[dict, int, torch.Tensor], torch.Tensor], base: dict, taus: list[dict],
                      batches: list[Callable[[int], torch.Tensor]], steps: int = MASK_STEPS,
                      adamerging_steps: int = ADAMERGING_STEPS, layer_wise: bool = True, lr: float = LR,
                      inner_lr: float = INNER_LR, adamerging_lr: float = adamerging.LR, init: float = SCALE,
                      temperature: float = TEMPERATURE, seed: int = 0, discrete_eval: bool = False) -> Concrete:
    """Concrete AdaMerging, layer-wise by default (module docstring): the mask meta-learned for
    ``steps``, then AdaMerging on the masked task vectors for ``adamerging_steps``. Calling
    convention as :func:`fewshot.merging.adamerging.adamerge`; mask step s reads ``batches[t](2s)``
    (inner) and ``batches[t](2s + 1)`` (outer), AdaMerging step s reads ``batches[t](2·steps + s)``.
    Returns the logits, the final mask, λ ([n, L] over ``names_of`` in sorted order, or [n]), the
    outer entropy per mask step and AdaMerging's entropy per step."""
    names, logits, gen, device = _setup(base, taus, seed)
    shape = (len(taus), len(names)) if layer_wise else (len(taus),)
    lam = torch.nn.Parameter(torch.full(shape, init, dtype=torch.float32, device=device))
    inner = torch.optim.Adam([lam], lr=inner_lr)  # kept across the outer steps, as FusionBench's
    outer = torch.optim.Adam(list(logits.values()), lr=lr)
    history = []
    for step in range(steps):
        mask = sample_mask(logits, temperature, gen)
        fixed = {k: m.detach() for k, m in mask.items()}
        _entropy_backward(logits_of, masked_merge(base, taus, fixed, lam, names), batches, 2 * step, "inner")
        with torch.no_grad():  # reset after the inner loss, as FusionBench (module docstring)
            lam.fill_(init)
        inner.step()
        inner.zero_grad(set_to_none=True)
        history.append(_entropy_backward(logits_of, masked_merge(base, taus, mask, lam.detach(), names),
                                         batches, 2 * step + 1, "outer"))
        outer.step()
        outer.zero_grad(set_to_none=True)
    learned = {k: v.detach() for k, v in logits.items()}
    final = sample_mask(learned, temperature, gen, discrete_eval)
    later = [lambda s, b=b: b(2 * steps + s) for b in batches]
    kept = masked(taus, final)
    weights, lam_history = adamerging.adamerge(logits_of, base, kept, later, adamerging_steps,
                                               layer_wise=layer_wise, lr=adamerging_lr, init=init)
    return Concrete(adamerging.names_of(base, kept), learned, final, weights, history, lam_history)
