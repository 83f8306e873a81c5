"""Selection: the one place where hyperparameters are chosen, and never from test data by default.

Every method asks :func:`choose`, which applies the run's protocol:

- ``oracle`` runs (``cfg.oracle``): tune on the test set, as the official ImageNet scripts of
  Tip-Adapter, APE and GDA do; labelled ``test-oracle``;
- otherwise, with at least ``min_shots`` shots: tune inside the shots, by leave-one-out
  (``loo-train``) or cross-validation over shot ranks (``cv-train``);
- otherwise (1 shot: nothing can be held out): the published default, labelled ``default``.

Helpers (Tip-Adapter's leave-one-out grid is its own: :func:`fewshot.methods.tip_adapter.loo_alpha_beta`):
:func:`fold_masks` and :func:`cross_validate` (n folds over shot ranks,
fold = rank mod n, so every class contributes to every fold it can).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch


__all__ = ["Choice", "choose", "tunes_inside", "fold_masks", "cross_validate", "first_best"]


def first_best(scores: Sequence[float]) -> int:
    """Index of the highest score [n]; an exact tie goes to the lowest index (the first candidate),
    the suite's one tie rule for choosing among candidates (as ``argmax`` does among classes)."""
    if len(scores) == 0:
        raise ValueError("first_best: no scores to choose from")
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


@dataclass(frozen=True)
class Choice:
    """A chosen value, how it was chosen, and the scores it was chosen from (JSON-able or None)."""

    value: object
    tuned_on: str  # "default", "loo-train", "cv-train" or "test-oracle"
    curve: object = None


def choose(ctx, shots: Optional[int], *, default, inside: Optional[Callable] = None,
           inside_label: str = "cv-train", on_test: Optional[Callable] = None,
           min_shots: int = 2) -> Choice:
    """Apply the run's tuning protocol (module docstring).

    ``inside()`` -> (value, curve) tunes on the shots; ``on_test(eval_set)`` -> (value, curve)
    tunes on a test set and is called only in oracle runs. A method without an ``on_test`` keeps
    its inside-the-shots choice in an oracle run too.
    """
    if ctx.oracle is not None and on_test is not None:
        value, curve = on_test(ctx.oracle)
        return Choice(value, "test-oracle", curve)
    if inside is not None and tunes_inside(ctx, shots, min_shots, on_test is not None):
        value, curve = inside()
        return Choice(value, inside_label, curve)
    return Choice(default, "default")


def tunes_inside(ctx, shots: Optional[int], min_shots: int = 2, has_on_test: bool = True) -> bool:
    """Whether :func:`choose` calls ``inside()`` (a method's fits on held-out shots: its cost)."""
    return not (ctx.oracle is not None and has_on_test) and shots is not None and shots >= min_shots


def fold_masks(ranks: torch.Tensor, folds: int) -> list[torch.Tensor]:
    """Held-out masks [M] (bool) of ``min(folds, max rank + 1)`` folds: fold = rank mod n."""
    ranks = torch.as_tensor(ranks)
    n = min(folds, int(ranks.max()) + 1)
    if n < 2:
        raise ValueError("cross-validation needs at least 2 shots per class")
    return [(ranks % n) == f for f in range(n)]


def cross_validate(ranks, folds: int, candidates: Sequence,
                   score_fold: Optional[Callable[[torch.Tensor, torch.Tensor], Sequence[float]]] = None,
                   *, score_folds: Optional[Callable[[list, list], Sequence[Sequence[float]]]] = None):
    """(best candidate, mean held-out score per candidate).

    ``score_fold(train_mask, held_mask)`` fits on the training part and returns one held-out
    score per candidate; or ``score_folds(train_masks, held_masks)`` does so for all folds at once
    (fits batched over the folds) and returns one such list per fold. Ties go to the first
    candidate.
    """
    masks = fold_masks(ranks, folds)
    rows = score_folds([~h for h in masks], masks) if score_folds is not None else \
        [score_fold(~held, held) for held in masks]
    total = torch.zeros(len(candidates), dtype=torch.float64)
    for row in rows:
        total += torch.as_tensor(list(row), dtype=torch.float64)
    mean = (total / len(masks)).tolist()
    return candidates[first_best(mean)], mean
