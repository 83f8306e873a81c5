"""WiSE-FT of the adapter: ``K(λ) = (1−λ)·K₀ + λ·K_ft`` between Tip-Adapter's and Tip-Adapter-F's
keys (Wortsman et al., CVPR 2022), plain and Fisher-weighted.

The path uses Tip-Adapter-F's final (α, β), so λ = 1 is exactly the Tip-Adapter-F that is
reported; λ = 0 is the training-free cache under the same (α, β) (Tip-Adapter itself, unless an
oracle run re-searched them). λ is chosen by cross-validation over the shots: Tip-Adapter-F is
trained again on the other folds and every λ scored on the held-out fold; the WiSE-FT paper's
λ = 0.5 at 1 shot; on test in an oracle run. The Fisher-weighted merges reuse that λ. ``wise-tip-adapter-default`` records λ = 0.5 beside it (the
authors' advice when nothing can be tuned; ``tuned_on: default``).

Its records are ``wise-tip-adapter`` (and ``-default``, ``-fisher``, ``-fisher-model``): the merge is of
Tip-Adapter's cache keys, beside ``wise-ft-full`` (WiSE-FT of the image encoder, :mod:`fewshot.methods.finetune`).
Run folders of older versions, which called them ``wise-ft…``, still read: ``formerly`` maps the names.
"""
from __future__ import annotations

from fewshot.protocol import selection
from fewshot.methods.tip_adapter import cache_model as tip
from fewshot.methods.tip_adapter import cache_head, rebuild_cache, train_fold_keys
from fewshot.protocol.metrics import top1
from fewshot.protocol.method import Head, Method, register
from fewshot.merging.interpolate import DEFAULT_LAMBDA, interpolate

__all__ = ["FISHER_KINDS"]

FISHER_KINDS = {"wise-tip-adapter-fisher": "empirical", "wise-tip-adapter-fisher-model": "model"}


def _ends(shots, ctx):
    ft = ctx.prior["tip-adapter-f"]
    keys0, values = tip.build_cache(shots.views, shots.labels, shots.num_classes)
    return ft, keys0, ft.state["keys"].to(keys0.device), values


def _keys_at(keys0, keys1, lam: float, fishers=None):
    """The merged keys [M, D] at λ between keys₀ and keys₁ [M, D] (Fisher-weighted with ``fishers``)."""
    return interpolate({"k": keys0}, {"k": keys1}, lam, fishers)["k"]


def fit_wise(shots, ctx) -> Head:
    """The λ path (a sweep of heads) and the head at the chosen λ."""
    ft, keys0, keys1, values = _ends(shots, ctx)
    cfg, alpha, beta = ctx.cfg, ft.hyperparameters["alpha"], ft.hyperparameters["beta"]
    lambdas = list(cfg.lambdas)

    def head_at(lam):
        return cache_head(ctx, _keys_at(keys0, keys1, lam), values, alpha, beta)

    def score_folds(trains, helds):  # the folds' Tip-Adapter-F trained at once
        fits = train_fold_keys(shots, ctx, alpha, beta, ft.hyperparameters["recipe"], trains,
                               f"WiSE-FT ({shots.shots}-shot, seed {shots.seed}), CV")
        return [[top1(tip.tip_logits(shots.center[held], ctx.text_weights,
                                          interpolate({"k": k0}, {"k": tuned}, lam)["k"], v, alpha,
                                          beta, ctx.logit_scale), shots.labels[held])
                 for lam in lambdas] for (k0, v, tuned), held in zip(fits, helds)]

    def on_test(s):
        accs = [top1(head_at(lam)(s.feats), s.labels) for lam in lambdas]
        return lambdas[selection.first_best(accs)], None

    choice = selection.choose(
        ctx, shots.shots, default=DEFAULT_LAMBDA, on_test=on_test,
        inside=lambda: selection.cross_validate(shots.ranks, cfg.cv_folds, lambdas,
                                                score_folds=score_folds))
    lam = choice.value
    default = Head(head_at(DEFAULT_LAMBDA), "default", {"lambda": DEFAULT_LAMBDA, "alpha": alpha, "beta": beta})
    keys = _keys_at(keys0, keys1, lam)  # kept, so that the head rebuilds without its prior
    return Head(cache_head(ctx, keys, values, alpha, beta), choice.tuned_on, {"lambda": lam, "alpha": alpha, "beta": beta},
                state={"keys": keys}, extra={"cv_curve": choice.curve},
                sweep=tuple(({"lambda": x}, head_at(x)) for x in lambdas), companions={"wise-tip-adapter-default": default})


def _fit_fisher(kind: str):
    def fit(shots, ctx) -> Head:
        ft, keys0, keys1, values = _ends(shots, ctx)
        wise = ctx.prior["wise-tip-adapter"]
        alpha, beta, lam = ft.hyperparameters["alpha"], ft.hyperparameters["beta"], wise.hyperparameters["lambda"]
        fishers = tuple({"k": tip.adapter_fisher(shots.center, shots.labels, ctx.text_weights, k,
                                                 values, alpha, beta, ctx.logit_scale, kind)}
                        for k in (keys0, keys1))
        keys = _keys_at(keys0, keys1, lam, fishers)
        return Head(cache_head(ctx, keys, values, alpha, beta), wise.tuned_on,
                    {"lambda": lam, "alpha": alpha, "beta": beta, "fisher": kind}, state={"keys": keys})
    fit.__doc__ = f"Fisher-weighted merge ({kind} Fisher of the keys on the shots) at WiSE-FT's λ."
    return fit


register(Method("wise-tip-adapter", fit_wise, step="wise", after=("tip-adapter-f",), learnable=True, rebuild=rebuild_cache,
                companions=("wise-tip-adapter-default",),  # λ = 0.5, the WiSE-FT authors' advice
                formerly={"wise-ft": "wise-tip-adapter", "wise-ft-default": "wise-tip-adapter-default"},
                summary="WiSE-FT: Tip-Adapter and Tip-Adapter-F keys interpolated (Wortsman et al., 2022)"))
register(Method("wise-tip-adapter-fisher", _fit_fisher("empirical"), step="wise", learnable=True, rebuild=rebuild_cache,
                after=("tip-adapter-f", "wise-tip-adapter"), formerly={"wise-ft-fisher": "wise-tip-adapter-fisher"},
                summary="WiSE-FT, Fisher-weighted; empirical Fisher (true labels of the shots)"))
register(Method("wise-tip-adapter-fisher-model", _fit_fisher("model"), step="wise", learnable=True, rebuild=rebuild_cache,
                after=("tip-adapter-f", "wise-tip-adapter"),
                formerly={"wise-ft-fisher-model": "wise-tip-adapter-fisher-model"},
                summary="WiSE-FT, Fisher-weighted; Fisher under the model's own predictions (the WiSE-FT code's)"))
