"""Pixels: decoded, resized images kept on disk, for everything that runs the image encoder more
than once (fine-tuning, and evaluating a fine-tuned or interpolated encoder at every α).

Decoding is the expensive part of feature extraction; a fine-tuned encoder must see the test images
again for every α of its WiSE-FT path. So each image set is decoded once into a uint8 array
[N, 3, S, S] (CLIP's resize + centre crop to S), saved as ``.npy`` (read back with
``allow_pickle=False``, memory-mapped), with a JSON sidecar holding its key and SHA-256, written
atomically and verified on load like the feature cache (:mod:`fewshot.features.cache`). At ImageNet scale
the val set takes 7.5 GB at S = 224; reading it back costs less than decoding it again.

Training images are stored at S = R·256/224 and cropped on the device (:func:`augment`), so that
augmentation needs no decoding either.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fewshot.base.hashing import sha256_file
from fewshot.base.atomic import atomic_path, atomic_write_json
from fewshot.features.cache import files_fingerprint
from fewshot.base.errors import FewshotWarning
from fewshot.features.loaders import ImageFiles
from fewshot.features.preprocess import centered, normalize_pixels

__all__ = ["pixel_cache", "train_size", "augment", "PixelSet", "centre_pixels_of", "features_of"]


def train_size(resolution: int) -> int:
    """Side of the stored training crops: the input resolution × 256/224 (ImageNet's ratio)."""
    return int(round(resolution * 256 / 224))


class PixelSet:
    """A read-only pixel cache: ``len``, and ``batch(rows) -> uint8 [B, 3, S, S]``."""

    def __init__(self, array: np.ndarray, paths: list):
        self.array, self.paths = array, paths

    def __len__(self) -> int:
        return self.array.shape[0]

    @property
    def size(self) -> int:
        return self.array.shape[-1]

    def batch(self, rows) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.array[np.asarray(rows)]))


def _verified(npy: Path, meta: Path, key: dict):
    try:
        info = json.loads(meta.read_text())
        if info.get("key") != key:
            return None, "made for another key"
        if sha256_file(npy, 1 << 24) != info.get("sha256"):
            return None, "checksum mismatch"
        array = np.load(npy, mmap_mode="r", allow_pickle=False)
        if array.shape != tuple(info["shape"]) or array.dtype != np.uint8:
            return None, "shape or dtype changed"
        return PixelSet(array, info["paths"]), None
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        return None, f"unreadable ({type(err).__name__})"


def pixel_cache(image_set, size: int, cache_dir, num_workers: int = 0, progress: bool = True) -> PixelSet:
    """Uint8 pixels [N, 3, size, size] of ``image_set`` (CLIP's resize + centre crop), from the
    verified cache in ``<cache_dir>/pixels/`` or decoded once and saved."""
    key = {"kind": "pixels", "preprocessing": f"clip-center-{size}",
           "inputs_sha256": files_fingerprint(image_set.root, image_set.items)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / "pixels"
    npy, meta = folder / f"{image_set.name}-{size}px-{digest}.npy", folder / f"{image_set.name}-{size}px-{digest}.json"
    if npy.exists() and meta.exists():
        pixels, why = _verified(npy, meta, key)
        if pixels is not None:
            return pixels
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for p in (npy, meta):
            os.replace(p, p.with_name(f"{p.name}.bad-{stamp}"))
        warnings.warn(f"pixel cache {npy} failed verification ({why}); moved aside and decoding "
                      f"again.", FewshotWarning, stacklevel=2)
    files = ImageFiles(Path(image_set.root), image_set.paths, functools.partial(centered, size=size))
    loader = torch.utils.data.DataLoader(files, batch_size=64, num_workers=num_workers)
    with atomic_path(npy, len(image_set) * 3 * size * size + 4096) as tmp:  # checked before the memmap
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(image_set), 3, size, size))
        start = 0
        for x, _ in tqdm(loader, desc=f"decoding {image_set.name} ({size} px)", disable=not progress, leave=False):
            out[start:start + len(x)] = x.numpy()
            start += len(x)
        out.flush()
        del out
    atomic_write_json(meta, {"key": key, "sha256": sha256_file(npy, 1 << 24), "shape": [len(image_set), 3, size, size],
                             "paths": image_set.paths})
    return PixelSet(np.load(npy, mmap_mode="r", allow_pickle=False), image_set.paths)


def augment(pixels: torch.Tensor, out_size: int, gen: torch.Generator, scale=(0.5, 1.0),
            ratio=(3 / 4, 4 / 3), flip: bool = True) -> torch.Tensor:
    """Random resized crops (area ``scale``, aspect ``ratio``) and horizontal flips (unless not
    ``flip``: the flip draws are made all the same, so the crops do not change) of a batch, on
    its device, in one ``roi_align`` call: uint8 [B, 3, S, S] -> float [B, 3, R, R] in 0..255.
    The boxes come from ``gen`` (a CPU generator), so they do not depend on the device."""
    from torchvision.ops import roi_align

    B, _, S, _ = pixels.shape
    area = torch.empty(B).uniform_(*scale, generator=gen) * S * S
    log_r = torch.empty(B).uniform_(np.log(ratio[0]), np.log(ratio[1]), generator=gen)
    w = torch.sqrt(area * torch.exp(log_r)).clamp(max=S)
    h = torch.sqrt(area / torch.exp(log_r)).clamp(max=S)
    x0 = torch.rand(B, generator=gen) * (S - w)
    y0 = torch.rand(B, generator=gen) * (S - h)
    flip = (torch.rand(B, generator=gen) < 0.5) & flip
    boxes = torch.stack([torch.arange(B, dtype=torch.float32), x0, y0, x0 + w, y0 + h], 1)
    crops = roi_align(pixels.float(), boxes.to(pixels.device), out_size, spatial_scale=1.0,
                      sampling_ratio=1, aligned=True)  # bilinear, one sample per output pixel
    return torch.where(flip.to(pixels.device)[:, None, None, None], crops.flip(-1), crops)


def centre_pixels_of(pool, rows, size: int, device) -> torch.Tensor:
    """The pool's stored crops of ``rows`` resized to the input resolution (CLIP's test-time
    view of them): float 0–255 [B, 3, size, size] on ``device``."""
    x = pool.batch(rows).to(device).float()
    return F.interpolate(x, size=(size, size), mode="bicubic", antialias=True,
                         align_corners=False).round().clamp(0, 255)


@torch.no_grad()
def features_of(clf, pool, rows, device, chunk: int = 256) -> torch.Tensor:
    """Normalised features [B, D] of the pool's ``rows`` (their centre views), ``chunk`` images
    at a time, so that thousands of held-out shots never sit on the GPU at once."""
    res = clf.visual.input_resolution
    return torch.cat([clf.features(normalize_pixels(centre_pixels_of(pool, rows[i:i + chunk], res, device)))
                      for i in range(0, len(rows), chunk)])
