"""GDA (Wang et al., ICLR 2024, "A Hard-to-Beat Baseline for Training-free CLIP-based
Adaptation"): Gaussian discriminant analysis with a shared covariance, added to the zero-shot head.

    μ_c  = mean of class c's views                   (every augmented view, each normalised)
    Σ⁻¹  = D · pinv(ZᵀZ + tr(S)·I)                   Z: the views minus their class mean [N, D],
                                                     S = ZᵀZ / (N − 1)  (the official estimator)
    W_g  = μ Σ⁻¹  [C, D],   b_c = log(1/C) − ½ μ_c Σ⁻¹ μ_cᵀ
    logits = s · f·Wᵀ + α · (f·W_gᵀ + b)

The estimator's scale (D/N of the inverse covariance) is the official one, so the published α grid
{1e-4, …, 100} keeps its meaning. α by cross-validation over the shots (GDA refitted on the other
folds, every α scored on the held-out one); at 1 shot the official ImageNet search's 1-shot
choice, α = 0.01; on test in an oracle run (the official script's protocol).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fewshot.protocol import selection
from fewshot.protocol.metrics import top1
from fewshot.protocol.method import Head, Method, Source, register

__all__ = ["gda_head", "gda_logits", "ALPHAS", "DEFAULT_ALPHA"]

ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
DEFAULT_ALPHA = 1e-2


def gda_head(view_feats: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """(W_g [C, D], b [C]) from normalised views [V, M, D] of M images with labels [M]."""
    V, M, D = view_feats.shape
    x = view_feats.reshape(V * M, D).double()
    y = labels.repeat(V)
    counts = torch.bincount(y, minlength=num_classes).clamp(min=1).double()
    mu = torch.zeros(num_classes, D, dtype=x.dtype, device=x.device).index_add_(0, y, x) / counts[:, None]
    z = x - mu[y]
    scatter = z.T @ z  # (N − 1)·S
    cov = scatter / (x.shape[0] - 1)
    precision = D * torch.linalg.pinv(scatter + torch.trace(cov) * torch.eye(D, dtype=x.dtype, device=x.device))
    w = mu @ precision  # precision is symmetric
    b = math.log(1 / num_classes) - 0.5 * (w * mu).sum(1)
    return w.float(), b.float()


def gda_logits(feats, text_weights, w, b, alpha: float, logit_scale: float = 100.0):
    """feats [N, D] -> [N, C]: ``s·f·Wᵀ + α·(f·W_gᵀ + b)``."""
    feats = feats.float()
    return logit_scale * feats @ text_weights.float().T + alpha * (feats @ w.T + b)


def _logits(ctx, w, b, alpha: float):
    """The fitted head: feats [n, D] -> [n, C] (:func:`gda_logits` on the run's text head)."""
    W, scale = ctx.text_weights, ctx.logit_scale
    return lambda f: gda_logits(f, W, w, b, alpha, scale)


def rebuild(fitted, shots, ctx) -> Head:
    """``Method.rebuild``: the saved W_g [C, D], b [C] at the recorded α."""
    return fitted.head(_logits(ctx, fitted.state["w"], fitted.state["b"], fitted.hyperparameters["alpha"]))


def fit(shots, ctx) -> Head:
    """GDA from every cached view; α by :func:`fewshot.protocol.selection.choose`."""
    views = F.normalize(shots.views.float(), dim=-1)
    W, scale = ctx.text_weights, ctx.logit_scale
    w, b = gda_head(views, shots.labels, shots.num_classes)

    def score_fold(train, held):
        wf, bf = gda_head(views[:, train], shots.labels[train], shots.num_classes)
        return [top1(gda_logits(shots.center[held], W, wf, bf, a, scale), shots.labels[held])
                for a in ALPHAS]

    def on_test(s):
        scores = [top1(gda_logits(s.feats, W, w, b, a, scale), s.labels) for a in ALPHAS]
        return ALPHAS[selection.first_best(scores)], scores

    choice = selection.choose(ctx, shots.shots, default=DEFAULT_ALPHA, on_test=on_test,
                              inside=lambda: selection.cross_validate(shots.ranks, ctx.cfg.cv_folds,
                                                                      ALPHAS, score_fold))
    alpha = choice.value
    return Head(_logits(ctx, w, b, alpha), choice.tuned_on, {"alpha": alpha},
                state={"w": w, "b": b}, extra={"cv_curve": choice.curve})


register(Method("gda", fit, step="peers", rebuild=rebuild, source=Source("Wang et al., ICLR 2024", "mrflogs/ICLR24"),
                summary="Gaussian discriminant analysis beside the text head (Wang et al., 2024)"))
