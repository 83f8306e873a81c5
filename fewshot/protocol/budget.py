"""Budget: what a long step will do, what it costs on this device, and whether it fits.

Before a step that trains or encodes, the run builds the step's :class:`Plan`: its work as
:class:`Work` items (``count`` units of one kind: optimiser steps of a fit, images through an
encoder), each timed by a named *probe*, a short measured warm-up on this device (a few training
steps on the real model and batch size, a few encoder batches through the real loader; one unit
run first so that start-up costs are not counted as rate). The estimate is
``Σ count × seconds per unit``. A step whose estimate exceeds :data:`ANNOUNCE_SECONDS` prints what
will run and the estimate; then the progress bars give their own ETA. With ``time_budget``
(minutes, :class:`~fewshot.run.config.RunConfig`), a step whose estimate exceeds it stops before it
starts, with one :class:`~fewshot.base.errors.BudgetError` line that lists cheaper settings.

The estimate leaves out what is not measured (start-up, loading caches, scoring on cached
features: seconds at ImageNet scale), so it errs low by those.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from fewshot.base.errors import BudgetError

__all__ = ["Work", "Plan", "fit_steps", "seconds_per", "estimate", "check", "ANNOUNCE_SECONDS"]

ANNOUNCE_SECONDS = 60.0  # steps estimated above this say what they will do before they start


@dataclass(frozen=True)
class Work:
    """``count`` units of one kind of work, timed by the probe named ``rate``."""

    what: str  # for the announcement: "coop (16-shot, seed 1): 2 fits × 10 epochs"
    count: int  # units in all (optimiser steps summed over fits and epochs; images)
    unit: str  # "steps of batch 32", "images"
    rate: str  # the probe that gives seconds per unit: "coop step", "encode val"


@dataclass
class Plan:
    """A step's work and the probes that time it (name -> () -> seconds per unit); ``cheaper``
    maps the share of the estimate that would fit (0–1) to settings that cost less."""

    works: list = field(default_factory=list)  # [Work]
    probes: dict = field(default_factory=dict)  # rate name -> Callable[[], float]
    cheaper: Callable[[float], list] = lambda share: []

    def add(self, other: "Plan") -> "Plan":
        """Merge ``other`` in (its probes do not replace ones of the same name); returns self."""
        mine, theirs = self.cheaper, other.cheaper
        self.works += other.works
        self.probes = {**other.probes, **self.probes}
        self.cheaper = lambda share: list(dict.fromkeys(mine(share) + theirs(share)))
        return self


def fit_steps(n: int, batch_size: int, epochs: int, drop_last: bool = False) -> int:
    """Optimiser steps of one fit on ``n`` examples: ``epochs × batches per epoch`` (the last
    short batch dropped with ``drop_last`` when there is more than one batch)."""
    batches = n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)
    return epochs * max(1, batches)


def _sync():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def seconds_per(run: Callable[..., object], units: int, setup: Callable[[], object] | None = None) -> float:
    """Seconds per unit of ``run()`` (which does ``units`` units of work): run once to warm up
    (allocation, kernel selection, loader start), then time a second run. With ``setup``, each run
    is ``run(setup())`` and only ``run`` is timed: building a fresh model for a probe (a copy of
    the encoder on the device) is paid once per fit, not once per probed step, so it stays out of
    the rate. Torch's random generators are left as they were, so a probe changes no result."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        run(*(() if setup is None else (setup(),)))
        arg = () if setup is None else (setup(),)
        _sync()
        start = time.perf_counter()
        run(*arg)
        _sync()
    return (time.perf_counter() - start) / max(1, units)


def estimate(plan: Plan) -> tuple[float, dict]:
    """(seconds, {rate: seconds per unit}) of ``plan``: each probe it needs measured once."""
    rates = {}
    for w in plan.works:
        if w.rate not in rates:
            rates[w.rate] = float(plan.probes[w.rate]())
    return sum(w.count * rates[w.rate] for w in plan.works), rates


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else (f"{m} min {s:02d} s" if m else f"{s} s")


def check(plan: Plan, cfg, what: str, stream=None, device=None) -> float:
    """Estimate ``plan``; stop with :class:`BudgetError` when it exceeds ``cfg.time_budget``
    (minutes; 0 = none); announce it when above :data:`ANNOUNCE_SECONDS`. Returns the estimate
    (seconds; 0 without work, and nothing is measured then)."""
    if not plan.works:
        return 0.0
    seconds, rates = estimate(plan)
    on = f"on {device}" if device is not None else "on this device"
    budget = cfg.time_budget * 60
    if budget and seconds > budget:
        cheaper = "; ".join(plan.cheaper(budget / seconds)) or "a larger time_budget"
        raise BudgetError(f"{what} would take about {_clock(seconds)} {on} (measured), more than "
                          f"time_budget={cfg.time_budget:g} min; cheaper: {cheaper} (or "
                          f"--set time_budget=0 for no limit).")
    if seconds >= ANNOUNCE_SECONDS and os.environ.get("RANK", "0") == "0":
        stream = stream or sys.stdout
        print(f"[fewshot] {what}: estimated {_clock(seconds)} {on}, from a short measured warm-up:", file=stream)
        for w in plan.works:
            print(f"  {w.what}: {w.count:,} {w.unit} × {rates[w.rate] * 1e3:.1f} ms = "
                  f"{_clock(w.count * rates[w.rate])}", file=stream)
        stream.flush()
    return seconds
