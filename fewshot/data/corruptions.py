"""Corruptions: the seven image corruptions of FusionBench's CLIP robustness experiment, as pure functions.

FusionBench (``fusion_bench/dataset/image_corruption/make_corruption.py`` at tanganke/fusion_bench
54c9e8c) builds the corrupted test splits of ``clip-vit-base-patch32_robustness_corrupted.yaml``
with Hendrycks & Dietterich's code; its severity tables are those of CIFAR-10-C
(``ImageNet-C/create_c/make_cifar_c.py``), not ImageNet-C's, so they were set for 32-px images:

  gaussian_noise    σ = [0.04, 0.06, 0.08, 0.09, 0.10]            make_corruption.py:100
  impulse_noise     amount = [0.01, 0.02, 0.03, 0.05, 0.07]        :121
  motion_blur       (radius, σ) = [(6,1), (6,1.5), (6,2), (8,2), (9,2.5)]   :143
  spatter           6-tuples, severity 1-3 water, 4-5 mud          :175-181
  contrast          c = [0.75, 0.5, 0.4, 0.3, 0.15]                :257
  jpeg_compression  quality = [80, 65, 58, 50, 40]                 :279
  pixelate          c = [0.95, 0.9, 0.85, 0.75, 0.65]              :306

:data:`CORRUPTIONS` lists them in FusionBench's order (its ``distortion_methods``, :341-347), under
its split names. Its experiment does not record a severity (the splits come ready-made from the
Hub); :data:`SEVERITY` = 5 is inferred from its documentation figure, whose spatter is mud
(severity 4-5) and whose contrast is nearly flat (0.15). Differences, all deliberate:

* Geometry is set on a ``reference_size``-px image (32, CIFAR-10-C's) and scaled to the shorter
  side S: motion-blur radius and σ times S/32, the spatter pattern drawn on a 32-px grid and
  resized, pixelation down to 32·c px. At 32 px this is the published corruption exactly;
  ``reference_size=None`` applies the constants per pixel of the image, as FusionBench ran them
  on full-size images (whose pixelate always returns 32×32 and so also shrinks the image).
* Motion blur is ImageMagick's ``MotionBlurImage`` kernel (the one Wand calls), written in numpy:
  a one-sided Gaussian line of 2⌈r⌉+1 taps at rounded offsets, edge pixels repeated. Wand
  accumulates in its quantum depth and offsets were truncated in older ImageMagick versions, so
  values can differ by a grey level or a one-pixel offset; the angle U(-45°, 45°) comes from ``rng``.
* Spatter's water branch (severity 1-3) uses scikit-image's Canny (L2 gradient, no edges on the
  border) and scipy's exact Euclidean distance, where OpenCV uses an L1 gradient and a 5×5 mask
  approximation; equalisation and the 3×3 filters follow OpenCV's definitions.
* Randomness comes from one ``numpy.random.Generator`` (the reference uses the global state);
  float results are truncated to uint8 by ``np.uint8`` as Hendrycks' scripts store them.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["CORRUPTIONS", "SEVERITY", "REFERENCE_SIZE", "list_corruptions", "corrupt"]

CORRUPTIONS = ("gaussian_noise", "impulse_noise", "motion_blur", "contrast", "pixelate",
               "jpeg_compression", "spatter")
SEVERITY = 5  # the severity the robustness splits are taken to use (see the module docstring)
REFERENCE_SIZE = 32  # the image side the severity tables were set for (CIFAR-10-C)

_C = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "jpeg_compression": [80, 65, 58, 50, 40],
    "spatter": [(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
                (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)],
}
_WATER, _MUD = np.array([175, 238, 238]) / 255.0, np.array([63, 42, 20]) / 255.0


def list_corruptions() -> list[str]:
    """The corruption names :func:`corrupt` takes, in FusionBench's order."""
    return list(CORRUPTIONS)


def corrupt(image, name: str, severity: int = SEVERITY, rng=0, reference_size: int | None = REFERENCE_SIZE) -> np.ndarray:
    """``image`` (PIL image or uint8 [H, W, 3]) corrupted by ``name`` at ``severity`` (1-5) -> uint8 [H, W, 3].

    ``rng``: a ``numpy.random.Generator`` or a seed; the same seed gives the same image.
    ``reference_size``: the side the constants are scaled from (None: per pixel, unscaled).
    """
    if name not in _C:
        raise ValueError(f"unknown corruption {name!r}; use one of {', '.join(CORRUPTIONS)}")
    if severity not in range(1, 6):
        raise ValueError(f"severity must be 1-5, got {severity!r}")
    x = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3] or a PIL image, got {x.dtype} {x.shape}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    scale = 1.0 if reference_size is None else min(x.shape[:2]) / reference_size
    out = _FUNCS[name](x, _C[name][severity - 1], rng, scale)
    return np.uint8(np.clip(out, 0, 255)) if out.dtype != np.uint8 else out


def _gaussian_noise(x, c, rng, scale):
    """x/255 + N(0, c²) per value, clipped to [0, 1], ×255."""
    x = x / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def _impulse_noise(x, c, rng, scale):
    """Salt and pepper as scikit-image's ``random_noise(mode='s&p', amount=c)`` draws it: each value
    is replaced with probability c, by 1 or 0 with equal odds."""
    x = x / 255.0
    flipped = rng.random(x.shape) <= c
    salted = rng.random(x.shape) <= 0.5
    x[flipped & salted], x[flipped & ~salted] = 1.0, 0.0
    return np.clip(x, 0, 1) * 255


