"""One optimiser step under an encoder recipe: AdamW, the schedule, autocast, loss scaling, clipping.

Shared by every loop that trains an image encoder (:func:`fewshot.training.encoder_loop.train` for the
fine-tuned encoders and the merge study's experts, :func:`fewshot.training.encoder_loop.train_multitask`
for its multi-task reference), so that they train under one recipe.
"""
from __future__ import annotations

import contextlib

import torch

__all__ = ["Stepper", "autocast_for"]


def autocast_for(device):
    """(context, GradScaler or None): bf16 autocast on a GPU that has it, fp16 with loss scaling on
    one that has not, nothing (fp32) on a CPU."""
    if torch.device(device).type != "cuda":
        return contextlib.nullcontext(), None
    bf16 = torch.cuda.is_bf16_supported()
    scaler = None if bf16 else torch.cuda.amp.GradScaler()
    return torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16), scaler


class Stepper:
    """AdamW (or Adam) over ``groups`` with the recipe's weight decay and the factor ``schedule(t)``
    per step, the device's autocast and loss scaling, and gradient clipping at ``grad_clip`` (0: none)."""

    def __init__(self, groups: list, weight_decay: float, grad_clip: float, schedule, device,
                 optimizer: str = "adamw"):
        if optimizer not in ("adamw", "adam"):
            raise ValueError(f"optimizer must be adamw or adam, got {optimizer!r}")
        kind = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
        self.opt = kind([dict(g) for g in groups], weight_decay=weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, schedule)
        self.cast, self.scaler = autocast_for(device)
        self.params = [p for g in groups for p in g["params"]]
        self.grad_clip = grad_clip

    def state(self) -> dict:
        """What a checkpoint keeps to resume: {"optimizer", "schedule", "scaler"}."""
        return {"optimizer": self.opt, "schedule": self.sched, "scaler": self.scaler}

    def step(self, loss: torch.Tensor) -> None:
        """Backward of the scalar ``loss`` (computed under :attr:`cast`), clip, step, schedule."""
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
        else:
            loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.opt) if self.scaler is not None else self.opt.step()
        if self.scaler is not None:
            self.scaler.update()
        self.sched.step()
