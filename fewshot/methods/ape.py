"""APE and APE-T (Zhu et al., ICCV 2023, "Not All Features Matter"): a Tip-Adapter cache on the
feature channels that separate the classes best.

Channel selection, over the text head W [C, D] and the cache keys F (class c's K_c keys):

    S_d = mean over pairs of vectors of different classes (text and keys) of their product in d
    V_d = variance of W[:, d] over the classes
    J_d = −λ·S_d + (1 − λ)·V_d ;  keep the Q channels with the largest J
          (λ = 0.7 for APE, 0.2 for APE-T; Q = 500 of RN50's 1024, the same share otherwise)

APE (training-free), with f', F', W' the selected channels renormalised:

    R   = exp(γ · KL_m),  KL_m = log₂((1 + 1e-6) / (softmax(F'W'ᵀ)_{m,y_m} + 1e-6))  per cache entry
    logits = s·f·Wᵀ + α · exp(−β(1 − f'·F'ᵀ)) · (L ⊙ R)

(the softmax has no logit scale, as in the official code). (β, α, γ) by leave-one-out over the
shots on the official grid (β ∈ [0.1, 7) in 200 steps, α ∈ [0.1, 7) in 20, γ ∈ {0, …, 0.4});
the official initial values (β 1, α 2, γ 0.1) at 1 shot; on test in an oracle run (as published).

APE-T trains a residual ``res`` [C, Q] (added to the selected channels of both the text head and
each class's keys, not renormalised) and a weight per cache entry:

    logits = s·f·(W + res)ᵀ + α · exp(−β(1 − f·(F + res[y])ᵀ)) · (L ⊙ w)

AdamW (lr 1e-4, eps 1e-3, weight decay 0.1), batch 256, 20 epochs, cosine per step, with
(β, α) = (1, 2), the official training values; they are kept afterwards (``tuned_on: default``);
an oracle run keeps the best epoch and searches (β, α) on test, as the official code does.

Recipes (``cfg.recipe``, :mod:`fewshot.protocol.recipes`): ``default`` uses the run's text head; ``official``
the official ImageNet head, CuPL's GPT-3 prompts of each class with the 7 templates (the
``cupl+tip7`` set, ``extract_text_feature`` of ``extract_features.py``), for APE and APE-T alike.
APE-T's ``default`` keeps ``res``, the entry weights and AdamW's state in fp32; ``official`` keeps
them at fp16 precision
(:class:`fewshot.training.optim.AdamWFp16State`), as the official ``APE_Training`` holds them
(``nn.Parameter(....half())`` in ``utils.py`` of yangyangyang127/APE at 70460de, trained by
``torch.optim.AdamW(eps=1e-3, weight_decay=0.1)`` in ``main.py``); the forward and backward pass
stay fp32, as for Tip-Adapter-F's official recipe.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.protocol import selection
from fewshot.methods.tip_adapter import cache_model as tip
from fewshot.training.optim import AdamWFp16State
from fewshot.protocol.method import Head, Method, Source, register
from fewshot.protocol.metrics import top1
from fewshot.protocol.method_config import setting
from fewshot.protocol.recipes import OFFICIAL_HEADS, recipe_for, text_head
from fewshot.training.heads import train_head
from fewshot.training.schedules import cosine_per_step

__all__ = ["channel_scores", "select_channels", "ape_values", "ape_logits", "ape_t_logits"]

LAMBDA_APE, LAMBDA_APE_T, Q_SHARE = 0.7, 0.2, 500 / 1024
GAMMAS = (0.0, 0.1, 0.2, 0.3, 0.4)
DEFAULT = {"beta": 1.0, "alpha": 2.0, "gamma": 0.1}
T_EPS, T_WD, T_BATCH = 1e-3, 0.1, 256  # epochs and rate: cfg.ape_t_epochs (the official 20), cfg.ape_t_lr (1e-4)
OFFICIAL_HEAD = "cupl+tip7"  # the official ImageNet head (extract_features.py: tip7 + CuPL prompts)
OFFICIAL_HEADS.update({"ape": OFFICIAL_HEAD, "ape-t": OFFICIAL_HEAD})  # checked before a run starts
SOURCE = Source("Zhu et al., ICCV 2023", "yangyangyang127/APE", "70460de74d1e967f8b4d270b3419373694758536",
                ("main.py", "utils.py", "configs/imagenet.yaml"))


def channel_scores(text_weights, keys, key_labels, lam: float) -> torch.Tensor:
    """J [D] = −λ·S + (1 − λ)·V (module docstring); classes may hold different numbers of keys.

    S_d sums f_d·g_d over all pairs of vectors of different classes: with s_c the sum of class c's
    vectors (its text embedding and keys), Σ_{i≠j} s_i·s_j = (Σ s)² − Σ s², divided by the number
    of such pairs."""
    C = text_weights.shape[0]
    sums = text_weights.float().clone().index_add_(0, key_labels, keys.float())  # [C, D]
    n = 1 + torch.bincount(key_labels, minlength=C).float()  # vectors per class
    pairs = n.sum() ** 2 - (n ** 2).sum()
    similarity = (sums.sum(0) ** 2 - (sums ** 2).sum(0)) / pairs
    variance = text_weights.float().var(dim=0)
    return -lam * similarity + (1 - lam) * variance


def select_channels(text_weights, keys, key_labels, lam: float) -> torch.Tensor:
    """Indices of the Q best channels (sorted), Q = round(D · 500/1024)."""
    D = text_weights.shape[1]
    q = max(1, round(D * Q_SHARE))
    return channel_scores(text_weights, keys, key_labels, lam).topk(q).indices.sort().values


def ape_values(keys_sel, text_sel, values, gamma: float) -> torch.Tensor:
    """Cache values weighted by APE's prior: L ⊙ exp(γ·KL) [M, C] (keys_sel, text_sel normalised)."""
    p = (keys_sel @ text_sel.T).softmax(dim=1)  # no logit scale, as the official code
    p_true = (p * values).sum(1)
    kl = torch.log2((1 + 1e-6) / (p_true + 1e-6))
    return values * torch.exp(gamma * kl)[:, None]


