"""The seven corruptions, each against an independent computation of its formula on a tiny image, plus
determinism, shape and dtype over the whole registry."""
import io
import math

import numpy as np
import pytest
from PIL import Image

from fewshot.data.corruptions import CORRUPTIONS, SEVERITY, corrupt, list_corruptions


def _image(side=32, seed=0):
    """A smooth image with an edge (so blur, JPEG and pixelation change it) plus a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    x = np.stack([200 * xx + 20, 180 * yy + 30, 120 * (xx > 0.5) + 60], axis=-1) + rng.normal(0, 8, (side, side, 3))
    return np.clip(x, 0, 255).astype(np.uint8)


def test_fusionbench_order_and_the_experiment_severity():
    assert list_corruptions() == ["gaussian_noise", "impulse_noise", "motion_blur", "contrast", "pixelate",
                                  "jpeg_compression", "spatter"]
    assert SEVERITY == 5


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("side", [32, 48, 64])
def test_shape_dtype_determinism_and_a_change(name, side):
    x = _image(side)
    for severity in (1, 3, 5):
        a, b = corrupt(x, name, severity, rng=7), corrupt(Image.fromarray(x), name, severity, rng=7)
        assert a.shape == x.shape and a.dtype == np.uint8
        assert np.array_equal(a, b)  # same seed (and PIL or array input): the same image
    assert np.array_equal(corrupt(x, name, rng=np.random.default_rng(3)), corrupt(x, name, rng=np.random.default_rng(3)))
    assert not np.array_equal(corrupt(x, name, 5, rng=1), x)


def test_unknown_name_and_severity_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="gaussian_noise"):
        corrupt(_image(), "fog")
    with pytest.raises(ValueError, match="1-5"):
        corrupt(_image(), "contrast", 6)


@pytest.mark.parametrize("severity,c", [(1, 0.75), (5, 0.15)])
def test_contrast_is_the_mean_blend(severity, c):
    x = _image()
    f = x.astype(np.float64) / 255
    mean = f.reshape(-1, 3).mean(0)
    expected = np.uint8(np.clip((f - mean) * c + mean, 0, 1) * 255)
    assert np.array_equal(corrupt(x, "contrast", severity), expected)


@pytest.mark.parametrize("severity,c", [(1, 0.04), (5, 0.10)])
def test_gaussian_noise_with_a_fixed_rng(severity, c):
    x = _image()
    noise = np.random.default_rng(11).normal(0.0, c, x.shape)
    expected = np.uint8(np.clip(x / 255.0 + noise, 0, 1) * 255)
    assert np.array_equal(corrupt(x, "gaussian_noise", severity, rng=11), expected)


@pytest.mark.parametrize("severity,c", [(1, 0.01), (5, 0.07)])
def test_impulse_noise_is_scikit_images_salt_and_pepper(severity, c):
    from skimage.util import random_noise

    x = _image(64)
    expected = np.uint8(np.clip(random_noise(x / 255.0, mode="s&p", amount=c, rng=np.random.default_rng(5)), 0, 1) * 255)
    out = corrupt(x, "impulse_noise", severity, rng=5)
    assert np.array_equal(out, expected)
    changed = (out != x).mean()
    assert abs(changed - c) < 0.2 * c + 0.003  # about c of the values (a few already were 0 or 255)
    assert set(np.unique(out[out != x])) <= {0, 255}


@pytest.mark.parametrize("severity,q", [(1, 80), (5, 40)])
def test_jpeg_is_pils_encoder_at_that_quality(severity, q):
    x = _image()
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="JPEG", quality=q)
    assert np.array_equal(corrupt(x, "jpeg_compression", severity), np.asarray(Image.open(buf)))


def _box_down_up(x, small):
    """Box averages over the source pixels each small pixel covers (exact for integer ratios), then
    each output pixel takes its small pixel's value (nearest)."""
    h = x.shape[0]
    r = h // small
    down = x.reshape(small, r, small, r, 3).astype(np.float64).mean(axis=(1, 3))
    return np.repeat(np.repeat(down, r, 0), r, 1)


