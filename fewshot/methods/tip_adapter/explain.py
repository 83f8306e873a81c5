"""Why Tip-Adapter's cache decides as it does: the explanation of single test images, how fine-tuning
moved the keys, and the snapshot a run keeps for the report's qualitative analysis.

Shapes: N test images, C classes, M cache entries (shots), D feature dim. The cache formula is
:func:`fewshot.methods.tip_adapter.cache_model.cache_affinity`, used here, never rewritten.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.methods.tip_adapter.cache_model import build_cache, cache_affinity
from fewshot.models.text_head import zeroshot_logits
from fewshot.protocol.analysis import confused_pairs, pick_explained, top_predictions

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

    shots: :class:`~fewshot.protocol.method.Shots` (keys before fine-tuning are rebuilt from its views);
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
