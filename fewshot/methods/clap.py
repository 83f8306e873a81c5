"""CLAP (Silva-Rodríguez et al., CVPR 2024, "A Closer Look at the Few-Shot Adaptation of Large
Vision-Language Models"): a class-adaptive linear probe that needs no validation set.

A linear probe whose class prototypes P [C, D] start at the zero-shot base t [C, D] and are held
near it by a penalty whose weight per class is how well zero-shot CLIP already knows that class:

    logits = s · normalise(f) · normalise(P)ᵀ                                   (ZS-LP)
    L(P)   = CE(logits, y) + (1/C) · Σ_c λ_c · ‖P_c − t_c‖²                       (CLAP, eq. "l2")
    λ_c    = (1/|S_c|) · Σ_{i ∈ S_c} softmax(s · f̂_i · t̂ᵀ)_c                       (fixed)

λ_c is the mean zero-shot probability of class c over its own support samples (all augmented
views), computed once before training and kept (the paper's penalty; the repository's augmented
Lagrangian "adaptative" variant is not its default). Nothing is tuned, so ``tuned_on: none``: the
point of the method is that the constraint replaces a validation set.

As published (``jusiro/CLAP`` at dbdf409: ``trainers/adapters.py`` (``AdapterMethod``,
``init_lagrangian_multipliers``, ``zero_shot_constraint``, ``TrainerXCostume.run_epoch``),
``configs/trainers/SGD_lr1e-1_B256_ep300.yaml``, ``scripts/adapt.sh`` with ``ZS l2``, ``train.py``):

- base t: TaskRes's, the unnormalised mean of the ``tip7+single`` prompts' embeddings;
- SGD lr 0.1 (momentum 0.9, Dassl's default; weight decay 0), 300 epochs, one warm-up epoch at a
  constant 1e-5, then cosine per epoch;
- the training features are extracted once for 20 augmented passes over the shots (random resized
  crops 0.08–1, flips) and pooled; each epoch shuffles the pool and takes as many batches of 256
  as the shots' own loader has (⌊M/256⌋ with the last partial batch dropped, 1 below 256 images),
  so an epoch sees about M of the 20·M pooled features;
- fp32 training on features of the fp16 encoder.

Recipes (``cfg.recipe``, :mod:`fewshot.protocol.recipes`): ``default`` pools the cache's V augmented views
(``cfg.views``, 10 by default, scale 0.5–1); ``official`` pools 20 passes of fresh 0.08–1 crops and
flips through the frozen image encoder (:class:`fewshot.features.crops.FreshViews`), as the official code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.protocol.budget import Plan, Work, seconds_per
from fewshot.protocol.method import Head, Method, Source, register
from fewshot.protocol.method_config import setting
from fewshot.protocol.recipes import official_crops, recipe_for, text_head, training_views
from fewshot.training.heads import check_finite
from fewshot.training.schedules import warmup_cosine_per_epoch

__all__ = ["clap_logits", "class_multipliers", "clap_penalty", "batches_per_epoch"]

MOMENTUM, BATCH_SIZE, PASSES = 0.9, 256, 20  # PASSES: official augmented passes
# epochs and rate: cfg.clap_epochs (the official 300) and cfg.clap_lr (0.1)
BASE = "tip7+single"
SOURCE = Source("Silva-Rodríguez et al., CVPR 2024", "jusiro/CLAP", "dbdf4095b3d824546474c725539b9f4efff3ca0e",
                ("trainers/adapters.py", "configs/trainers/SGD_lr1e-1_B256_ep300.yaml", "scripts/adapt.sh",
                 "train.py"))


def clap_logits(feats, prototypes, logit_scale: float = 100.0):
    """feats [N, D], prototypes [C, D] -> [N, C]: ``s · f̂ · P̂ᵀ`` (both normalised)."""
    return logit_scale * F.normalize(feats.float(), dim=-1) @ F.normalize(prototypes, dim=-1).T


def class_multipliers(zs_logits, labels, num_classes: int) -> torch.Tensor:
    """λ [C]: each class's mean zero-shot softmax probability over its own samples;
    zs_logits [N, C], labels [N]; a class without samples gets 0."""
    own = zs_logits.float().softmax(dim=-1).gather(1, labels[:, None])[:, 0]  # [N]
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).float()
    return torch.zeros(num_classes, device=own.device).index_add_(0, labels, own) / counts


def clap_penalty(prototypes, base, multipliers):
    """(1/C) Σ_c λ_c ‖P_c − t_c‖²: prototypes, base [C, D], multipliers [C] -> scalar."""
    return (multipliers * (prototypes - base).pow(2).sum(-1)).mean()


def batches_per_epoch(num_images: int, batch_size: int = BATCH_SIZE) -> int:
    """Batches of one epoch: as many as the shots' own loader (last partial batch dropped)."""
    return num_images // batch_size if num_images >= batch_size else 1