def test_pixelate_is_box_down_then_up():
    x = _image(32)
    # severity 5: c = 0.65 -> int(32·0.65) = 20 px (as FusionBench's int(32 * c)); PIL does it
    out = corrupt(x, "pixelate", 5)
    ref = np.asarray(Image.fromarray(x).resize((20, 20), Image.BOX).resize((32, 32), Image.BOX))
    assert np.array_equal(out, ref)
    # on a 64-px image scaled from the 32-px reference: the same 20-px grid
    x64 = _image(64)
    ref64 = np.asarray(Image.fromarray(x64).resize((20, 20), Image.BOX).resize((64, 64), Image.BOX))
    assert np.array_equal(corrupt(x64, "pixelate", 5), ref64)
    # and the box filter itself, by hand, where the ratio is an integer (unscaled, c·64 -> 41: use 16 of 32)
    x16 = np.asarray(Image.fromarray(x).resize((16, 16), Image.BOX).resize((32, 32), Image.BOX)).astype(int)
    assert np.abs(x16 - np.rint(_box_down_up(x, 16))).max() <= 1


def _motion_by_loops(x, radius, sigma, angle):
    """ImageMagick's MotionBlurImage, pixel by pixel: taps i = 0..2⌈r⌉, weight exp(−i²/2σ²)
    (normalised), sample at (y + round(i·sin a), x + round(i·cos a)), edge pixels repeated."""
    n = 2 * math.ceil(radius) + 1
    w = [math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(n)]
    total = sum(w)
    a = math.radians(angle)
    h, wd = x.shape[:2]
    out = np.zeros(x.shape)
    for yy in range(h):
        for xx in range(wd):
            acc = np.zeros(3)
            for i in range(n):
                v = min(max(yy + math.ceil(i * math.sin(a) - 0.5), 0), h - 1)
                u = min(max(xx + math.ceil(i * math.cos(a) - 0.5), 0), wd - 1)
                acc += w[i] / total * x[v, u]
            out[yy, xx] = acc
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("side,severity", [(32, 1), (32, 5), (48, 3)])
def test_motion_blur_is_imagemagicks_line_kernel(side, severity):
    x = _image(side)
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][severity - 1]
    angle = np.random.default_rng(4).uniform(-45, 45)  # the first draw of the seed
    s = side / 32
    expected = _motion_by_loops(x, radius * s, sigma * s, angle)
    assert np.array_equal(corrupt(x, "motion_blur", severity, rng=4), expected)


def test_motion_blur_keeps_a_flat_image():
    flat = np.full((32, 32, 3), 97, dtype=np.uint8)
    assert np.array_equal(corrupt(flat, "motion_blur", 5, rng=0), flat)


def test_spatter_mud_is_the_published_formula_at_32_px():
    from skimage.filters import gaussian

    x = _image(32)
    c = (0.65, 0.1, 0.5, 0.68, 0.6, 1)  # severity 5
    rng = np.random.default_rng(9)
    liquid = gaussian(rng.normal(size=(32, 32), loc=c[0], scale=c[1]), sigma=c[2])
    liquid[liquid < c[3]] = 0
    m = gaussian(np.where(liquid > c[3], 1, 0).astype(np.float32), sigma=c[4])
    m[m < 0.8] = 0
    f = x.astype(np.float32) / 255
    mud = np.array([63, 42, 20], dtype=np.float32) / 255 * m[..., None]
    expected = np.uint8(np.clip(f * (1 - m[..., None]) + mud, 0, 1) * 255)
    out = corrupt(x, "spatter", 5, rng=9)
    assert np.abs(out.astype(int) - expected).max() <= 1  # float32 (reference) vs float64 rounding
    assert (np.abs(out.astype(int) - expected) > 0).mean() < 0.01


@pytest.mark.parametrize("severity", [1, 2, 3])
def test_spatter_water_only_adds_pale_turquoise(severity):
    x = _image(32)
    out = corrupt(x, "spatter", severity, rng=2).astype(int)
    added = out - x
    assert (added >= -1).all()  # water brightens: x + m·(175, 238, 238)/255, clipped
    wet = added.sum(-1) > 6
    if wet.any():  # blue and green rise more than red, in the turquoise's ratio 175:238
        red, green = added[wet][:, 0], added[wet][:, 1]
        unclipped = (out[wet] < 255).all(-1)
        ratio = red[unclipped].sum() / max(green[unclipped].sum(), 1)
        assert abs(ratio - 175 / 238) < 0.1 or unclipped.sum() == 0
