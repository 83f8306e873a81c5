"""CLIP-Adapter (Gao et al., IJCV 2023): a residual bottleneck MLP on the image feature.

    A(f) = ReLU(ReLU(f·W₁ᵀ)·W₂ᵀ)        W₁ [D/4, D], W₂ [D, D/4], no biases
    f'   = r·A(f) + (1 − r)·f            r = 0.2, the ratio the paper recommends for ImageNet
    logits = s · normalise(f') · Wᵀ      W: the text head of "a photo of a {}." [C, D], normalised

As published (``gaopengcuhk/CLIP-Adapter`` at 08d07f8, ``clip_adapter.py``, the only code file; its
README says to run it with CoOp's ImageNet command): the head is ``CUSTOM_TEMPLATES["ImageNet"]``
= "a photo of a {}." (one prompt, normalised: the ``single`` set), whatever the run's templates;
the model is cast to fp32 (``clip_model.float()``). The official code applies A to the raw
feature; A is positively homogeneous, so applying it to the normalised cached feature gives the
same logits. Recipe: CoOp's ImageNet ``rn50_ep50`` (the file does not fix the epochs; its
ImageNet epochs, 50 or 200, are not stated in the repository): SGD, lr 0.002, momentum 0.9,
weight decay 5e-4, batch 32 (last partial batch dropped), 50 epochs, one warm-up epoch at 1e-5
then cosine per epoch; official images are fresh random resized crops (0.08–1) and flips every
epoch. The ``default`` recipe trains on the cache's augmented views (0.5–1), one per epoch; the
``official`` one on a fresh 0.08–1 crop and flip of every shot each epoch, from the pixel cache
through the frozen image encoder (:class:`fewshot.features.crops.FreshViews`). No hyperparameter is tuned
(``tuned_on: default``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fewshot.protocol.method import Head, Method, Source, register
from fewshot.protocol.method_config import setting
from fewshot.protocol.recipes import official_crops, recipe_for, text_head, training_views
from fewshot.training.heads import train_head
from fewshot.training.schedules import warmup_cosine_per_epoch

__all__ = ["adapter_logits", "RATIO", "REDUCTION", "BATCH_SIZE"]

RATIO, REDUCTION = 0.2, 4
BATCH_SIZE, WEIGHT_DECAY, MOMENTUM = 32, 5e-4, 0.9  # epochs and rate: cfg.clip_adapter_epochs (50), _lr (0.002)
HEAD = "single"  # CUSTOM_TEMPLATES["ImageNet"]: "a photo of a {}."
SOURCE = Source("Gao et al., IJCV 2023", "gaopengcuhk/CLIP-Adapter", "08d07f8b2ecafc6f1479fe636b26d464d7a5574e",
                ("clip_adapter.py", "README.md"))


def adapter_logits(feats, w1, w2, text_weights, ratio: float = RATIO, logit_scale: float = 100.0):
    """feats [N, D] -> logits [N, C] of CLIP-Adapter with weights w1 [H, D], w2 [D, H]."""
    adapted = F.relu(F.relu(feats @ w1.T) @ w2.T)
    mixed = ratio * adapted + (1 - ratio) * feats
    return logit_scale * F.normalize(mixed, dim=-1) @ text_weights.T


def rebuild(fitted, shots, ctx) -> Head:
    """``Method.rebuild``: the saved w1 [H, D], w2 [D, H] on the ``single`` text head."""
    W, _ = text_head(ctx, HEAD)
    return fitted.head(_logits(fitted.state["w1"], fitted.state["w2"], W, ctx.logit_scale))


def _logits(w1, w2, text_weights, scale: float):
    """The fitted head: feats [n, D] -> [n, C] (:func:`adapter_logits` at the published ratio)."""
    return lambda f: adapter_logits(f.float(), w1, w2, text_weights, RATIO, scale)


def _init(out_features: int, in_features: int, gen: torch.Generator, device) -> torch.nn.Parameter:
    bound = 1 / math.sqrt(in_features)  # nn.Linear's default (kaiming uniform, a = sqrt(5))
    w = (torch.rand(out_features, in_features, generator=gen) * 2 - 1) * bound
    return torch.nn.Parameter(w.to(device))


def fit(shots, ctx) -> Head:
    """Train the adapter on the shots' cached views."""
    recipe = recipe_for(ctx, ("official",))
    epochs, lr = setting(ctx, "clip_adapter_epochs"), setting(ctx, "clip_adapter_lr")
    views = training_views(shots, ctx, recipe, epochs)  # [V, M, D] normalised (fresh crops: V = epochs)
    dim = views.shape[-1]
    gen = torch.Generator().manual_seed(shots.seed)
    w1, w2 = _init(dim // REDUCTION, dim, gen, views.device), _init(dim, dim // REDUCTION, gen, views.device)
    (W, head), scale = text_head(ctx, HEAD), ctx.logit_scale
    steps = max(1, shots.labels.numel() // BATCH_SIZE)
    opt = torch.optim.SGD([w1, w2], lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    out = train_head([w1, w2], lambda x: adapter_logits(x, w1, w2, W, RATIO, scale), views,
                     shots.labels, optimizer=opt, schedule=warmup_cosine_per_epoch(epochs, steps, lr),
                     epochs=epochs, batch_size=BATCH_SIZE, seed=shots.seed, progress=ctx.progress,
                     what=f"CLIP-Adapter ({shots.shots}-shot, seed {shots.seed})",
                     drop_last=shots.labels.numel() >= BATCH_SIZE, graph=True)
    w1, w2 = w1.detach(), w2.detach()
    return Head(_logits(w1, w2, W, scale), "default",
                {"ratio": RATIO, "epochs": epochs, "lr": lr, "batch_size": BATCH_SIZE, "head": head,
                 "recipe": recipe},
                state={"w1": w1, "w2": w2}, extra={"history": out["history"]})


register(Method("clip-adapter", fit, step="peers", rebuild=rebuild, learnable=True, source=SOURCE, recipes=("official",),
                encoder_for=official_crops,
                summary="residual MLP on the image feature (Gao et al., 2023)"))
