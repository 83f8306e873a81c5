"""The merge study's rules that adapt on unlabeled images: AdaMerging (task- and layer-wise),
Concrete task arithmetic, Concrete layer-wise AdaMerging, and on a ViT tower Weight-Ensembling
MoE and E-WEMoE (:mod:`fewshot.merging.adamerging`, :mod:`~fewshot.merging.concrete`,
:mod:`~fewshot.merging.wemoe`).

Each adapts twice: on every task's unlabeled split (``tuned_on: unlabeled-train``; the task's
training images with labels unused where a folder has no such split), and, as FusionBench and the
papers do, on the task's test images themselves, labels unused (``test-unlabeled``, reported
beside the honest rows as the oracle ones are). One budget of ``steps`` for all (the config's
``adamerging_steps``): Concrete AdaMerging learns its mask for ``steps`` and its λ for ``steps``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.features.pixels import centre_pixels_of
from fewshot.features.preprocess import normalize_pixels
from fewshot.merging import adamerging, concrete, wemoe
from fewshot.merging import rules as merging
from fewshot.protocol.metrics import top1

__all__ = ["pools", "adaptive_rows", "wemoe_rows", "is_vit"]


def is_vit(visual) -> bool:
    """Whether an image tower is CLIP's VisionTransformer (WEMoE's routers sit on its MLPs)."""
    return hasattr(visual, "transformer") and hasattr(visual, "conv1")


def pools(tasks, res: int, device) -> dict:
    """{tuned_on: [pixels float 0–255 [N_t, 3, res, res] per task]}: what each adaptation reads."""
    def unlabeled(t):
        if t.unlabeled_px is not None:
            return t.unlabeled_px.batch(list(range(len(t.unlabeled_px)))).float()
        return centre_pixels_of(t.train_px, list(range(len(t.labels))), res, device)
    return {"unlabeled-train": [unlabeled(t) for t in tasks],
            "test-unlabeled": [t.val_px.batch(list(range(len(t.val_labels)))).float() for t in tasks]}


def _batches(pool: list, steps: int, seed: int) -> list:
    """batches[t](step): task t's batch of ``adamerging.BATCH`` images at ``step`` (seeded draws)."""
    gen = torch.Generator().manual_seed(seed)
    draws = [torch.randint(len(x), (steps, min(adamerging.BATCH, len(x))), generator=gen) for x in pool]
    return [lambda step, x=x, d=d: x[d[step % len(d)]] for x, d in zip(pool, draws)]


