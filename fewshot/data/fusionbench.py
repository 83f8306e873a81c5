"""FusionBench's image-classification tasks, read from a local export of one task folder.

FusionBench loads each task with ``datasets.load_dataset(<hub name>, split=...)`` (its
``config/dataset/image_classification/{train,test}/<task>.yaml``); every row has an ``image`` and
a ``label`` column (that folder's ``README.md:5``). A task folder ``<task>/`` is read in any of:

    parquet      the Hub's files (``data/<split>-00000-of-00002.parquet``, ...)
    arrow        ``save_to_disk``'s (``dataset_dict.json``, ``<split>/data-*.arrow``)
    imagefolder  ``<split>/<class name or label>/*.png|jpg``

(parquet and arrow through :mod:`fewshot.data.hf_files`, with pyarrow where it is installed).

Class names come from FusionBench's lists for its eight tasks (``fusionbench_tasks.json``, copied
from its ``fusion_bench/tasks/clip_classification/*.py`` at the commit named there; index =
label), else from the files' ``ClassLabel`` names or the class folders' names. FusionBench's
``train`` split is read as train, ``test`` (or another split, such as a corruption) as the test
set. Nothing is decoded: images are handed on as their files' bytes;
:mod:`fewshot.world.fusionbench_import` writes them in the course layout.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from fewshot.base.errors import DatasetError
from fewshot.data.datasets import list_images
from fewshot.data.hf_files import find_table_files, iter_rows, read_labels, row_origin

__all__ = ["list_fusionbench_tasks", "fusionbench_task", "TaskSource", "SourceImage", "is_task_folder",
           "find_tasks", "read_task", "iter_images", "fingerprint"]

_TABLE = Path(__file__).with_name("fusionbench_tasks.json")


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(_TABLE.read_text(encoding="utf-8"))["tasks"]


def list_fusionbench_tasks() -> list[str]:
    """FusionBench's eight CLIP tasks, in its order (``the_eight_tasks.yaml``)."""
    return list(_table())


def _key(name: str) -> str | None:
    key = name.strip().lower().rsplit("/", 1)[-1].replace("-", "_")
    return key if key in _table() else None


def fusionbench_task(name: str) -> dict | None:
    """The table entry (hub name, config, class names) of a folder or Hub name such as
    ``stanford-cars``, ``tanganke/stanford_cars`` or ``SUN397``; None for other tasks."""
    key = _key(name)
    return _table()[key] if key else None


@dataclass
class SourceImage:
    """One image of a source split, as its file's bytes."""

    label: int  # FusionBench's label (index into TaskSource.classnames)
    name: str  # file name to write: the image file's own, or "<split>_<row>.<ext>" for a table row
    data: bytes
    origin: str  # where it came from, for errors: "<file> row 12" or the image file


@dataclass
class TaskSource:
    """A task folder as read: its layout, source files per split and class names."""

    root: Path
    layout: str  # "parquet", "arrow" or "imagefolder"
    splits: dict[str, list[Path]]  # split -> its parquet/arrow files, or its class folders
    classnames: list[str]  # index = label
    counts: dict[str, list[int]] = field(default_factory=dict)  # split -> images per label
    folder_labels: dict[str, int] = field(default_factory=dict)  # imagefolder: class folder -> label


