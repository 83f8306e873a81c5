"""Preprocessing: CLIP's test-time pixels and Tip-Adapter's seeded augmented views.

Pixels stay uint8 until they reach the device (cheap to pass from loader workers); there
:func:`normalize_pixels` applies CLIP's mean and std. Augmented views follow Tip-Adapter:
RandomResizedCrop(R, scale 0.5–1, bicubic) + horizontal flip, drawn from a generator seeded by
(seed, view, image index), so they do not depend on the number of loader workers.
"""
from __future__ import annotations

import math

import torch

__all__ = ["CLIP_MEAN", "CLIP_STD", "AUG_SCALE", "AUG_RATIO", "normalize_pixels", "center_pixels",
           "augment_views", "centered", "augmented"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
AUG_SCALE, AUG_RATIO = (0.5, 1.0), (3 / 4, 4 / 3)


def normalize_pixels(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels [..., 3, H, W] -> CLIP's normalised fp32 input (ToTensor + Normalize)."""
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(3, 1, 1)
    return (x.float() / 255 - mean) / std


def _tf():
    """torchvision's functional transforms, imported on first use: torchvision costs seconds of
    imports (it pulls in torch._dynamo) that a step on cached features never needs."""
    import torchvision.transforms.functional as TF

    return TF


def center_pixels(img, size: int) -> torch.Tensor:
    """CLIP's test-time Resize(size, bicubic) + CenterCrop(size) of a PIL image: uint8 [3, size, size]."""
    TF = _tf()
    img = TF.center_crop(TF.resize(img, size, TF.InterpolationMode.BICUBIC), size)
    return TF.pil_to_tensor(img)


def augment_views(img, size: int, views: int, seed: int, index: int) -> torch.Tensor:
    """``views`` Tip-Adapter augmentations of a PIL image, uint8: [V, 3, size, size].

    Crop parameters follow torchvision's RandomResizedCrop (10 tries, then a centre crop) but are
    drawn from ``torch.Generator`` seeded by ``(seed, view, index)``.
    """
    TF = _tf()
    width, height = img.size
    area, log_ratio = width * height, (math.log(AUG_RATIO[0]), math.log(AUG_RATIO[1]))
    out = []
    for v in range(views):
        g = torch.Generator().manual_seed(((seed * 1_000_003 + v) * 10_000_019 + index) % 2**64)  # any seed
        u = torch.rand(32, generator=g).tolist()
        box = None
        for t in range(10):
            target = area * (AUG_SCALE[0] + u[3 * t] * (AUG_SCALE[1] - AUG_SCALE[0]))
            ratio = math.exp(log_ratio[0] + u[3 * t + 1] * (log_ratio[1] - log_ratio[0]))
            w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < w <= width and 0 < h <= height:
                i = int(u[3 * t + 2] * (height - h + 1))
                j = int(u[30] * (width - w + 1))  # one draw suffices: used once, after the break
                box = (i, j, h, w)
                break
        if box is None:  # fall back to a centre crop, as torchvision does
            side = min(width, height)
            box = ((height - side) // 2, (width - side) // 2, side, side)
        crop = TF.resized_crop(img, *box, [size, size], TF.InterpolationMode.BICUBIC)
        if u[31] < 0.5:
            crop = TF.hflip(crop)
        out.append(TF.pil_to_tensor(crop))
    return torch.stack(out)


def augmented(img, index: int, size: int, views: int, seed: int) -> torch.Tensor:
    """Loader transform ``(image, index) -> uint8 [V, 3, size, size]``: :func:`augment_views`."""
    return augment_views(img, size, views, seed, index)


def centered(img, index: int, size: int) -> torch.Tensor:
    """Loader transform ``(image, index) -> uint8 [3, size, size]``: :func:`center_pixels`."""
    return center_pixels(img, size)
