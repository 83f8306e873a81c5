"""Graphed training steps: one small head's whole step (forward, backward, optimiser update)
replayed as a CUDA graph, so that a fit of tens of thousands of tiny steps (CLIP-Adapter's batch 32
for 50 epochs, TaskRes, APE-T) costs a few kernel launches per step instead of about forty.

The optimiser update is written here with the learning rate as a device tensor (torch's SGD turns a
tensor lr into a host number, which a graph cannot hold): :class:`ManualSGD` and
:class:`ManualAdam` follow ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` (``_single_tensor_*``, same
order of operations) and are tested against them on the CPU; on a GPU, replaying the graph gives
the eager step's numbers up to float rounding. :func:`manual_optimizer` returns None for an
optimiser (or option) it does not cover, and the caller trains eagerly.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from fewshot.protocol.metrics import correct_count

__all__ = ["head_loss", "ManualSGD", "ManualAdam", "ManualAdamWFp16", "manual_optimizer", "GraphedStep", "ON_CPU"]

ON_CPU = False  # tests: use the manual update (eagerly) on a CPU too


def head_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The training loss of a head: cross-entropy of ``logits`` [b, C] against ``labels`` [b], mean
    over the batch; for F heads trained at once (stacked folds), ``logits`` [b, C, F] and ``labels``
    [b, F] give the sum over the heads of each one's batch mean, so that every head gets the
    gradient it would get alone."""
    if labels.dim() == 1:
        return F.cross_entropy(logits, labels)
    return F.cross_entropy(logits, labels, reduction="none").mean(dim=0).sum()


class ManualSGD:
    """``torch.optim.SGD`` (momentum, weight decay; no dampening, no Nesterov) with ``lr`` a
    0-d tensor on the parameters' device. State: one momentum buffer per parameter."""

    def __init__(self, params: list, lr: float, momentum: float, weight_decay: float):
        self.params, self.momentum, self.wd = params, momentum, weight_decay
        self.lr = torch.tensor(float(lr), device=params[0].device)
        self.bufs = [torch.zeros_like(p) for p in params] if momentum else None

    @torch.no_grad()
    def step(self, grads: list) -> None:
        for i, (p, g) in enumerate(zip(self.params, grads)):
            g = g.add(p, alpha=self.wd) if self.wd else g
            if self.bufs is not None:  # torch starts the buffer at the first gradient: m·0 + g
                g = self.bufs[i].mul_(self.momentum).add_(g)
            p.sub_(g * self.lr)


