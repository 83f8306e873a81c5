"""TaskRes (Yu et al., CVPR 2023): a learned residual on the zero-shot text head.

    W' = normalise(t + α·X)          t: the base head [C, D], unnormalised; X [C, D], starts at 0
    logits = s · normalise(f) · W'ᵀ  f: image feature [N, D]; s: CLIP's logit scale

As published (``geekyutao/TaskRes`` at 5195359, ``trainers/taskres.py``; recipe from
``configs/trainers/TaskRes/adam_lr2e-4_B256_ep{100,200}.yaml`` and ``scripts/taskres/main.sh``
via ``train_regular.sh``, optimiser defaults from Dassl's ``dassl/config/defaults.py``):

- base t (``_get_base_text_features``): for ImageNet the 7 templates of ``IMAGENET_TEMPLATES_SELECT``
  plus "a photo of a {}." (the ``tip7+single`` set), each prompt's text embedding *unnormalised*,
  averaged over the 8 prompts, not normalised (so the residual moves the head 1/‖t‖ as far per
  step as it would on a unit-norm head);
- α = 0.5 (``RESIDUAL_SCALE`` of the ImageNet runs); Adam (β 0.9, 0.999), lr 2e-4, weight decay
  5e-4 (Dassl's default ``OPTIM.WEIGHT_DECAY``, coupled: added to the gradient), batch 256 with
  the last partial batch dropped once there are 256 images (Dassl's train loader), 100 epochs up to
  4 shots and 200 from 8, one warm-up epoch at a constant 1e-5, then cosine per epoch;
- images: fresh random resized crops (scale 0.08–1) and flips every epoch through the frozen
  image encoder; training in fp32 (``self.model.float()``), the base computed by the fp16 model.

Recipes (``cfg.recipe``, :mod:`fewshot.protocol.recipes`): ``default`` trains on the cache's augmented views
(scale 0.5–1, one view per epoch); ``official`` is the same with a fresh 0.08–1 crop and flip of
every shot drawn each epoch from the pixel cache and encoded by the frozen image encoder
(:class:`fewshot.features.crops.FreshViews`). Nothing is tuned (``tuned_on: default``), as in the official
scripts.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.protocol.method import Head, Method, Source, register
from fewshot.protocol.method_config import setting
from fewshot.protocol.recipes import official_crops, recipe_for, text_head, training_views
from fewshot.training.heads import train_head
from fewshot.training.schedules import warmup_cosine_per_epoch

__all__ = ["taskres_logits", "base_head", "ALPHA", "BATCH_SIZE", "WEIGHT_DECAY", "BASE", "epochs_for"]

ALPHA, BATCH_SIZE, WEIGHT_DECAY = 0.5, 256, 5e-4  # the rate: cfg.taskres_lr (the official 2e-4)
BASE = "tip7+single"  # the official ImageNet base's templates, averaged unnormalised
SOURCE = Source("Yu et al., CVPR 2023", "geekyutao/TaskRes", "5195359661d6bef661090c33b81aacfc7d7cc181",
                ("trainers/taskres.py", "trainers/imagenet_templates.py",
                 "configs/trainers/TaskRes/adam_lr2e-4_B256_ep200.yaml", "scripts/taskres/main.sh", "train_regular.sh"))


def epochs_for(shots: int) -> int:
    """The official ImageNet schedule: 100 epochs up to 4 shots, 200 from 8."""
    return 100 if shots <= 4 else 200


def taskres_logits(feats, text_weights, residual, alpha: float = ALPHA, logit_scale: float = 100.0):
    """feats [N, D], text_weights [C, D], residual [C, D] -> logits [N, C]."""
    head = F.normalize(text_weights + alpha * residual, dim=-1)
    return logit_scale * F.normalize(feats, dim=-1) @ head.T


def base_head(ctx) -> tuple[torch.Tensor, str]:
    """The official base t [C, D] (unnormalised mean of the ``tip7+single`` prompts) and its name."""
    return text_head(ctx, BASE, "raw")


def _logits(base, residual, scale: float):
    """The fitted head: feats [n, D] -> [n, C] (:func:`taskres_logits` at the published α)."""
    return lambda f: taskres_logits(f.float(), base, residual, ALPHA, scale)


def rebuild(fitted, shots, ctx) -> Head:
    """``Method.rebuild``: the saved base t and residual X [C, D]."""
    return fitted.head(_logits(fitted.state["base"], fitted.state["residual"], ctx.logit_scale))


def fit(shots, ctx) -> Head:
    """Train the residual on the shots' cached views, from the published base head."""
    recipe, epochs, n = recipe_for(ctx, ("official",)), epochs_for(shots.shots), shots.labels.numel()
    lr = setting(ctx, "taskres_lr")
    views = training_views(shots, ctx, recipe, epochs)  # [V, M, D] normalised (fresh crops: V = epochs)
    (W, head), scale = base_head(ctx), ctx.logit_scale
    residual = torch.nn.Parameter(torch.zeros_like(W))
    steps = n // BATCH_SIZE if n >= BATCH_SIZE else 1  # Dassl drops the last partial batch
    out = train_head([residual], lambda x: taskres_logits(x, W, residual, ALPHA, scale), views,
                     shots.labels, optimizer=torch.optim.Adam([residual], lr=lr, weight_decay=WEIGHT_DECAY),
                     schedule=warmup_cosine_per_epoch(epochs, steps, lr), epochs=epochs,
                     batch_size=BATCH_SIZE, seed=shots.seed, progress=ctx.progress, drop_last=n >= BATCH_SIZE,
                     what=f"TaskRes ({shots.shots}-shot, seed {shots.seed})", graph=True)
    residual = residual.detach()
    return Head(_logits(W, residual, scale), "default",
                {"alpha": ALPHA, "epochs": epochs, "lr": lr, "batch_size": BATCH_SIZE,
                 "weight_decay": WEIGHT_DECAY, "head": head, "recipe": recipe},
                state={"residual": residual, "base": W}, extra={"history": out["history"]})


register(Method("taskres", fit, step="peers", rebuild=rebuild, learnable=True, source=SOURCE, recipes=("official",), encoder_for=official_crops,
                summary="a learned residual on the zero-shot text head (Yu et al., 2023)"))
