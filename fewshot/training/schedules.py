"""Learning-rate schedules, each the factor that multiplies the base rate at optimiser step t.

One home for every schedule the suite trains with: the heads' (Tip-Adapter-F, APE-T: cosine per
step; Dassl's peers: a warm-up epoch then cosine per epoch), the encoders' and experts' (WiSE-FT:
linear warm-up then cosine per step) and the world's contrastive pretraining (warm-up times a
cosine over all steps).
"""
from __future__ import annotations

import math
from typing import Callable

__all__ = ["cosine_per_step", "warmup_cosine_per_step", "warmup_cosine_per_epoch", "warmup_times_cosine"]


def cosine_per_step(total_steps: int) -> Callable[[int], float]:
    """Cosine decay over all steps, no warm-up (Tip-Adapter-F, APE-T): lr factor at step t."""
    return lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total_steps) / total_steps))


def warmup_cosine_per_step(total_steps: int, warmup: float) -> Callable[[int], float]:
    """WiSE-FT's schedule (encoder fine-tuning): linear warm-up over the first ``warmup`` share of
    the steps, then cosine decay per step. Returns the lr factor at step t."""
    warm = max(1, int(round(total_steps * warmup)))
    return lambda t: (t + 1) / warm if t < warm else \
        0.5 * (1 + math.cos(math.pi * (t - warm) / max(1, total_steps - warm)))


def warmup_cosine_per_epoch(epochs: int, steps_per_epoch: int, base_lr: float,
                            warmup_lr: float = 1e-5) -> Callable[[int], float]:
    """Dassl's schedule (CoOp, CLIP-Adapter, TaskRes, CLAP): one epoch at a constant ``warmup_lr``,
    then cosine decay per epoch over the remaining ones. Returns the lr factor at step t."""
    def factor(t: int) -> float:
        epoch = t // steps_per_epoch
        if epoch == 0:
            return warmup_lr / base_lr
        return 0.5 * (1 + math.cos(math.pi * (epoch - 1) / max(1, epochs - 1)))
    return factor


def warmup_times_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """The world's CLIP pretraining: ``min(1, (t+1)/warmup_steps)`` times a cosine over all
    ``total_steps`` (the warm-up scales the start of the same cosine). Returns the lr factor at t."""
    return lambda s: min(1.0, (s + 1) / warmup_steps) * 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
