"""The last run started: a pointer that notebook 01 writes and later notebooks read, so that a run's
settings are set in one place, notebook 01's parameters cell.

Notebook 01 (``fewshot.notebooks.hosted.start(..., first=True)``) records the run it started, atomically, in
``notebooks/.fewshot-run.json`` (git-ignored)::

    {"out": "/abs/path/to/the/run", "config": "coursework", "started": "2026-11-25T10:00:00+00:00",
     "time": 1795000000.0}

A later notebook whose ``config`` is ``"last"`` (its default) continues that run: it takes every
setting from the run's own ``config.json`` (data, backbone, shots, seeds, and the cache and report
folders notebook 01 chose) and prints which run it continues. ``FEWSHOT_RUN_POINTER`` names
another pointer file (the tests use it). On Colab a copy also goes to Google Drive
(``/content/drive/MyDrive/fewshot/current_run.json``, when Drive is mounted), so that the pointer
survives a runtime reset; the newer of the two is used.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import time
from pathlib import Path

from fewshot.base.atomic import atomic_write_json
from fewshot.base.errors import ConfigError, MissingStepError
from fewshot.notebooks.runner import NOTEBOOK_DIR

__all__ = ["LAST", "ENV", "pointer_paths", "record_run", "last_run", "resolve"]

LAST = "last"  # the value of a later notebook's ``config`` that means "the run notebook 01 started"
ENV = "FEWSHOT_RUN_POINTER"  # another pointer file instead of the two below
LOCAL_POINTER = NOTEBOOK_DIR / ".fewshot-run.json"
DRIVE_POINTER = Path("/content/drive/MyDrive/fewshot/current_run.json")


def _on_colab() -> bool:
    return "COLAB_RELEASE_TAG" in os.environ


def pointer_paths() -> list[Path]:
    """Where the pointer is written and looked for: ``$FEWSHOT_RUN_POINTER`` alone if set, else
    ``notebooks/.fewshot-run.json`` and, on Colab, its copy on Google Drive."""
    if os.environ.get(ENV):
        return [Path(os.environ[ENV])]
    return [LOCAL_POINTER] + ([DRIVE_POINTER] if _on_colab() else [])


def record_run(out: str | os.PathLike, config: str) -> dict:
    """Record ``out`` (the run folder just started, from shipped config or file ``config``) as
    the last run started; returns the entry. The Drive copy is written only where Drive is mounted."""
    now = time.time()
    entry = {"out": str(Path(out).resolve()), "config": str(config), "time": now,
             "started": _dt.datetime.fromtimestamp(now, _dt.timezone.utc).isoformat(timespec="seconds")}
    for i, path in enumerate(pointer_paths()):
        if i == 0 or path.parent.parent.is_dir():  # the Drive copy needs MyDrive/ to exist
            atomic_write_json(path, entry, indent=2)
    return entry


def _read(path: Path) -> dict | None:
    try:
        entry = json.loads(path.read_text())
        if isinstance(entry, dict) and isinstance(entry.get("out"), str) and \
                isinstance(entry.get("time"), (int, float)):
            return entry
        problem = "not a run pointer"
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        problem = str(err)
    raise ConfigError(f"{path} is damaged ({problem}): run notebook 01 again (it rewrites it), "
                      f"or delete the file.")


def last_run() -> dict:
    """The last run started (the newest pointer): ``{"out", "config", "started", "time",
    "pointer"}``. Raises :class:`MissingStepError` when no run was started or its folder is gone."""
    found = [(entry["time"], str(path), entry) for path in pointer_paths()
             if (entry := _read(path)) is not None]
    if not found:
        where = " or ".join(str(p) for p in pointer_paths())
        raise MissingStepError(f"no run has been started yet (no {where}): run notebook 01 first, "
                               f"or set `config` in this notebook's parameters cell to a config "
                               f"name or a run's config.json.")
    _, path, entry = max(found)
    if not (Path(entry["out"]) / "config.json").is_file():
        raise MissingStepError(f"the last run started, {entry['out']} (recorded in {path}), has no "
                               f"config.json: run notebook 01 again, or set `config` here to "
                               f"a run's config.json.")
    return {**entry, "pointer": path}


def resolve(config: str, overrides: dict, first: bool) -> tuple[str, dict]:
    """A notebook's ``(config, overrides)`` as :func:`fewshot.run.config.load_config` takes them:
    ``"last"`` becomes the last run's ``config.json`` and its folder (printed); anything else is
    returned unchanged. ``"last"`` in notebook 01, or beside an ``out`` override, is a ConfigError."""
    if config != LAST:
        return config, overrides
    if first:
        raise ConfigError('notebook 01 starts the run: set `config` to "miniworld", "coursework", '
                          '"imagenet-rn50" or a config file, not "last".')
    if "out" in overrides:
        raise ConfigError('config = "last" continues the last run started, so `out` cannot be '
                          'overridden: to open another run, set `config` to its config.json.')
    entry = last_run()
    print(f"continuing the last run started: {entry['out']} (config {entry['config']}, started "
          f"{entry['started']} by notebook 01; recorded in {entry['pointer']}). To open another "
          f"run, set `config` to its config.json.")
    return str(Path(entry["out"]) / "config.json"), {"out": entry["out"], **overrides}
