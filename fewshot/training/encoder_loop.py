"""The loop that trains an image encoder under a :class:`~fewshot.training.encoder.Recipe`: the
fine-tuned encoders, the merge study's experts (:func:`train`) and its multi-task reference
(:func:`train_multitask`), so that every encoder of the suite trains under one recipe's rules.

A recipe trains for ``epochs`` passes over the rows, or for a fixed budget of ``steps`` (the
experts': the last pass is cut short); each batch is augmented (random resized crops, flips) or,
with ``augment=False``, the stored crops' centre views; AdamW or Adam; warm-up then cosine, or a
cosine over all steps (:mod:`fewshot.training.schedules`); one step in :mod:`fewshot.training.steps`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm import tqdm

from fewshot.features.pixels import augment, centre_pixels_of
from fewshot.features.preprocess import normalize_pixels
from fewshot.protocol.metrics import correct_count
from fewshot.training import distributed as dist
from fewshot.training.encoder import ClipClassifier, Recipe
from fewshot.training.heads import check_finite
from fewshot.training.schedules import cosine_per_step, warmup_cosine_per_step
from fewshot.training.steps import Stepper

__all__ = ["schedule", "train", "train_multitask", "freeze_bn"]


def freeze_bn(module: torch.nn.Module) -> None:
    """Put every BatchNorm of ``module`` in eval mode (its running statistics stay)."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def schedule(recipe: Recipe, total_steps: int):
    """The rate factor at step t: warm-up over ``warmup_steps`` (or the ``warmup`` share), then
    cosine; or, for ``schedule="cosine"``, a cosine over all steps (CosineAnnealingLR)."""
    if recipe.schedule == "cosine":
        return cosine_per_step(total_steps)
    share = recipe.warmup_steps / total_steps if recipe.warmup_steps else recipe.warmup
    return warmup_cosine_per_step(total_steps, share)


def _stepper(groups, recipe: Recipe, total_steps: int, device) -> Stepper:
    return Stepper(groups, recipe.weight_decay, recipe.grad_clip, schedule(recipe, total_steps), device,
                   optimizer=recipe.optimizer)


def _view(pool, rows, res, recipe: Recipe, gen, device) -> torch.Tensor:
    """A batch as the recipe shows it: float 0–255 [B, 3, res, res] on ``device``."""
    if not recipe.augment:
        return centre_pixels_of(pool, rows, res, device)
    return augment(pool.batch(rows).to(device, non_blocking=True), res, gen, recipe.crop_scale, flip=recipe.flip)


def train(clf: ClipClassifier, groups: list, pool, rows: torch.Tensor, labels: torch.Tensor,
          recipe: Recipe, device, seed: int = 0, progress: bool = True, what: str = "fine-tuning",
          checkpoint=None) -> list:
    """Train ``clf`` on the pool's stored crops ``rows`` [M] with ``labels`` [M]; returns the
    history ``[{"epoch", "loss", "train_acc"}]``. Under ``torchrun`` each process takes its share
    of every batch and DistributedDataParallel averages the gradients; a ``checkpoint``
    (:mod:`fewshot.training.checkpoint`) keeps every epoch and resumes from the last one."""
    device = torch.device(device)
    model = dist.wrap(clf, device)
    n = len(rows)
    per_epoch = math.ceil(n / recipe.batch_size)
    total = recipe.steps or recipe.epochs * per_epoch
    epochs = math.ceil(total / per_epoch)
    step = _stepper(groups, recipe, total, device)
    gen, aug_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    resumable = (step.state(), {"order": gen, "augment": aug_gen})
    saved = checkpoint.resume(step.params, *resumable) if checkpoint is not None else None
    history, start = (saved["history"], saved["epoch"]) if saved else ([], 0)
    clf.train()
    freeze_bn(clf)
    res = clf.visual.input_resolution
    for epoch in tqdm(range(start, epochs), what, epochs, initial=start, disable=not progress, leave=False):
        order, steps = torch.randperm(n, generator=gen), min(per_epoch, total - epoch * per_epoch)
        losses, correct, seen = torch.zeros(steps, device=device), torch.zeros((), device=device), 0
        for i in range(steps):
            idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            x, y = _view(pool, rows[idx].tolist(), res, recipe, aug_gen, device), labels[idx].to(device)
            x, y = dist.my_share(x), dist.my_share(y)
            with step.cast:
                logits = model(normalize_pixels(x))
                loss = F.cross_entropy(logits.float(), y)
            step.step(loss)
            losses[i], seen = loss.detach(), seen + len(idx)
            correct += correct_count(logits, y)
        check_finite(losses, what, epoch, f"lower the learning rate ({recipe.lr})")
        history.append({"epoch": epoch + 1, "loss": float(losses.mean()),
                        "train_acc": float(dist.sum_all(correct)) / seen})
        if checkpoint is not None:
            checkpoint.save(epoch + 1, step.params, *resumable, history=history)
    clf.eval()
    return history


def train_multitask(clf: ClipClassifier, groups: list, tasks: list, recipe: Recipe, device, seed: int = 0,
                    progress: bool = True, what: str = "multi-task training") -> list:
    """Train one encoder on several tasks at once under ``recipe`` (the experts' own: optimiser,
    schedule, clipping, autocast, views as :func:`train`). ``tasks``: [(pool, rows [M_t], labels
    [M_t], head [C_t, D])]; each step draws one batch per task (with replacement) and sums their
    cross-entropies, each through its task's head. An epoch is as many steps as the largest task
    fills (``recipe.steps``: that many steps in all). Returns the mean summed loss per epoch."""
    device = torch.device(device)
    per_epoch = max(len(rows) for _, rows, _, _ in tasks) // recipe.batch_size + 1
    total = recipe.steps or recipe.epochs * per_epoch
    step = _stepper(groups, recipe, total, device)
    gen, aug_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    clf.train()
    freeze_bn(clf)
    res, history = clf.visual.input_resolution, []
    for epoch in tqdm(range(math.ceil(total / per_epoch)), what, disable=not progress, leave=False):
        losses = torch.zeros(min(per_epoch, total - epoch * per_epoch), device=device)
        for i in range(len(losses)):
            with step.cast:
                loss = 0.0
                for pool, rows, labels, head in tasks:
                    idx = rows[torch.randint(len(rows), (min(recipe.batch_size, len(rows)),), generator=gen)]
                    x = _view(pool, idx.tolist(), res, recipe, aug_gen, device)
                    logits = clf.features(normalize_pixels(x)) @ head.to(device).T
                    loss = loss + F.cross_entropy(logits.float(), labels[idx].to(device))
            step.step(loss)
            losses[i] = loss.detach()
        check_finite(losses, what, epoch, f"lower the learning rate ({recipe.lr})")
        history.append(float(losses.mean()))
    clf.eval()
    return history
