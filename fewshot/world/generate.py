"""The mini-world dataset: 100 classes in the ImageNet-1K-16shot layout, plus a "sketch" shift.

Like ImageNet, half the class names are words the pretraining corpus never uses (the colour
names below): zero-shot CLIP cannot read them and must be helped by the few shots. Pixels are
rendered by :mod:`fewshot.world.render`; each image has its own seed derived from (split, class,
index), so the tree is byte-identical on every run and independent of the number of workers.
Files, names and metadata follow the course's ``ImageNet-1K-16shot`` exactly
(:mod:`fewshot.world.course_format`): ``.JPEG`` names, a nested ``label2class.json``, one class
name used twice (as ImageNet's two "crane"s: here the purple squares are called "purple
diamond", like the purple diamonds), a PNG, CMYK and grayscale files among the JPEGs, and three
classes with fewer than 16 training images.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from fewshot.world.course_format import encode_image, publish, train_name, val_names, write_metadata
from fewshot.world.guard import claim, start_building
from fewshot.world.render import COLORS, SHAPES, render

__all__ = ["CLASSES", "OBSCURE_NAMES", "SHORT_CLASSES", "ODD_FILES", "make_world", "tree_digest"]

# Colours whose class names the corpus never uses (the corpus says "orange", the class "tenne").
OBSCURE_NAMES = {"orange": "tenne", "cyan": "smalt", "pink": "amaranth", "brown": "umber",
                 "gray": "taupe"}
# (wnid, shape, colour, class name), sorted by wnid = class index.
_SAME_NAME = {("square", "purple"): "purple diamond"}  # the world's "crane": one name, two classes
CLASSES = [(f"n{90000000 + 10 * si + ci:08d}", shape, color,
            _SAME_NAME.get((shape, color), f"{OBSCURE_NAMES.get(color, color)} {shape}"))
           for si, shape in enumerate(SHAPES) for ci, color in enumerate(COLORS)]
SHORT_CLASSES = {7: 12, 42: 14, 77: 15}  # class index -> training images ("at most 16")
# (split, class index, image index) -> how the file is stored; image indices >= 5 in val keep
# the checkpoint's reference subset (the first 5 val images per class) plain JPEGs.
ODD_FILES = {("train", 3, 1): "png", ("train", 17, 2): "cmyk", ("train", 29, 3): "gray",
             ("val", 5, 7): "png", ("val", 11, 8): "cmyk", ("val", 23, 9): "gray",
             ("shift/sketch", 31, 6): "gray"}
_VERSION = 2  # of the file layout; part of the marker that lets `world make` skip a current tree
SIZES = ((96, 96), (112, 96), (96, 112), (128, 96))
SPLITS = {"train": ("photo", 16), "val": ("photo", 50), "shift/sketch": ("sketch", 50)}
# The benchmark's photos are harder than the pretraining corpus's (as ImageNet is harder than
# captioned web images): colours spread into their neighbours, bigger distractors, and heavy
# grain. The grain is what leaves learnable room above the training-free cache: with a noise
# blend of 0.15-0.35, 16-shot Tip-Adapter already matched a linear probe trained on half of val
# and Tip-Adapter-F gained +0.5; at 0.3-0.5 it gains about +3 (measured with bench/world_probe.py).
BENCHMARK_RENDER = dict(clutter=3, jitter=40, distractor_scale=(0.12, 0.26), noise=(0.3, 0.5), blur=1.8)


def _seed(split: str, wnid: str, index: int, world_seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{world_seed}/{split}/{wnid}/{index}".encode()).digest()[:8], "big")


def _render_file(job) -> tuple[str, bytes]:
    relpath, shape, color, style, seed, kind = job
    rng = random.Random(seed)
    img = render(shape, color, style, rng, size=rng.choice(SIZES), **BENCHMARK_RENDER)
    return relpath, encode_image(img, kind, quality=90)


def _file_name(split: str, c: int, i: int, count: int, val_order: list[str]) -> str:
    wnid = CLASSES[c][0]
    if split == "train":
        return train_name(wnid, i)
    if split == "val":
        return val_order[c * count + i]
    return f"sketch_{i}.JPEG"


def _jobs(counts: dict, world_seed: int) -> list[tuple]:
    val_order = val_names(len(CLASSES) * counts["val"], world_seed)
    jobs = []
    for split in SPLITS:
        for c, (wnid, shape, color, _) in enumerate(CLASSES):
            n = min(counts[split], SHORT_CLASSES.get(c, counts[split])) if split == "train" else counts[split]
            for i in range(n):
                name = _file_name(split, c, i, counts[split], val_order)
                jobs.append((f"{split}/{wnid}/{name}", shape, color, SPLITS[split][0],
                             _seed(split, wnid, i, world_seed), ODD_FILES.get((split, c, i), "jpeg")))
    return jobs


def _older_world(out: Path) -> bool:
    """A mini-world written by an earlier version of this generator (no marker file)."""
    names = out / "classnames.txt"
    return names.is_file() and names.read_text(errors="replace").startswith(f"{CLASSES[0][0]} ")


def make_world(out: str | os.PathLike, world_seed: int = 0, workers: int = 2,
               per_class: dict | None = None, force: bool = False) -> Path:
    """Write the dataset under ``out``: train/, val/, shift/sketch/, classnames.txt, label2class.json.

    ``per_class`` overrides images per class per split (e.g. ``{"val": 10}`` for a small fixture;
    :data:`SHORT_CLASSES` still cap their training images). The tree is built beside ``out`` and
    swapped in whole; a tree this generator already wrote with the same settings is kept as it
    is. A folder that the generator did not write is refused (``force``: moved aside, never
    deleted), and so is a generated one holding files the generator does not write.
    """
    out = Path(out)
    counts = {split: n for split, (_, n) in SPLITS.items()} | (per_class or {})
    marker = json.dumps({"version": _VERSION, "seed": world_seed, "counts": counts}, sort_keys=True)
    jobs = _jobs(counts, world_seed)
    if (out / ".fewshot-world").exists():
        files = sum(1 for p in out.rglob("*") if p.is_file())
        if (out / ".fewshot-world").read_text() == marker and files == len(jobs) + 3:
            return out  # current and complete (the images, two metadata files, the marker)
    claim(out, ".fewshot-world", "world make", force, ours=_older_world)
    tmp = start_building(out, ".fewshot-world")
    for wnid, *_ in CLASSES:
        for split in SPLITS:
            (tmp / split / wnid).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        for relpath, data in (pool.map(_render_file, jobs, chunksize=64) if pool else map(_render_file, jobs)):
            (tmp / relpath).write_bytes(data)
    write_metadata(tmp, [c[0] for c in CLASSES], [c[3] for c in CLASSES])
    return publish(tmp, out, ".fewshot-world", marker, "world make", force)


def tree_digest(root: str | os.PathLike) -> str:
    """SHA-256 over every file's relative path and bytes, in sorted order (for determinism tests)."""
    root = Path(root)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
