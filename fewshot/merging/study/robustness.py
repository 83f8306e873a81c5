"""The merge study's robustness experiment (FusionBench's ``clip-vit-base-patch32_robustness_
corrupted``): the merged encoders on each task's test images, clean and under the seven image
corruptions of :mod:`fewshot.data.corruptions` at its published severity, labels as they are.

The corruptions are applied to the test images as the encoder sees them (the centre crop at the
input resolution, uint8), each image with its own seeded draw, so a rule's rows differ only in
the encoder. Records ``robustness:<rule>``, eval_set the task, hyperparameters ``corruption``
("clean" or a corruption's name) and ``severity``.
"""
from __future__ import annotations

import hashlib

import numpy as np

from fewshot.data.corruptions import CORRUPTIONS, SEVERITY, corrupt
from fewshot.features.pixels import PixelSet

__all__ = ["corrupted_sets", "robustness_rows"]


def _seed(task: str, name: str, i: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{task}/{name}/{i}".encode()).digest()[:8], "big")


def corrupted_sets(tasks, names=CORRUPTIONS, severity: int = SEVERITY) -> dict:
    """{corruption: {task: PixelSet of its corrupted test images (uint8 [N, 3, R, R])}}."""
    out = {}
    for name in names:
        out[name] = {}
        for t in tasks:
            clean = t.val_px.batch(list(range(len(t.val_labels)))).numpy()  # [N, 3, R, R]
            bad = np.stack([corrupt(img.transpose(1, 2, 0), name, severity, _seed(t.name, name, i)).transpose(2, 0, 1)
                            for i, img in enumerate(clean)])
            out[name][t.name] = PixelSet(np.ascontiguousarray(bad), [])
    return out


def robustness_rows(score, states: dict, corrupted: dict, severity: int = SEVERITY) -> list:
    """[(rule, task, top-1, hp)]: every rule's encoder ``states[rule]`` on every task, clean and
    under every corruption of ``corrupted`` (:func:`corrupted_sets`)."""
    out = []
    for rule, state in states.items():
        for t, v in score(state).items():
            out.append((rule, t, v, {"corruption": "clean", "severity": 0}))
        for name, sets in corrupted.items():
            for t, v in score(state, pixels=sets).items():
                out.append((rule, t, v, {"corruption": name, "severity": severity}))
    return out
