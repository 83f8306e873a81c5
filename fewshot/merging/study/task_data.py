"""The merge study's tasks as it reads them: each task folder's zero-shot head, its k shots (one
fold held out to choose λ), its test images and its unlabeled images, in the folder's task order.

A task folder is any dataset in the course layout (:mod:`fewshot.data.datasets`); the task world
(:mod:`fewshot.world.tasks`) also writes a ``.fewshot-tasks`` marker (the task order, the souped
task) and an ``unlabeled/`` split per task. Without one, the unlabeled images are the task's
training images with their labels unused (AdaMerging's ``unlabeled-train`` either way).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from fewshot.base.errors import DatasetError
from fewshot.data.datasets import ImageSet, load_dataset, unlabeled_images
from fewshot.data.splits import make_manifest, shot_ranks
from fewshot.features.encode import text_classifier
from fewshot.features.pixels import pixel_cache, train_size
from fewshot.protocol import selection

__all__ = ["Task", "load_tasks", "task_order", "soup_task", "check_tasks"]


@dataclass
class Task:
    """One task's data: zero-shot head, stored training crops, test crops and unlabeled crops."""

    name: str
    head: torch.Tensor  # [C, D] = s·W_text (frozen)
    train_px: object  # PixelSet of the k shots (train_size)
    labels: torch.Tensor  # [M]
    held: torch.Tensor  # [M] bool: the held-out fold of the shots
    val_px: object  # PixelSet of the test images (input resolution)
    val_labels: torch.Tensor  # [N]
    unlabeled_px: object = None  # PixelSet of the unlabeled split (input resolution); None: none


def _unlabeled(root: Path, name: str, res: int, cache_dir):
    """The task's ``unlabeled/`` images as a PixelSet at the input resolution, or None."""
    files = unlabeled_images(root / name)
    if not files:
        return None
    items = [(f"unlabeled/{f.name}", 0) for f in files]  # label unused
    return pixel_cache(ImageSet(f"{name}-unlabeled", root / name, items, [0]), res, cache_dir, progress=False)


def load_tasks(root, names, backbone, cfg, shots: int, seed: int, device) -> list[Task]:
    """The tasks under ``root`` (sub-folders ``names``) with ``shots`` shots of split ``seed``."""
    out = []
    res = backbone.input_resolution
    for name in names:
        ds = load_dataset(root / name)
        head = backbone.logit_scale * text_classifier(backbone, ds.classnames, cfg.templates, cfg.cache_dir,
                                                      device, False).float()
        items = [tuple(it) for it in make_manifest(ds, shots, seed)["items"]]
        train_set = ImageSet(f"{name}-train-{shots}shot-seed{seed}", ds.root, items, ds.train.class_indices)
        ranks = torch.tensor(shot_ranks(items))
        out.append(Task(name, head, pixel_cache(train_set, train_size(res), cfg.cache_dir, progress=False),
                        torch.tensor([y for _, y in items]), selection.fold_masks(ranks, cfg.cv_folds)[0],
                        pixel_cache(ImageSet(f"{name}-val", ds.root, ds.val.items, ds.val.class_indices), res,
                                    cfg.cache_dir, progress=False), torch.tensor(ds.val.labels),
                        _unlabeled(Path(root), name, res, cfg.cache_dir)))
    return out


def _marker(root: Path) -> dict:
    """The task folder's ``.fewshot-tasks`` marker (the task world writes it), {} if none or unreadable."""
    try:
        got = json.loads((root / ".fewshot-tasks").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def task_order(root: Path) -> list[str]:
    """The task folders under ``root``, in the order its ``.fewshot-tasks`` marker lists them (the
    task world's), else sorted by name; hidden folders (a build in progress) are no tasks."""
    listed = _marker(root).get("tasks", [])
    listed = [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []
    return [n for n in listed if (root / n).is_dir()] or sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def soup_task(root: Path, names: list[str]) -> str:
    """The task whose experts of several seeds are souped: the marker's ``soup`` entry, else the first task."""
    named = _marker(root).get("soup")
    return named if named in names else names[0]


def check_tasks(root: str) -> None:
    """Stop with a DatasetError naming the fix when ``root`` (``cfg.merge_tasks``) is no folder."""
    if not Path(root).is_dir():
        raise DatasetError(f"merge_tasks: {root} is not a folder of task datasets; make the "
                           f"mini-world's with `python -m fewshot world make-tasks --out {root}`, import FusionBench's "
                           f"with `python -m fewshot world import-fusionbench --src <exports> --out {root}`, or "
                           f"set merge_tasks to \"\" to skip the merging study.")
