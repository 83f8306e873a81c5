"""Training: the one loop that fits small heads on cached features (Tip-Adapter-F, CLIP-Adapter,
APE-T, ...); its schedules are :mod:`fewshot.training.schedules`.

The loop follows the official Tip-Adapter-F one: epoch e trains on augmented view e mod V of every
shot (the official scripts re-encode a fresh augmentation each epoch; this suite caches V views),
shuffled by a seeded CPU generator, cross-entropy, one optimiser and scheduler step per batch.
Losses are checked once per epoch (one device sync): a non-finite loss stops training with
:class:`~fewshot.base.errors.NonFiniteError` naming the run, epoch and step.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from tqdm import tqdm

from fewshot.base.errors import NonFiniteError
from fewshot.training import graphed
from fewshot.protocol.metrics import correct_count

__all__ = ["train_head", "check_finite"]


def check_finite(step_loss: torch.Tensor, what: str, epoch: int, hint: str) -> None:
    """Stop with :class:`NonFiniteError` (naming ``what``, the epoch and step) unless every
    loss of the epoch, ``step_loss`` [steps], is finite."""
    if not bool(torch.isfinite(step_loss).all()):  # one sync per epoch
        first = int(torch.nonzero(~torch.isfinite(step_loss))[0])
        raise NonFiniteError(f"{what}: the training loss became {float(step_loss[first])} at "
                             f"epoch {epoch + 1}, step {first + 1}; {hint}.")


def _epoch(x, order, sizes, logits_fn, labels, optimizer, sched, stepper, schedule, t: int,
           step_loss: torch.Tensor, stats: torch.Tensor) -> int:
    """One epoch of :func:`train_head` over view ``x`` [N, D] in ``order``: each step's loss into
    ``step_loss`` [steps], correct predictions added to ``stats[1]``; returns the steps taken."""
    for i, s in enumerate(range(0, sum(sizes), sizes[0])):
        idx = order[s:s + sizes[i]]
        if stepper is not None:  # fewshot.training.graphed: a CUDA graph per step
            step_loss[i], correct = stepper.step(x, idx, sched.base_lrs[0] * schedule(t))
            stats[1] += correct
            t += 1
            continue
        logits = logits_fn(x[idx])
        loss = graphed.head_loss(logits, labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sched.step()
        step_loss[i] = loss.detach()
        stats[1] += correct_count(logits, labels[idx])
    return t


def train_head(params: list, logits_fn: Callable, views: torch.Tensor, labels: torch.Tensor, *,
               optimizer: torch.optim.Optimizer, schedule: Callable[[int], float], epochs: int,
               batch_size: int, seed: int, progress: bool = True, what: str = "training",
               hint: str = "lower the learning rate", drop_last: bool = False,
               select_epoch: Optional[Callable[[], float]] = None, checkpoint=None,
               graph: bool = False) -> dict:
    """Fit ``params`` by minimising cross-entropy of ``logits_fn(x [b, D]) -> [b, C]``.

    views: [V, N, D] normalised features of V augmented views of the N training images; labels
    [N]. F heads of equal data size train at once (stacked folds) with views [V, N, F, D],
    labels [N, F] and ``logits_fn(x [b, F, D]) -> [b, C, F]`` (:func:`fewshot.training.graphed.head_loss`);
    their history then sums over the F heads. ``schedule(step)`` multiplies the optimiser's lr.
    ``select_epoch()``, if given, scores the parameters after each epoch; the best are restored.
    ``checkpoint`` (:class:`fewshot.training.checkpoint.Checkpoint`) keeps every epoch and resumes from it.
    ``graph=True`` (a head whose ``logits_fn`` is plain tensor algebra) replays each step as a
    CUDA graph on a GPU (:mod:`fewshot.training.graphed`: same update, float rounding aside); on a CPU, with
    a checkpoint, and for optimisers it does not cover, the eager loop runs.
    Returns ``{"history": [{"epoch", "loss", "train_acc"}], "best_epoch": int}``.
    """
    device, n = views.device, views.shape[1]
    sizes = [min(batch_size, n - s) for s in range(0, n, batch_size)]
    if drop_last and len(sizes) > 1 and sizes[-1] < batch_size:
        sizes = sizes[:-1]
    steps = len(sizes)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    gen = torch.Generator().manual_seed(seed)
    stats = torch.zeros(epochs, 2, device=device)  # (summed loss, correct) per epoch
    step_loss = torch.zeros(steps, device=device)
    weights = torch.tensor(sizes, device=device, dtype=torch.float32)
    best = (-math.inf, None, epochs)
    manual = graphed.manual_optimizer(optimizer) if graph and checkpoint is None and \
        (device.type == "cuda" or graphed.ON_CPU) else None
    stepper = graphed.GraphedStep(params, logits_fn, labels, manual, batch_size) if manual else None
    t = 0  # steps taken: the schedule's argument
    resumable = ({"optimizer": optimizer, "schedule": sched}, {"order": gen})
    saved = checkpoint.resume(params, *resumable) if checkpoint is not None else None
    if saved is not None:
        stats.copy_(saved["stats"])
        best = (saved["best"][0], saved["best"][1] or None, saved["best"][2])
    start = saved["epoch"] if saved is not None else 0
    for epoch in tqdm(range(start, epochs), desc=what, disable=not progress, leave=False,
                      initial=start, total=epochs):
        order = torch.randperm(n, generator=gen).to(device)
        t = _epoch(views[epoch % views.shape[0]], order, sizes, logits_fn, labels, optimizer, sched,
                   stepper, schedule, t, step_loss, stats[epoch])
        check_finite(step_loss, what, epoch, hint)
        stats[epoch, 0] = (step_loss * weights).sum()
        if select_epoch is not None:
            score = select_epoch()
            if score > best[0]:
                best = (score, [p.detach().clone() for p in params], epoch + 1)
        if checkpoint is not None:
            checkpoint.save(epoch + 1, params, *resumable, stats=stats, best=[best[0], best[1] or [], best[2]])
    if select_epoch is not None:
        with torch.no_grad():
            for p, kept in zip(params, best[1]):
                p.copy_(kept)
    stats = (stats / sum(sizes)).tolist()  # one device sync, after training
    history = [{"epoch": e + 1, "loss": l, "train_acc": a} for e, (l, a) in enumerate(stats)]
    return {"history": history, "best_epoch": best[2]}