class ManualAdam:
    """``torch.optim.Adam`` / ``AdamW`` (no AMSGrad) with ``lr`` and the step count as tensors."""

    def __init__(self, params: list, lr: float, betas: tuple, eps: float, weight_decay: float,
                 decoupled: bool):
        self.params, (self.b1, self.b2), self.eps = params, betas, eps
        self.wd, self.decoupled = weight_decay, decoupled
        device = params[0].device
        self.lr = torch.tensor(float(lr), device=device)
        self.t = torch.zeros((), dtype=torch.float64, device=device)  # 1 - β₂ᵗ cancels in fp32
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, grads: list) -> None:
        self.t.add_(1)
        step_size = (self.lr.double() / (1 - self.b1 ** self.t)).float()  # as torch: in double
        bias2_sqrt = (1 - self.b2 ** self.t).sqrt().float()
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if self.wd and self.decoupled:
                p.mul_(1 - self.lr * self.wd)
            elif self.wd:
                g = g.add(p, alpha=self.wd)
            m.lerp_(g, 1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            p.sub_(m / denom * step_size)


class ManualAdamWFp16(ManualAdam):
    """:class:`fewshot.training.optim.AdamWFp16State` (AdamW whose parameters, moments and intermediates are
    rounded to fp16 precision: Tip-Adapter-F's "official" recipe) with ``lr`` and the step count as
    tensors, rounding at the same points in the same order."""

    def __init__(self, params: list, lr: float, betas: tuple, eps: float, weight_decay: float):
        super().__init__(params, lr, betas, eps, weight_decay, decoupled=True)

    @torch.no_grad()
    def step(self, grads: list) -> None:
        from fewshot.training.optim import to_fp16_precision as r

        self.t.add_(1)
        step_size = (self.lr.double() / (1 - self.b1 ** self.t)).float()
        bias2_sqrt = (1 - self.b2 ** self.t).sqrt().float()
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            g = r(g.float())
            p.copy_(r(p * (1 - self.lr * self.wd)))
            m.copy_(r(m + (1 - self.b1) * (g - m)))
            v.copy_(r(r(v * self.b2) + (1 - self.b2) * g * g))
            denom = r(r(r(v.sqrt()) / bias2_sqrt) + self.eps)
            p.copy_(r(p - step_size * m / denom))


def manual_optimizer(optimizer: torch.optim.Optimizer):
    """The graph-safe twin of ``optimizer`` (fresh state), or None where it is not covered: one
    parameter group of plain SGD, Adam, AdamW or :class:`~fewshot.training.optim.AdamWFp16State`, before
    any step."""
    if len(optimizer.param_groups) != 1 or optimizer.state:
        return None
    g = optimizer.param_groups[0]
    if g.get("maximize") or g.get("differentiable") or isinstance(g["lr"], torch.Tensor):
        return None
    from fewshot.training.optim import AdamWFp16State

    kind = type(optimizer)
    if kind is AdamWFp16State:
        return ManualAdamWFp16(g["params"], g["lr"], g["betas"], g["eps"], g["weight_decay"])
    if kind is torch.optim.SGD and not g["nesterov"] and not g["dampening"]:
        return ManualSGD(g["params"], g["lr"], g["momentum"], g["weight_decay"])
    if kind in (torch.optim.Adam, torch.optim.AdamW) and not g["amsgrad"]:
        decoupled = kind is torch.optim.AdamW or bool(g.get("decoupled_weight_decay"))
        return ManualAdam(g["params"], g["lr"], g["betas"], g["eps"], g["weight_decay"], decoupled)
    return None


class GraphedStep:
    """One training step of ``logits_fn`` on batches of ``batch_size`` rows, as a CUDA graph once
    captured (``capture=True``, CUDA only), else run eagerly with the same update (the CPU path,
    and batches of another size). ``step(x [N, D], idx [b], lr) -> (loss, correct)`` as 0-d tensors,
    with no host synchronisation."""

    def __init__(self, params: list, logits_fn: Callable, labels: torch.Tensor, opt, batch_size: int,
                 warmup: int = 3, capture: bool = True):
        self.params, self.logits_fn, self.labels, self.opt = params, logits_fn, labels, opt
        self.batch_size, self.warmup, self.done = batch_size, warmup, 0
        self.capture = capture and labels.device.type == "cuda"
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.static_x: Optional[torch.Tensor] = None
        self.static_idx = torch.zeros(batch_size, dtype=torch.long, device=labels.device)

    def _body(self, x: torch.Tensor, y: torch.Tensor):
        logits = self.logits_fn(x)
        loss = head_loss(logits, y)
        grads = torch.autograd.grad(loss, self.params)
        self.opt.step(list(grads))
        return loss.detach(), correct_count(logits, y)

    def step(self, x: torch.Tensor, idx: torch.Tensor, lr: float):
        """Train on rows ``idx`` of ``x`` at learning rate ``lr``."""
        self.opt.lr.fill_(lr)
        if not self.capture or idx.numel() != self.batch_size:
            return self._body(x[idx], self.labels[idx])
        if self.static_x is None:
            self.static_x = torch.empty(self.batch_size, *x.shape[1:], dtype=x.dtype, device=x.device)
        self.static_idx.copy_(idx)
        torch.index_select(x, 0, self.static_idx, out=self.static_x)
        if self.graph is None and self.done < self.warmup:  # real steps that also warm up kernels
            self.done += 1
            side = torch.cuda.Stream(x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side):
                out = self._body(self.static_x, self.labels[self.static_idx])
            torch.cuda.current_stream(x.device).wait_stream(side)
            return out
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out = self._body(self.static_x, self.labels[self.static_idx])
        self.graph.replay()  # captured with this step's inputs already in place
        return self.out[0].clone(), self.out[1].clone()
