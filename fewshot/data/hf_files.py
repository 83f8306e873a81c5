"""Hugging Face ``datasets`` files on disk, read with ``pyarrow`` where it is installed.

Two layouts of one dataset folder ``<root>/``:

    parquet  the Hub's, as ``huggingface-cli download <name> --repo-type dataset --local-dir <root>``
             writes it: ``data/<split>-00000-of-00002.parquet``; ``<config>/<split>-*.parquet`` for
             a dataset with configs; ``<config>/<split>/0000.parquet`` on the Hub's converted
             branch; a bare ``<split>.parquet``
    arrow    ``DatasetDict.save_to_disk``'s: ``dataset_dict.json`` and ``<split>/data-*.arrow``
             (Arrow IPC streams)

Rows hold an ``image`` struct ``{bytes, path}`` (the ``Image`` feature) and an integer ``label``;
the ``ClassLabel`` names, when the files carry them, are in the schema's ``huggingface`` metadata.
``pyarrow`` is not a dependency of the suite: without it, every reader raises one
:class:`~fewshot.base.errors.DatasetError` that says ``pip install pyarrow``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

from fewshot.base.errors import DatasetError
from fewshot.data.images import IMAGE_EXTENSIONS

__all__ = ["require_pyarrow", "find_table_files", "read_labels", "row_origin", "iter_rows", "image_suffix"]

_HUB_SHARD = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)-\d{5}-of-\d{5}\.parquet$")
_MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"),
          (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"))
PIP = "pip install pyarrow"


def require_pyarrow():
    """The ``pyarrow`` module with its parquet and ipc readers, or one :class:`DatasetError`."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as err:
        raise DatasetError(f"reading parquet or arrow files (a Hugging Face datasets export) needs "
                           f"pyarrow, which is not installed: `{PIP}` (or export the task as image "
                           f"folders, <task>/{{train,test}}/<class>/*.png).") from err
    return pyarrow


def _parquet_split(root: Path, path: Path) -> tuple[str, str]:
    """(config, split) of a parquet file by where the Hub puts it."""
    rel = path.relative_to(root).parts
    hub = _HUB_SHARD.match(path.name)
    if hub:  # data/train-00000-of-00002.parquet, cropped_digits/test-00000-of-00001.parquet
        return "/".join(rel[:-1]) or "default", hub["split"]
    if len(rel) == 1 or rel[-2] == "data":  # train.parquet, data/train.parquet
        return "/".join(rel[:-1]) or "default", path.stem
    return "/".join(rel[:-2]) or "default", rel[-2]  # default/train/0000.parquet


