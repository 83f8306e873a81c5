"""A multi-task mini-world for model merging: eight distinct classification tasks over the same
rendered world (eight as FusionBench's), each a dataset in the course's layout
(:mod:`fewshot.world.course_format`) plus an unlabeled split of its own.

| task | classes | what decides the class | words the pretraining corpus used |
|---|---|---|---|
| shape | the 10 shapes | the main object's shape | yes |
| colour | the 10 colours | its colour (half with names the corpus never saw: "tenne", ...) | half |
| count | one, two, three, four | how many copies of one object | no |
| position | left, right, top, bottom | where the object sits (a horizontal flip swaps left and right) | no |
| style | photo, sketch | how the image is drawn | yes ("a sketch of") |
| size | small, medium, large | the object's radius (``_RADII``) | no |
| background | dark, grey, light | the background's brightness (``_TONES``) | no (captions' "dark photo" is not) |
| outline | filled, outline | the shape filled or its outline only, on a photo's ground | partly ("an outline of") |

The last three, measured with the tiny CLIP (templates ``tip7``, 60 test images per class): zero-shot
top-1 29, 28 and 58 % (chance 33, 33, 50), the class means of 16 frozen shots 52, 36 and 57 %;
the images leave no doubt to an eye, so the frozen model reads them only partly and an expert has
room to learn.

Every image has its own seed from (task, split, class, index), so the tree is byte-identical on
every run; the first five tasks draw exactly what they drew before the last three existed. Each
task also holds ``unlabeled/unl_00000.jpg, ...``: images of the same distribution from their own
seeds (each of a class drawn at random), named without their label, for merging rules adapted on
unlabeled data (AdaMerging, Concrete, WEMoE: ``tuned_on: unlabeled-train``). The marker
``.fewshot-tasks`` records the settings, the tasks in order, the souped task and ``no_flip``: the
tasks whose labels a horizontal flip changes. ``python -m fewshot world make-tasks`` writes it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from fewshot.base.errors import ConfigError
from fewshot.world.course_format import encode_image, publish, train_name, val_names, write_metadata
from fewshot.world.guard import claim, start_building
from fewshot.world.generate import OBSCURE_NAMES
from fewshot.world.render import COLORS, SHAPES, _draw_shape, _jitter

__all__ = ["TASKS", "NO_FLIP", "make_tasks", "val_for_standard_error"]

TASKS = {  # name -> class names (label = index); the first five keep their order and their draws
    "shape": list(SHAPES),
    "colour": [OBSCURE_NAMES.get(c, c) for c in COLORS],
    "count": ["one", "two", "three", "four"],
    "position": ["left", "right", "top", "bottom"],
    "style": ["photo", "sketch"],
    "size": ["small", "medium", "large"],
    "background": ["dark", "grey", "light"],
    "outline": ["filled", "outline"],
}
NO_FLIP = ("position",)  # tasks whose label a horizontal flip changes (left <-> right)
_PLACES = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75)}
# size task: object radius / side, each ±0.01; apart by more than the 1.41x zoom of a crop of half
# the area (the experts' recipe crops area 0.5-1), so a crop never turns one size into the next
_RADII = (0.09, 0.17, 0.30)
_TONES = ((15, 75), (100, 155), (180, 240))  # background task: range of each background channel
_VERSION = 2  # 2: unlabeled split, size/background/outline tasks, settings and no_flip in the marker


def _scene(task: str, label: int, rng: random.Random, size=(96, 96)) -> Image.Image:
    shape, color = rng.choice(SHAPES), rng.choice(list(COLORS))
    style, count, place = "photo", 1, (0.5 + rng.uniform(-0.1, 0.1), 0.5 + rng.uniform(-0.1, 0.1))
    radius, tones, outline = None, None, False
    if task == "shape":
        shape = SHAPES[label]
    elif task == "colour":
        color = list(COLORS)[label]
    elif task == "count":
        count = label + 1
    elif task == "position":
        cx, cy = _PLACES[TASKS["position"][label]]
        place = (cx + rng.uniform(-0.06, 0.06), cy + rng.uniform(-0.06, 0.06))
    elif task == "style":
        style = TASKS["style"][label]
    elif task == "size":
        radius = _RADII[label] + rng.uniform(-0.01, 0.01)
    elif task == "background":
        tones = _TONES[label]
    else:  # outline: a ring is drawn as a thick ring either way, so it is not among the shapes
        shape, outline = rng.choice([s for s in SHAPES if s != "ring"]), label == 1
    w, h = size
    tones = tones or ((40, 200) if style == "photo" else (225, 250))
    bg = tuple(rng.randint(*tones) for _ in range(3))
    img = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(img)
    r = (radius or (0.16 if count > 1 or task == "position" else 0.28)) * min(w, h)
    spots = [place] if count == 1 else [(0.27 + 0.46 * (i % 2), 0.27 + 0.46 * (i // 2)) for i in range(4)]
    for cx, cy in rng.sample(spots, count) if count > 1 else spots:
        _draw_shape(draw, shape, _jitter(COLORS[color], rng, 30), cx * w, cy * h, r,
                    rng.uniform(0, 2 * math.pi), style == "sketch" or outline, 3, bg)
    if style == "photo":
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.2)))
        grain = Image.frombytes("L", size, rng.randbytes(w * h)).convert("RGB")
        img = Image.blend(img, grain, rng.uniform(0.1, 0.3))
    return img


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")


def val_for_standard_error(points: float = 0.5, tasks=tuple(TASKS)[:5]) -> int:
    """The fewest test images per class for which the mean top-1 over ``tasks`` has a standard
    error of at most ``points`` (percentage points) at the worst case, 50 % on every task:
    SE = sqrt(sum_t 0.25 / (C_t · val)) / T. 480 for the first five tasks (14,400 test images)."""
    spread = sum(0.25 / len(TASKS[t]) for t in tasks)  # sum_t p(1-p)/C_t at p = 1/2
    return math.ceil(spread / (points / 100 * len(tasks)) ** 2)


def _check(train: int, val: int, unlabeled: int, tasks) -> None:
    """Stop in one line, before any work, on an unknown or repeated task or a bad image count."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks or len(set(tasks)) != len(tasks):
        raise ConfigError(f"tasks {list(tasks)}: expected distinct names among {', '.join(TASKS)}"
                         + (f" (unknown: {', '.join(map(str, unknown))})" if unknown else ""))
    for name, n, least in (("train", train, 1), ("val", val, 1), ("unlabeled", unlabeled, 0)):
        if not isinstance(n, int) or isinstance(n, bool) or n < least:
            raise ConfigError(f"{name}={n!r}: expected a whole number >= {least} (images per "
                             f"{'task' if name == 'unlabeled' else 'class'})")


