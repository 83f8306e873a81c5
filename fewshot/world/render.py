"""Rendering the mini-world: a coloured shape among clutter, as a "photo" or a "sketch".

A concept is (shape, colour): 10 × 10 = 100 classes. Everything is drawn with PIL from a
``random.Random``, so the same seed gives the same pixels on every machine.
"""
from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw, ImageFilter

__all__ = ["SHAPES", "COLORS", "render"]

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon", "arrow",
          "crescent")
COLORS = {  # name in the pretraining captions -> RGB
    "red": (214, 39, 40), "green": (44, 160, 44), "blue": (31, 90, 220), "yellow": (240, 210, 30),
    "purple": (140, 60, 190), "orange": (250, 130, 20), "cyan": (30, 200, 215),
    "pink": (245, 120, 185), "brown": (125, 75, 35), "gray": (128, 128, 128),
}


def _polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    def ring(n, radius, offset=0.0):
        return [(cx + radius * math.cos(rot + offset + 2 * math.pi * i / n),
                 cy + radius * math.sin(rot + offset + 2 * math.pi * i / n)) for i in range(n)]

    if shape == "square":
        return ring(4, r, math.pi / 4)
    if shape == "triangle":
        return ring(3, r)
    if shape == "diamond":
        pts = ring(4, r)
        return [(cx + (x - cx) * 0.6, y) if i % 2 == 0 else (x, y) for i, (x, y) in enumerate(pts)]
    if shape == "hexagon":
        return ring(6, r)
    if shape == "star":
        outer, inner = ring(5, r), ring(5, r * 0.42, math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if shape == "cross":
        w = r * 0.36
        base = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w),
                (-r, w), (-r, -w), (-w, -w)]
    elif shape == "arrow":
        base = [(-r, -0.25 * r), (0.2 * r, -0.25 * r), (0.2 * r, -0.7 * r), (r, 0),
                (0.2 * r, 0.7 * r), (0.2 * r, 0.25 * r), (-r, 0.25 * r)]
    else:
        raise ValueError(shape)
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in base]


def _jitter(rgb, rng: random.Random, amount: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, v + rng.randint(-amount, amount))) for v in rgb)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, rgb, cx, cy, r, rot, outline_only: bool,
                width: int, bg) -> None:
    fill, outline = (None, rgb) if outline_only else (rgb, None)
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        draw.ellipse(box, fill=fill, outline=outline, width=width)
    elif shape == "ring":
        draw.ellipse(box, outline=rgb, width=max(width, int(r * 0.35)))
    elif shape == "crescent":
        draw.ellipse(box, fill=fill, outline=outline, width=width)
        dx, dy = 0.45 * r * math.cos(rot), 0.45 * r * math.sin(rot)
        draw.ellipse([cx - r * 0.85 + dx, cy - r * 0.85 + dy, cx + r * 0.85 + dx, cy + r * 0.85 + dy],
                     fill=bg, outline=outline, width=width)
    else:
        pts = _polygon(shape, cx, cy, r, rot)
        if outline_only:
            draw.line(pts + [pts[0]], fill=rgb, width=width, joint="curve")
        else:
            draw.polygon(pts, fill=fill)


def render(shape: str, color: str, style: str, rng: random.Random,
           size: tuple[int, int] = (96, 96), clutter: int = 2, jitter: int = 30,
           distractor_scale: tuple = (0.08, 0.16), noise: tuple = (0.05, 0.2),
           blur: float = 1.0) -> Image.Image:
    """One image of ``color`` ``shape`` in ``style`` with up to ``clutter`` smaller distractors.

    photo: filled shape on a muted, noisy background; sketch: the shape's outline in its colour on
    near-white paper. The main object is the largest, placed near the centre. ``jitter`` (RGB
    units) spreads the object's colour, ``distractor_scale`` sizes the distractors relative to
    the image, ``noise`` is the range of the noise blend and ``blur`` the largest blur radius.
    """
    w, h = size
    if style == "photo":
        bg = tuple(rng.randint(40, 200) for _ in range(3))
        grey = sum(bg) // 3
        bg = tuple(int(0.35 * v + 0.65 * grey) for v in bg)  # muted: colour lives in the objects
    else:
        bg = tuple(rng.randint(225, 250) for _ in range(3))
    img = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(img)
    outline = style == "sketch"
    for _ in range(rng.randint(0, clutter)):  # distractors first, so the object stays on top
        dshape, dcolor = rng.choice(SHAPES), rng.choice(list(COLORS))
        dr = rng.uniform(*distractor_scale) * min(w, h)
        _draw_shape(draw, dshape, _jitter(COLORS[dcolor], rng, 25), rng.uniform(0, w),
                    rng.uniform(0, h), dr, rng.uniform(0, 2 * math.pi), outline, 2, bg)
    r = rng.uniform(0.2, 0.32) * min(w, h)
    cx, cy = w / 2 + rng.uniform(-0.12, 0.12) * w, h / 2 + rng.uniform(-0.12, 0.12) * h
    _draw_shape(draw, shape, _jitter(COLORS[color], rng, jitter), cx, cy, r,
                rng.uniform(0, 2 * math.pi), outline, rng.randint(2, 4), bg)
    if style == "photo":
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, blur)))
        grain = Image.frombytes("L", size, rng.randbytes(w * h)).convert("RGB")  # seeded, portable
        img = Image.blend(img, grain, rng.uniform(*noise))
    return img
