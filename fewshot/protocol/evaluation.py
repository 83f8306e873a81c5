"""Evaluation: any head's top-1/top-5 on every test set, in chunks, refusing non-finite logits."""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from fewshot.base.errors import NonFiniteError
from fewshot.protocol.metrics import restrict_to_classes, topk_correct
from fewshot.protocol.method import EvalSet

__all__ = ["evaluate", "predict", "check_finite", "class_accuracy"]


def check_finite(t: torch.Tensor, what: str, hint: str = "") -> torch.Tensor:
    """``t`` unchanged, or :class:`NonFiniteError` naming ``what`` (and ``hint``, the setting to
    change) when it holds NaN or infinity."""
    if not bool(torch.isfinite(t).all()):
        raise NonFiniteError(f"{what}: non-finite values (NaN or infinity)" + (f"; {hint}" if hint else "."))
    return t


def _logits(logits_fn, feats, what):
    return check_finite(logits_fn(feats), f"logits of {what}",
                        "the head diverged: lower the learning rate or check the inputs")


def evaluate(logits_fn: Callable[[torch.Tensor], torch.Tensor], sets: Mapping[str, EvalSet],
             what: str = "a head", chunk: int = 8192) -> dict[str, dict]:
    """``{set: {"top1": %, "top5": %}}`` of ``logits_fn(feats [n, D]) -> [n, C]`` on every set.
    Sets with fewer classes than C (ImageNet-A/R) are scored on their own classes only."""
    scores = {}
    for name, s in sets.items():
        hits = {1: 0, 5: 0}
        for start in range(0, len(s.labels), chunk):
            logits = _logits(logits_fn, s.feats[start:start + chunk], f"{what} on {name}")
            labels = s.labels[start:start + chunk]
            if len(s.classes) < logits.shape[1]:
                logits, labels = restrict_to_classes(logits, labels, s.classes)
            for k, h in topk_correct(logits, labels, (1, 5)).items():
                hits[k] += h.sum()
        n = len(s.labels)
        scores[name] = {"top1": 100 * float(hits[1]) / n, "top5": 100 * float(hits[5]) / n}
    return scores


def predict(logits_fn, feats: torch.Tensor, what: str = "a head", chunk: int = 8192) -> torch.Tensor:
    """Top-1 class of every row of ``feats`` [N, D] -> [N]."""
    return torch.cat([_logits(logits_fn, feats[s:s + chunk], what).argmax(1)
                      for s in range(0, len(feats), chunk)])


def class_accuracy(logits_fn, s: EvalSet, num_classes: int) -> list[float]:
    """Per-class top-1 (%) on ``s``: [C] (0 for classes absent from the set)."""
    pred = predict(logits_fn, s.feats)
    hits = torch.bincount(s.labels[pred == s.labels], minlength=num_classes).float()
    return (100 * hits / torch.bincount(s.labels, minlength=num_classes).clamp(min=1)).tolist()