def ape_logits(feats, text_weights, keys_sel, values_w, idx, alpha, beta, logit_scale=100.0):
    """feats [N, D] -> [N, C]: zero-shot on all channels, the cache on the selected ones."""
    feats = feats.float()
    f_sel = F.normalize(feats[:, idx], dim=-1)
    cache = tip.cache_affinity(f_sel, keys_sel, beta) @ values_w
    return logit_scale * feats @ text_weights.float().T + alpha * cache


def _head(ctx) -> tuple:
    """(recipe, text head [C, D], its name): the run's head by default, the official ImageNet head
    (``cupl+tip7``: CuPL's prompts and the 7 templates) under the official recipe."""
    recipe = recipe_for(ctx, ("official",))
    if recipe != "official":
        return recipe, ctx.text_weights, getattr(getattr(ctx, "cfg", None), "templates", "run")
    return (recipe, *text_head(ctx, OFFICIAL_HEAD))


def _selected(shots, W, lam):
    keys, values = tip.build_cache(shots.views, shots.labels, shots.num_classes)
    idx = select_channels(W, keys, shots.labels, lam)
    return keys, values, idx, F.normalize(keys[:, idx], dim=-1), F.normalize(W.float()[:, idx], dim=-1)


def _ape_head(shots, ctx, hp: dict, idx=None):
    """The fitted APE head at ``hp`` (β, α, γ): feats [n, D] -> [n, C]; the channels ``idx`` [Q]
    are selected again from the shots' cache unless given."""
    _, W, _ = _head(ctx)
    keys, values, chosen, _, _ = _selected(shots, W, LAMBDA_APE)
    idx = chosen if idx is None else idx.to(keys.device)
    keys_sel, text_sel = F.normalize(keys[:, idx], dim=-1), F.normalize(W.float()[:, idx], dim=-1)
    vw, scale = ape_values(keys_sel, text_sel, values, hp["gamma"]), ctx.logit_scale
    return lambda f: ape_logits(f, W, keys_sel, vw, idx, hp["alpha"], hp["beta"], scale)


def rebuild_ape(fitted, shots, ctx) -> Head:
    """``Method.rebuild`` of APE: the shots' cache on the saved channels, at the recorded (β, α, γ)."""
    return fitted.head(_ape_head(shots, ctx, fitted.hyperparameters, fitted.state["channels"]))


def fit_ape(shots, ctx) -> Head:
    """Training-free APE; (β, α, γ) by :func:`fewshot.protocol.selection.choose`."""
    recipe, W, head = _head(ctx)
    keys, values, idx, keys_sel, text_sel = _selected(shots, W, LAMBDA_APE)
    alphas, betas = tip.official_grid(7.0, 200, 7.0, 20)  # the official APE grid
    scale = ctx.logit_scale

    def grid_search(feats, labels, exclude=None):
        best, cache_feats = None, F.normalize(feats[:, idx], dim=-1)
        # γ = 0 leaves the values one-hot (the summed-ELU path); the others share one pass of affinities
        plain = [g for g in GAMMAS if g == 0]
        grids = [tip.search(feats, labels, W, keys_sel, ape_values(keys_sel, text_sel, values, g), alphas, betas,
                            scale, exclude=exclude, cache_feats=cache_feats) for g in plain]
        rest = [g for g in GAMMAS if g != 0]
        grids += list(tip.search(feats, labels, W, keys_sel, [ape_values(keys_sel, text_sel, values, g) for g in rest],
                                 alphas, betas, scale, exclude=exclude, cache_feats=cache_feats)) if rest else []
        for gamma, grid in zip(plain + rest, grids):
            a, b, acc = tip.best_point(grid, alphas, betas)
            if best is None or acc > best[0]:
                best = (acc, {"beta": b, "alpha": a, "gamma": gamma})
        return best[1], None

    exclude = torch.arange(len(shots.labels), device=shots.labels.device)
    choice = selection.choose(ctx, shots.shots, default=dict(DEFAULT), inside_label="loo-train",
                              inside=lambda: grid_search(shots.center, shots.labels, exclude),
                              on_test=lambda s: grid_search(s.feats, s.labels))
    hp = choice.value
    return Head(_ape_head(shots, ctx, hp, idx), choice.tuned_on,
                {**hp, "channels": len(idx), "recipe": recipe, "head": head}, state={"channels": idx})