def adaptive_rows(clf, tasks, base: dict, experts: list, steps: int, device, seed: int, both: dict) -> tuple[list, dict]:
    """([(rule, state, hp, tuned_on)], diagnostics) of AdaMerging, Concrete task arithmetic and
    Concrete AdaMerging, each adapted on both pools (module docstring). Diagnostics: ``names`` (the
    weighted tensors, in order), ``lambda`` {rule: λ [n, L] or [n]}, ``mask`` {rule: each tensor's
    mean keep probability σ(logits) [L]}. ``both``: :func:`pools`."""
    floats = {k: v.to(device) for k, v in base.items()}
    taus = merging.task_vectors(floats, [{k: e[k].to(device) for k in floats} for e in experts])
    names = adamerging.names_of(floats, taus)

    def logits_of(state, t, x):
        f = F.normalize(torch.func.functional_call(clf.visual, state, (normalize_pixels(x.to(device)),)).float(), dim=-1)
        return f @ tasks[t].head.to(device).T
    out, diag = [], {"names": names, "lambda": {}, "mask": {}}
    for tuned_on, pool in both.items():
        tag = " (test-unlabeled)" if tuned_on == "test-unlabeled" else ""
        batches = _batches(pool, 2 * steps, seed)
        for wise in ("task", "layer"):
            lam, hist = adamerging.adamerge(logits_of, floats, taus, batches, steps, layer_wise=wise == "layer")
            hp = {"steps": steps, "lr": adamerging.LR, "init": adamerging.INIT, "lambda_mean": round(float(lam.mean()), 4),
                  "entropy_first_last": [round(hist[0], 4), round(hist[-1], 4)] if hist else []}
            out.append((f"adamerging-{wise}-wise{tag}", adamerging.merge(floats, taus, lam, names), hp, tuned_on))
            diag["lambda"][f"adamerging-{wise}-wise{tag}"] = lam.tolist()
        ct = concrete.concrete_task_arithmetic(logits_of, floats, taus, batches, steps, seed=seed)
        hp = {"steps": steps, "lambda": concrete.SCALE, "temperature": concrete.TEMPERATURE,
              "mask_mean": round(float(torch.cat([m.flatten() for m in ct.mask.values()]).mean()), 4)}
        out.append((f"concrete-task-arithmetic{tag}", concrete.masked_merge(floats, taus, ct.mask, ct.lam, ct.names), hp, tuned_on))
        ca = concrete.concrete_adamerge(logits_of, floats, taus, batches, steps, steps, seed=seed)
        hp = {"steps": steps, "adamerging_steps": steps, "lambda_mean": round(float(ca.lam.mean()), 4)}
        out.append((f"concrete-adamerging-layer-wise{tag}", concrete.masked_merge(floats, taus, ca.mask, ca.lam, ca.names),
                    hp, tuned_on))
        diag["lambda"][f"concrete-adamerging-layer-wise{tag}"] = ca.lam.tolist()
        for rule, r in ((f"concrete-task-arithmetic{tag}", ct), (f"concrete-adamerging-layer-wise{tag}", ca)):
            diag["mask"][rule] = [round(float(torch.sigmoid(r.logits[k]).mean()), 4) for k in r.names]  # σ(logits): keep probability
    return [(rule, {k: v.detach() for k, v in state.items()}, hp, tuned_on) for rule, state, hp, tuned_on in out], diag


def wemoe_rows(clf, tasks, base: dict, experts: list, steps: int, device, seed: int, both: dict,
               batch: int = 256) -> list:
    """[(rule, scores {task: top-1}, hp, tuned_on, routing [T, K, n])] of WEMoE and E-WEMoE on a ViT
    tower, each adapted on both pools; [] on another tower. ``routing``: per task, the mean routing
    weight of each expert in each MoE layer over the task's test images. ``both``: :func:`pools`."""
    if not is_vit(clf.visual):
        return []
    floats = {k: v.to(device) for k, v in base.items()}
    states = [{k: e[k].to(device) for k in floats} for e in experts]

    def feats(model, x):
        return F.normalize(model(normalize_pixels(x.to(device))).float(), dim=-1)

    def logits_of(model, t, x):
        return feats(model, x) @ tasks[t].head.to(device).T
    out = []
    for tuned_on, pool in both.items():
        tag = " (test-unlabeled)" if tuned_on == "test-unlabeled" else ""
        for rule, build in (("wemoe", wemoe.build_wemoe), ("e-wemoe", wemoe.build_ewemoe)):
            model = build(clf.visual, floats, states)
            hist = wemoe.train_routers(logits_of, model, _batches(pool, steps, seed), steps)
            test = [x.split(batch) for x in both["test-unlabeled"]]  # each task's test images, in chunks
            with torch.no_grad():
                scores = {task.name: 100 * top1(torch.cat([logits_of(model, t, x) for x in test[t]]).cpu(), task.val_labels)
                          for t, task in enumerate(tasks)}
            routing = wemoe.mean_routing_weights(model, [[normalize_pixels(x.to(device)) for x in chunks] for chunks in test])
            hp = {"steps": steps, "lr": wemoe.LR, "init_lambda": wemoe.INIT_LAMBDA,
                  "entropy_first_last": [round(hist[0], 4), round(hist[-1], 4)] if hist else []}
            out.append((rule + tag, scores, hp, tuned_on, routing.tolist()))
    return out
