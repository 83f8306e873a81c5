"""Splits: seeded, nested k-shot manifests that pick the same images on every machine.

Per class, the sorted file list is permuted by a generator seeded with ``"<seed>:<wnid>"`` and the
first k files are taken, so the k-shot sets are nested (1 ⊂ 2 ⊂ 4 ⊂ 5 ⊂ 8 ⊂ 16) and a class's
choice does not depend on which other classes exist. A manifest is
``{"shots": k, "seed": s, "classes": [wnid, ...], "items": [[relative_path, label], ...],
"short_classes": {wnid: n}}`` with items ordered by class, then by draw order (so the j-th item
of a class is its j-th shot); ``short_classes`` lists the classes that hold fewer than k images
(they contribute all n they have).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from collections import defaultdict
from pathlib import Path

from fewshot.base.atomic import atomic_write_bytes
from fewshot.data.datasets import Dataset
from fewshot.base.errors import MissingStepError
from fewshot.data import DEFAULT_SEEDS, DEFAULT_SHOTS

__all__ = ["make_manifest", "manifest_name", "manifest_bytes", "manifest_hash", "write_manifests",
           "load_manifest", "shot_ranks"]


def _draw(paths: list[str], seed: int, wnid: str) -> list[str]:
    order = sorted(paths)
    random.Random(f"{seed}:{wnid}").shuffle(order)  # str seeds hash with SHA-512: portable
    return order


def make_manifest(dataset: Dataset, shots: int, seed: int) -> dict:
    """The k-shot training manifest for ``seed``: k images per class (all, if a class has fewer)."""
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    by_class: dict[int, list[str]] = defaultdict(list)
    for path, label in dataset.train.items:
        by_class[label].append(path)
    items = [[p, label] for label, wnid in enumerate(dataset.wnids)
             for p in _draw(by_class[label], seed, wnid)[:shots]]
    short = {w: len(by_class[c]) for c, w in enumerate(dataset.wnids) if len(by_class[c]) < shots}
    return {"shots": shots, "seed": seed, "classes": list(dataset.wnids), "items": items,
            "short_classes": short}


def manifest_name(shots: int, seed: int) -> str:
    """File name of a manifest: ``shots16_seed1.json``."""
    return f"shots{shots}_seed{seed}.json"


def manifest_bytes(manifest: dict) -> bytes:
    """Canonical serialisation: the bytes written to disk and hashed for cache keys."""
    return (json.dumps(manifest, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def manifest_hash(manifest: dict) -> str:
    """Hex SHA-256 of :func:`manifest_bytes`."""
    return hashlib.sha256(manifest_bytes(manifest)).hexdigest()


def write_manifests(dataset: Dataset, out_dir: str | os.PathLike, shots=DEFAULT_SHOTS,
                    seeds=DEFAULT_SEEDS) -> list[Path]:
    """Write one manifest per (shots, seed) into ``out_dir``; identical inputs give identical bytes.

    An existing file with the same bytes is left untouched; a different one is replaced atomically.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for seed in seeds:
        for k in shots:
            path = out / manifest_name(k, seed)
            data = manifest_bytes(make_manifest(dataset, k, seed))
            if not path.exists() or path.read_bytes() != data:
                atomic_write_bytes(path, data)
            written.append(path)
    return written


def load_manifest(path: str | os.PathLike) -> dict:
    """Read a manifest written by :func:`write_manifests`, checking its fields."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MissingStepError(f"{path} is damaged ({err}); rerun the splits step.") from err
    missing = {"shots", "seed", "classes", "items"} - set(manifest) if isinstance(manifest, dict) else {"all"}
    if missing:
        raise MissingStepError(f"{path}: not a split manifest (missing {sorted(missing)}); rerun "
                               f"the splits step.")
    return manifest


def shot_ranks(items: list) -> list[int]:
    """For manifest items ordered by class then draw order: the rank of each item in its class.

    Shape: ``[len(items)]``. Used to fold the k shots for cross-validation (fold = rank mod n).
    """
    seen: dict[int, int] = defaultdict(int)
    ranks = []
    for _, label in items:
        ranks.append(seen[label])
        seen[label] += 1
    return ranks
