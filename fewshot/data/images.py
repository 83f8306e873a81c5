"""Images: decoding files to RGB, robustly, with errors that name the file.

ImageNet holds grayscale, CMYK and palette JPEGs and a PNG saved as ``.JPEG``; a course drive may
hold zero-byte or truncated files, 16-bit PNGs, huge images or broken links. :func:`load_rgb`
converts every readable mode to 8-bit RGB (16-bit grey scaled, not clipped) and raises
:class:`~fewshot.base.errors.ImageError` with the path for anything else, including images above
:data:`MAX_PIXELS`, :data:`MAX_SIDE` or :data:`MAX_ASPECT` (checked from the header, before decoding). :func:`inspect_image` reports what
a file is without failing, for ``python -m fewshot check-data``. PIL's global settings are left
as they are.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from fewshot.base.errors import ImageError

if TYPE_CHECKING:  # torch is imported where it is used: check-data starts without it
    import torch

__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "MAX_SIDE", "MAX_ASPECT", "size_problem", "header_problem",
           "ImageError", "ImageInfo", "load_rgb", "inspect_image",
           "read_bytes", "jpeg_header", "jpeg_channels", "nvjpeg_decodable", "resize_crop_batch", "decode_images",
           "decode_batch_gpu"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
MAX_PIXELS = 40_000_000  # ImageNet's largest photos have ~30 M; PIL only errs above 179 M
MAX_SIDE = 30_000  # pixels on either side (ImageNet's largest side is under 10,000)
MAX_ASPECT = 100  # long side / short side (ImageNet's panoramas stay under 10)
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def size_problem(width: int, height: int) -> str | None:
    """Why a ``width`` × ``height`` image is refused, or None. What decoding and CLIP's resize
    (short side to R) cost is counted, not the file's bytes: more than :data:`MAX_PIXELS`, a side
    above :data:`MAX_SIDE`, or one side more than :data:`MAX_ASPECT` times the other (R² ×
    ratio pixels after the resize: a 953-byte 300000×1 PNG would need 15 G of them)."""
    w, h = width, height
    if w <= 0 or h <= 0:
        return f"{w}×{h}: an image without pixels"
    if w * h > MAX_PIXELS:
        return (f"{w}×{h} = {w * h / 1e6:.0f} M pixels, above the limit of {MAX_PIXELS / 1e6:.0f} M "
                f"(fewshot.data.images.MAX_PIXELS)")
    if max(w, h) > MAX_SIDE:
        return f"{w}×{h}: a side of {max(w, h)} pixels, above the limit of {MAX_SIDE} (fewshot.data.images.MAX_SIDE)"
    if max(w, h) > MAX_ASPECT * min(w, h):
        return (f"{w}×{h}: one side {max(w, h) / min(w, h):.0f} times the other, above the limit of "
                f"{MAX_ASPECT} (fewshot.data.images.MAX_ASPECT; CLIP's resize of the short side would make "
                f"{224 * 224 * max(w, h) / min(w, h) / 1e6:,.0f} M pixels at 224)")
    return None


def _check_size(img: Image.Image) -> None:
    problem = size_problem(*img.size)  # from the header: PIL opens lazily, nothing decoded yet
    if problem:
        raise ValueError(f"{problem}; downscale or remove it")


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB of a decoded image: 16/32-bit grey scaled to 0-255 (PIL's convert clips it)."""
    if img.mode == "RGB":
        return img.copy()
    if img.mode in _SIXTEEN_BIT or img.mode == "I":
        import numpy as np

        a = np.asarray(img, dtype=np.int64)
        if a.min() < 0 or a.max() > 65535:
            raise ValueError(f"mode {img.mode} values {a.min()}..{a.max()} are not 8- or 16-bit")
        if img.mode in _SIXTEEN_BIT or a.max() > 255:
            a = (a * 255 + 32767) // 65535  # 16-bit -> 8-bit, rounded
        return Image.fromarray(a.astype(np.uint8), "L").convert("RGB")
    if img.mode == "F":
        raise ValueError("floating-point pixels (mode F) have no standard 8-bit scale; convert the "
                         "file to an 8-bit format")
    return img.convert("RGB")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully and return an 8-bit RGB ``PIL.Image`` (grayscale, 16-bit grey, CMYK,
    palette and alpha converted).

    Raises :class:`ImageError` naming the file when it is empty, truncated, too large, a broken
    link or not an image.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes). Re-download it or remove it.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns on odd EXIF/ICC data; not our concern
            with Image.open(path) as img:
                _check_size(img)
                img.load()
                return _to_rgb(img)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: cannot decode image ({err}). Re-download the file, or run "
                         f"`python -m fewshot check-data` on the dataset to list every bad file.") from err


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`inspect_image` found: ``ok`` is False when the file cannot be decoded."""

    path: str
    ok: bool
    mode: str = ""  # PIL mode before conversion: "RGB", "L", "CMYK", "P", ...
    size: tuple[int, int] = (0, 0)  # (width, height)
    error: str = ""


def inspect_image(path: str | os.PathLike) -> ImageInfo:
    """Decode ``path`` and report its mode and size, or the reason it cannot be decoded."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return ImageInfo(str(path), False, error="empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                mode, size = img.mode, img.size
                _check_size(img)
                img.load()
                _to_rgb(img)
        return ImageInfo(str(path), True, mode, size)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return ImageInfo(str(path), False, error=str(err))