def _train(pool, labels, base, lam, scale: float, M: int, seed: int, what: str, recipe: tuple,
           epochs: int | None = None):
    """CLAP's SGD over the pooled views [V·M, D]: ``epochs`` epochs (all of ``recipe``'s when None)
    of ``batches_per_epoch(M)`` batches drawn from a fresh shuffle of the pool, on the schedule of
    ``recipe`` = (epochs, lr). Returns (prototypes [C, D], mean loss per epoch)."""
    total, lr = recipe
    epochs = total if epochs is None else epochs
    protos = torch.nn.Parameter(base.clone())
    steps = batches_per_epoch(M)
    opt = torch.optim.SGD([protos], lr=lr, momentum=MOMENTUM, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine_per_epoch(total, steps, lr))
    gen = torch.Generator().manual_seed(seed)
    losses = torch.zeros(epochs, device=pool.device)
    for epoch in range(epochs):
        order = torch.randperm(len(pool), generator=gen).to(pool.device)
        step_loss = torch.zeros(steps, device=pool.device)
        for b in range(steps):
            idx = order[b * BATCH_SIZE:(b + 1) * BATCH_SIZE]
            loss = F.cross_entropy(clap_logits(pool[idx], protos, scale), labels[idx]) + clap_penalty(protos, base, lam)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step_loss[b] = loss.detach()
        check_finite(step_loss, what, epoch, "lower the learning rate")
        losses[epoch] = step_loss.mean()
    return protos.detach(), losses


def plan(shots, ctx) -> Plan:
    """CLAP's optimiser steps for one (shots, seed): 300 epochs of ⌊M/256⌋ (at least one) batches,
    timed on one epoch of a small pool of the shots' cached views."""
    M, recipe = shots.labels.numel(), _recipe(ctx)
    steps = recipe[0] * batches_per_epoch(M)

    def probe(m=min(M, 3 * BATCH_SIZE)):
        pool = F.normalize(shots.views[0, :m].float(), dim=-1)
        base = torch.randn(shots.num_classes, pool.shape[1], device=pool.device)
        lam = torch.full((shots.num_classes,), 0.5, device=pool.device)
        return seconds_per(lambda: _train(pool, shots.labels[:m].to(pool.device), base, lam, 100.0, m, 0, "probe", recipe, 1),
                           batches_per_epoch(m))
    return Plan([Work(f"clap ({shots.shots}-shot, seed {shots.seed}): {recipe[0]} epochs", steps,
                      f"steps of batch {BATCH_SIZE}", "clap step")], {"clap step": probe})


def _recipe(ctx) -> tuple:
    """(epochs, lr) of the run: ``clap_epochs``, ``clap_lr``."""
    return setting(ctx, "clap_epochs"), setting(ctx, "clap_lr")


def _logits(protos, scale: float):
    """The fitted head: feats [n, D] -> [n, C] (:func:`clap_logits` with prototypes [C, D])."""
    return lambda f: clap_logits(f, protos, scale)


def rebuild(fitted, shots, ctx) -> Head:
    """``Method.rebuild``: the saved prototypes P [C, D]."""
    return fitted.head(_logits(fitted.state["prototypes"], ctx.logit_scale))


def fit(shots, ctx) -> Head:
    """CLAP on the pooled augmented views of the shots (module docstring)."""
    recipe, (epochs, lr) = recipe_for(ctx, ("official",)), _recipe(ctx)
    views = training_views(shots, ctx, recipe, PASSES)
    if recipe == "official":
        views = torch.stack([views[e] for e in range(PASSES)])  # [20, M, D], drawn once as the official code
    V, M, D = views.shape
    pool = views.reshape(V * M, D)
    labels = shots.labels.repeat(V)  # view-major, as the pool
    (base, head), scale = text_head(ctx, BASE, "raw"), ctx.logit_scale
    with torch.no_grad():
        lam = class_multipliers(clap_logits(pool, base, scale), labels, shots.num_classes)
    protos, losses = _train(pool, labels, base, lam, scale, M, shots.seed, f"CLAP ({shots.shots}-shot, seed {shots.seed})",
                           (epochs, lr))
    history = [{"epoch": e + 1, "loss": v} for e, v in enumerate(losses.tolist()) if (e + 1) % 10 == 0]
    return Head(_logits(protos, scale), "none",
                {"epochs": epochs, "lr": lr, "batch_size": BATCH_SIZE, "views": V, "head": head,
                 "recipe": recipe},
                state={"prototypes": protos, "multipliers": lam},
                extra={"history": history, "multipliers_mean": float(lam.mean()),
                       "drift": float((protos - base).norm(dim=-1).mean() / base.norm(dim=-1).mean())})


register(Method("clap", fit, budget=plan, step="peers", rebuild=rebuild, learnable=True, source=SOURCE, recipes=("official",), encoder_for=official_crops,
                summary="class-adaptive linear probe held near zero-shot, no validation set (Silva-Rodríguez et al., 2024)"))
