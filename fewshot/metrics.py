"""Metrics: top-k accuracy, and restricting 1000-way logits to a subset of classes."""
from __future__ import annotations

import torch

__all__ = ["topk_accuracy", "topk_correct", "restrict_to_classes"]


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, torch.Tensor]:
    """Per-sample hits: {k: bool [N]} whether ``labels[n]`` is among the top-k of ``logits[n]``.

    logits: [N, C]; labels: [N] class indices. k larger than C counts every sample as a hit.
    """
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # [N, kmax]
    hits = top == labels.view(-1, 1).to(top.device)  # [N, kmax]
    return {k: hits[:, : min(k, kmax)].any(dim=1) for k in ks}


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, float]:
    """Top-k accuracy in [0, 1]: {k: fraction of rows whose label is in the k highest logits}."""
    if logits.shape[0] == 0:
        raise ValueError("topk_accuracy needs at least one sample")
    return {k: float(hit.float().mean()) for k, hit in topk_correct(logits, labels, ks).items()}


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
