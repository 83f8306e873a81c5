"""Tip-Adapter and Tip-Adapter-F as methods (the formulas live in :mod:`fewshot.methods.tip_adapter.cache_model`).

Tip-Adapter (Zhang et al., ECCV 2022): a training-free cache of the shots' augmented features,
``logits = s·f·Wᵀ + α·exp(−β(1 − f·Kᵀ))·L``; (α, β) by leave-one-out over the shots, the
official initial values (α = 1.17, β = 1) at 1 shot, or, in an oracle run, the official grid
searched on test. Tip-Adapter-F: the keys K fine-tuned with Tip-Adapter's (α, β) for a fixed
number of epochs, with the fp32 or the official (fp16-state) AdamW recipe (:mod:`fewshot.training.optim`),
chosen by cross-validation over the shots by default; in an oracle run the best epoch is kept and
(α, β) are searched again on test after training, as the official script does.
"""
from __future__ import annotations

import torch

from fewshot.protocol import selection
from fewshot.methods.tip_adapter import cache_model as tip
from fewshot.methods.tip_adapter.explain import cache_snapshot
from fewshot.protocol.metrics import top1
from fewshot.protocol.method import Head, Method, Source, register

__all__ = ["cache_head", "grid_of", "train_keys", "rebuild_cache"]

SOURCE = Source("Zhang et al., ECCV 2022", "gaopengcuhk/Tip-Adapter")  # its recipes: cfg.tip_f_recipe


