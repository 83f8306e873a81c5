"""Atomic writes: every file the suite writes appears whole or not at all.

All writers go through :func:`atomic_path`: the content goes to a temporary file in the target's
folder, is flushed to disk, and is renamed over the target (``os.replace`` is atomic on POSIX and
Windows). A kill at any moment leaves either the old file or the new one, never a cut one. A full
disk or quota (``ENOSPC``, ``EDQUOT``) becomes one :class:`~fewshot.base.errors.DiskFullError` that
names the path, the space needed and the space free; the old file stays as it was.

Folders the suite did not write are never deleted: :func:`claim` accepts a folder only when it is
missing, empty or marked as the writer's own, and :func:`move_aside` renames one on ``--force``.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "atomic_torch_save", "remove_dead_partial_writes", "move_aside", "claim"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # PermissionError: someone else's live process
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (OverflowError, ValueError):  # no such pid can exist: not a name the suite gave
        return True
    return True


# The temporary name :func:`atomic_path` gives: ``.<name>.pid<PID>.<mkstemp's random part>.tmp``.
_TEMP_NAME = re.compile(r"^\..+\.pid([0-9]{1,10})\.[A-Za-z0-9_]+\.tmp$")


def remove_dead_partial_writes(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.<name>.pid<PID>.<random>.tmp``) that writers killed mid-write
    left under ``folder``: only regular files of exactly that pattern whose process is gone.
    Files of live processes, and any other name (a user's ``.notes.tmp``), are never touched.
    Returns the deleted paths."""
    gone = []
    for tmp in Path(folder).rglob(".*.tmp"):
        pid = _TEMP_NAME.match(tmp.name)
        if pid is None or tmp.is_symlink() or not tmp.is_file() or _alive(int(pid.group(1))):
            continue
        tmp.unlink(missing_ok=True)
        gone.append(tmp)
    return gone


_FULL = (errno.ENOSPC, errno.EDQUOT)


def move_aside(path: Path) -> Path:
    """Rename ``path`` to ``<path>.old-<YYYYmmdd-HHMMSS>[-n]`` beside it and say so on stderr."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = path.with_name(f"{path.name}.old-{stamp}"), 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.old-{stamp}-{n}"), n + 1
    os.replace(path, target)
    print(f"moved {path} aside to {target} (--force; nothing was deleted)", file=sys.stderr)
    return target



def _force_hint(out: Path) -> str:
    return f"choose another --out, or pass --force to move it aside to {out.name}.old-<time> (nothing is deleted)"


def claim(out: str | os.PathLike, marker: str, command: str, force: bool = False,
          ours: Callable[[Path], bool] = lambda p: False) -> Path:
    """Check ``out`` before any work: missing, an empty folder, a folder holding ``marker`` (or
    one that ``ours`` recognises, e.g. an older generator's tree) is fine; a file or a foreign
    folder is refused (``DatasetError`` naming ``command``) or, with ``force``, moved aside."""
    from fewshot.base.errors import DatasetError

    out = Path(out)
    if not os.path.lexists(out):
        return out
    if out.is_symlink() or not out.is_dir():
        what = "a link" if out.is_symlink() else "a file"
        if not force:
            raise DatasetError(f"{out} exists and is {what}, not a folder written by `{command}`; {_force_hint(out)}.")
        move_aside(out)
    elif not (out / marker).is_file() and any(out.iterdir()) and not ours(out):
        if not force:
            raise DatasetError(f"{out} exists and was not written by `{command}` (it holds no {marker} "
                               f"marker); {_force_hint(out)}.")
        move_aside(out)
    return out

def _mb(n: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


def _free(folder: Path):
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _disk_full(path: Path, size, written: int = 0) -> Exception:
    from fewshot.base.errors import DiskFullError

    free = _free(path.parent)
    need = f"about {_mb(size)}" if size else f"more than the {_mb(written)} written"
    return DiskFullError(f"no space left to write {path} (it needs {need}; "
                         f"{'free space unknown' if free is None else _mb(free) + ' free'} on that "
                         f"disk or quota): free space there, or point `out` / `cache_dir` to a disk "
                         f"with room, and run the step again (earlier files are intact).")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``,
    on any exception (KeyboardInterrupt too) it is removed and ``path`` is left as it was.
    ``size`` (bytes, if known) is checked against the free space first (a memory-mapped write
    to a full disk would crash, not raise) and named in a full disk's error."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        free = _free(path.parent) if size else None
        if free is not None and free < size:
            raise OSError(errno.ENOSPC, "not enough free space", str(path))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.pid{os.getpid()}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp)
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        written = tmp.stat().st_size if tmp is not None and tmp.exists() else 0
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if err.errno in _FULL:
            raise _disk_full(path, size, written) from err
        from fewshot.base.errors import explain_os_error

        known = explain_os_error(err)  # read-only, no permission, a file in the way: one line
        if known is None:
            raise
        raise known from err
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, len(data)) as tmp:
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

    with atomic_path(path, _nbytes(obj) + 4096) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(obj, f)  # through a Python file: a full disk is ENOSPC, not an iostream error
        except RuntimeError as err:  # the zip writer's own complaint may hide the write's OSError
            cause = err
            while cause is not None and not isinstance(cause, OSError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            raise cause  # (Python cuts the chain where it would loop)


def _nbytes(obj) -> int:
    """Bytes of the tensors in ``obj`` (nested dicts, lists, tuples)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0
