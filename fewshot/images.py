"""Images: decoding files to RGB, robustly, with errors that name the file.

ImageNet holds grayscale, CMYK and palette JPEGs; a course drive may hold zero-byte or truncated
files. :func:`load_rgb` converts every readable mode to RGB and raises :class:`ImageError` with
the path for anything else. :func:`inspect_image` reports what a file is without failing, for
``python -m fewshot check-data``.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFile

__all__ = ["IMAGE_EXTENSIONS", "ImageError", "ImageInfo", "load_rgb", "inspect_image"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently grey
Image.MAX_IMAGE_PIXELS = 200_000_000  # large photos are fine; decompression bombs are not


class ImageError(ValueError):
    """A file that cannot be decoded as an image."""


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully and return an RGB ``PIL.Image`` (grayscale, CMYK, palette converted).

    Raises :class:`ImageError` naming the file when it is empty, truncated or not an image.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes). Re-download it or remove it.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns on odd EXIF/ICC data; not our concern
            with Image.open(path) as img:
                img.load()
                return img.copy() if img.mode == "RGB" else img.convert("RGB")
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
                img.load()
        return ImageInfo(str(path), True, mode, size)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return ImageInfo(str(path), False, error=str(err))
