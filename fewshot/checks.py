"""Checks: is a dataset folder usable? Every problem in one pass: layout and every bad file.

``python -m fewshot check-data DIR`` prints :meth:`DataReport.text` and exits non-zero when the
folder cannot be used. Layout problems (missing or extra class folders, classnames.txt or
label2class.json that do not fit) and files that will not decode are all listed, so one run tells
the user everything to fix. Grayscale, CMYK, palette and 16-bit images are usable (converted to
RGB when read), as are classes with fewer training images than others; both are listed so the
user knows. Links that point outside the dataset are refused.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from fewshot.datasets import class_counts, scan_dataset
from fewshot.images import header_problem, inspect_image

__all__ = ["DataReport", "check_dataset"]


@dataclass
class DataReport:
    """What :func:`check_dataset` found."""

    root: str
    problems: list = field(default_factory=list)  # layout problems: each makes the data unusable
    counts: dict = field(default_factory=dict)  # split -> (classes, images)
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


def _outside(path: Path, root: Path) -> bool:
    return path.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(root)


def check_dataset(root: str | os.PathLike, decode: bool = True, workers: int = 8,
                  progress: bool = True) -> DataReport:
    """Validate the layout of ``root`` and, with ``decode``, decode every image once."""
    report = DataReport(str(root))
    ds, report.problems = scan_dataset(root)
    if ds is None:
        return report
    for s in (ds.train, ds.val):
        report.counts[s.name] = (len(set(s.labels)), len(s))
    counts = class_counts(ds.train, ds.num_classes)
    short = [f"{ds.wnids[c]}: {n}" for c, n in enumerate(counts) if 0 < n < max(counts)]
    if short:
        report.notes.append(f"{len(short)} class(es) hold fewer than {max(counts)} training images "
                            f"(k-shot runs use all they have): " + ", ".join(short[:10])
                            + (" ..." if len(short) > 10 else ""))
    real_root = Path(os.path.realpath(ds.root))
    paths = [Path(ds.root) / p for s in (ds.train, ds.val) for p in s.paths]
    for p in paths:
        if _outside(p, real_root):
            report.bad.append((str(p), f"a link to {os.path.realpath(p)}, outside the dataset"))
    if decode:
        todo = [p for p in paths if not _outside(p, real_root)]
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
        todo = [p for p in paths if not _outside(p, real_root)]
        with ThreadPoolExecutor(workers) as pool:
            report.bad += [(str(p), why) for p, why in zip(todo, pool.map(header_problem, todo)) if why]
    return report