def ape_t_logits(feats, text_weights, keys, values, key_labels, res, weights, idx, alpha, beta,
                 logit_scale=100.0):
    """APE-T logits [N, C] for feats [N, D]: res [C, Q] added to the selected channels ``idx`` of
    the text head and of each key (by its class), weights [M] on the cache entries."""
    feats = feats.float()
    text = text_weights.float().index_add(1, idx, res)
    k = keys.float().index_add(1, idx, res[key_labels])
    cache = tip.cache_affinity(feats, k, beta) @ (values * weights[:, None])
    return logit_scale * feats @ text.T + alpha * cache


def _ape_t_head(shots, ctx, res, weights, idx, alpha: float, beta: float):
    """The fitted APE-T head: feats [n, D] -> [n, C] (:func:`ape_t_logits` on the shots' cache
    with res [C, Q], entry weights [M] on channels idx [Q])."""
    _, W, _ = _head(ctx)
    keys, values = tip.build_cache(shots.views, shots.labels, shots.num_classes)
    res, weights, idx, scale = res.to(keys.device), weights.to(keys.device), idx.to(keys.device), ctx.logit_scale
    return lambda f: ape_t_logits(f, W, keys, values, shots.labels, res, weights, idx, alpha, beta, scale)


def rebuild_ape_t(fitted, shots, ctx) -> Head:
    """``Method.rebuild`` of APE-T: the saved residual, entry weights and channels, at the recorded (β, α)."""
    st, hp = fitted.state, fitted.hyperparameters
    return fitted.head(_ape_t_head(shots, ctx, st["res"], st["weights"], st["channels"], hp["alpha"], hp["beta"]))


def fit_ape_t(shots, ctx) -> Head:
    """Train the residual and the entry weights on the shots' cached views."""
    recipe, W, head = _head(ctx)
    keys, values, idx, _, _ = _selected(shots, W, LAMBDA_APE_T)
    scale, labels = ctx.logit_scale, shots.labels
    res = torch.nn.Parameter(torch.zeros(shots.num_classes, len(idx), device=keys.device))
    weights = torch.nn.Parameter(torch.ones(len(labels), device=keys.device))
    alpha, beta = DEFAULT["alpha"], DEFAULT["beta"]
    epochs, lr = setting(ctx, "ape_t_epochs"), setting(ctx, "ape_t_lr")
    views = F.normalize(shots.views.float(), dim=-1)
    opt = (AdamWFp16State if recipe == "official" else torch.optim.AdamW)([res, weights], lr=lr, eps=T_EPS,
                                                                          weight_decay=T_WD)
    steps = -(-labels.numel() // T_BATCH)

    def logits(f, a=alpha, b=beta):
        return ape_t_logits(f, W, keys, values, labels, res, weights, idx, a, b, scale)

    select = None
    if ctx.oracle is not None:
        def select():
            with torch.no_grad():
                return top1(logits(ctx.oracle.feats), ctx.oracle.labels)
    out = train_head([res, weights], logits, views, labels, optimizer=opt,
                     schedule=cosine_per_step(epochs * steps), epochs=epochs, batch_size=T_BATCH,
                     seed=shots.seed, progress=ctx.progress, select_epoch=select,
                     what=f"APE-T ({shots.shots}-shot, seed {shots.seed})", graph=True)
    res, weights = res.detach(), weights.detach()
    tuned_on, hp = "default", {"alpha": alpha, "beta": beta}
    if ctx.oracle is not None:  # as the official code: (β, α) searched on test after training
        k = keys.index_add(1, idx, res[labels])
        alphas, betas = tip.official_grid(7.0, 200, 7.0, 20)
        grid = tip.search(ctx.oracle.feats, ctx.oracle.labels, W.float().index_add(1, idx, res), k,
                          values * weights[:, None], alphas, betas, scale)
        alpha, beta, _ = tip.best_point(grid, alphas, betas)
        tuned_on, hp = "test-oracle", {"alpha": alpha, "beta": beta, "best_epoch": out["best_epoch"]}
    return Head(_ape_t_head(shots, ctx, res, weights, idx, alpha, beta), tuned_on,
                {**hp, "epochs": epochs, "lr": lr, "channels": len(idx), "recipe": recipe, "head": head},
                state={"res": res, "weights": weights, "channels": idx}, extra={"history": out["history"]})


register(Method("ape", fit_ape, step="peers", rebuild=rebuild_ape, source=SOURCE, recipes=("official",),
                summary="training-free cache on the most discriminative channels (Zhu et al., 2023)"))
register(Method("ape-t", fit_ape_t, step="peers", rebuild=rebuild_ape_t, learnable=True, source=SOURCE, recipes=("official",),
                summary="APE with a trained class residual and entry weights (Zhu et al., 2023)"))
