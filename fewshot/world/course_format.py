"""The course's ``ImageNet-1K-16shot`` format, written exactly, for every dataset the project makes.

What the coursework shows of the real dataset, and what both generators therefore write:

- ``classnames.txt``: ``n01440764 tench`` per line, sorted by wnid; names may have several words
  and may repeat (ImageNet has two classes named "crane");
- ``label2class.json``: nested, label -> class *name*:
  ``{"label2class": {"0": "tench", "1": "goldfish", ...}}`` (read as ``json.load(f)['label2class']``);
- file names as ImageNet's: ``train/n01440764/n01440764_10026.JPEG``,
  ``val/n01440764/ILSVRC2012_val_00000293.JPEG`` (val numbers are a permutation over all classes);
- among the files: a PNG saved as ``.JPEG``, CMYK and grayscale JPEGs (ImageNet holds all three);
- "at most 16" training images per class: some classes hold fewer.

Every file gets the same fixed modification time, so a generated tree is byte- and stat-identical
on every machine and every run (feature-cache keys include sizes and times).
"""
from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path

from PIL import Image

from fewshot.base.atomic import atomic_write_text
from fewshot.world.guard import BUILDING_MARK, replace

__all__ = ["FIXED_MTIME", "train_name", "val_names", "encode_image", "write_metadata", "stamp", "publish"]

FIXED_MTIME = 1_331_856_000  # 2012-03-16 00:00 UTC, the ILSVRC2012 release


def train_name(wnid: str, index: int) -> str:
    """ImageNet's training file name for the index-th image of a class: ``n01440764_10026.JPEG``."""
    return f"{wnid}_{10026 + 37 * index}.JPEG"


def val_names(count: int, seed: int) -> list[str]:
    """``count`` val file names ``ILSVRC2012_val_%08d.JPEG`` whose numbers are a seeded
    permutation of 1..count (ImageNet's val numbers run across classes)."""
    numbers = list(range(1, count + 1))
    random.Random(f"val-names/{seed}").shuffle(numbers)
    return [f"ILSVRC2012_val_{n:08d}.JPEG" for n in numbers]


def encode_image(img: Image.Image, kind: str = "jpeg", quality: int = 90) -> bytes:
    """File bytes of ``img``: ``jpeg`` (RGB), ``gray`` or ``cmyk`` JPEG, or ``png`` (to be saved
    under a ``.JPEG`` name, as ImageNet's one PNG is)."""
    buf = io.BytesIO()
    if kind == "png":
        img.save(buf, format="PNG")
    else:
        mode = {"jpeg": "RGB", "gray": "L", "cmyk": "CMYK"}[kind]
        img.convert(mode).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_metadata(root: str | os.PathLike, wnids: list[str], names: list[str]) -> None:
    """``classnames.txt`` and the nested ``label2class.json`` for classes sorted by wnid."""
    root = Path(root)
    if list(wnids) != sorted(wnids):
        raise ValueError("wnids must be sorted: the label of a class is its rank")
    atomic_write_text(root / "classnames.txt", "".join(f"{w} {n}\n" for w, n in zip(wnids, names)))
    nested = {"label2class": {str(i): n for i, n in enumerate(names)}}
    atomic_write_text(root / "label2class.json", json.dumps(nested, ensure_ascii=False))


def stamp(root: str | os.PathLike) -> None:
    """Give every file and folder under ``root`` the fixed modification time."""
    for path in sorted(Path(root).rglob("*"), reverse=True):
        os.utime(path, (FIXED_MTIME, FIXED_MTIME))
    os.utime(root, (FIXED_MTIME, FIXED_MTIME))


def publish(tmp: str | os.PathLike, out: str | os.PathLike, marker_name: str, marker: str,
            command: str, force: bool = False) -> Path:
    """Finish a folder built in ``tmp`` (:func:`fewshot.world.guard.start_building`): write its
    marker file, fix every time stamp, and put it in place of ``out`` with one rename (a kill
    before it leaves ``out`` as it was); an old ``out`` holding files the new tree does not
    write again is refused, never deleted (:func:`fewshot.world.guard.replace`)."""
    tmp, out = Path(tmp), Path(out)
    (tmp / BUILDING_MARK).unlink(missing_ok=True)
    (tmp / marker_name).write_text(marker)
    stamp(tmp)
    replace(tmp, out, command, force, FIXED_MTIME)
    return out
