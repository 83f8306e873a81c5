"""CLIP-LoRA as published (Zanella & Ben Ayed, "Low-Rank Few-Shot Adaptation of Vision-Language
Models", CVPRW 2024; ``MaxZanella/CLIP-LoRA`` at commit 358f0d7: ``main.py``, ``lora.py``,
``run_utils.py``, ``loralib/``).

LoRA (rank 2, alpha 1, dropout 0.25: :mod:`fewshot.models.lora_attention`) on q, k and v of every block
of both encoders; no head: at every step the LoRA text encoder re-encodes "a photo of a {class}."
(the official ImageNet template) and ``logits = s·normalise(f_img)·normalise(f_text)ᵀ`` with CLIP's
scale s (the official code fixes s = 100, OpenAI's value; the mini-CLIP has its own). AdamW (lr
2e-4, weight decay 1e-2, betas 0.9/0.999), batch 32, ``iters_per_shot`` (500) × shots
iterations over reshuffled epochs, cosine from the start to 1e-6 (no warm-up), no gradient
clipping; fp16 autocast with a gradient scaler on a GPU (fp32 on a CPU); random resized crops of
area 0.08–1 with flips, drawn from the stored crops (the official code draws them from the full
image). The published towers are ViTs; on a ResNet (RN50) the image side's adapted attention is
the attention pool's (the suite's stated variant). BatchNorm statistics stay frozen.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from fewshot import _clip_compat
from fewshot.models.lora_attention import add_clip_lora, set_mix
from fewshot.features.pixels import augment
from fewshot.features.preprocess import normalize_pixels
from fewshot.training.heads import check_finite
from fewshot.protocol.metrics import correct_count

__all__ = ["TEMPLATE", "LoraRecipe", "LoraClip", "train_lora", "total_iterations"]

TEMPLATE = "a photo of a {}."  # CLIP-LoRA's ImageNet template (datasets/imagenet.py)


@dataclass(frozen=True)
class LoraRecipe:
    """CLIP-LoRA's recipe (module docstring); ``iters_per_shot`` is the run's ``clip_lora_iters``."""

    iters_per_shot: int = 500
    lr: float = 2e-4
    weight_decay: float = 1e-2
    min_lr: float = 1e-6
    batch_size: int = 32
    rank: int = 2
    alpha: float = 1.0
    dropout: float = 0.25
    crop_scale: tuple = (0.08, 1.0)


def total_iterations(recipe: LoraRecipe, shots: int) -> int:
    """``iters_per_shot × shots`` (the official ``n_iters * shots``)."""
    return recipe.iters_per_shot * shots


class LoraClip(torch.nn.Module):
    """An fp32 copy of a CLIP model with CLIP-LoRA's adapters on both towers; ``features`` and
    ``head`` as :class:`fewshot.training.encoder.ClipClassifier` has them (so its encoders apply)."""

    def __init__(self, model, classnames, logit_scale: float, device, recipe: LoraRecipe, seed: int = 0):
        super().__init__()
        from fewshot.models.bn_fold import unfuse

        model = copy.deepcopy(model)
        unfuse(model.visual)
        self.model = model.float().to(device)
        self.visual, self.scale = self.model.visual, float(logit_scale)
        clip = _clip_compat.import_clip()
        tokens = clip.tokenize([TEMPLATE.format(c.replace("_", " ")) for c in classnames],
                               context_length=model.context_length, truncate=True).to(device)
        length = int(tokens.argmax(dim=-1).max()) + 1  # causal: tokens after every EOS reach no feature
        self.tokens, self.eot = tokens[:, :length], tokens.argmax(dim=-1)
        for block in self.model.transformer.resblocks:
            if block.attn_mask is not None:
                block.attn_mask = block.attn_mask[:length, :length]
        self.lora = add_clip_lora(self.model, recipe.rank, recipe.alpha, recipe.dropout, seed=seed)
        self.head = self.refresh_head()

    def text_features(self) -> torch.Tensor:
        """Normalised text features [C, D] (fp32) of the template for every class."""
        m, L = self.model, self.tokens.shape[1]
        x = m.token_embedding(self.tokens) + m.positional_embedding[:L]
        x = m.ln_final(m.transformer(x.permute(1, 0, 2)).permute(1, 0, 2))
        x = x[torch.arange(len(x), device=x.device), self.eot] @ m.text_projection
        return F.normalize(x.float(), dim=-1)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised image features [B, D] (fp32) of CLIP-normalised pixels [B, 3, R, R]."""
        return F.normalize(self.visual(pixels).float(), dim=-1)

    @torch.no_grad()
    def refresh_head(self) -> torch.Tensor:
        """``s·text_features()`` [C, D] at the adapters' current mix (no dropout); kept as ``head``."""
        training = self.training
        self.eval()
        self.head = self.scale * self.text_features()
        self.train(training)
        return self.head

    def at(self, mix: float) -> torch.Tensor:
        """Scale every update by ``mix`` (WiSE-FT's α) and return the head there."""
        set_mix(self.model, mix)
        return self.refresh_head()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Training logits [B, C]: both towers run (with dropout, in training mode)."""
        return self.scale * self.features(pixels) @ self.text_features().T


def _train_mode(clf: LoraClip) -> None:
    clf.train()
    for m in clf.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def _precision(device):
    if torch.device(device).type != "cuda":
        return contextlib.nullcontext(), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


def train_lora(clf: LoraClip, pool, rows: torch.Tensor, labels: torch.Tensor, shots: int,
               recipe: LoraRecipe, device, seed: int = 0, progress: bool = True,
               what: str = "CLIP-LoRA") -> list:
    """Train ``clf``'s adapters on the pool's stored crops ``rows`` [M] (labels [M]) for
    :func:`total_iterations` steps; returns the history, one ``{"epoch", "loss", "train_acc"}`` per
    pass over the shots (the last may be partial, as the official loop stops mid-epoch)."""
    device = torch.device(device)
    opt = torch.optim.AdamW(clf.lora, lr=recipe.lr, weight_decay=recipe.weight_decay, betas=(0.9, 0.999))
    total = total_iterations(recipe, shots)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total, eta_min=recipe.min_lr)
    cast, scaler = _precision(device)
    gen, aug_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    res, n, count, history = clf.visual.input_resolution, len(rows), 0, []
    _train_mode(clf)
    bar = tqdm(total=total, desc=what, disable=not progress, leave=False)
    while count < total:
        order, losses, correct, seen = torch.randperm(n, generator=gen), [], 0, 0
        for s in range(0, n, recipe.batch_size):
            idx = order[s:s + recipe.batch_size]
            x = augment(pool.batch(rows[idx].tolist()).to(device), res, aug_gen, scale=recipe.crop_scale)
            y = labels[idx].to(device)
            with cast:
                logits = clf(normalize_pixels(x)).float()
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            sched.step()
            losses.append(loss.detach())
            correct, seen, count = correct + int(correct_count(logits, y)), seen + len(y), count + 1
            bar.update(1)
            if count == total:
                break
        losses = torch.stack(losses)
        check_finite(losses, what, len(history), "lower clip_lora_iters or check the data")
        history.append({"epoch": len(history) + 1, "loss": float(losses.mean()), "train_acc": correct / seen})
    bar.close()
    clf.eval()
    clf.refresh_head()
    return history
