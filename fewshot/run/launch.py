"""Launch: ``python -m fewshot run`` under ``torchrun`` (one process per GPU).

Only the steps whose methods spread their work over processes run this way: ``finetune``
(:mod:`fewshot.training.encoder` trains under DistributedDataParallel and encodes each test set in
shares gathered on every process). Every process computes the same records; rank 0 alone writes
the run folder (the others open it with ``writer=False``) and prints. Caches are filled by rank 0
before the others start, so no two processes build the same file.

Usage (two GPUs of one host)::

    python -m fewshot run --config imagenet-rn50 --steps zeroshot splits features   # one process
    torchrun --nproc_per_node 2 -m fewshot run --config imagenet-rn50 --steps finetune
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from fewshot.training import distributed as dist
from fewshot.base.errors import ConfigError

if TYPE_CHECKING:
    from fewshot.run.pipeline import Run

__all__ = ["SPREAD_STEPS", "under_torchrun", "run_processes", "run_all"]

SPREAD_STEPS = ("finetune",)  # steps whose work is shared between processes


def under_torchrun() -> bool:
    """True in a process that ``torchrun`` started with more than one process."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _fill_caches(run) -> None:
    """Everything the fine-tuning step reads from disk: the text head, the cached features of
    the pool and of every test set, and the decoded pixels the encoder is fed."""
    _ = run.text_weights, run.pool
    enc = run.res.encoder
    enc.pool()
    for name in run.eval_sets:
        enc.eval_pixels(name)


def run_processes(cfg, steps: list[str], stream=None, fresh: bool = False):
    """This process's part of a torchrun run of ``steps`` (all in :data:`SPREAD_STEPS`):
    returns its :class:`~fewshot.run.pipeline.Run`; rank 0 writes and prints the summary."""
    from fewshot.run.pipeline import Run, list_steps, print_summaries

    stream = stream or sys.stdout
    others = [s for s in steps if s not in SPREAD_STEPS]
    if others:
        raise ConfigError(f"under torchrun only the {', '.join(SPREAD_STEPS)} step runs across "
                          f"processes; run {', '.join(others)} first in one process "
                          f"(`python -m fewshot run --steps {' '.join(others)}`), then "
                          f"`torchrun ... -m fewshot run --steps {' '.join(SPREAD_STEPS)}`.")
    if fresh:
        raise ConfigError("--fresh is not available under torchrun: start the run folder in one "
                          "process (its first steps), then fine-tune under torchrun.")
    device = dist.init(cfg.device)
    main = dist.is_main()
    if not main:
        cfg = cfg.replace(progress=False)
    run = None
    if main:  # rank 0 checks the folder and fills the caches; the others wait, then read them
        run = Run(cfg, device=device)
        _fill_caches(run)
    dist.barrier()
    if not main:
        run = Run(cfg, device=device, writer=False)
        _fill_caches(run)
    for step in list_steps():
        if step in steps:
            if main:
                print(f"[fewshot] {step} on {dist.world()} processes ...", file=stream, flush=True)
            run.step(step)
    dist.barrier()
    if main:
        print_summaries(run, stream)
    return run


def run_all(cfg, steps=None, stream=None, fresh: bool = False) -> "Run":
    """Run ``steps`` (default: all) in order and print the summary table for every test set (to
    ``stream``, default: the current ``sys.stdout``); under ``torchrun``, one process per GPU."""
    from fewshot.data.datasets import check_shots, load_dataset
    from fewshot.merging.study import check_tasks
    from fewshot.run.pipeline import Run, list_steps, print_summaries

    stream = stream or sys.stdout
    steps = list(steps or list_steps())
    unknown = [s for s in steps if s not in list_steps()]
    if unknown:
        raise ConfigError(f"unknown steps {', '.join(unknown)}; steps are {', '.join(list_steps())}")
    dataset = load_dataset(cfg.data)
    for warning in check_shots(dataset, cfg.shots):  # before anything is written
        if os.environ.get("RANK", "0") == "0":
            print(f"warning: {warning}", file=sys.stderr)
    if cfg.merge_tasks and "merging" in steps:
        check_tasks(cfg.merge_tasks)
    if under_torchrun():
        return run_processes(cfg, steps, stream, fresh)
    run = Run(cfg, fresh=fresh, dataset=dataset)
    for step in list_steps():
        if step in steps:
            print(f"[fewshot] {step} ...", file=stream, flush=True)
            run.step(step)
    print_summaries(run, stream)
    return run
