"""Selection: hyperparameters chosen from the k training shots alone, never from test data.

- Tip-Adapter's (α, β): leave-one-out over the shots. Query i is the centre-crop feature of
  training image i and its own cache entry is removed, so it is scored as an unseen image.
- WiSE-FT's λ: n-fold cross-validation over shot ranks (fold = rank mod n): Tip-Adapter's cache
  and Tip-Adapter-F are rebuilt on the other folds and the merge is scored on the held-out fold.

With fewer than 2 shots nothing can be held out; the callers fall back to published defaults.
"""
from __future__ import annotations

import torch

from fewshot import tip_adapter as tip
from fewshot.wise import interpolate

__all__ = ["loo_alpha_beta", "cv_lambda"]


def loo_alpha_beta(center_feats, labels, text_weights, keys, values, alphas, betas,
                   logit_scale: float = 100.0) -> tuple[float, float, torch.Tensor]:
    """(α, β, grid [B, A]) maximising leave-one-out accuracy on the training shots.

    center_feats [M, D] normalised centre-crop features of the M cache images, in cache order;
    labels [M]; keys [M, D]; values [M, C].
    """
    exclude = torch.arange(center_feats.shape[0], device=center_feats.device)
    grid = tip.search(center_feats, labels, text_weights, keys, values, alphas, betas,
                      logit_scale, exclude=exclude)
    alpha, beta, _ = tip.best_point(grid, alphas, betas)
    return alpha, beta, grid


def cv_lambda(view_feats, center_feats, labels, ranks, text_weights, num_classes: int,
              alpha: float, beta: float, lambdas, logit_scale: float = 100.0, folds: int = 4,
              train_kwargs: dict | None = None) -> tuple[float, list[float]]:
    """(λ, mean held-out accuracy per λ) by cross-validation over the shots.

    view_feats [V, M, D] raw augmented views; center_feats [M, D] normalised; labels [M];
    ranks [M] shot rank of each image within its class. Uses min(folds, shots) folds.
    """
    ranks = torch.as_tensor(ranks, device=labels.device)
    n_folds = min(folds, int(ranks.max()) + 1)
    if n_folds < 2:
        raise ValueError("cross-validation needs at least 2 shots per class")
    acc = torch.zeros(len(lambdas), device=labels.device)
    for fold in range(n_folds):
        held = (ranks % n_folds) == fold
        keys0, values = tip.build_cache(view_feats[:, ~held], labels[~held], num_classes)
        tuned = tip.train_tip_adapter_f(view_feats[:, ~held], labels[~held], text_weights, keys0,
                                        values, alpha, beta, logit_scale, progress=False,
                                        **(train_kwargs or {}))
        for i, lam in enumerate(lambdas):
            keys = interpolate({"keys": keys0}, {"keys": tuned["keys"]}, float(lam))["keys"]
            logits = tip.tip_logits(center_feats[held], text_weights, keys, values, alpha, beta,
                                    logit_scale)
            acc[i] += (logits.argmax(dim=1) == labels[held]).float().mean() / n_folds
    best = int(torch.argmax(acc))
    return float(lambdas[best]), acc.tolist()