def _write_task(root: Path, t: int, task: str, train: int, val: int, unlabeled: int, seed: int) -> None:
    """Task ``task`` (the t-th listed) under ``root``: its class folders, metadata and unlabeled/."""
    names = TASKS[task]
    wnids = [f"n{80000000 + 1000 * t + c:08d}" for c in range(len(names))]
    order = val_names(len(names) * val, seed + t)
    for c, wnid in enumerate(wnids):
        for split, n in (("train", train), ("val", val)):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = _scene(task, c, random.Random(_seed(seed, task, split, c, i)))
                name = train_name(wnid, i) if split == "train" else order[c * val + i]
                (folder / name).write_bytes(encode_image(img, "jpeg", 90))
    write_metadata(root, wnids, names)
    if unlabeled:
        (root / "unlabeled").mkdir()
    for i in range(unlabeled):  # the class is drawn from the image's own seed, never from its name
        rng = random.Random(_seed(seed, task, "unlabeled", i))
        img = _scene(task, rng.randrange(len(names)), rng)
        (root / "unlabeled" / f"unl_{i:05d}.jpg").write_bytes(encode_image(img, "jpeg", 90))


def make_tasks(out: str | os.PathLike, train: int = 16, val: int = 30, seed: int = 0,
               tasks=tuple(TASKS), force: bool = False, unlabeled: int = 64) -> Path:
    """Write one dataset per task under ``out/<task>/`` (train/, val/, classnames.txt,
    label2class.json, and ``unlabeled`` images in unlabeled/); ``train`` and ``val`` count images
    per class (``val_for_standard_error()`` for the full study; 30, the demo's, by default). A
    current tree (the same settings in its ``.fewshot-tasks`` marker) is kept as it is. A folder
    this generator did not write (no marker) is refused, or with ``force`` moved aside (never
    deleted). Returns ``out``."""
    out, tasks = Path(out), tuple(tasks)
    _check(train, val, unlabeled, tasks)
    soup = "count" if "count" in tasks else tasks[0]  # four classes, the experts' seeds disagree most
    marker = json.dumps({"version": _VERSION, "train": train, "val": val, "unlabeled": unlabeled,
                         "seed": seed, "tasks": list(tasks), "soup": soup,
                         "no_flip": [t for t in tasks if t in NO_FLIP]})
    if (out / ".fewshot-tasks").exists() and (out / ".fewshot-tasks").read_text() == marker:
        return out
    claim(out, ".fewshot-tasks", "world make-tasks", force)
    tmp = start_building(out, ".fewshot-tasks")
    for t, task in enumerate(tasks):
        _write_task(tmp / task, t, task, train, val, unlabeled, seed)
    return publish(tmp, out, ".fewshot-tasks", marker, "world make-tasks", force)
