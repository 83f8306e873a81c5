"""TaskRes (Yu et al., CVPR 2023): a learned residual on the zero-shot text head.

    W' = normalise(W + α·X)          W: the zero-shot text head [C, D]; X [C, D], starts at 0
    logits = s · normalise(f) · W'ᵀ  f: image feature [N, D]; s: CLIP's logit scale

α = 0.5, the residual scale of the paper's ImageNet runs. Recipe of its ImageNet scripts: Adam,
lr 2e-4, batch 256, 100 epochs up to 4 shots and 200 from 8, one warm-up epoch at a constant
1e-5 then cosine per epoch; on cached augmented views (the official code augments online with
random resized crops and flips). Two differences, both stated: the official base head averages
the templates' unnormalised text embeddings, ours is the suite's normalised head; and nothing is
tuned here (``tuned_on: default``), as in the official scripts.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.protocol import Head, Method, register
from fewshot.training import train_head, warmup_cosine_per_epoch

__all__ = ["taskres_logits", "ALPHA", "LR", "BATCH_SIZE", "epochs_for"]

ALPHA, LR, BATCH_SIZE = 0.5, 2e-4, 256


def epochs_for(shots: int) -> int:
    """The official ImageNet schedule: 100 epochs up to 4 shots, 200 from 8."""
    return 100 if shots <= 4 else 200


def taskres_logits(feats, text_weights, residual, alpha: float = ALPHA, logit_scale: float = 100.0):
    """feats [N, D], text_weights [C, D], residual [C, D] -> logits [N, C]."""
    head = F.normalize(text_weights + alpha * residual, dim=-1)
    return logit_scale * F.normalize(feats, dim=-1) @ head.T


def fit(shots, ctx) -> Head:
    """Train the residual on the shots' cached views."""
    views = F.normalize(shots.views.float(), dim=-1)  # [V, M, D]
    W, scale = ctx.text_weights.float(), ctx.logit_scale
    residual = torch.nn.Parameter(torch.zeros_like(W))
    epochs = epochs_for(shots.shots)
    steps = -(-shots.labels.numel() // BATCH_SIZE)
    out = train_head([residual], lambda x: taskres_logits(x, W, residual, ALPHA, scale), views,
                     shots.labels, optimizer=torch.optim.Adam([residual], lr=LR),
                     schedule=warmup_cosine_per_epoch(epochs, steps, LR), epochs=epochs,
                     batch_size=BATCH_SIZE, seed=shots.seed, progress=ctx.progress,
                     what=f"TaskRes ({shots.shots}-shot, seed {shots.seed})", graph=True)
    residual = residual.detach()
    return Head(lambda f: taskres_logits(f.float(), W, residual, ALPHA, scale), "default",
                {"alpha": ALPHA, "epochs": epochs, "lr": LR, "batch_size": BATCH_SIZE},
                state={"residual": residual}, extra={"history": out["history"]})


register(Method("taskres", fit, step="peers", learnable=True,
                summary="a learned residual on the zero-shot text head (Yu et al., 2023)"))
