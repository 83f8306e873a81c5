"""An ImageNet-shaped synthetic dataset and an RN50-shaped random CLIP, for dress rehearsals.

Shapes, counts, sizes and layouts are ImageNet's (1,000 wnid classes, at most 16 train and 50 val
JPEGs per class at about 500×375 with varied aspect ratios; ImageNet-V2 with numeric folders,
ImageNet-A/-R with 200 of the classes), in the course's exact format
(:mod:`fewshot.world.course_format`: ``.JPEG`` names, nested ``label2class.json``, multi-word
class names with one name used twice, a PNG, CMYK and grayscale files among the JPEGs, a few
classes with fewer than 16 training images); the pictures are simple. Accuracy on it means
nothing: it finds crashes, NaNs, wrong shapes, memory and time problems.
"""
from __future__ import annotations

import hashlib
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fewshot.world.course_format import encode_image, stamp, train_name, val_names, write_metadata
from fewshot.world.guard import claim
from fewshot.world.render import COLORS, SHAPES, render

__all__ = ["ShapedSpec", "FULL", "SMOKE", "make_imagenet_shaped", "make_rn50_random"]

MARKER = ".fewshot-imagenet-shaped"  # in --out: the folder is this generator's
_SIZES = ((500, 375), (375, 500), (500, 333), (500, 400), (640, 480), (333, 500))


@dataclass(frozen=True)
class ShapedSpec:
    """Counts and sizes of an ImageNet-shaped tree."""

    classes: int = 1000
    train: int = 16  # per class
    val: int = 50  # per class
    v2: int = 10  # per class (ImageNet-V2 matched-frequency: 10,000 images)
    subset_classes: int = 200  # ImageNet-A / -R classes
    a: int = 37  # per subset class (ImageNet-A: 7,500 images)
    r: int = 150  # per subset class (ImageNet-R: 30,000 images)
    scale: float = 1.0  # image size factor (1.0: ImageNet-like, ~500×375)
    odd_every: int = 500  # every n-th file is grayscale, every (n+1)-th CMYK, every (n+2)-th a PNG
    short_every: int = 97  # every n-th class holds fewer training images (16 - 1..3)


FULL = ShapedSpec()
SMOKE = ShapedSpec(classes=100, train=2, val=2, v2=1, subset_classes=20, a=1, r=1, scale=0.12)


def _write(job) -> None:
    path, seed, scale, kind = job
    rng = random.Random(seed)
    w, h = rng.choice(_SIZES)
    size = (max(32, int(w * scale)), max(32, int(h * scale)))
    img = render(rng.choice(SHAPES), rng.choice(list(COLORS)), rng.choice(("photo", "sketch")), rng, size=size)
    Path(path).write_bytes(encode_image(img, kind, quality=85))


def _names(folder: str, count: int, spec: ShapedSpec, val_order: list, index: dict) -> list[str]:
    """File names in a folder, as the real set names them."""
    top, *rest = folder.split("/")
    name = folder.rsplit("/", 1)[-1]
    if rest and rest[0] == "train":
        return [train_name(name, j) for j in range(count)]
    if rest and rest[0] == "val":
        start = index[name] * spec.val
        return val_order[start:start + count]
    if top == "imagenet-v2":  # V2 names files by a content hash
        return [hashlib.sha1(f"{folder}/{j}".encode()).hexdigest() + ".jpeg" for j in range(count)]
    return [f"{top.split('-')[1]}_{j}.jpg" for j in range(count)]  # A: a_0.jpg, R: r_0.jpg


def _earlier_tree(out: Path) -> bool:
    """A tree an earlier version of this generator wrote (before the marker file)."""
    names = out / "ImageNet-1K-16shot" / "classnames.txt"
    return names.is_file() and names.read_text(errors="replace").startswith("n10000000 synthetic class 0\n")


def make_imagenet_shaped(out: str | os.PathLike, spec: ShapedSpec = FULL, workers: int | None = None,
                         force: bool = False) -> Path:
    """Write ``out/ImageNet-1K-16shot`` plus ``out/imagenet-v2``, ``out/imagenet-a``, ``out/imagenet-r``.

    The robustness sets sit beside the dataset, where :func:`fewshot.data.datasets.find_shift_sets`
    and ``download_data.sh`` put them. ``out`` gets the ``.fewshot-imagenet-shaped`` marker
    first; a non-empty folder without it is refused (``force``: moved aside, never deleted).
    Returns the dataset root.
    """
    out = claim(out, MARKER, "world make-imagenet-shaped", force, ours=_earlier_tree)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("")
    wnids = [f"n{10000000 + 7919 * i:08d}" for i in range(spec.classes)]  # wnid-like, sorted
    subset = wnids[:: max(1, spec.classes // spec.subset_classes)][: spec.subset_classes]
    names = [f"synthetic class {i}" for i in range(spec.classes)]
    names[spec.classes // 2] = names[spec.classes // 2 + 1] = "crane"  # as ImageNet's two cranes
    root = out / "ImageNet-1K-16shot"
    folders = {f"{root.name}/train/{w}": max(1, spec.train - (i % 3 + 1 if i % spec.short_every == 5 else 0))
               for i, w in enumerate(wnids)}
    folders |= {f"{root.name}/val/{w}": spec.val for w in wnids}
    folders |= {f"imagenet-v2/{i}": spec.v2 for i in range(spec.classes)}
    folders |= {f"imagenet-a/{w}": spec.a for w in subset}
    folders |= {f"imagenet-r/{w}": spec.r for w in subset}
    val_order, index = val_names(spec.classes * spec.val, 0), {w: i for i, w in enumerate(wnids)}
    jobs, n = [], 0
    for folder, count in folders.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        for name in _names(folder, count, spec, val_order, index):
            kind = {0: "gray", 1: "cmyk", 2: "png"}.get(n % spec.odd_every, "jpeg")
            jobs.append((out / folder / name, n, spec.scale, kind))
            n += 1
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        list(pool.map(_write, jobs, chunksize=256))
    write_metadata(root, wnids, names)
    for top in {f.split("/")[0] for f in folders}:
        stamp(out / top)
    return root


def make_rn50_random(path: str | os.PathLike, seed: int = 0) -> str:
    """Save a randomly initialised RN50-shaped CLIP (1024-d, 224 px, 77 tokens) in OpenAI's
    format; returns its SHA-256."""
    import torch

    from fewshot.models.backbones import build_clip, save_checkpoint

    torch.manual_seed(seed)
    return save_checkpoint(build_clip(), path)
