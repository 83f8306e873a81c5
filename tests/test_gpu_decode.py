"""The GPU decode path's logic, run on the CPU (torchvision decodes there with the same calls):
same pixels as CLIP's PIL preprocessing up to resampling rounding; CMYK and PNG fall back to PIL."""
import numpy as np
import pytest
import torch
from PIL import Image

from fewshot.features import CLIP_MEAN, CLIP_STD
from fewshot.images import ImageError, decode_batch_gpu, jpeg_channels, read_bytes

import clip


def _photo(path, mode="RGB", size=(500, 375)):
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize(size).convert(mode)
    img.save(path, quality=95)
    return path


def _pil_pixels(path, res):
    x = clip.clip._transform(res)(Image.open(path))  # CLIP's own preprocessing, normalised
    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    return (x * std + mean) * 255


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (224, 224)])
def test_matches_clip_preprocessing(tmp_path, size):
    path = _photo(tmp_path / "a.jpg", size=size)
    got = decode_batch_gpu([read_bytes(path)], [str(path)], 224, "cpu")
    assert got.shape == (1, 3, 224, 224) and got.dtype == torch.uint8
    diff = (got[0].float() - _pil_pixels(path, 224)).abs()
    assert diff.mean() < 1.5  # different decoders and resampling code; measured ~0.5 on photos


def test_cmyk_png_and_gray_are_decoded(tmp_path):
    cmyk, gray = _photo(tmp_path / "c.jpg", "CMYK"), _photo(tmp_path / "g.jpg", "L")
    png = tmp_path / "p.png"
    Image.open(_photo(tmp_path / "x.jpg")).save(png)
    assert jpeg_channels(cmyk.read_bytes()) == 4 and jpeg_channels(gray.read_bytes()) == 1
    paths = [cmyk, png, gray]
    got = decode_batch_gpu([read_bytes(p) for p in paths], [str(p) for p in paths], 64, "cpu")
    for img, path in zip(got, paths):
        assert (img.float() - _pil_pixels(path, 64)).abs().mean() < 2.0


def test_undecodable_file_is_named(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)
    with pytest.raises(ImageError, match="bad.jpg"):
        decode_batch_gpu([read_bytes(bad)], [str(bad)], 64, "cpu")

