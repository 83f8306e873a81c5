"""Fine-tuning CLIP's image encoder with a classification head initialised from the zero-shot text
embeddings, and WiSE-FT of the result (Wortsman et al., CVPR 2022).

The classifier is ``logits = normalise(visual(x))·Hᵀ`` with H = s·W_text at the start (the zero-
shot head: the model starts exactly at zero-shot CLIP). Strategies differ only in what trains:

- ``partial``: the last stage and the head (ResNet: ``layer4`` + the attention pool; ViT: the
  last quarter of the blocks, ``ln_post`` and ``proj``);
- ``full``: the whole image encoder and the head;
- ``lora``: low-rank updates of the encoder's attention weights (:mod:`fewshot.models.lora`) and the head.

One recipe for all (the fine-tuned encoders, the merge study's experts and its multi-task
reference), WiSE-FT's end-to-end one scaled to few shots (the WiSE-FT code's ImageNet fine-tuning),
one step of it in :mod:`fewshot.training.steps`: AdamW (weight decay 0.1), linear warm-up over the
first 10 % of steps then cosine, clipping at 1.0, random resized crops (area 0.5–1) and flips of
the stored crops; bf16 (or fp16, scaled) on a GPU, fp32 on a CPU; BatchNorm statistics frozen (few-
shot batches cannot estimate them). LoRA trains at 10× the rate (its update starts at zero).

That is ``ft_recipe="suite"``; ``"wise-ft"`` is the WiSE-FT code's own (``mlfoundations/wise-ft``,
``src/models/finetune.py``, ``modeling.py``): crops of area 0.9–1 without flips, a warm-up over 500
steps (however few the steps, as there), a head with a bias (zeros at the start, interpolated too).

WiSE-FT interpolates the trained tensors, ``θ(α) = (1−α)·θ₀ + α·θ₁`` (for LoRA: α scales the
low-rank update), optionally Fisher-weighted with a diagonal Fisher estimated on the k shots.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from fewshot.training import distributed as dist
from fewshot.models.lora import add_lora, set_mix
from fewshot.features.preprocess import normalize_pixels
from fewshot.training.steps import autocast_for

__all__ = ["STRATEGIES", "Recipe", "RECIPES", "FUSIONBENCH_EXPERT", "recipe_for", "checkpointing_for", "ClipClassifier", "build_classifier", "encode",
           "trainable_state", "load_state"]

STRATEGIES = ("partial", "full", "lora")
SMALL_GPU_GIB = 20  # GPUs below this (a T4, a P100) always recompute activations


@dataclass(frozen=True)
class Recipe:
    """The fine-tuning recipe (module docstring); the run's config supplies the first four."""

    epochs: int = 10
    lr: float = 3e-5  # WiSE-FT's end-to-end learning rate
    batch_size: int = 256
    checkpointing: bool = False  # recompute activations in the backward pass (less memory)
    weight_decay: float = 0.1
    warmup: float = 0.1  # share of the steps
    grad_clip: float = 1.0
    lora_rank: int = 4
    lora_alpha: float = 8.0
    lora_targets: str = "attention"
    lora_lr_factor: float = 10.0
    crop_scale: tuple = (0.5, 1.0)  # area of the random resized crops
    flip: bool = True  # random horizontal flips
    warmup_steps: int = 0  # > 0: the warm-up in steps instead of the ``warmup`` share
    head_bias: bool = False  # a trained bias beside the head (zeros at the start)
    name: str = "suite"
    steps: int = 0  # > 0: a fixed budget of optimiser steps instead of ``epochs`` (the merge study's experts)
    optimizer: str = "adamw"  # or "adam" (FusionBench's experts: no weight decay)
    schedule: str = "warmup-cosine"  # or "cosine": CosineAnnealingLR over the steps, no warm-up
    augment: bool = True  # False: the stored crops' centre views, no crops or flips


RECIPES = {"suite": {}, "wise-ft": {"crop_scale": (0.9, 1.0), "flip": False, "warmup_steps": 500,
                                    "head_bias": True, "name": "wise-ft"}}
# The merge study's experts as FusionBench fine-tunes them (config/method/classification/clip_finetune.yaml
# and clip_finetune.py at 54c9e8c: Adam, weight decay 0, CosineAnnealingLR over num_steps, the
# processor's centre view only, no clipping): the run's merge_steps, merge_lr and batch 32 beside.
FUSIONBENCH_EXPERT = {"optimizer": "adam", "weight_decay": 0.0, "schedule": "cosine", "augment": False,
                      "grad_clip": 0.0, "name": "fusionbench"}


def recipe_for(cfg, **fields) -> Recipe:
    """The run's :class:`Recipe`: ``cfg.ft_recipe``'s fields (:data:`RECIPES`) with the config's
    epochs, rate, batch size and checkpointing; ``fields`` override any."""
    base = {"epochs": cfg.ft_epochs, "lr": cfg.ft_lr, "batch_size": cfg.ft_batch_size,
            "checkpointing": cfg.grad_checkpointing, **RECIPES[getattr(cfg, "ft_recipe", "suite")]}
    return Recipe(**{**base, **fields})


def checkpointing_for(requested: bool, device) -> bool:
    """``requested``, or True on a GPU under ``SMALL_GPU_GIB`` (RN50, batch 256: 14 GiB without, 10.7 with)."""
    device = torch.device(device)
    if requested or device.type != "cuda":
        return bool(requested)
    return torch.cuda.get_device_properties(device).total_memory < SMALL_GPU_GIB * 2**30


