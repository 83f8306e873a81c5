"""FusionBench's tasks in the course layout, so that ``merge_tasks=DIR`` reads them unchanged.

``python -m fewshot world import-fusionbench --src DIR --out DIR`` reads each task export under
``--src`` (:mod:`fewshot.data.fusionbench`: the Hub's parquet files, ``save_to_disk``'s arrow
files or image folders) and writes ``<out>/<task>/``:

    train/<id>/<split>_<row>.<ext>   FusionBench's train split (image folders keep their file names)
    val/<id>/...                     its test split (or ``--test-split``, e.g. a corruption)
    classnames.txt, label2class.json the course's files; ``<id>`` is ``n9`` + the label in 7 digits,
                                     so sorted ids keep FusionBench's label order

Images are copied as their bytes (never re-encoded). Each task is built beside its folder and
put in place with one rename (:func:`fewshot.world.course_format.publish`); its
``.fewshot-fusionbench`` marker records the source's fingerprint, so a second import of an
unchanged source leaves the folder as it is, and a folder this command did not write is refused
(or with ``force`` moved aside, never deleted).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from fewshot.base.errors import DatasetError
from fewshot.data.datasets import scan_dataset
from fewshot.data.fusionbench import find_tasks, fingerprint, iter_images, read_task
from fewshot.world.course_format import publish, write_metadata
from fewshot.world.guard import claim, start_building

__all__ = ["MARKER", "class_id", "import_fusionbench_task", "import_fusionbench"]

MARKER = ".fewshot-fusionbench"
COMMAND = "world import-fusionbench"
_VERSION = 1


def class_id(label: int) -> str:
    """The wnid-like folder name of a label: ``n9`` + 7 digits (ImageNet's wnids start ``n0`` or
    ``n1``, so the two never meet; sorted order is label order)."""
    return f"n9{label:07d}"


def _clean(name: str) -> str:
    """A class name as one line of classnames.txt (whitespace runs become one space)."""
    return " ".join(name.split())


def import_fusionbench_task(src: str | os.PathLike, out: str | os.PathLike, name: str | None = None,
                            test_split: str = "test", config: str | None = None, force: bool = False) -> Path:
    """Write the task export ``src`` as ``out/<name>/`` in the course layout (``name`` defaults to
    the folder's; it also picks FusionBench's class names). Every check of the source runs before
    any image is copied; a failed import leaves ``out/<name>`` as it was. Returns the task folder."""
    src = Path(src)
    name = name or src.name
    source = read_task(src, name, test_split, config)
    dest = Path(out) / name
    marker = json.dumps({"version": _VERSION, "name": name, "layout": source.layout,
                         "splits": list(source.splits), "source": fingerprint(source)})
    if (dest / MARKER).is_file() and (dest / MARKER).read_text(encoding="utf-8") == marker:
        return dest
    claim(dest, MARKER, COMMAND, force)
    present = [c for c in range(len(source.classnames)) if any(n[c] for n in source.counts.values())]
    tmp = start_building(dest, MARKER)
    try:
        for split, course in zip(source.splits, ("train", "val")):
            for folder in {class_id(c) for c in present}:
                (tmp / course / folder).mkdir(parents=True)
            for image in iter_images(source, split):
                (tmp / course / class_id(image.label) / image.name).write_bytes(image.data)
        write_metadata(tmp, [class_id(c) for c in present], [_clean(source.classnames[c]) or str(c) for c in present])
        _, problems = scan_dataset(tmp)
        if problems:
            raise DatasetError(f"{src}: the imported task does not read as a dataset: {problems[0]}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish(tmp, dest, MARKER, marker, COMMAND, force)


def import_fusionbench(src: str | os.PathLike, out: str | os.PathLike, tasks: list[str] | None = None,
                       test_split: str = "test", config: str | None = None, force: bool = False) -> list[Path]:
    """Import every task export under ``src`` (or ``src`` itself when it is one), or only the
    sub-folders named in ``tasks``, into ``out``; returns the task folders written."""
    src = Path(src)
    if tasks:
        missing = [t for t in tasks if not (src / t).is_dir()]
        if missing:
            raise DatasetError(f"{src}: no task folder {', '.join(missing)}; it holds "
                               f"{', '.join(p.name for p in find_tasks(src)) or 'none'}.")
        folders = [src / t for t in tasks]
    else:
        folders = find_tasks(src)
    Path(out).mkdir(parents=True, exist_ok=True)
    return [import_fusionbench_task(f, out, f.name, test_split, config, force) for f in folders]
