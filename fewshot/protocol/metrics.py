"""Metrics: top-k accuracy, and restricting 1000-way logits to a subset of classes."""
from __future__ import annotations

import torch

__all__ = ["label_rank", "top1", "correct_count", "topk_accuracy", "topk_correct", "restrict_to_classes"]


def label_rank(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Rank of each true label among its row's logits (0 = predicted): [N].

    The one tie rule of the suite: classes with a higher logit rank first, and an exact tie goes
    to the lower class index, as ``argmax`` decides it (the grid search uses the same rule).
    logits: [N, C]; labels: [N].
    """
    labels = labels.view(-1, 1).to(logits.device)
    mine = logits.gather(1, labels)  # [N, 1]
    lower = torch.arange(logits.shape[1], device=logits.device) < labels  # [N, C]
    return ((logits > mine) | ((logits == mine) & lower)).sum(dim=1)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, torch.Tensor]:
    """Per-sample hits: {k: bool [N]} whether ``labels[n]`` is among the top-k of ``logits[n]``
    (ties: :func:`label_rank`). logits: [N, C]; labels: [N] class indices."""
    rank = label_rank(logits, labels)
    return {k: rank < k for k in ks}


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, float]:
    """Top-k accuracy in [0, 1]: {k: fraction of rows whose label is in the k highest logits}."""
    if logits.shape[0] == 0:
        raise ValueError("topk_accuracy needs at least one sample")
    return {k: float(hit.float().mean()) for k, hit in topk_correct(logits, labels, ks).items()}


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1] of logits [N, C] against labels [N] (ties: :func:`label_rank`);
    NaN for N = 0 (an empty fold), where :func:`topk_accuracy` refuses."""
    return float(topk_correct(logits, labels, (1,))[1].float().mean())


def correct_count(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How many rows of logits [B, C] put their label [B] first (argmax: ties to the lower index),
    as a 0-dim tensor on the logits' device, so that a training loop counts without a sync."""
    return (logits.argmax(dim=1) == labels).sum()


def restrict_to_classes(logits: torch.Tensor, labels: torch.Tensor,
                        class_indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep only the columns ``class_indices`` (ImageNet-A/R: 200 of 1000) and remap labels.

    logits: [N, C] -> [N, len(class_indices)]; labels: [N] -> [N] positions in ``class_indices``.
    Every label must be one of ``class_indices``.
    """
    idx = torch.as_tensor(class_indices, device=logits.device, dtype=torch.long)
    remap = torch.full((logits.shape[1],), -1, dtype=torch.long, device=logits.device)
    remap[idx] = torch.arange(len(idx), device=logits.device)
    new_labels = remap[labels.to(logits.device)]
    if (new_labels < 0).any():
        raise ValueError("a label is not among class_indices")
    return logits[:, idx], new_labels
