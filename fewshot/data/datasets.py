"""Datasets: the ``ImageNet-1K-16shot`` folder layout and the robustness sets, read and validated.

Layout of a dataset root::

    train/<wnid>/*.JPEG     at most 16 images per class (any number is accepted)
    val/<wnid>/*.JPEG       the test images (ImageNet's 50,000 val images)
    classnames.txt          "n01440764 tench" per line (names may repeat: ImageNet has two "crane")
    label2class.json        optional; {"label2class": {"0": "tench", ...}} (the course's form), a
                            flat {"0": ...} or a list; checked against classnames.txt
    unlabeled/*.jpg         optional; images without labels, flat (the task world's, for merging
                            rules adapted on unlabeled data): read by :func:`unlabeled_images` only

Class index = rank of the wnid in sorted order, everywhere. Items are ``(relative_path, label)``
with paths relative to the dataset root and '/'-separated, so manifests are portable.

Shifted test sets live in :mod:`fewshot.data.shifts`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from fewshot.base.errors import DatasetError
from fewshot.data.images import IMAGE_EXTENSIONS

__all__ = ["DatasetError", "ImageSet", "Dataset", "list_images", "read_classnames",
           "read_label2class", "scan_dataset", "load_dataset", "unlabeled_images", "class_counts",
           "check_shots"]

Item = tuple[str, int]  # (path relative to the dataset root, class index)


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


def _shown(name: str) -> str:
    """``name`` as it is, or quoted with its invisible characters escaped (a byte-order mark,
    zero-width or control characters, non-breaking spaces): ``'\\ufeffn01440764'``."""
    if name.isprintable():
        return name
    return "'" + "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in name) + "'"


def _name_list(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(_shown(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def read_classnames(path: Path) -> dict[str, str]:
    """Parse ``classnames.txt`` (``wnid name with spaces`` per line) into {wnid: name}; a bad line,
    a repeated wnid or an empty file raises :class:`DatasetError` naming the file and line."""
    names, problems = _parse_classnames(Path(path))
    if problems:
        raise DatasetError("\n".join(problems))
    return names


def _parse_classnames(path: Path) -> tuple[dict[str, str], list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        return {}, [f"{path}: not UTF-8 text ({err.reason}); use the classnames.txt that came with "
                    f"the dataset."]
    names: dict[str, str] = {}
    problems = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            problems.append(f"{path}:{lineno}: expected '<wnid> <class name>', got {line!r}.")
        elif parts[0] in names:
            problems.append(f"{path}:{lineno}: class {parts[0]} is listed twice.")
        else:
            names[parts[0]] = parts[1]
    if not names and not problems:
        problems.append(f"{path} is empty; use the classnames.txt that came with the dataset.")
    return names, problems


def read_label2class(path: Path) -> dict[int, str]:
    """``label2class.json`` as {label: class name or wnid}. Accepts the course's nested form
    ``{"label2class": {"0": "tench", ...}}``, a flat map ``{"0": ...}``, or a list; a value may
    be a ``[wnid, name]`` pair (its first element is used). Anything else raises
    :class:`DatasetError` naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        why = f"{err.msg} at line {err.lineno}" if isinstance(err, json.JSONDecodeError) else err.reason
        raise DatasetError(f"{path} is not valid JSON ({why}): the file is damaged or cut off. Use "
                           f"the label2class.json that came with the dataset, or delete it (it is "
                           f"optional).") from err
    if isinstance(data, dict) and list(data) == ["label2class"]:
        data = data["label2class"]  # the course's nested form
    if isinstance(data, list):
        data = {str(i): v for i, v in enumerate(data)}
    if not isinstance(data, dict) or not data:
        raise DatasetError(f"{path}: expected {{\"label2class\": {{\"0\": name, ...}}}}, a map "
                           f"{{\"0\": name, ...}} or a list, got {type(data).__name__}"
                           f"{' (empty)' if not data else ''}.")
    out = {}
    for key, value in data.items():
        value = value[0] if isinstance(value, (list, tuple)) and value else value
        if not (isinstance(key, str) and key.isascii() and key.isdigit()) or not isinstance(value, str):
            # "¹".isdigit() holds but int("¹") fails: labels are ASCII digits only
            shown = ascii(value) if len(ascii(value)) <= 60 else ascii(value)[:57] + "..."  # one readable line
            raise DatasetError(f"{path}: entry {ascii(key)}: {shown} is not 'label': 'class "
                               f"name' (labels are the digits 0-9, e.g. \"0\": \"tench\"). Use the "
                               f"label2class.json that came with the dataset, or delete it (it is optional).")
        out[int(key)] = value
    return out


def _label2class_problems(path: Path, wnids: list[str], names: list[str]) -> list[str]:
    try:
        mapping = read_label2class(path)
    except DatasetError as err:
        return [str(err)]
    if sorted(mapping) != list(range(len(wnids))):
        return [f"{path} has labels {_name_list([str(k) for k in sorted(mapping)], 5)} but the "
                f"dataset has {len(wnids)} classes (labels 0..{len(wnids) - 1}). Use the "
                f"label2class.json that came with this dataset."]
    wrong = [i for i, (w, n) in enumerate(zip(wnids, names)) if mapping[i] not in (w, n)]
    if wrong:
        i = wrong[0]
        return [f"{path}: {len(wrong)} label(s) disagree with classnames.txt in sorted wnid order; "
                f"e.g. label {i} is {mapping[i]!r}, but class {i} is {wnids[i]} ({names[i]}). This "
                f"suite indexes classes by sorted wnid, as the course's label2class.json does."]
    return []


