"""Distributed: the few helpers that let the fine-tuning trainer and the encoder run under
``torchrun`` (one process per GPU, NCCL), and unchanged in one process.

Nothing here starts a process group: ``torchrun`` sets the environment and the caller (e.g.
``bench/finetune.py``) calls :func:`init`. Without one, every helper is the identity.
"""
from __future__ import annotations

import atexit
import datetime
import os

import torch
import torch.distributed as td

__all__ = ["init", "finish", "active", "rank", "world", "is_main", "wrap", "my_share", "my_rows",
           "gather_rows", "sum_all", "barrier"]


def init(device: str = "auto") -> torch.device:
    """Join the process group ``torchrun`` describes (NCCL on GPUs, gloo on CPUs) and return this
    process's device (``cuda:LOCAL_RANK``, or the CPU when ``device`` is "cpu" or there is no
    GPU); in a plain process, return that device and do nothing. Collectives wait up to two
    hours, as rank 0 may be filling caches while the others wait."""
    gpu = torch.cuda.is_available() and not str(device).startswith("cpu")
    local = int(os.environ.get("LOCAL_RANK", 0))
    if "RANK" not in os.environ or active():
        return torch.device(f"cuda:{local}" if gpu else "cpu")
    backend = "nccl" if gpu else "gloo"
    if gpu:
        torch.cuda.set_device(local)
    td.init_process_group(backend, timeout=datetime.timedelta(hours=2))
    atexit.register(finish)
    return torch.device(f"cuda:{local}" if backend == "nccl" else "cpu")


def finish() -> None:
    """Leave the process group (registered at exit by :func:`init`): without it a gloo process
    that exits while its peers still work can abort in its communication threads
    ("terminate called without an active exception")."""
    if active():
        td.destroy_process_group()


def active() -> bool:
    return td.is_available() and td.is_initialized()


def rank() -> int:
    return td.get_rank() if active() else 0


def world() -> int:
    return td.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        td.barrier()


def wrap(module: torch.nn.Module, device) -> torch.nn.Module:
    """``module`` in DistributedDataParallel under torchrun (gradients averaged), else itself."""
    if not active():
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def my_share(batch: torch.Tensor) -> torch.Tensor:
    """This process's contiguous share of a global batch (all processes draw the same batch)."""
    if not active():
        return batch
    n, w, r = len(batch), world(), rank()
    per = -(-n // w)
    return batch[r * per:(r + 1) * per]


def my_rows(n: int) -> list[int]:
    """Row indices this process encodes out of n: a contiguous block."""
    per = -(-n // world())
    return list(range(rank() * per, min(n, (rank() + 1) * per)))


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """The blocks of :func:`my_rows` from every process, in order: [n, ...] on every process."""
    if not active():
        return local
    per = -(-n // world())
    padded = torch.zeros(per, *local.shape[1:], dtype=local.dtype, device=local.device)
    padded[:len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world())]
    td.all_gather(parts, padded)
    return torch.cat(parts)[:n]


def sum_all(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over all processes (``t`` itself in one process)."""
    if active():
        t = t.clone()
        td.all_reduce(t)
    return t
