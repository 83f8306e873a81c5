"""An ImageNet-shaped synthetic dataset and an RN50-shaped random CLIP, for dress rehearsals.

Shapes, counts, sizes and layouts are ImageNet's (1,000 wnid classes, 16 train and 50 val JPEGs per
class at about 500×375 with varied aspect ratios, a few grayscale and CMYK files; ImageNet-V2 with
numeric folders, ImageNet-A/-R with 200 of the classes); the pictures are simple. Accuracy on it
means nothing: it finds crashes, NaNs, wrong shapes, memory and time problems.
"""
from __future__ import annotations

import json
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fewshot.world.render import COLORS, SHAPES, render

__all__ = ["ShapedSpec", "FULL", "SMOKE", "make_imagenet_shaped", "make_rn50_random"]

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
    odd_every: int = 500  # every n-th file is grayscale, every (n+1)-th CMYK


FULL = ShapedSpec()
SMOKE = ShapedSpec(classes=100, train=2, val=2, v2=1, subset_classes=20, a=1, r=1, scale=0.12)


def _write(job) -> None:
    path, seed, scale, mode = job
    rng = random.Random(seed)
    w, h = rng.choice(_SIZES)
    size = (max(32, int(w * scale)), max(32, int(h * scale)))
    img = render(rng.choice(SHAPES), rng.choice(list(COLORS)), rng.choice(("photo", "sketch")), rng, size=size)
    img.convert(mode).save(path, format="JPEG", quality=85)


def make_imagenet_shaped(out: str | os.PathLike, spec: ShapedSpec = FULL, workers: int | None = None) -> Path:
    """Write ``out/ImageNet-1K-16shot`` plus ``out/imagenet-v2``, ``out/imagenet-a``, ``out/imagenet-r``.

    The robustness sets sit beside the dataset, where :func:`fewshot.datasets.find_shift_sets`
    and ``download_data.sh`` put them. Returns the dataset root.
    """
    out = Path(out)
    wnids = [f"n{10000000 + 7919 * i:08d}" for i in range(spec.classes)]  # wnid-like, sorted
    subset = wnids[:: max(1, spec.classes // spec.subset_classes)][: spec.subset_classes]
    root = out / "ImageNet-1K-16shot"
    folders = {f"{root.name}/train/{w}": spec.train for w in wnids}
    folders |= {f"{root.name}/val/{w}": spec.val for w in wnids}
    folders |= {f"imagenet-v2/{i}": spec.v2 for i in range(spec.classes)}
    folders |= {f"imagenet-a/{w}": spec.a for w in subset}
    folders |= {f"imagenet-r/{w}": spec.r for w in subset}
    jobs, n = [], 0
    for folder, count in folders.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        for j in range(count):
            mode = "L" if n % spec.odd_every == 0 else "CMYK" if n % spec.odd_every == 1 else "RGB"
            jobs.append((out / folder / f"{Path(folder).name}_{j:05d}.JPEG", n, spec.scale, mode))
            n += 1
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        list(pool.map(_write, jobs, chunksize=256))
    (root / "classnames.txt").write_text("".join(f"{w} synthetic class {i}\n" for i, w in enumerate(wnids)))
    (root / "label2class.json").write_text(json.dumps({str(i): w for i, w in enumerate(wnids)}) + "\n")
    return root


def make_rn50_random(path: str | os.PathLike, seed: int = 0) -> str:
    """Save a randomly initialised RN50-shaped CLIP (1024-d, 224 px, 77 tokens) in OpenAI's
    format; returns its SHA-256."""
    import torch

    from fewshot.backbones import build_clip, save_checkpoint

    torch.manual_seed(seed)
    return save_checkpoint(build_clip(), path)
