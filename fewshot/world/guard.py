"""Generators never delete what they did not write.

Every generator (``world make``, ``world make-tasks``, ``world make-imagenet-shaped``) marks the
folder it writes with its own marker file. Before any work, :func:`claim` accepts an ``--out``
that is missing, empty or carries that marker; any other folder is refused with one
:class:`~fewshot.base.errors.DatasetError`, or, with ``force``, moved aside whole (``<out>.old-<time>``,
never deleted). A tree is built in ``.<out>.building`` (marked too: :func:`start_building` only
ever removes a marked one), and :func:`replace` swaps it in only when the old tree holds nothing
but files the new one writes again or that carry the generators' fixed time stamp: a file a user
added to (or edited in) a generated folder is never deleted.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from fewshot.base.hashing import sha256_file
from fewshot.base.atomic import _force_hint, claim, move_aside  # noqa: F401 (claim: this module's API)
from fewshot.base.errors import DatasetError

__all__ = ["BUILDING_MARK", "claim", "claim_checkpoint", "move_aside", "start_building", "replace"]

BUILDING_MARK = ".fewshot-building"


def claim_checkpoint(out: str | os.PathLike, command: str, force: bool = False) -> Path:
    """Before training: ``out`` and its ``.sha256`` / ``.log.json`` beside it may be replaced
    only when they are missing or a checkpoint this command wrote (its ``.sha256`` holds the
    file's SHA-256); other files are refused, or with ``force`` moved aside, never deleted."""
    out = Path(out)
    sha = out.with_suffix(".sha256")
    present = [p for p in (out, sha, out.with_suffix(".log.json")) if os.path.lexists(p)]
    if not present:
        return out
    ours = out.is_file() and not out.is_symlink() and sha.is_file() and \
        sha.read_text(errors="replace").split()[:1] == [sha256_file(out)]
    if not ours:
        if not force:
            raise DatasetError(f"{present[0]} exists and is not a checkpoint `{command}` wrote (no "
                               f"{sha.name} beside it with its SHA-256); choose another --out, or "
                               f"pass --force to move {', '.join(p.name for p in present)} aside (nothing is deleted).")
        for p in present:
            move_aside(p)
    return out


def start_building(out: Path, marker: str) -> Path:
    """The marked, empty build folder ``.<out>.building`` beside ``out``; a leftover one is
    removed only when it is a killed build of the suite's (it holds :data:`BUILDING_MARK`, or
    ``marker`` once the build was finished but not yet renamed)."""
    tmp = out.with_name(f".{out.name}.building")
    if os.path.lexists(tmp):
        if tmp.is_symlink() or not ((tmp / BUILDING_MARK).is_file() or (tmp / marker).is_file()):
            raise DatasetError(f"{tmp} exists and was not made by the suite's generators: move or "
                               f"rename it, then run the command again.")
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / BUILDING_MARK).write_text("")
    return tmp


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def _foreign_files(out: Path, tmp: Path, stamp_time: float | None) -> list[str]:
    """Files in ``out`` that the new tree ``tmp`` does not hold and that do not carry the
    generators' fixed time stamp (a file a user added or edited has its own time)."""
    if out.is_symlink() or not out.is_dir():
        return [out.name]
    return sorted(f for f in _files(out) - _files(tmp)
                  if stamp_time is None or os.lstat(out / f).st_mtime != stamp_time)


def replace(tmp: Path, out: Path, command: str, force: bool = False, stamp_time: float | None = None) -> None:
    """Put the finished ``tmp`` in place of ``out`` with one rename. An existing ``out`` goes
    only if each of its files is one ``tmp`` holds again or one a generator wrote (its time is
    ``stamp_time``); otherwise ``DatasetError`` names the others (``tmp`` is removed), or, with
    ``force``, ``out`` is moved aside."""
    (tmp / BUILDING_MARK).unlink(missing_ok=True)
    if os.path.lexists(out):
        extra = _foreign_files(out, tmp, stamp_time)
        if extra and not force:
            shutil.rmtree(tmp)
            shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
            raise DatasetError(f"{out} holds files `{command}` does not write ({shown}): move them "
                               f"out, or {_force_hint(out)}.")
        if extra:
            move_aside(out)
        else:
            shutil.rmtree(out)
    os.replace(tmp, out)
