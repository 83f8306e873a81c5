"""Atomic writes: every file the suite writes appears whole or not at all.

All writers go through :func:`atomic_path`: the content goes to a temporary file in the target's
folder, is flushed to disk, and is renamed over the target (``os.replace`` is atomic on POSIX and
Windows). A kill at any moment leaves either the old file or the new one, never a cut one.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "atomic_torch_save", "remove_dead_partial_writes"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # PermissionError: someone else's live process
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_dead_partial_writes(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.<name>.pid<PID>.<random>.tmp``) that writers killed mid-write
    left under ``folder``; files of live processes are kept. Returns the deleted paths."""
    gone = []
    for tmp in Path(folder).rglob(".*.tmp"):
        pid = re.search(r"\.pid(\d+)\.", tmp.name)
        if pid is None or not _alive(int(pid.group(1))):
            tmp.unlink(missing_ok=True)
            gone.append(tmp)
    return gone


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``,
    on any exception (KeyboardInterrupt too) it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.pid{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj, indent: int | None = None) -> None:
    """Write ``obj`` as JSON (keys sorted, NaN refused) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False) + "\n")


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` atomically. Only save tensors, numbers, strings and containers of them: the
    suite reads these files back with ``weights_only=True``, which refuses anything else."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
