"""A multi-task mini-world for model merging: five distinct classification tasks over the same
rendered world, each a dataset in the course's layout (:mod:`fewshot.world.course_format`).

| task | classes | what decides the class | words the pretraining corpus used |
|---|---|---|---|
| shape | the 10 shapes | the main object's shape | yes |
| colour | the 10 colours | its colour (half with names the corpus never saw: "tenne", ...) | half |
| count | one, two, three, four | how many copies of one object | no |
| position | left, right, top, bottom | where the object sits | no |
| style | photo, sketch | how the image is drawn | yes ("a sketch of") |

Every image has its own seed from (task, split, class, index), so the tree is byte-identical on
every run. ``python -m fewshot world make-tasks`` writes it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from fewshot.world.course_format import encode_image, publish, train_name, val_names, write_metadata
from fewshot.world.guard import claim, start_building
from fewshot.world.generate import OBSCURE_NAMES
from fewshot.world.render import COLORS, SHAPES, _draw_shape, _jitter

__all__ = ["TASKS", "make_tasks"]

TASKS = {
    "shape": list(SHAPES),
    "colour": [OBSCURE_NAMES.get(c, c) for c in COLORS],
    "count": ["one", "two", "three", "four"],
    "position": ["left", "right", "top", "bottom"],
    "style": ["photo", "sketch"],
}
_PLACES = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75)}
_VERSION = 1


def _scene(task: str, label: int, rng: random.Random, size=(96, 96)) -> Image.Image:
    shape, color = rng.choice(SHAPES), rng.choice(list(COLORS))
    style, count, place = "photo", 1, (0.5 + rng.uniform(-0.1, 0.1), 0.5 + rng.uniform(-0.1, 0.1))
    if task == "shape":
        shape = SHAPES[label]
    elif task == "colour":
        color = list(COLORS)[label]
    elif task == "count":
        count = label + 1
    elif task == "position":
        cx, cy = _PLACES[TASKS["position"][label]]
        place = (cx + rng.uniform(-0.06, 0.06), cy + rng.uniform(-0.06, 0.06))
    else:
        style = TASKS["style"][label]
    w, h = size
    bg = tuple(rng.randint(40, 200) for _ in range(3)) if style == "photo" else tuple(rng.randint(225, 250) for _ in range(3))
    img = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(img)
    r = (0.16 if count > 1 or task == "position" else 0.28) * min(w, h)
    spots = [place] if count == 1 else [(0.27 + 0.46 * (i % 2), 0.27 + 0.46 * (i // 2)) for i in range(4)]
    for cx, cy in rng.sample(spots, count) if count > 1 else spots:
        _draw_shape(draw, shape, _jitter(COLORS[color], rng, 30), cx * w, cy * h, r,
                    rng.uniform(0, 2 * math.pi), style == "sketch", 3, bg)
    if style == "photo":
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.2)))
        grain = Image.frombytes("L", size, rng.randbytes(w * h)).convert("RGB")
        img = Image.blend(img, grain, rng.uniform(0.1, 0.3))
    return img


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")


def make_tasks(out: str | os.PathLike, train: int = 16, val: int = 30, seed: int = 0,
               tasks=tuple(TASKS), force: bool = False) -> Path:
    """Write one dataset per task under ``out/<task>/`` (train/, val/, classnames.txt,
    label2class.json); a current tree is kept as it is. A folder this generator did not write
    (no ``.fewshot-tasks`` marker) is refused, or with ``force`` moved aside (never deleted).
    Returns ``out``."""
    out = Path(out)
    soup = "count" if "count" in tasks else tasks[0]  # four classes, the experts' seeds disagree most
    marker = json.dumps({"version": _VERSION, "train": train, "val": val, "seed": seed, "tasks": list(tasks),
                         "soup": soup})
    if (out / ".fewshot-tasks").exists() and (out / ".fewshot-tasks").read_text() == marker:
        return out
    claim(out, ".fewshot-tasks", "world make-tasks", force)
    tmp = start_building(out, ".fewshot-tasks")
    for t, task in enumerate(tasks):
        names = TASKS[task]
        wnids = [f"n{80000000 + 1000 * t + c:08d}" for c in range(len(names))]
        order = val_names(len(names) * val, seed + t)
        for c, wnid in enumerate(wnids):
            for split, n in (("train", train), ("val", val)):
                folder = tmp / task / split / wnid
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    img = _scene(task, c, random.Random(_seed(seed, task, split, c, i)))
                    name = train_name(wnid, i) if split == "train" else order[c * val + i]
                    (folder / name).write_bytes(encode_image(img, "jpeg", 90))
        write_metadata(tmp / task, wnids, names)
    return publish(tmp, out, ".fewshot-tasks", marker, "world make-tasks", force)
