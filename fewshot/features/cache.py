"""The feature cache: keyed files that cannot run code, cannot be silently wrong, and heal.

A cache file's name ends in the digest of a :class:`CacheKey`, which holds everything that changes
the tensor: backbone and checkpoint SHA-256, preprocessing, the data's identity (dataset root and,
per image, relative path, label, size and modification time: :func:`files_fingerprint`), number of
augmented views and their seed, dtype, decode path and image tower. A changed input gives a new
file; nothing stale is ever reused.

On load a file must pass every check, or it is moved aside (``*.bad-<time>``), named in a warning
and recomputed:

- it is read with ``torch.load(weights_only=True)``: tensors, numbers, strings and containers
  only, so a planted pickle cannot run code;
- the key stored in it equals the key asked for;
- a SHA-256 over every tensor's bytes (and the other fields) equals the one stored when it was
  written: flipped bits, cut or edited files are caught;
- the caller's ``expect(data)`` holds (row counts, paths, finite values).

Writes are atomic (:mod:`fewshot.base.atomic`).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from fewshot.base.atomic import atomic_torch_save, remove_dead_partial_writes
from fewshot.base.errors import FewshotWarning

__all__ = ["CacheKey", "cached", "cache_path", "files_fingerprint", "tensors_digest"]


@dataclass(frozen=True)
class CacheKey:
    """Everything that determines a cached tensor; its digest names the file."""

    kind: str  # "image" or "text"
    backbone: str  # registry name or file name
    checkpoint_sha256: str  # of the checkpoint file
    preprocessing: str  # e.g. "clip-center-224" or "tip-rrc0.5-1-bicubic-hflip-224"
    inputs_sha256: str  # files_fingerprint of the images, or of classnames + templates
    views: int = 0  # 0: the test-time centre crop; V: V augmented views
    aug_seed: int = 0  # seed of the augmented views (unused when views == 0)
    dtype: str = "float16"  # storage dtype
    decode: str = "pil"  # "pil" (CPU, the reference) or "gpu" (nvjpeg)
    tower: str = "clip"  # image tower: "clip" (CLIP's forward) or "fused" (fewshot.models.bn_fold)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def files_fingerprint(root: str | os.PathLike, items) -> str:
    """SHA-256 over the dataset root (resolved) and, per ``(relative path, label)`` item, the
    file's size and modification time (ns). Cheap (one ``stat`` per file) and changes when a file
    is replaced, edited or copied anew (extracting the same archive again keeps the times). A
    file that cannot be stat-ed (a broken link) enters as unreadable; decoding then names it."""
    root = Path(root)
    h = hashlib.sha256(str(root.resolve()).encode() + b"\n")
    for path, label in items:
        try:
            st = os.stat(root / path)
            h.update(f"{path}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError as err:
            h.update(f"{path}\t{label}\tunreadable {err.errno}\n".encode())
    return h.hexdigest()


def tensors_digest(data: dict) -> str:
    """SHA-256 over every field of ``data``: tensors by name, dtype, shape and bytes; the rest as
    JSON."""
    h = hashlib.sha256()
    for name in sorted(data):
        value = data[name]
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")  # no copy
        else:
            h.update(f"{name}={json.dumps(value, sort_keys=True)}\n".encode())
    return h.hexdigest()


def cache_path(key: CacheKey, cache_dir: str | os.PathLike, stem: str) -> Path:
    """``<cache_dir>/<backbone>/<stem>-<digest[:16]>.pt``."""
    folder = key.backbone.replace("/", "-").removesuffix(".pt")
    return Path(cache_dir) / folder / f"{stem}-{key.digest()[:16]}.pt"


def _verified(path: Path, key: CacheKey, expect: Optional[Callable[[dict], Optional[str]]]) -> dict:
    """The file's data, or ValueError saying which check failed."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, random bytes, a pickle with code: all refused here
        raise ValueError(f"unreadable ({type(err).__name__})") from err
    if not isinstance(payload, dict) or not {"key", "checksum", "data"} <= set(payload):
        raise ValueError("not a feature-cache file")
    if payload["key"] != json.dumps(asdict(key), sort_keys=True):
        raise ValueError("made for another key")
    data = payload["data"]
    if not isinstance(data, dict) or tensors_digest(data) != payload["checksum"]:
        raise ValueError("checksum mismatch (the file was changed after it was written)")
    problem = expect(data) if expect else None
    if problem:
        raise ValueError(problem)
    return data


def cached(key: CacheKey, cache_dir: str | os.PathLike, stem: str, compute: Callable[[], dict],
           expect: Optional[Callable[[dict], Optional[str]]] = None) -> dict:
    """Load the verified file of ``key`` or compute, save and return ``compute()``.

    ``compute()`` returns a dict of tensors, numbers, strings and lists; ``expect(data)`` returns
    None when the data fits what the caller asked for, else a reason (checked on load and after
    computing). A file that fails a check is moved aside with a warning and recomputed.
    """
    path = cache_path(key, cache_dir, stem)
    if path.parent.is_dir():
        remove_dead_partial_writes(path.parent)  # what a killed extraction left half-written
    if path.exists():
        try:
            return _verified(path, key, expect)
        except ValueError as why:
            aside = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(path, aside)
            warnings.warn(f"feature cache {path} failed verification ({why}); moved to {aside} "
                          f"and recomputing.", FewshotWarning, stacklevel=2)
    data = compute()
    problem = expect(data) if expect else None
    if problem:
        from fewshot.base.errors import CacheError

        raise CacheError(f"computed features for {path.name} are unusable: {problem}")
    atomic_torch_save({"key": json.dumps(asdict(key), sort_keys=True),
                       "checksum": tensors_digest(data), "data": data}, path)
    return data
