"""Qualitative analysis on tensors: what a method gets wrong, and where.

Shapes: N test images, C classes, M cache entries (shots), D feature dim, k top classes kept.
Every function is pure (tensors or arrays in, tensors or plain data out); why a cache decides is
:mod:`fewshot.methods.tip_adapter.explain`, the run folder side :mod:`fewshot.report.analysis_data`,
the figures :mod:`fewshot.report.analysis_figures`.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import torch


__all__ = ["top_predictions", "confused_pairs", "class_gain", "failures", "pick_explained",
           "project_2d", "variance_share"]


@torch.no_grad()
def top_predictions(logits_fn, feats: torch.Tensor, k: int = 3, chunk: int = 8192):
    """The ``k`` most probable classes of every row and their softmax probabilities.

    logits_fn: feats [n, D] -> logits [n, C]; feats [N, D]. Returns (classes [N, k] int16, probs
    [N, k] float16) on the CPU, most probable first (compact: 4·k bytes per image).
    """
    parts = [logits_fn(feats[s:s + chunk]).float().softmax(1).topk(k, dim=1)
             for s in range(0, len(feats), chunk)]
    probs, classes = torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts])
    return classes.to(torch.int16).cpu(), probs.to(torch.float16).cpu()


def confused_pairs(labels, preds, top: int = 5) -> list[dict]:
    """The ``top`` unordered class pairs {a, b} with the most confusions a→b plus b→a.

    labels, preds: [N] class indices. Returns ``[{"a", "b", "a_to_b", "b_to_a", "total"}]``,
    a < b, most confused first (ties: smaller (a, b) first); pairs never confused are left out.
    """
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    wrong = labels != preds
    lo, hi = np.minimum(labels[wrong], preds[wrong]), np.maximum(labels[wrong], preds[wrong])
    counts: dict = {}
    for t, a, b in zip(labels[wrong], lo, hi):
        entry = counts.setdefault((int(a), int(b)), [0, 0])
        entry[0 if t == a else 1] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-sum(kv[1]), kv[0]))[:top]
    return [{"a": a, "b": b, "a_to_b": ab, "b_to_a": ba, "total": ab + ba} for (a, b), (ab, ba) in ranked]


def class_gain(labels, preds, base_preds, num_classes: int):
    """Per-class top-1 (%) of ``preds`` and ``base_preds`` and their difference.

    labels, preds, base_preds: [N]. Returns (acc [C], base_acc [C], gain [C] = acc − base_acc) as
    float arrays; a class with no test image is NaN in all three.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = np.bincount(labels, minlength=num_classes).astype(float)
    n[n == 0] = np.nan

    def acc(p):
        return 100 * np.bincount(labels, weights=(np.asarray(p) == labels), minlength=num_classes) / n
    a, b = acc(preds), acc(base_preds)
    return a, b, a - b


def failures(labels, classes, probs, top: int = 8) -> list[int]:
    """Indices of the ``top`` most confident wrong predictions.

    labels [N]; classes, probs [N, k] (most probable first, as :func:`top_predictions`). Returns
    up to ``top`` row indices whose first class is wrong, by decreasing top-1 probability (ties:
    lower index first).
    """
    labels, classes = np.asarray(labels), np.asarray(classes)
    conf = np.asarray(probs, dtype=np.float64)[:, 0]
    wrong = np.flatnonzero(classes[:, 0] != labels)
    return [int(i) for i in wrong[np.lexsort((wrong, -conf[wrong]))][:top]]


def pick_explained(labels, zs_pred, ad_pred, ad_conf, each=(2, 1, 1)) -> list[tuple[int, str]]:
    """Test images worth explaining: ``each`` = how many the adapted head fixed (zero-shot wrong,
    adapted right), broke (the reverse) and both got wrong, most confident adapted first.

    labels, zs_pred, ad_pred, ad_conf: [N]. Returns ``[(index, "fixed" | "broken" | "both wrong")]``;
    a kind with too few images leaves its place to the next kinds, then to correct ones.
    """
    labels, zs, ad = (np.asarray(x) for x in (labels, zs_pred, ad_pred))
    conf = np.asarray(ad_conf, dtype=np.float64)
    kinds = [("fixed", (zs != labels) & (ad == labels)), ("broken", (zs == labels) & (ad != labels)),
             ("both wrong", (zs != labels) & (ad != labels)), ("both right", (zs == labels) & (ad == labels))]
    picked, spare = [], 0
    for (name, mask), want in zip(kinds, list(each) + [0]):
        idx = np.flatnonzero(mask)
        idx = idx[np.lexsort((idx, -conf[idx]))]
        take = want + spare if name != "both right" else spare
        picked += [(int(i), name) for i in idx[:take]]
        spare = take - min(take, len(idx))
    return picked


def project_2d(feats: torch.Tensor, others=(), method: str = "pca", seed: int = 0):
    """2-D coordinates of ``feats`` [n, D] and of each tensor in ``others`` ([m_i, D]).

    ``"pca"``: the two leading principal axes of ``feats`` (``torch.linalg.svd`` of the centred
    rows; each axis's sign fixed so its largest loading is positive), onto which ``others`` are
    projected: one shared, linear map. ``"tsne"``: scikit-learn's t-SNE of all rows together
    (only where scikit-learn is installed). Returns ([n, 2], [[m_i, 2], ...]) numpy arrays.
    """
    rows = [feats.float().cpu()] + [o.float().cpu() for o in others]
    if method == "tsne":
        if importlib.util.find_spec("sklearn") is None:
            raise ValueError("t-SNE needs scikit-learn (pip install scikit-learn); use method='pca'")
        from sklearn.manifold import TSNE

        allrows = torch.cat(rows).numpy()
        xy = TSNE(2, init="pca", random_state=seed, perplexity=min(30.0, len(allrows) / 4)).fit_transform(allrows)
    elif method == "pca":
        mean = rows[0].mean(0)
        _, _, vh = torch.linalg.svd(rows[0] - mean, full_matrices=False)
        axes = vh[:2]  # [2, D]
        axes = axes * torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
        xy = (torch.cat(rows) - mean) @ axes.T
        xy = xy.numpy()
    else:
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    bounds = np.cumsum([len(r) for r in rows])[:-1]
    parts = np.split(xy, bounds)
    return parts[0], parts[1:]


def variance_share(feats: torch.Tensor, axes: int = 2) -> float:
    """The fraction of the variance of ``feats`` [n, D] that its ``axes`` leading principal axes
    hold (what a PCA picture of them shows)."""
    x = feats.float().cpu()
    s = torch.linalg.svdvals(x - x.mean(0)) ** 2
    return float(s[:axes].sum() / s.sum())