"""Shifts: the robustness test sets (ImageNet-V2, -Sketch, -A, -R, and the mini-world's sketches),
read with the training classes' index.

Every set shares the 1000-class index: ImageNet-V2 has numeric folders ``0..999`` (sorted
numerically, not as strings), Sketch/A/R and the mini-world's shifted sets use wnid folders; a set
with fewer classes carries ``class_indices`` to mask the logits with (ImageNet-A/R: 200 of 1000).
"""
from __future__ import annotations

import os
from pathlib import Path

from fewshot.data.datasets import ImageSet, _class_dirs, _name_list, list_images
from fewshot.base.errors import DatasetError

__all__ = ["load_shift_set", "find_shift_sets", "list_shift_kinds"]

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
    if not items:  # an empty test set has no accuracy: refused before any work
        raise DatasetError(f"{root}: shifted test set {name or root.name!r} holds no images "
                           f"({len(dirs)} class folder(s)); fill it, or remove the folder"
                           f"{'' if name in (None, root.name) else ' or its shift_sets entry'}.")
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
