"""The merge study's models: one expert encoder per task (fully fine-tuned, LoRA or L-LoRA), the
multi-task reference, and the scorer that reads an encoder state's top-1 on every task.

Experts are fine-tuned as FusionBench fine-tunes its CLIP experts (:data:`~fewshot.training.
encoder.FUSIONBENCH_EXPERT`: Adam, a cosine over a fixed budget of ``merge_steps`` steps, the
centre view only, the vision encoder alone with the task's zero-shot head frozen), without the
held-out fold of the shots; the multi-task reference trains under the same recipe, one batch of
every task per step.
"""
from __future__ import annotations

import dataclasses

import torch

from fewshot.base.errors import NonFiniteError
from fewshot.features.pixels import features_of
from fewshot.models.linearized import linearize_lora_
from fewshot.models.lora import merge as merge_lora
from fewshot.protocol.metrics import top1
from fewshot.training.encoder import FUSIONBENCH_EXPERT, Recipe, build_classifier, encode
from fewshot.training.encoder_loop import train, train_multitask

__all__ = ["STRATEGIES", "expert_recipe", "visual_state", "train_expert", "train_multitask_reference", "Scorer"]

STRATEGIES = ("full", "lora", "l-lora")  # what an expert trains: every weight, LoRA, linearised LoRA


def expert_recipe(cfg) -> Recipe:
    """The experts' recipe: FusionBench's, at the run's ``merge_steps``, ``merge_lr``, batch 32."""
    return dataclasses.replace(Recipe(lr=cfg.merge_lr, batch_size=32, checkpointing=cfg.grad_checkpointing),
                               steps=cfg.merge_steps, **FUSIONBENCH_EXPERT)


def visual_state(clf) -> dict:
    """The floating-point tensors of a classifier's image encoder, detached copies by name."""
    return {k: v.detach().clone() for k, v in clf.visual.state_dict().items() if v.is_floating_point()}


def train_expert(model, task, strategy, recipe, device, seed, progress) -> dict:
    """One task's expert encoder state (LoRA and L-LoRA folded into the weights: their task vector
    is the low-rank update, the linearised one for L-LoRA)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown expert strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    clf, groups = build_classifier(model, task.head, 1.0, "lora" if strategy == "l-lora" else strategy, device,
                                   recipe, seed, train_head=False)
    if strategy == "l-lora":
        linearize_lora_(clf.visual)
    rows = torch.nonzero(~task.held).squeeze(1)
    train(clf, groups, task.train_px, rows, task.labels[rows], recipe, device, seed, progress,
          f"expert {task.name} ({strategy}, seed {seed})")
    if strategy != "full":
        merge_lora(clf.visual)
    return visual_state(clf)


def train_multitask_reference(model, tasks, recipe, device, seed, progress) -> dict:
    """One encoder trained on every task at once under the experts' recipe
    (:func:`fewshot.training.encoder_loop.train_multitask`: one batch per task per step, summed losses)."""
    clf, groups = build_classifier(model, tasks[0].head, 1.0, "full", device, recipe, seed, train_head=False)
    rows = [torch.nonzero(~t.held).squeeze(1) for t in tasks]
    train_multitask(clf, groups, [(t.train_px, r, t.labels, t.head) for t, r in zip(tasks, rows)], recipe,
                    device, seed, progress)
    return visual_state(clf)


class Scorer:
    """Top-1 (%) of an encoder state on every task's test images or held-out shots."""

    def __init__(self, model, tasks, device, batch_size):
        clf, _ = build_classifier(model, tasks[0].head, 1.0, "full", device, Recipe())
        self.clf, self.tasks, self.device, self.batch = clf, tasks, device, batch_size

    @torch.no_grad()
    def __call__(self, state: dict, on: str = "test", only=None, pixels=None) -> dict:
        """{task: top-1} of ``state`` on ``on`` ("test" or "held"); ``only``: a subset of tasks;
        ``pixels``: {task: PixelSet} to score instead of the test images (corrupted copies)."""
        self.clf.visual.load_state_dict(state, strict=False)
        scores = {}
        for t in self.tasks:
            if only and t.name not in only:
                continue
            if on == "test":
                px = (pixels or {}).get(t.name, t.val_px)
                feats = encode(self.clf, px, self.device, self.batch)
                labels = t.val_labels
            else:
                feats = features_of(self.clf, t.train_px, torch.nonzero(t.held).squeeze(1).tolist(), self.device)
                labels = t.labels[t.held]
            logits = feats @ t.head.to(self.device).T
            if not bool(torch.isfinite(logits).all()):
                raise NonFiniteError(f"merged encoder gives non-finite logits on {t.name}")
            scores[t.name] = 100 * top1(logits.cpu(), labels)
        return scores