def _read_split(root: Path, split: str, wnids: list[str], problems: list[str]) -> ImageSet:
    items: list[Item] = []
    for label, wnid in enumerate(wnids):
        folder = root / split / wnid
        files = list_images(folder) if folder.is_dir() else []
        if not files and folder.is_dir():
            problems.append(f"{folder}: class folder holds no images.")
        items += [(f"{split}/{wnid}/{f}", label) for f in files]
    return ImageSet(split, root, items, list(range(len(wnids))))


def scan_dataset(root: str | os.PathLike) -> tuple[Dataset | None, list[str]]:
    """Read ``root`` and list every layout problem at once: missing parts, train/val class
    mismatch, classnames.txt and label2class.json that do not fit the folders, empty classes.

    Returns ``(dataset, problems)``; ``dataset`` is None when there are no class folders to read.
    With problems, the dataset holds what could be read (for ``check-data``).
    """
    root = Path(root)
    problems = [f"{root}: missing {part}. Expected train/<wnid>/, val/<wnid>/ and classnames.txt "
                f"(run download_data.sh, or check the data path)."
                for part in ("train", "val", "classnames.txt") if not (root / part).exists()]
    train_cls = _class_dirs(root / "train") if (root / "train").is_dir() else []
    val_cls = _class_dirs(root / "val") if (root / "val").is_dir() else []
    if train_cls and val_cls and train_cls != val_cls:
        only_train = sorted(set(train_cls) - set(val_cls))
        only_val = sorted(set(val_cls) - set(train_cls))
        problems.append(f"{root}: train/ and val/ hold different classes. Only in train/: "
                        f"{_name_list(only_train) or 'none'}; only in val/: "
                        f"{_name_list(only_val) or 'none'}. Restore the missing folders.")
    wnids = sorted(set(train_cls) | set(val_cls))
    names: dict[str, str] = {}
    if (root / "classnames.txt").is_file():
        names, bad_lines = _parse_classnames(root / "classnames.txt")
        problems += bad_lines
        missing = [w for w in wnids if w not in names]
        extra = sorted(set(names) - set(wnids))
        if (missing or extra) and names:
            hidden = not all(n.isprintable() for n in missing + extra)
            problems.append(f"{root / 'classnames.txt'} does not match the class folders. Folders "
                            f"without a name: {_name_list(missing) or 'none'}; names without a "
                            f"folder: {_name_list(extra) or 'none'}." + (
                                " Names in quotes hold invisible characters, shown escaped (\\ufeff: "
                                "a byte-order mark; save the file as UTF-8 without one)." if hidden else ""))
    classnames = [names.get(w, w) for w in wnids]
    if (root / "label2class.json").exists() and wnids and len(names) == len(wnids):
        problems += _label2class_problems(root / "label2class.json", wnids, classnames)
    if not wnids:
        return None, problems
    train = _read_split(root, "train", wnids, problems)
    val = _read_split(root, "val", wnids, problems)
    return Dataset(root, wnids, classnames, train, val), problems


def load_dataset(root: str | os.PathLike) -> Dataset:
    """Read and validate a dataset root (see the module docstring for the layout); every layout
    problem is listed in one :class:`DatasetError`."""
    dataset, problems = scan_dataset(root)
    if problems:
        head = f"{root}: {len(problems)} problem(s) with the dataset:\n  " if len(problems) > 1 else ""
        raise DatasetError(head + "\n  ".join(problems))
    return dataset


def unlabeled_images(task_root: str | os.PathLike) -> list[Path]:
    """The images of ``task_root/unlabeled/`` (flat, no labels), sorted by name; [] when the
    dataset has no such folder. Sub-folders and hidden files are not read."""
    folder = Path(task_root) / "unlabeled"
    return [folder / f for f in list_images(folder) if (folder / f).is_file()] if folder.is_dir() else []


def class_counts(image_set: ImageSet, num_classes: int) -> list[int]:
    """Images per class: [C]."""
    counts = [0] * num_classes
    for _, label in image_set.items:
        counts[label] += 1
    return counts


def check_shots(dataset: Dataset, shots) -> list[str]:
    """Warnings for k-shot settings some classes cannot fill (each names the classes and their
    counts); :class:`DatasetError` when no class has k training images."""
    counts = class_counts(dataset.train, dataset.num_classes)
    most, warnings = max(counts), []
    for k in sorted(shots):
        if k > most:
            raise DatasetError(f"shots={k}: no class of {dataset.root / 'train'} has more than "
                               f"{most} training images, so a {k}-shot run would repeat a "
                               f"{most}-shot one. Use shots <= {most}.")
        short = [f"{dataset.wnids[c]} ({dataset.classnames[c]}): {n}" for c, n in enumerate(counts) if n < k]
        if short:
            warnings.append(f"shots={k}: {len(short)} class(es) hold fewer than {k} training images "
                            f"and use all they have: {_name_list(short, 5)}.")
    return warnings
