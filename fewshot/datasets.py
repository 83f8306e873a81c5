"""Datasets: the ``ImageNet-1K-16shot`` folder layout and the robustness sets, read and validated.

Layout of a dataset root::

    train/<wnid>/*.JPEG     at most 16 images per class (any number is accepted)
    val/<wnid>/*.JPEG       the test images (ImageNet's 50,000 val images)
    classnames.txt          "n01440764 tench" per line
    label2class.json        optional; checked against classnames.txt when present

Class index = rank of the wnid in sorted order, everywhere. Items are ``(relative_path, label)``
with paths relative to the dataset root and '/'-separated, so manifests are portable.

Shifted test sets (:func:`load_shift_set`) share the 1000-class index: ImageNet-V2 has numeric
folders ``0..999`` (sorted numerically), Sketch/A/R and the mini-world's shifted sets use wnid
folders; a set with fewer classes carries ``class_indices`` to mask the logits with.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from fewshot.images import IMAGE_EXTENSIONS

__all__ = ["DatasetError", "ImageSet", "Dataset", "list_images", "read_classnames",
           "load_dataset", "load_shift_set", "find_shift_sets", "list_shift_kinds"]

Item = tuple[str, int]  # (path relative to the dataset root, class index)


class DatasetError(ValueError):
    """A dataset folder that cannot be used; the message names the classes or files."""


@dataclass
class ImageSet:
    """Labelled images under ``root``; ``class_indices`` lists the classes present (sorted)."""

    name: str  # "train", "val", "imagenet-v2", ...
    root: Path  # paths in `items` are relative to this folder
    items: list[Item]  # (relative path, class index in the full class list)
    class_indices: list[int] = field(default_factory=list)  # classes that occur, sorted

    @property
    def paths(self) -> list[str]:
        return [p for p, _ in self.items]

    @property
    def labels(self) -> list[int]:
        return [y for _, y in self.items]

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Dataset:
    """A dataset root in the ImageNet-1K-16shot layout."""

    root: Path
    wnids: list[str]  # sorted; index = class label
    classnames: list[str]  # human-readable names, aligned with `wnids`
    train: ImageSet
    val: ImageSet

    @property
    def num_classes(self) -> int:
        return len(self.wnids)


def list_images(folder: Path) -> list[str]:
    """Image file names in ``folder``, sorted (never raw ``os.listdir`` order)."""
    return sorted(f for f in os.listdir(folder)
                  if Path(f).suffix.lower() in IMAGE_EXTENSIONS and not f.startswith("."))


def _class_dirs(folder: Path) -> list[str]:
    return sorted(d for d in os.listdir(folder) if (folder / d).is_dir() and not d.startswith("."))


def _name_list(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def read_classnames(path: Path) -> dict[str, str]:
    """Parse ``classnames.txt`` (``wnid name with spaces`` per line) into {wnid: name}."""
    names: dict[str, str] = {}
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise DatasetError(f"{path}:{lineno}: expected '<wnid> <class name>', got {line!r}.")
        if parts[0] in names:
            raise DatasetError(f"{path}:{lineno}: class {parts[0]} is listed twice.")
        names[parts[0]] = parts[1]
    return names


def _read_split(root: Path, split: str, wnids: list[str]) -> ImageSet:
    items: list[Item] = []
    for label, wnid in enumerate(wnids):
        files = list_images(root / split / wnid)
        if not files:
            raise DatasetError(f"{root / split / wnid}: class folder holds no images.")
        items += [(f"{split}/{wnid}/{f}", label) for f in files]
    return ImageSet(split, root, items, list(range(len(wnids))))


def _check_label2class(path: Path, wnids: list[str], names: list[str]) -> None:
    mapping = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(mapping, list):
        mapping = {str(i): v for i, v in enumerate(mapping)}
    if len(mapping) != len(wnids):
        raise DatasetError(f"{path} has {len(mapping)} entries but the dataset has {len(wnids)} "
                           f"classes. Use the label2class.json that came with this dataset.")
    for i, (wnid, name) in enumerate(zip(wnids, names)):
        value = mapping.get(str(i))
        value = value[0] if isinstance(value, (list, tuple)) else value
        if value not in (wnid, name):
            raise DatasetError(f"{path}: label {i} is {value!r}, but class {i} in sorted wnid order "
                               f"is {wnid} ({name}). This suite indexes classes by sorted wnid.")


def load_dataset(root: str | os.PathLike) -> Dataset:
    """Read and validate a dataset root; see the module docstring for the layout."""
    root = Path(root)
    for required in ("train", "val", "classnames.txt"):
        if not (root / required).exists():
            raise DatasetError(f"{root}: missing {required}. Expected train/<wnid>/, val/<wnid>/ and "
                               f"classnames.txt (run download_data.sh, or check the --data path).")
    train_cls, val_cls = _class_dirs(root / "train"), _class_dirs(root / "val")
    if train_cls != val_cls:
        only_train = sorted(set(train_cls) - set(val_cls))
        only_val = sorted(set(val_cls) - set(train_cls))
        raise DatasetError(f"{root}: train/ and val/ hold different classes. Only in train/: "
                           f"{_name_list(only_train) or 'none'}; only in val/: "
                           f"{_name_list(only_val) or 'none'}. Restore the missing folders.")
    names = read_classnames(root / "classnames.txt")
    missing = [w for w in train_cls if w not in names]
    extra = sorted(set(names) - set(train_cls))
    if missing or extra:
        raise DatasetError(f"{root / 'classnames.txt'} does not match the class folders. Folders "
                           f"without a name: {_name_list(missing) or 'none'}; names without a "
                           f"folder: {_name_list(extra) or 'none'}.")
    classnames = [names[w] for w in train_cls]
    if (root / "label2class.json").exists():
        _check_label2class(root / "label2class.json", train_cls, classnames)
    return Dataset(root, train_cls, classnames, _read_split(root, "train", train_cls),
                   _read_split(root, "val", train_cls))


# ----------------------------------------------------------------------------- shifted test sets
_SHIFT_KINDS = {
    "imagenet-v2": "numeric",  # folders 0..999 = class index
    "imagenet-sketch": "wnid",
    "imagenet-a": "wnid",  # 200 classes: mask logits
    "imagenet-r": "wnid",  # 200 classes: mask logits
    "wnid": "wnid",  # any folder of wnid sub-folders (the mini-world's shifted sets)
}


def list_shift_kinds() -> list[str]:
    """Layouts :func:`load_shift_set` understands."""
    return sorted(_SHIFT_KINDS)


def load_shift_set(root: str | os.PathLike, kind: str, wnids: list[str], name: str | None = None) -> ImageSet:
    """Read a shifted test set whose labels index ``wnids`` (the training classes, sorted).

    ``kind`` is one of :func:`list_shift_kinds`. Numeric folders (ImageNet-V2) are sorted as
    integers, not strings. Folders naming unknown classes raise :class:`DatasetError`.
    """
    root = Path(root)
    if kind not in _SHIFT_KINDS:
        raise DatasetError(f"Unknown shift-set kind {kind!r}; use one of {', '.join(list_shift_kinds())}.")
    if not root.is_dir():
        raise DatasetError(f"{root}: shifted test set not found (see download_data.sh).")
    dirs = _class_dirs(root)
    if _SHIFT_KINDS[kind] == "numeric":
        bad = [d for d in dirs if not d.isdigit() or int(d) >= len(wnids)]
        if bad:
            raise DatasetError(f"{root}: expected folders 0..{len(wnids) - 1}, found {_name_list(bad)}.")
        labelled = sorted((int(d), d) for d in dirs)
    else:
        index = {w: i for i, w in enumerate(wnids)}
        unknown = [d for d in dirs if d not in index]
        if unknown:
            raise DatasetError(f"{root}: class folders not among the {len(wnids)} training classes: "
                               f"{_name_list(unknown)}.")
        labelled = sorted((index[d], d) for d in dirs)
    items = [(f"{d}/{f}", label) for label, d in labelled for f in list_images(root / d)]
    return ImageSet(name or root.name, root, items, [label for label, _ in labelled])


def find_shift_sets(root: str | os.PathLike) -> dict[str, tuple[Path, str]]:
    """Shifted sets that belong to a dataset, as {name: (path, kind)}.

    Looked for in ``<root>/shift/<name>/`` (any folder; known names such as ``imagenet-v2`` get
    their layout, others are read as wnid sub-folders) and, for the ImageNet sets that
    ``download_data.sh`` fetches, beside the dataset: ``<root>/../imagenet-v2`` and so on.
    """
    root = Path(root)
    found = {}
    if (root / "shift").is_dir():
        found = {d: (root / "shift" / d, d if d in _SHIFT_KINDS else "wnid")
                 for d in _class_dirs(root / "shift")}
    for name in ("imagenet-v2", "imagenet-sketch", "imagenet-a", "imagenet-r"):
        if (root.parent / name).is_dir() and name not in found:
            found[name] = (root.parent / name, name)
    return found