def grid_of(cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """The (alphas, betas) grid of a config: the official one by default."""
    return tip.official_grid(cfg.beta_max, cfg.beta_steps, cfg.alpha_max, cfg.alpha_steps)


def cache_head(ctx, keys, values, alpha: float, beta: float):
    """Logits function of a Tip-Adapter cache: feats [n, D] -> [n, C]."""
    W, scale, dtype = ctx.text_weights, ctx.logit_scale, ctx.cache_dtype
    return lambda f: tip.tip_logits(f, W, keys, values, alpha, beta, scale, dtype)


def rebuild_cache(fitted, shots, ctx) -> Head:
    """``Method.rebuild`` of a cache head: its (α, β), the shots' one-hot values [M, C] and its
    saved keys [M, D] (``state["keys"]``: fine-tuned or merged), or, where none were saved
    (training-free Tip-Adapter), the keys of the shots' views again."""
    keys, values = tip.build_cache(shots.views, shots.labels, shots.num_classes)
    keys = fitted.state.get("keys", keys)
    hp = fitted.hyperparameters
    return fitted.head(cache_head(ctx, keys.to(values.device), values, hp["alpha"], hp["beta"]))


def _best_on(eval_set, ctx, keys, values):
    alphas, betas = grid_of(ctx.cfg)
    grid = tip.search(eval_set.feats, eval_set.labels, ctx.text_weights, keys, values, alphas,
                      betas, ctx.logit_scale)
    alpha, beta, _ = tip.best_point(grid, alphas, betas)
    return (alpha, beta), grid


def loo_alpha_beta(center_feats, labels, text_weights, keys, values, alphas, betas,
                   logit_scale: float = 100.0) -> tuple[tuple[float, float], torch.Tensor]:
    """((α, β), grid [B, A]) maximising leave-one-out accuracy on the training shots.

    center_feats [M, D] normalised centre-crop features of the M cache images, in cache order;
    labels [M]; keys [M, D]; values [M, C]. Image i is scored against the cache without entry i.
    """
    exclude = torch.arange(center_feats.shape[0], device=center_feats.device)
    grid = tip.search(center_feats, labels, text_weights, keys, values, alphas, betas,
                      logit_scale, exclude=exclude)
    alpha, beta, _ = tip.best_point(grid, alphas, betas)
    return (alpha, beta), grid



def fit_tip_adapter(shots, ctx) -> Head:
    """Cache from the shots' views; (α, β) from :func:`fewshot.protocol.selection.choose`."""
    keys, values = tip.build_cache(shots.views, shots.labels, shots.num_classes)
    alphas, betas = grid_of(ctx.cfg)
    choice = selection.choose(
        ctx, shots.shots, default=(tip.DEFAULT_ALPHA, tip.DEFAULT_BETA), inside_label="loo-train",
        inside=lambda: loo_alpha_beta(shots.center, shots.labels, ctx.text_weights,
                                      keys, values, alphas, betas, ctx.logit_scale),
        on_test=lambda s: _best_on(s, ctx, keys, values))
    alpha, beta = choice.value
    head = Head(cache_head(ctx, keys, values, alpha, beta), choice.tuned_on,
                {"alpha": alpha, "beta": beta})
    head.notes["grid"] = choice.curve  # the grid the choice was made on (for the figure)
    return head


def diagnose_tip_adapter(shots, ctx, head: Head, val) -> dict:
    """The (β, α) grid on the val set beside the one the choice was made on: for the report's
    heatmap only, never used to choose (in the honest protocol)."""
    keys, values = tip.build_cache(shots.views, shots.labels, shots.num_classes)
    alphas, betas = grid_of(ctx.cfg)
    test = _best_on(val, ctx, keys, values)[1]
    loo = head.notes.get("grid") if head.tuned_on == "loo-train" else None
    return {"shots": shots.shots, "seed": shots.seed, "alphas": alphas.tolist(),
            "betas": betas.tolist(), "chosen": [head.hyperparameters["alpha"], head.hyperparameters["beta"]],
            "tuned_on": head.tuned_on, "test": test.tolist(), "loo": None if loo is None else loo.tolist()}


def train_keys(shots, ctx, alpha: float, beta: float, recipe: str, mask=None, select_epoch=None,
               what: str = "Tip-Adapter-F") -> tuple:
    """(keys₀, values, fine-tuned result) of Tip-Adapter-F on the shots (or the ``mask`` [M]
    subset of them, for cross-validation), with the config's epochs, lr and batch size."""
    cfg = ctx.cfg
    views, labels = (shots.views, shots.labels) if mask is None else (shots.views[:, mask], shots.labels[mask])
    keys0, values = tip.build_cache(views, labels, shots.num_classes)
    res = tip.train_tip_adapter_f(views, labels, ctx.text_weights, keys0, values, alpha, beta,
                                  ctx.logit_scale, epochs=cfg.epochs, lr=cfg.lr,
                                  batch_size=cfg.train_batch_size, seed=shots.seed,
                                  device=ctx.device, progress=ctx.progress and mask is None,
                                  recipe=recipe, select_epoch=select_epoch, what=what)
    return keys0, values, res


def train_fold_keys(shots, ctx, alpha: float, beta: float, recipe: str, train_masks: list,
                    what: str) -> list:
    """:func:`train_keys` on each of the ``train_masks`` [M] (cross-validation folds), the folds
    of equal size trained at once as one stacked fit (each as it would be alone, float rounding
    aside; one loop of steps instead of one per fold). Returns [(keys₀, values, keys)] per mask."""
    cfg, out = ctx.cfg, [None] * len(train_masks)
    groups: dict[int, list[int]] = {}
    for i, mask in enumerate(train_masks):
        groups.setdefault(int(mask.sum()), []).append(i)
    for members in groups.values():
        caches = [tip.build_cache(shots.views[:, train_masks[i]], shots.labels[train_masks[i]],
                                  shots.num_classes) for i in members]
        views = torch.stack([shots.views[:, train_masks[i]] for i in members], dim=2)  # [V, N, F, D]
        labels = torch.stack([shots.labels[train_masks[i]] for i in members], dim=1)  # [N, F]
        keys0 = torch.stack([k for k, _ in caches])
        res = tip.train_tip_adapter_f(views, labels, ctx.text_weights, keys0,
                                      torch.stack([v for _, v in caches]), alpha, beta,
                                      ctx.logit_scale, epochs=cfg.epochs, lr=cfg.lr,
                                      batch_size=cfg.train_batch_size, seed=shots.seed,
                                      device=ctx.device, progress=False, recipe=recipe, what=what)
        for j, i in enumerate(members):
            out[i] = (caches[j][0], caches[j][1], res["keys"][j])
    return out


def _choose_recipe(shots, ctx, alpha, beta, what):
    """The training recipe: as configured, or with ``auto`` by cross-validation over the shots
    (the published "official" recipe at 1 shot; on test in an oracle run)."""
    if ctx.cfg.tip_f_recipe != "auto":
        return selection.Choice(ctx.cfg.tip_f_recipe, "none")

    def score_folds(trains, helds):  # [fold][recipe]: every recipe's folds trained at once
        fits = [train_fold_keys(shots, ctx, alpha, beta, recipe, trains, what) for recipe in tip.RECIPES]
        return [[top1(tip.tip_logits(shots.center[held], ctx.text_weights, keys, v, alpha, beta,
                                      ctx.logit_scale), shots.labels[held])
                 for _, v, keys in (fit[f] for fit in fits)] for f, held in enumerate(helds)]

    def on_test(s):
        scores = [top1(cache_head(ctx, res["keys"], v, alpha, beta)(s.feats), s.labels)
                  for _, v, res in (train_keys(shots, ctx, alpha, beta, r, what=what) for r in tip.RECIPES)]
        return tip.RECIPES[selection.first_best(scores)], scores

    return selection.choose(ctx, shots.shots, default="official", on_test=on_test,
                            inside=lambda: selection.cross_validate(shots.ranks, ctx.cfg.cv_folds,
                                                                    tip.RECIPES, score_folds=score_folds))


def fit_tip_adapter_f(shots, ctx) -> Head:
    """Keys fine-tuned on the cached views with Tip-Adapter's (α, β); in an oracle run the best
    epoch is kept and (α, β) searched again, both on test, as the official script does."""
    prior, cfg = ctx.prior["tip-adapter"], ctx.cfg
    alpha, beta = prior.hyperparameters["alpha"], prior.hyperparameters["beta"]
    what = f"Tip-Adapter-F ({shots.shots}-shot, seed {shots.seed})"
    recipe = _choose_recipe(shots, ctx, alpha, beta, what)
    select = None
    if ctx.oracle is not None:
        def select(keys):
            return top1(tip.tip_logits(ctx.oracle.feats, ctx.text_weights, keys, values, alpha,
                                        beta, ctx.logit_scale, ctx.cache_dtype), ctx.oracle.labels)
        values = tip.build_cache(shots.views, shots.labels, shots.num_classes)[1]
    keys0, values, res = train_keys(shots, ctx, alpha, beta, recipe.value, select_epoch=select, what=what)
    keys = res["keys"]
    choice = selection.choose(ctx, shots.shots, default=(alpha, beta),
                              on_test=lambda s: _best_on(s, ctx, keys, values))
    alpha, beta = choice.value
    tuned_on = next((t for t in (choice.tuned_on, recipe.tuned_on) if t not in ("none", "default")),
                    prior.tuned_on)
    hp = {"alpha": alpha, "beta": beta, "epochs": cfg.epochs, "lr": cfg.lr, "recipe": recipe.value}
    if select is not None:
        hp["best_epoch"] = res["best_epoch"]
    return Head(cache_head(ctx, keys, values, alpha, beta), tuned_on, hp, state={"keys": keys},
                extra={"history": res["history"], "recipe_cv": recipe.curve})


def explain_tip_adapter_f(shots, ctx, head: Head, val) -> dict:
    """The cache before and after fine-tuning, for the qualitative analysis (fewshot.methods.tip_adapter.explain)."""
    hp = head.hyperparameters
    return cache_snapshot(shots, ctx, head.state["keys"], hp["alpha"], hp["beta"], head.logits, val)


register(Method("tip-adapter", fit_tip_adapter, step="tip_adapter", source=SOURCE, diagnose=diagnose_tip_adapter, report=("grid",),
                rebuild=rebuild_cache,
                summary="training-free cache of the shots' features (Zhang et al., 2022)"))
register(Method("tip-adapter-f", fit_tip_adapter_f, step="tip_adapter_f", after=("tip-adapter",), learnable=True, source=SOURCE,
                rebuild=rebuild_cache,
                explain=explain_tip_adapter_f, report=("training",),
                summary="Tip-Adapter with the cache keys fine-tuned (Zhang et al., 2022)"))