def header_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is refused from its header alone (size limits of :func:`size_problem`, or a
    header PIL cannot read), or None; nothing is decoded (PIL opens lazily)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                problem = size_problem(*img.size)
        return f"{problem}; downscale or remove it" if problem else None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return f"cannot read the image header ({err})"


def read_bytes(path: str | os.PathLike) -> torch.Tensor:
    """A file's bytes as a uint8 tensor [L] (what loader workers hand to the GPU decoder)."""
    data = Path(path).read_bytes()
    if not data:
        raise ImageError(f"{path}: empty file (0 bytes). Re-download it or remove it.")
    import torch

    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _resize_geometry(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """(new h, new w, top, left) of CLIP's Resize(size) + CenterCrop(size) for an h × w image."""
    # torchvision's Resize(size): the long side is truncated, int(size * long / short)
    nh, nw = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    return nh, nw, int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))


def resize_crop_batch(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """uint8 images [3, H_i, W_i] (any sizes, one device) -> uint8 [B, 3, size, size]: the shorter
    side to ``size`` (bicubic, antialiased, rounded as PIL does), then the centre crop; CLIP's
    Resize + CenterCrop. Images of the same size are resized in one call (photo collections
    repeat a few sizes), so a batch costs a few kernel launches, not a few per image."""
    import torch
    import torch.nn.functional as F

    if not images:
        raise ValueError("resize_crop_batch: no images")
    groups: dict[tuple, list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape[-2:]), []).append(i)
    out = torch.empty(len(images), 3, size, size, dtype=torch.uint8, device=images[0].device)
    for (h, w), idx in groups.items():
        nh, nw, top, left = _resize_geometry(h, w, size)
        x = torch.stack([images[i] for i in idx]).float()
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
        out[torch.tensor(idx, device=out.device)] = \
            x[:, :, top:top + size, left:left + size].round_().clamp_(0, 255).to(torch.uint8)
    return out


def jpeg_header(data: bytes) -> tuple[int, int, int]:
    """(colour components, height, width) from a baseline/progressive JPEG's SOF header; zeros if
    there is none in ``data``."""
    i = 2
    while i + 9 < len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
            return data[i + 9], h, w
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return 0, 0, 0


def jpeg_channels(data: bytes) -> int:
    """Colour components of a baseline/progressive JPEG from its SOF header (1, 3 or 4; 0 if none)."""
    return jpeg_header(data)[0]


def _decode_jpegs(datas: list[torch.Tensor], device) -> list:
    """nvjpeg on a list of JPEG byte tensors; a failing file gives None instead of failing all."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(datas, mode=ImageReadMode.RGB, device=device) if datas else []
    except (RuntimeError, ValueError):  # one bad file fails the batch: retry one by one
        out = []
        for d in datas:
            try:
                out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
            except (RuntimeError, ValueError):
                out.append(None)
        return out


def nvjpeg_decodable(data: bytes) -> bool:
    """Whether nvjpeg should decode these file bytes: a JPEG with 1 or 3 components (not CMYK)
    within the size limits (:func:`size_problem`). Anything else goes to :func:`load_rgb`, which
    converts or refuses it by name."""
    if not (len(data) > 3 and data[0] == 0xFF and data[1] == 0xD8):
        return False
    channels, h, w = jpeg_header(data[:65536])
    return channels in (1, 3) and size_problem(w, h) is None


def decode_images(datas: list[torch.Tensor], paths: list[str], device,
                  decodable: list[bool] | None = None) -> list[torch.Tensor]:
    """Decode files' bytes to uint8 RGB images [3, H_i, W_i] on ``device``: JPEGs with nvjpeg
    (torchvision's decoder, batched; on a CPU ``device`` its CPU twin), everything nvjpeg cannot
    decode (CMYK, PNG, corrupt headers) with :func:`load_rgb` on the CPU, so every file gives the
    same image either way; a file PIL cannot decode either raises ImageError naming it.

    datas: uint8 byte tensors [L_i]; ``decodable`` [B] is :func:`nvjpeg_decodable` of each file
    when the caller has it already.
    """
    import torchvision.transforms.functional as TF

    if decodable is None:
        decodable = [nvjpeg_decodable(d[:65536].numpy().tobytes()) for d in datas]
    jpeg = [i for i, ok in enumerate(decodable) if ok]
    decoded = dict(zip(jpeg, _decode_jpegs([datas[i] for i in jpeg], device)))
    images = [decoded.get(i) for i in range(len(paths))]
    for i, path in enumerate(paths):
        if images[i] is None:  # CPU fallback; the resize that follows is the same
            images[i] = TF.pil_to_tensor(load_rgb(path)).to(device)
    return images


def decode_batch_gpu(datas: list[torch.Tensor], paths: list[str], size: int, device,
                     decodable: list[bool] | None = None) -> torch.Tensor:
    """:func:`decode_images`, then CLIP's resize + centre crop on ``device``
    (:func:`resize_crop_batch`): uint8 [B, 3, size, size]."""
    return resize_crop_batch(decode_images(datas, paths, device, decodable), size)
