"""Tip-Adapter and Tip-Adapter-F as methods (the formulas live in :mod:`fewshot.tip_adapter`).

Tip-Adapter (Zhang et al., ECCV 2022): a training-free cache of the shots' augmented features,
``logits = s·f·Wᵀ + α·exp(−β(1 − f·Kᵀ))·L``; (α, β) by leave-one-out over the shots, the
official initial values (α = 1.17, β = 1) at 1 shot, or, in an oracle run, the official grid
searched on test. Tip-Adapter-F: the keys K fine-tuned with Tip-Adapter's (α, β) for a fixed
number of epochs; in an oracle run (α, β) are searched again on test after training, as the
official script does.
"""
from __future__ import annotations

import torch

from fewshot import selection, tip_adapter as tip
from fewshot.protocol import Head, Method, register

__all__ = ["cache_head", "grid_of"]


def grid_of(cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """The (alphas, betas) grid of a config: the official one by default."""
    return tip.official_grid(cfg.beta_max, cfg.beta_steps, cfg.alpha_max, cfg.alpha_steps)


def cache_head(ctx, keys, values, alpha: float, beta: float):
    """Logits function of a Tip-Adapter cache: feats [n, D] -> [n, C]."""
    W, scale, dtype = ctx.text_weights, ctx.logit_scale, ctx.cache_dtype
    return lambda f: tip.tip_logits(f, W, keys, values, alpha, beta, scale, dtype)


def _best_on(eval_set, ctx, keys, values):
    alphas, betas = grid_of(ctx.cfg)
    grid = tip.search(eval_set.feats, eval_set.labels, ctx.text_weights, keys, values, alphas,
                      betas, ctx.logit_scale)
    alpha, beta, _ = tip.best_point(grid, alphas, betas)
    return (alpha, beta), grid


def fit_tip_adapter(shots, ctx) -> Head:
    """Cache from the shots' views; (α, β) from :func:`fewshot.selection.choose`."""
    keys, values = tip.build_cache(shots.views, shots.labels, shots.num_classes)
    alphas, betas = grid_of(ctx.cfg)
    choice = selection.choose(
        ctx, shots.shots, default=(tip.DEFAULT_ALPHA, tip.DEFAULT_BETA), inside_label="loo-train",
        inside=lambda: selection.loo_alpha_beta(shots.center, shots.labels, ctx.text_weights,
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


def fit_tip_adapter_f(shots, ctx) -> Head:
    """Keys fine-tuned on the cached views with Tip-Adapter's (α, β)."""
    prior, cfg = ctx.prior["tip-adapter"], ctx.cfg
    alpha, beta = prior.hyperparameters["alpha"], prior.hyperparameters["beta"]
    keys0, values = tip.build_cache(shots.views, shots.labels, shots.num_classes)
    res = tip.train_tip_adapter_f(
        shots.views, shots.labels, ctx.text_weights, keys0, values, alpha, beta, ctx.logit_scale,
        epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.train_batch_size, seed=shots.seed,
        device=ctx.device, progress=ctx.progress)
    keys = res["keys"]
    choice = selection.choose(ctx, shots.shots, default=(alpha, beta),
                              on_test=lambda s: _best_on(s, ctx, keys, values))
    alpha, beta = choice.value
    tuned_on = prior.tuned_on if choice.tuned_on == "default" else choice.tuned_on
    return Head(cache_head(ctx, keys, values, alpha, beta), tuned_on,
                {"alpha": alpha, "beta": beta, "epochs": cfg.epochs, "lr": cfg.lr},
                state={"keys": keys}, extra={"history": res["history"]})


register(Method("tip-adapter", fit_tip_adapter, step="tip_adapter", diagnose=diagnose_tip_adapter,
                summary="training-free cache of the shots' features (Zhang et al., 2022)"))
register(Method("tip-adapter-f", fit_tip_adapter_f, step="tip_adapter_f", after=("tip-adapter",),
                summary="Tip-Adapter with the cache keys fine-tuned (Zhang et al., 2022)"))