def _subfolders(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def is_task_folder(root: Path) -> bool:
    """Whether ``root`` looks like one task's export (parquet, arrow or image folders)."""
    root = Path(root)
    return ((root / "dataset_dict.json").is_file() or (root / "train").is_dir() or
            any(root.glob("*.parquet")) or any(root.glob("*/*.parquet")) or any(root.glob("*/*/0000.parquet")))


def find_tasks(src: str | os.PathLike) -> list[Path]:
    """The task folders of ``src``: ``src`` itself when it is one, else its sub-folders that are,
    FusionBench's eight first in its order, the others by name."""
    src = Path(src)
    if not src.is_dir():
        raise DatasetError(f"{src} is not a folder; point --src at a folder of FusionBench task exports.")
    if is_task_folder(src):
        return [src]
    tasks = [src / d for d in _subfolders(src) if is_task_folder(src / d)]
    if not tasks:
        raise DatasetError(f"{src}: no FusionBench task exports in it (data/<split>-*.parquet, "
                           f"dataset_dict.json or train/<class>/ in a sub-folder per task).")
    order = list_fusionbench_tasks()
    return sorted(tasks, key=lambda p: (order.index(_key(p.name)) if _key(p.name) else len(order), p.name))


def _folder_labels(root: Path, split_dirs: dict[str, Path], known: dict | None) -> tuple[dict[str, int], list[str]]:
    """Class folder -> label, and the class names, of an image-folder export."""
    folders = sorted({d for p in split_dirs.values() for d in _subfolders(p)})
    if not folders:
        raise DatasetError(f"{root}: no class folders under {', '.join(split_dirs)}/.")
    if all(d.isascii() and d.isdigit() for d in folders):  # folders named by label
        mapping = {d: int(d) for d in folders}
        names = known["classnames"] if known else [str(i) for i in range(max(mapping.values()) + 1)]
        return mapping, names
    if known is None:
        return {d: i for i, d in enumerate(folders)}, [d.replace("_", " ") for d in folders]
    norm = {_norm(n): i for i, n in enumerate(known["classnames"])}
    unknown = [d for d in folders if _norm(d) not in norm]
    if unknown:
        raise DatasetError(f"{root}: class folder(s) {', '.join(unknown[:5])} are not among FusionBench's "
                           f"class names for this task (e.g. {', '.join(known['classnames'][:3])}); name the "
                           f"folders by label or by FusionBench's class names.")
    return {d: norm[_norm(d)] for d in folders}, known["classnames"]


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


def _pick_splits(root: Path, available: list[str], test_split: str) -> tuple[str, str]:
    """(train split, test split); FusionBench reads ``validation`` where a task has no test split
    (its config/dataset/image_classification/README.md:6)."""
    test = test_split
    if test == "test" and "test" not in available and "validation" in available:
        test = "validation"
    missing = [s for s in ("train", test) if s not in available]
    if missing:
        raise DatasetError(f"{root}: no {' or '.join(repr(s) for s in missing)} split (found "
                           f"{', '.join(sorted(available)) or 'none'}); FusionBench's tasks have 'train' "
                           f"and 'test' (a corrupted test set is its own split: pass --test-split).")
    return "train", test


def read_task(root: str | os.PathLike, name: str | None = None, test_split: str = "test",
              config: str | None = None) -> TaskSource:
    """Read a task folder's layout, labels and class names and check them, before any image is
    copied: both splits present, every label a class index, every class in both splits or in
    neither. ``name`` (default: the folder's) picks FusionBench's class names."""
    root = Path(root)
    known = fusionbench_task(name or root.name)
    layout, files = find_table_files(root, config or (known or {}).get("config"))
    if not layout:
        if not (root / "train").is_dir():
            raise DatasetError(f"{root}: no FusionBench task export here: expected data/<split>-*.parquet, "
                               f"dataset_dict.json with <split>/data-*.arrow, or <split>/<class>/*.png.")
        layout = "imagefolder"
        files = {d: [root / d] for d in _subfolders(root)}
    splits = _pick_splits(root, list(files), test_split)
    src = TaskSource(root, layout, {s: files[s] for s in splits}, [])
    if layout == "imagefolder":
        src.folder_labels, src.classnames = _folder_labels(root, {s: files[s][0] for s in splits}, known)
        labels = {s: [src.folder_labels[d] for d in _subfolders(files[s][0]) for _ in list_images(files[s][0] / d)]
                  for s in splits}
    else:
        got = {s: read_labels(files[s]) for s in splits}
        labels = {s: got[s][0] for s in splits}
        names = next((got[s][1] for s in splits if got[s][1]), None)
        if known and names and len(names) != len(known["classnames"]):
            raise DatasetError(f"{files[splits[0]][0]}: its label feature has {len(names)} classes, FusionBench's "
                               f"{name or root.name} has {len(known['classnames'])}; is this the task's own export?")
        top = max((max(v, default=-1) for v in labels.values()), default=-1)
        src.classnames = known["classnames"] if known else names or [str(i) for i in range(top + 1)]
    _check_labels(src, labels)
    return src


def _check_labels(src: TaskSource, labels: dict[str, list[int]]) -> None:
    num = len(src.classnames)
    for split, ys in labels.items():
        bad = next(((i, y) for i, y in enumerate(ys) if not 0 <= y < num), None)
        if bad is not None:
            where = (row_origin(src.splits[split], bad[0]) if src.layout != "imagefolder" else
                     next(str(src.splits[split][0] / d) for d, y in src.folder_labels.items() if y == bad[1]))
            raise DatasetError(f"{where}: label {bad[1]} is out of range: the task has {num} classes "
                               f"(labels 0..{num - 1}).")
        src.counts[split] = [0] * num
        for y in ys:
            src.counts[split][y] += 1
    train, test = (src.counts[s] for s in src.splits)
    lone = [c for c in range(num) if (train[c] == 0) != (test[c] == 0)]
    if lone:
        c = lone[0]
        raise DatasetError(f"{src.root}: class {c} ({src.classnames[c]}) has {train[c]} train and {test[c]} "
                           f"test images; the course layout needs every class in both splits "
                           f"({len(lone)} class(es) are in only one).")


def iter_images(src: TaskSource, split: str) -> Iterator[SourceImage]:
    """The images of ``split`` in file (or sorted folder) order, as bytes; an image without bytes
    or of no known format raises :class:`DatasetError` naming the file and row."""
    if src.layout == "imagefolder":
        folder = src.splits[split][0]
        for d in _subfolders(folder):
            for f in list_images(folder / d):
                yield SourceImage(src.folder_labels[d], f, (folder / d / f).read_bytes(), str(folder / d / f))
        return
    rows = iter_rows(src.splits[split])
    for row, (label, data, suffix, origin) in enumerate(rows):
        yield SourceImage(label, f"{split}_{row:07d}{suffix}", data, origin)


def fingerprint(src: TaskSource) -> str:
    """SHA-256 of the source files' names, sizes and times and the class names: a changed source
    is imported again, an unchanged one is not."""
    files = [p for ps in src.splits.values() for p in ps]
    if src.layout == "imagefolder":
        files = sorted(f for p in files for f in p.rglob("*") if f.is_file())
    stats = [(str(f.relative_to(src.root)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return hashlib.sha256(json.dumps([src.layout, list(src.splits), src.classnames, stats]).encode()).hexdigest()