def find_table_files(root: Path, config: str | None) -> tuple[str, dict[str, list[Path]]]:
    """("parquet" | "arrow" | "", {split: files}) of ``root``; several parquet configs need ``config``."""
    if (root / "dataset_dict.json").is_file():
        try:
            names = json.loads((root / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        except (ValueError, KeyError, TypeError) as err:
            raise DatasetError(f"{root / 'dataset_dict.json'} is not the file save_to_disk writes "
                               f"({{\"splits\": [...]}}); save the dataset again.") from err
        files = {s: sorted((root / s).glob("data-*.arrow")) for s in names}
        return "arrow", {s: f for s, f in files.items() if f}
    found: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(root.rglob("*.parquet")):
        if not any(part.startswith(".") for part in path.relative_to(root).parts):
            conf, split = _parquet_split(root, path)
            found.setdefault(conf, {}).setdefault(split, []).append(path)
    if len(found) > 1:
        if config not in found:
            raise DatasetError(f"{root} holds the parquet files of several configs ({', '.join(sorted(found))}); "
                               f"choose one with --hub-config.")
        return "parquet", found[config]
    return ("parquet", next(iter(found.values()))) if found else ("", {})


def _label_names(schema) -> list[str] | None:
    """The ``ClassLabel`` names the ``datasets`` library stores in a file's schema, if any."""
    raw = (schema.metadata or {}).get(b"huggingface")
    try:
        label = json.loads(raw)["info"]["features"]["label"] if raw else {}
    except (ValueError, KeyError, TypeError):
        return None
    names = label.get("names") if isinstance(label, dict) else None
    return [str(n) for n in names] if isinstance(names, list) and names else None


def _open_table(pa, path: Path, columns: list[str] | None = None):
    """(schema, generator of record batches) of a parquet or arrow file; a damaged file raises
    :class:`DatasetError` naming it, when it is opened or while it is read."""
    def fail(err):
        return DatasetError(f"{path}: not a readable {path.suffix[1:]} file ({err}); download it again.")

    try:
        if path.suffix == ".parquet":
            f = pa.parquet.ParquetFile(path)
            schema, batches = f.schema_arrow, f.iter_batches(batch_size=256, columns=columns)
        else:
            reader = pa.ipc.open_stream(pa.memory_map(str(path)))
            schema, batches = reader.schema, iter(reader)
    except (OSError, pa.ArrowException) as err:
        raise fail(err) from err
    if "image" not in schema.names or "label" not in schema.names:
        raise DatasetError(f"{path}: FusionBench's tasks have columns 'image' and 'label' (its "
                           f"config/dataset/image_classification/README.md); this file has "
                           f"{', '.join(schema.names) or 'none'}.")

    def read():
        try:
            yield from batches
        except (OSError, pa.ArrowException) as err:
            raise fail(err) from err
    return schema, read()


def read_labels(files: list[Path]) -> tuple[list[int], list[str] | None]:
    """Every label of a split's files, in order (only the label column is read from parquet), and
    the files' ``ClassLabel`` names (None where they carry none)."""
    pa, labels, names = require_pyarrow(), [], None
    for path in files:
        schema, batches = _open_table(pa, path, ["label"])
        names, start = names or _label_names(schema), len(labels)
        for batch in batches:
            got = batch.column(batch.schema.get_field_index("label")).to_pylist()
            bad = next((i for i, y in enumerate(got) if not isinstance(y, int)), None)
            if bad is not None:  # (a bool is an int: FusionBench reads True as 1, image_dataset.py:79)
                raise DatasetError(f"{path} row {len(labels) - start + bad}: label {got[bad]!r} is not a "
                                   f"class index.")
            labels += [int(y) for y in got]
    return labels, names


def row_origin(files: list[Path], row: int) -> str:
    """``<file> row <n>`` for the row-th row of a split (counted over its files); files are
    reopened only to count their rows, on the error path."""
    pa = require_pyarrow()
    for path in files:
        n = sum(b.num_rows for b in _open_table(pa, path, ["label"])[1])
        if row < n:
            return f"{path} row {row}"
        row -= n
    return f"{files[-1]} row {row}"


def image_suffix(data: bytes, path: str | None) -> str | None:
    """The file suffix of an image: its stored path's, else the one its first bytes say."""
    suffix = Path(path or "").suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return suffix
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((ext for magic, ext in _MAGIC if data.startswith(magic)), None)


def iter_rows(files: list[Path]) -> Iterator[tuple[int, bytes, str, str]]:
    """``(label, image bytes, suffix, origin)`` of every row of a split's files, in order;
    ``origin`` is ``<file> row <n>``. A row without image bytes, or whose bytes are of no known
    image format, raises :class:`DatasetError` naming its file and row."""
    pa = require_pyarrow()
    for path in files:
        row = 0
        for batch in _open_table(pa, path)[1]:
            images = batch.column(batch.schema.get_field_index("image"))
            labels = batch.column(batch.schema.get_field_index("label")).to_pylist()
            if pa.types.is_struct(images.type):
                datas, paths = images.field("bytes").to_pylist(), images.field("path").to_pylist()
            else:  # a plain binary column
                datas, paths = images.to_pylist(), [None] * len(labels)
            for data, name, y in zip(datas, paths, labels):
                if data is None and name and Path(name).is_absolute() and Path(name).is_file():
                    data = Path(name).read_bytes()  # an Image feature that kept only its file's path
                suffix = image_suffix(data, name) if isinstance(data, bytes) and data else None
                if suffix is None:
                    why = "has no bytes" if not data else "is of no known image format"
                    raise DatasetError(f"{path} row {row}: the image {why}; download the file again.")
                yield int(y), data, suffix, f"{path} row {row}"
                row += 1