class ClipClassifier(torch.nn.Module):
    """CLIP's image tower and a linear head [C, D] on its normalised features (with a bias [C],
    zeros at the start, when ``bias``)."""

    def __init__(self, visual: torch.nn.Module, head: torch.Tensor, checkpointing: bool = False, bias: bool = False):
        super().__init__()
        self.visual, self.head, self.checkpointing = visual, torch.nn.Parameter(head), checkpointing
        self.head_bias = torch.nn.Parameter(torch.zeros(head.shape[0], device=head.device)) if bias else None

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised features [B, D] (fp32) of CLIP-normalised pixels [B, 3, R, R]."""
        x = pixels.to(self.visual.conv1.weight.dtype)
        if self.checkpointing and self.training:
            x = _checkpointed(self.visual, x)
        else:
            x = self.visual(x)
        return F.normalize(x.float(), dim=-1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logits = self.features(pixels) @ self.head.T
        return logits if self.head_bias is None else logits + self.head_bias


def _checkpointed(visual, x):
    """The tower's forward with activation checkpointing per stage / block."""
    from torch.utils.checkpoint import checkpoint

    if hasattr(visual, "layer1"):  # ModifiedResNet: stem, then each stage checkpointed
        x = visual.avgpool(visual.relu3(visual.bn3(visual.conv3(visual.relu2(visual.bn2(
            visual.conv2(visual.relu1(visual.bn1(visual.conv1(x))))))))))
        for stage in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
            x = checkpoint(stage, x, use_reentrant=False)
        return visual.attnpool(x)
    x = visual.conv1(x)  # ViT: VisionTransformer.forward with each block checkpointed
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)).permute(1, 0, 2)
    for block in visual.transformer.resblocks:
        x = checkpoint(block, x, use_reentrant=False)
    return visual.ln_post(x.permute(1, 0, 2)[:, 0, :]) @ visual.proj


def _trunk(visual) -> list:
    """The image tower's parts that ``partial`` trains."""
    if hasattr(visual, "layer4"):
        return [visual.layer4, visual.attnpool]
    blocks = list(visual.transformer.resblocks)
    return blocks[-max(1, len(blocks) // 4):] + [visual.ln_post]


def build_classifier(model, text_weights: torch.Tensor, logit_scale: float, strategy: str,
                     device, recipe: Recipe, seed: int = 0, train_head: bool = True):
    """(classifier, parameter groups) for ``strategy``: an fp32 copy of ``model.visual`` (the
    backbone itself is not touched), the head at s·W_text, and only what the strategy trains
    left trainable (the head too, unless ``train_head`` is False: task vectors for merging keep
    each task's zero-shot head, as FusionBench does). BatchNorm layers stay in eval mode."""
    from fewshot.models.bn_fold import unfuse

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    visual = unfuse(copy.deepcopy(model.visual)).float().to(device)
    visual.requires_grad_(False)
    head = logit_scale * text_weights.detach().float().to(device)
    clf = ClipClassifier(visual, head, checkpointing_for(recipe.checkpointing, device), recipe.head_bias)
    heads = [clf.head] + ([clf.head_bias] if recipe.head_bias else [])
    if strategy == "full":
        visual.requires_grad_(True)
        groups = [{"params": list(visual.parameters()) + heads, "lr": recipe.lr}]
    elif strategy == "partial":
        trained = [p for part in _trunk(visual) for p in part.parameters()]
        if not hasattr(visual, "layer4"):
            trained.append(visual.proj)
        for p in trained:
            p.requires_grad_(True)
        groups = [{"params": trained + heads, "lr": recipe.lr}]
    else:
        lora = add_lora(visual, recipe.lora_rank, recipe.lora_alpha, recipe.lora_targets, seed)
        groups = [{"params": lora, "lr": recipe.lr * recipe.lora_lr_factor}, {"params": heads, "lr": recipe.lr}]
    if not train_head:
        for h in heads:
            h.requires_grad_(False)
        groups = [{**g, "params": [p for p in g["params"] if all(p is not h for h in heads)]} for g in groups]
        groups = [g for g in groups if g["params"]]
    return clf, groups


@torch.no_grad()
def encode(clf: ClipClassifier, pixels, device, batch_size: int = 256, progress: bool = False,
           what: str = "encoding") -> torch.Tensor:
    """Normalised features [N, D] (fp32, on ``device``) of a :class:`fewshot.features.pixels.PixelSet`
    (centre crops at the input resolution); under ``torchrun`` each process encodes its share
    and the features are gathered."""
    clf.eval()
    cast, _ = autocast_for(device)
    rows = dist.my_rows(len(pixels))
    out = []
    for s in tqdm(range(0, len(rows), batch_size), desc=what, disable=not progress, leave=False):
        x = pixels.batch(rows[s:s + batch_size]).to(device, non_blocking=True)
        with cast:
            out.append(clf.features(normalize_pixels(x)).float())
    feats = torch.cat(out) if out else torch.zeros(0, clf.head.shape[1], device=device)
    return dist.gather_rows(feats, len(pixels))


def trainable_state(clf: ClipClassifier) -> dict:
    """The tensors fine-tuning changed, by name (the head, and every trainable tensor)."""
    return {n: p.detach().clone() for n, p in clf.named_parameters() if p.requires_grad}


def load_state(clf: ClipClassifier, state: dict) -> None:
    """Set ``clf``'s tensors from ``state`` (as :func:`trainable_state` names them)."""
    params = dict(clf.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def mix_lora(clf: ClipClassifier, alpha: float) -> None:
    """WiSE-FT of a LoRA classifier's encoder: scale every low-rank update by α."""
    set_mix(clf.visual, alpha)
