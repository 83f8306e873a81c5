"""Qualitative analysis on tensors: what a method gets wrong, where, and why a cache decides as it does.

Shapes: N test images, C classes, M cache entries (shots), D feature dim, k top classes kept.
Every function is pure (tensors or arrays in, tensors or plain data out); the run folder side is
:mod:`fewshot.analysis_data`, the figures :mod:`fewshot.analysis_figures`. The cache formula is
:func:`fewshot.tip_adapter.cache_affinity`, used here, never rewritten.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import torch
import torch.nn.functional as F

from fewshot.tip_adapter import build_cache, cache_affinity
from fewshot.zeroshot import zeroshot_logits

__all__ = ["top_predictions", "confused_pairs", "class_gain", "failures", "pick_explained",
           "cache_explanation", "project_2d", "variance_share", "key_movement", "cache_snapshot"]


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


@torch.no_grad()
def cache_explanation(feats, keys, key_labels, alpha: float, beta: float, num_classes: int,
                      nearest: int = 4, keys0=None) -> dict:
    """Why a cache model decides as it does, for test features ``feats`` [n, D].

    keys [M, D] (normalised), key_labels [M]; the affinities are ``cache_affinity``'s
    exp(−β(1 − f·Kᵀ)). Returns ``{"nearest": [n, nearest] key rows of highest affinity,
    "affinity": [n, nearest] their affinities, "affinity0": the same shots' affinities under
    ``keys0`` (the keys before fine-tuning; absent without), "cache_logits": [n, C] α·A·L}``.
    """
    f = feats.float()
    aff = cache_affinity(f, keys.float(), beta)  # [n, M]
    top = aff.topk(min(nearest, aff.shape[1]), dim=1)
    values = F.one_hot(key_labels.long(), num_classes).float()
    out = {"nearest": top.indices, "affinity": top.values, "cache_logits": alpha * aff @ values}
    if keys0 is not None:
        out["affinity0"] = cache_affinity(f, keys0.float(), beta).gather(1, top.indices)
    return out


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


def key_movement(keys0, keys, key_labels, feats, labels) -> dict:
    """How fine-tuning moved the cache keys relative to the test images.

    keys0, keys [M, D] (before and after), key_labels [M]; feats [N, D] normalised test features
    with labels [N]. Returns per-key arrays [M]: ``"shift"`` = 1 − cos(keys0, keys),
    ``"own0"``/``"own"`` = cosine to the mean test feature of the key's own class before/after,
    ``"other0"``/``"other"`` = the highest cosine to another class's mean (NaN where a class has
    no test image); ``"norm"`` = ‖keys‖ (fine-tuning may change it, and the affinity with it).
    """
    dev = feats.device
    labels, y = labels.long().to(dev), key_labels.long().to(dev)
    C = int(max(y.max(), labels.max())) + 1
    sums = torch.zeros(C, feats.shape[1], device=dev).index_add_(0, labels, feats.float())
    cent = F.normalize(sums, dim=1)  # [C, D]
    cent[torch.bincount(labels, minlength=C) == 0] = float("nan")
    keys0, keys = keys0.float().to(dev), keys.float().to(dev)
    out = {"shift": (1 - F.cosine_similarity(keys0, keys, dim=1)).cpu().numpy(),
           "norm": keys.norm(dim=1).cpu().numpy()}
    for tag, k in (("0", keys0), ("", keys)):
        sim = F.normalize(k, dim=1) @ cent.T  # [M, C]
        out["own" + tag] = sim.gather(1, y[:, None])[:, 0].cpu().numpy()
        sim[torch.arange(len(y), device=dev), y] = -float("inf")
        out["other" + tag] = torch.nan_to_num(sim, nan=-float("inf")).amax(1).cpu().numpy()
    return out


@torch.no_grad()
def cache_snapshot(shots, ctx, keys, alpha: float, beta: float, logits_fn, val, max_classes: int = 6,
                   per_class: int = 40) -> dict:
    """What the report needs of a fitted cache (a ``Method.explain`` hook's payload).

    shots: :class:`~fewshot.protocol.Shots` (keys before fine-tuning are rebuilt from its views);
    keys [M, D] the fitted keys; logits_fn the fitted head; val the test set. Keeps the classes of
    the adapted head's most confused pairs (at most ``max_classes``; ``per_class`` test images
    each) with their features and keys before/after, per-key movement over all keys, and the
    explanation of a few chosen test images (:func:`pick_explained`, :func:`cache_explanation`).
    """
    C, f16, dev = shots.num_classes, torch.float16, val.feats.device
    keys0 = build_cache(shots.views, shots.labels, C)[0].to(keys.device)
    zs_fn = lambda f: zeroshot_logits(f, ctx.text_weights, ctx.logit_scale)  # noqa: E731
    zs_c, zs_p = top_predictions(zs_fn, val.feats)
    ad_c, ad_p = top_predictions(logits_fn, val.feats)
    labels = val.labels.cpu()
    pairs = confused_pairs(labels, ad_c[:, 0].long(), top=max_classes)
    classes = list(dict.fromkeys(c for p in pairs for c in (p["a"], p["b"])))[:max_classes] or list(range(min(C, max_classes)))
    val_index = torch.cat([torch.nonzero(labels == c)[:per_class, 0] for c in classes])
    key_index = torch.cat([torch.nonzero(shots.labels.cpu() == c)[:, 0] for c in classes])
    chosen = pick_explained(labels, zs_c[:, 0].long(), ad_c[:, 0].long(), ad_p[:, 0].float())
    idx = torch.tensor([i for i, _ in chosen], dtype=torch.long)
    feats = val.feats[idx.to(dev)]
    expl = cache_explanation(feats, keys, shots.labels, alpha, beta, C, keys0=keys0)
    move = key_movement(keys0, keys, shots.labels, val.feats, val.labels)
    return {"alpha": float(alpha), "beta": float(beta), "classes": torch.tensor(classes),
            "val_index": val_index, "val_feats": val.feats[val_index.to(dev)].cpu().to(f16),
            "key_index": key_index, "keys0": keys0.cpu()[key_index].to(f16),
            "keys": keys.detach().cpu()[key_index].to(f16), "key_labels": shots.labels.cpu().to(torch.int16),
            "shot_paths": list(shots.paths), **{f"move_{k}": torch.from_numpy(v) for k, v in move.items()},
            "explained": idx, "explained_kind": [k for _, k in chosen],
            **{f"explain_{k}": v.cpu() for k, v in expl.items() if k != "cache_logits"},
            "explain_cache_logits": expl["cache_logits"].cpu().gather(1, ad_c[idx].long()),  # [e, 3]
            "explain_zs_logits": zs_fn(feats).cpu().gather(1, ad_c[idx].long()),  # the same classes
            "explain_zs": zs_c[idx], "explain_zs_probs": zs_p[idx],
            "explain_ad": ad_c[idx], "explain_ad_probs": ad_p[idx]}
