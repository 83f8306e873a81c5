"""The mini-world dataset: 100 classes in the ImageNet-1K-16shot layout, plus a "sketch" shift.

Like ImageNet, half the class names are words the pretraining corpus never uses (the colour
names below): zero-shot CLIP cannot read them and must be helped by the few shots. Pixels are
rendered by :mod:`fewshot.world.render`; each image has its own seed derived from (split, class,
index), so the tree is byte-identical on every run and independent of the number of workers.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from fewshot.world.render import COLORS, SHAPES, render

__all__ = ["CLASSES", "OBSCURE_NAMES", "make_world", "tree_digest"]

# Colours whose class names the corpus never uses (the corpus says "orange", the class "tenne").
OBSCURE_NAMES = {"orange": "tenne", "cyan": "smalt", "pink": "amaranth", "brown": "umber",
                 "gray": "taupe"}
# (wnid, shape, colour, class name), sorted by wnid = class index.
CLASSES = [(f"n{90000000 + 10 * si + ci:08d}", shape, color,
            f"{OBSCURE_NAMES.get(color, color)} {shape}")
           for si, shape in enumerate(SHAPES) for ci, color in enumerate(COLORS)]
SIZES = ((96, 96), (112, 96), (96, 112), (128, 96))
SPLITS = {"train": ("photo", 16), "val": ("photo", 50), "shift/sketch": ("sketch", 50)}
# The benchmark's photos are harder than the pretraining corpus's (as ImageNet is harder than
# captioned web images): colours spread into their neighbours, bigger distractors, and heavy
# grain. The grain is what leaves learnable room above the training-free cache: with a noise
# blend of 0.15-0.35, 16-shot Tip-Adapter already matched a linear probe trained on half of val
# and Tip-Adapter-F gained +0.5; at 0.3-0.5 it gains about +3 (issue 5, bench/world_probe.py).
BENCHMARK_RENDER = dict(clutter=3, jitter=40, distractor_scale=(0.12, 0.26), noise=(0.3, 0.5), blur=1.8)


def _seed(split: str, wnid: str, index: int, world_seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{world_seed}/{split}/{wnid}/{index}".encode()).digest()[:8], "big")


def _render_file(job) -> tuple[str, bytes]:
    relpath, shape, color, style, seed = job
    rng = random.Random(seed)
    img = render(shape, color, style, rng, size=rng.choice(SIZES), **BENCHMARK_RENDER)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return relpath, buf.getvalue()


def make_world(out: str | os.PathLike, world_seed: int = 0, workers: int = 2,
               per_class: dict | None = None) -> Path:
    """Write the dataset under ``out``: train/, val/, shift/sketch/, classnames.txt, label2class.json.

    ``per_class`` overrides images per class per split (e.g. ``{"val": 10}`` for a small fixture).
    Existing files are overwritten with identical bytes; nothing else in ``out`` is touched.
    """
    out = Path(out)
    counts = {split: n for split, (_, n) in SPLITS.items()} | (per_class or {})
    jobs = [(f"{split}/{wnid}/{wnid}_{i:04d}.jpg", shape, color, SPLITS[split][0],
             _seed(split, wnid, i, world_seed))
            for split in SPLITS for wnid, shape, color, _ in CLASSES for i in range(counts[split])]
    for wnid, *_ in CLASSES:
        for split in SPLITS:
            (out / split / wnid).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        for relpath, data in (pool.map(_render_file, jobs, chunksize=64) if pool else map(_render_file, jobs)):
            (out / relpath).write_bytes(data)
    (out / "classnames.txt").write_text("".join(f"{w} {name}\n" for w, _, _, name in CLASSES))
    (out / "label2class.json").write_text(json.dumps({str(i): w for i, (w, *_) in enumerate(CLASSES)},
                                                     indent=0) + "\n")
    return out


def tree_digest(root: str | os.PathLike) -> str:
    """SHA-256 over every file's relative path and bytes, in sorted order (for determinism tests)."""
    root = Path(root)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
