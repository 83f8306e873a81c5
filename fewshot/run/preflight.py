"""Preflight: what a run needs from the machine, checked before any work, each as one error line.

- :func:`check_folder`: a path setting (``out``, ``cache_dir``, ``--out``) names a folder the suite
  can create and write: not a file (or a file above it), not a virtual file system (``/proc``),
  not read-only, not without write permission. Writability is tried, not guessed from mode bits:
  a folder is created in the nearest existing folder and removed at once.
- :func:`check_device`: the ``device`` setting names a device this machine has.
- :func:`check_run`: both, for a run's config, plus its shifted test sets (each must hold images)
  and ``download_root`` (a folder; writable when the named CLIP checkpoint must still be fetched
  into it, so a read-only folder of weights already there is fine), and the per-class prompt files
  its template sets read (``cupl+tip7``: every class of the dataset has CuPL prompts).

Nothing is left behind; a failure is a :class:`~fewshot.base.errors.PathError` or
:class:`~fewshot.base.errors.ConfigError` naming the setting, the path and the fix.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from fewshot.base.errors import ConfigError, PathError
from fewshot.data.shifts import find_shift_sets, load_shift_set

__all__ = ["check_folder", "check_device", "check_run"]

_REASONS = {errno.EROFS: "is on a read-only file system", errno.EACCES: "is not writable by this user",
            errno.EPERM: "is not writable by this user",
            errno.ENOENT: "refuses new folders (a virtual file system, such as /proc)"}


def _existing_ancestor(path: Path, setting: str) -> Path:
    """The nearest existing component of ``path``; a file on the way is a PathError."""
    for p in (path, *path.parents):
        if os.path.lexists(p):
            if not p.is_dir():
                what = "is a file" if p == path else f"lies under {p}, which is a file"
                raise PathError(f"`{setting}` = {path} {what}, not a folder: point `{setting}` to a "
                                f"folder (or move that file away) and run again.")
            return p
    return Path(".")


def check_folder(path: str | os.PathLike, setting: str) -> Path:
    """``path`` as a Path, once it is known to be a folder the suite can create and write in.

    Raises :class:`PathError` naming ``setting`` (the config field or option) when ``path`` or a
    folder above it is a file, or when the nearest existing folder refuses a new entry (read-only,
    no permission, a virtual file system such as ``/proc``)."""
    path = Path(path)
    base = _existing_ancestor(path, setting)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".fewshot-probe-", dir=base))  # nothing is left behind
    except OSError as err:
        why = _REASONS.get(err.errno, f"refuses new files ({err.strerror})")
        what = f"{path} {why}" if base == path else f"{path} cannot be created: {base} {why}"
        raise PathError(f"`{setting}` = {what}; point `{setting}` to a writable folder on a real "
                        f"disk and run again.") from err
    return path


def check_device(name: str):
    """The ``torch.device`` for ``name`` ("auto": cuda when present, else cpu), once this machine is
    known to have it; ConfigError names the setting and what the machine offers."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= have:
        seen = f"only cuda:0..cuda:{have - 1}" if have else "no CUDA GPU"
        raise ConfigError(f"device={name!r}: this machine has {seen} (torch {torch.__version__}); use "
                          f"device=auto or device=cpu" + (", or a GPU it has." if have else "."))
    if device.type == "mps" and not (torch.backends.mps.is_available()):
        raise ConfigError(f"device={name!r}: this machine has no Apple MPS device; use device=auto "
                          f"or device=cpu.")
    return device


def _check_download_root(root: Path, backbone: str) -> None:
    _existing_ancestor(root, "download_root")  # a file where the folder should be
    from fewshot._clip_compat import import_clip

    url = import_clip().clip._MODELS.get(backbone)
    if url and not (root / os.path.basename(url)).is_file():
        check_folder(root, "download_root")  # the download would write there


def _check_prompts(cfg, dataset) -> None:
    from fewshot.methods import list_methods
    from fewshot.protocol.recipes import OFFICIAL_HEADS, template_sets
    from fewshot.models.templates import class_prompts, per_class

    methods = list(cfg.methods) or list_methods()
    sets = [s for s in template_sets(cfg, methods) if per_class(s)]
    if sets:
        from fewshot.data.datasets import DatasetError, load_dataset

        names = (dataset or load_dataset(cfg.data)).classnames
        for name in sets:
            try:
                class_prompts(name, names)  # the file is missing, or lacks a class
            except DatasetError as err:
                users = [m for m in methods if OFFICIAL_HEADS.get(m) == name and cfg.recipe == "official"]
                why = (f"recipe=official: {', '.join(users)} read{'s' if len(users) == 1 else ''} templates "
                       f"{name}" if users else f"templates={name}")
                fix = f"; or leave {', '.join(users)} out of `methods`" if users and name != cfg.templates else ""
                raise DatasetError(f"{why}: {err}{fix}.") from err


def _check_official(cfg, device) -> None:
    """Under ``recipe=official``, what each method's official recipe needs from this machine."""
    if cfg.recipe != "official" or device is None:
        return
    from fewshot.methods import list_methods
    from fewshot.protocol.recipes import OFFICIAL_CHECKS

    for m in list(cfg.methods) or list_methods():
        problem = OFFICIAL_CHECKS[m](device) if m in OFFICIAL_CHECKS else None
        if problem:
            raise ConfigError(problem)


def check_run(cfg, dataset=None, device=None) -> None:
    """Before a run writes anything: ``out`` and ``cache_dir`` are writable folders (and the run
    folder's ``.lock`` a file), and, with ``dataset`` loaded, every shifted test set holds images."""
    out = check_folder(cfg.out, "out")
    check_folder(cfg.cache_dir, "cache_dir")
    lock = out / ".lock"
    if os.path.lexists(lock) and not lock.is_file():
        raise PathError(f"{lock} is not a file (the run folder's lock must be one): remove it and "
                        f"run again.")
    if cfg.download_root:
        _check_download_root(Path(cfg.download_root), cfg.backbone)
    _check_prompts(cfg, dataset)
    _check_official(cfg, device)  # ``device``: the run's torch.device (None: not checked)
    if dataset is not None:
        for name, (path, kind) in sorted((cfg.shift_sets or find_shift_sets(cfg.data)).items()):
            load_shift_set(path, kind, dataset.wnids, name)  # DatasetError when empty or unknown
