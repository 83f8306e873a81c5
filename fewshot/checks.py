"""Checks: is a dataset folder usable? Counts, class mismatches and every file that will not decode.

``python -m fewshot check-data DIR`` prints :meth:`DataReport.text` and exits non-zero when the
folder cannot be used. Grayscale, CMYK and palette images are usable (converted to RGB when read)
and are listed so the user knows.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from fewshot.datasets import DatasetError, load_dataset
from fewshot.images import inspect_image

__all__ = ["DataReport", "check_dataset"]


@dataclass
class DataReport:
    """What :func:`check_dataset` found."""

    root: str
    error: str = ""  # a layout problem (missing/extra classes, classnames): unusable
    counts: dict = field(default_factory=dict)  # split -> (classes, images)
    bad: list = field(default_factory=list)  # (path, reason) of files that do not decode
    converted: dict = field(default_factory=dict)  # mode ("L", "CMYK", "P", ...) -> paths

    @property
    def usable(self) -> bool:
        return not self.error and not self.bad

    def text(self) -> str:
        lines = [f"dataset: {self.root}"]
        if self.error:
            lines.append(f"UNUSABLE: {self.error}")
        for split, (classes, images) in self.counts.items():
            lines.append(f"  {split}: {classes} classes, {images} images")
        for mode, paths in sorted(self.converted.items()):
            lines.append(f"  {len(paths)} {mode} image(s), converted to RGB when read: "
                         + ", ".join(paths[:5]) + (" ..." if len(paths) > 5 else ""))
        if self.bad:
            lines.append(f"UNUSABLE: {len(self.bad)} file(s) cannot be decoded; re-download or "
                         f"delete them:")
            lines += [f"  {p}: {why}" for p, why in self.bad]
        lines.append("OK: the dataset can be used." if self.usable else "Fix the problems above.")
        return "\n".join(lines)


def check_dataset(root: str | os.PathLike, decode: bool = True, workers: int = 8,
                  progress: bool = True) -> DataReport:
    """Validate the layout of ``root`` and, with ``decode``, decode every image once."""
    report = DataReport(str(root))
    try:
        ds = load_dataset(root)
    except DatasetError as err:
        report.error = str(err)
        return report
    for s in (ds.train, ds.val):
        report.counts[s.name] = (len(set(s.labels)), len(s))
    if decode:
        paths = [Path(ds.root) / p for s in (ds.train, ds.val) for p in s.paths]
        with ThreadPoolExecutor(workers) as pool:
            infos = list(tqdm(pool.map(inspect_image, paths), total=len(paths), desc="decoding",
                              disable=not progress, leave=False))
        for info in infos:
            if not info.ok:
                report.bad.append((info.path, info.error))
            elif info.mode != "RGB":
                report.converted.setdefault(info.mode, []).append(info.path)
    return report