def _contrast(x, c, rng, scale):
    """(x − mean)·c + mean, the mean per channel over the image, clipped."""
    x = x / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def _jpeg_compression(x, c, rng, scale):
    """PIL's JPEG encoder at quality c, decoded again."""
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=c)
    return np.asarray(Image.open(buf).convert("RGB"))


def _pixelate(x, c, rng, scale):
    """Box-filter down to c of the (reference) side, box-filter back up to [H, W]."""
    h, w = x.shape[:2]
    side = min(h, w) / scale  # the reference side (or the image's own when unscaled)
    small = (max(1, int(side * c * (w / min(h, w)))), max(1, int(side * c * (h / min(h, w)))))
    img = Image.fromarray(x).resize(small, Image.BOX).resize((w, h), Image.BOX)
    return np.asarray(img)


def _motion_kernel(radius: float, sigma: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """ImageMagick's motion-blur taps: weights [n] ∝ exp(−i²/2σ²), i = 0..n−1, n = 2⌈radius⌉+1, and
    integer offsets [n, 2] (dy, dx) = round(i·(sin, cos)(angle°)) along the line."""
    n = int(2 * math.ceil(radius) + 1)
    i = np.arange(n)
    weights = np.exp(-(i ** 2) / (2.0 * sigma ** 2))
    a = math.radians(angle)
    offsets = np.stack([np.ceil(i * math.sin(a) - 0.5), np.ceil(i * math.cos(a) - 0.5)], axis=1).astype(int)
    return weights / weights.sum(), offsets


def _motion_blur(x, c, rng, scale):
    """Σ_i w_i·x[y + dy_i, x + dx_i] (edges repeated), rounded to uint8 as Wand's PNG round trip is."""
    angle = rng.uniform(-45, 45)
    weights, offsets = _motion_kernel(c[0] * scale, c[1] * scale, angle)
    h, w = x.shape[:2]
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    out = np.zeros(x.shape, dtype=np.float64)
    for wt, (dy, dx) in zip(weights, offsets):
        out += wt * x[np.clip(rows + dy, 0, h - 1), np.clip(cols + dx, 0, w - 1)]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _equalize_hist(img: np.ndarray) -> np.ndarray:
    """OpenCV's ``equalizeHist`` of a uint8 image: lut = round(255·(cdf − h_min)/(N − h_min))."""
    hist = np.bincount(img.ravel(), minlength=256)
    first = int(np.flatnonzero(hist)[0])
    if hist[first] == img.size:
        return np.full_like(img, first)
    cdf = np.cumsum(hist) - hist[first]
    lut = np.clip(np.rint(cdf * (255.0 / (img.size - hist[first]))), 0, 255)
    lut[: first + 1] = 0
    return lut.astype(np.uint8)[img]


def _water(liquid: np.ndarray) -> np.ndarray:
    """Spatter's water mask [h, w] from the thresholded liquid layer: distance to its edges, equalised,
    embossed and blurred, times the layer, scaled to a maximum of 1."""
    from skimage.feature import canny

    layer = (liquid * 255).astype(np.uint8)
    edges = canny(layer, sigma=0, low_threshold=50, high_threshold=150)
    dist = np.minimum(ndimage.distance_transform_edt(~edges), 20) if edges.any() else np.full(layer.shape, 20.0)
    dist = ndimage.uniform_filter(dist, 3, mode="mirror").astype(np.uint8)
    dist = _equalize_hist(dist).astype(np.float64)
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
    dist = np.clip(np.rint(ndimage.correlate(dist, emboss, mode="mirror")), 0, 255)
    m = layer * ndimage.uniform_filter(dist, 3, mode="mirror")
    return m / m.max() if m.max() > 0 else m


def _spatter_mask(shape, c, rng) -> np.ndarray:
    """The spatter layer [h, w] in [0, 1]: water (c[5] = 0) or mud (c[5] = 1)."""
    liquid = ndimage.gaussian_filter(rng.normal(size=shape, loc=c[0], scale=c[1]), c[2], mode="nearest", truncate=4.0)
    liquid[liquid < c[3]] = 0
    if c[5] == 0:
        return _water(liquid) * c[4]
    m = ndimage.gaussian_filter((liquid > c[3]).astype(np.float64), c[4], mode="nearest", truncate=4.0)
    m[m < 0.8] = 0
    return m


def _spatter(x, c, rng, scale):
    """x + m·water (severity 1-3) or x·(1 − m) + m·mud (4-5), clipped; m is drawn on the reference
    grid (the image's shape / scale) and resized bilinearly to [H, W]."""
    h, w = x.shape[:2]
    grid = (max(1, round(h / scale)), max(1, round(w / scale)))
    m = _spatter_mask(grid, c, rng)
    if grid != (h, w):
        m = np.asarray(Image.fromarray(m.astype(np.float32)).resize((w, h), Image.BILINEAR), dtype=np.float64)
    x, m = x / 255.0, m[..., None]
    out = x + m * _WATER if c[5] == 0 else x * (1 - m) + m * _MUD
    return np.clip(out, 0, 1) * 255


_FUNCS = {"gaussian_noise": _gaussian_noise, "impulse_noise": _impulse_noise, "motion_blur": _motion_blur,
          "contrast": _contrast, "pixelate": _pixelate, "jpeg_compression": _jpeg_compression, "spatter": _spatter}
