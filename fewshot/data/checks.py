"""Checks: is a dataset folder usable? Every problem in one pass: layout and every bad file.

``python -m fewshot check-data DIR`` prints :meth:`DataReport.text` and exits non-zero when the
folder cannot be used. Layout problems (missing or extra class folders, classnames.txt or
label2class.json that do not fit, shifted test sets that are empty or name unknown classes) and
files that will not decode are all listed, so one run tells the user everything to fix. Names with
invisible characters (a byte-order mark) are shown escaped. Grayscale, CMYK, palette and 16-bit
images are usable (converted to RGB when read), as are classes with fewer training images than
others; both are listed so the user knows. An ``unlabeled/`` folder (the task world's images
without labels) is counted and its images decoded too. Links that point outside the dataset, of an
image or of a class folder, are refused.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from fewshot.data.datasets import ImageSet, class_counts, scan_dataset, unlabeled_images
from fewshot.base.errors import DatasetError
from fewshot.data.images import header_problem, inspect_image
from fewshot.data.shifts import find_shift_sets, load_shift_set

__all__ = ["DataReport", "check_dataset"]


@dataclass
class DataReport:
    """What :func:`check_dataset` found."""

    root: str
    problems: list = field(default_factory=list)  # layout problems: each makes the data unusable
    counts: dict = field(default_factory=dict)  # split -> (classes, images)
    shifted: dict = field(default_factory=dict)  # shifted test set -> (classes, images)
    unlabeled: int = 0  # images in unlabeled/ (no labels: the task world's, for merging rules)
    bad: list = field(default_factory=list)  # (path, reason) of files that cannot be used
    converted: dict = field(default_factory=dict)  # mode ("L", "CMYK", "P", ...) -> paths
    notes: list = field(default_factory=list)  # usable but worth knowing (e.g. short classes)

    @property
    def usable(self) -> bool:
        return not self.problems and not self.bad

    def text(self) -> str:
        lines = [f"dataset: {self.root}"]
        lines += [f"UNUSABLE: {p}" for p in self.problems]
        for split, (classes, images) in self.counts.items():
            lines.append(f"  {split}: {classes} classes, {images} images")
        for name, (classes, images) in self.shifted.items():
            lines.append(f"  shifted test set {name}: {classes} classes, {images} images")
        if self.unlabeled:
            lines.append(f"  unlabeled: {self.unlabeled} images (no labels)")
        lines += [f"  note: {n}" for n in self.notes]
        for mode, paths in sorted(self.converted.items()):
            lines.append(f"  {len(paths)} {mode} image(s), converted to RGB when read: "
                         + ", ".join(paths[:5]) + (" ..." if len(paths) > 5 else ""))
        if self.bad:
            lines.append(f"UNUSABLE: {len(self.bad)} file(s) cannot be used; re-download or "
                         f"delete them:")
            lines += [f"  {p}: {why}" for p, why in self.bad]
        n = len(self.problems) + (1 if self.bad else 0)
        lines.append("OK: the dataset can be used." if self.usable else
                     f"Fix the {n} problem(s) above (all of them are listed).")
        return "\n".join(lines)


def _escapes(paths: list[Path], root: Path) -> dict[Path, Path]:
    """{path: the link that takes it out of ``root``} for each path that leaves it: an image
    linked out, or one inside a class folder (or split folder) linked out, named by the
    outermost such link. One ``realpath`` per folder, one ``lstat`` per image."""
    real_root, folders, out = Path(os.path.realpath(root)), {}, {}

    def link_out(folder: Path):
        if folder not in folders:
            parent = link_out(folder.parent) if folder != root and root in folder.parents else None
            leaves = not Path(os.path.realpath(folder)).is_relative_to(real_root)
            folders[folder] = parent or (folder if leaves else None)
        return folders[folder]

    for p in paths:
        via = link_out(p.parent) or (p if p.is_symlink() and not Path(
            os.path.realpath(p)).is_relative_to(real_root) else None)
        if via is not None:
            out[p] = via
    return out


def _shift_sets(ds, report: DataReport) -> list[ImageSet]:
    """The dataset's shifted test sets (``shift/<name>/`` and the ImageNet sets beside it); each
    one that cannot be read, or holds no images, is a layout problem."""
    sets = []
    for name, (path, kind) in sorted(find_shift_sets(ds.root).items()):
        try:
            sets.append(load_shift_set(path, kind, ds.wnids, name))
        except DatasetError as err:
            report.problems.append(str(err))
    return sets


def check_dataset(root: str | os.PathLike, decode: bool = True, workers: int = 8,
                  progress: bool = True) -> DataReport:
    """Validate the layout of ``root`` (its shifted test sets too) and, with ``decode``, decode
    every image once; links out of the dataset (of an image or of its folder) are refused."""
    report = DataReport(str(root))
    ds, report.problems = scan_dataset(root)
    if ds is None:
        return report
    shifts = _shift_sets(ds, report)
    for s in (ds.train, ds.val):
        report.counts[s.name] = (len(set(s.labels)), len(s))
    report.shifted = {s.name: (len(set(s.labels)), len(s)) for s in shifts}
    unlabeled = unlabeled_images(ds.root)
    report.unlabeled = len(unlabeled)
    if (Path(ds.root) / "unlabeled").is_dir() and not unlabeled:
        report.problems.append(f"{Path(ds.root) / 'unlabeled'} holds no images (flat *.jpg "
                               f"files, no class folders): fill it, or remove the folder.")
    counts = class_counts(ds.train, ds.num_classes)
    short = [f"{ds.wnids[c]}: {n}" for c, n in enumerate(counts) if 0 < n < max(counts)]
    if short:
        report.notes.append(f"{len(short)} class(es) hold fewer than {max(counts)} training images "
                            f"(k-shot runs use all they have): " + ", ".join(short[:10])
                            + (" ..." if len(short) > 10 else ""))
    paths, escapes, root = [], {}, Path(ds.root)
    for s in (ds.train, ds.val, *shifts):  # a set beside the dataset (../imagenet-v2) is its own
        files = [Path(s.root) / p for p in s.paths]
        escapes.update(_escapes(files, root if Path(s.root).is_relative_to(root) else Path(s.root)))
        paths += files
    escapes.update(_escapes(unlabeled, root))
    paths += unlabeled
    for via in dict.fromkeys(escapes.values()):  # a linked class folder: one line, not one per image
        report.bad.append((str(via), f"a link to {os.path.realpath(via)}, outside the dataset"))
    if decode:
        todo = [p for p in paths if p not in escapes]
        with ThreadPoolExecutor(workers) as pool:
            infos = list(tqdm(pool.map(inspect_image, todo), total=len(todo),
                              desc="check-data: decoding every image", disable=not progress,
                              leave=False))
        for info in infos:
            if not info.ok:
                report.bad.append((info.path, info.error))
            elif info.mode != "RGB":
                report.converted.setdefault(info.mode, []).append(info.path)
    else:  # no decode: the size limits still hold, read from each header (nothing decoded)
        todo = [p for p in paths if p not in escapes]
        with ThreadPoolExecutor(workers) as pool:
            report.bad += [(str(p), why) for p, why in zip(todo, pool.map(header_problem, todo)) if why]
    return report
