"""The GPU decode path's logic, run on the CPU (torchvision decodes there with the same calls):
same pixels as CLIP's PIL preprocessing up to resampling rounding; CMYK and PNG fall back to PIL."""
import pytest
import torch
from PIL import Image

from fewshot.features.preprocess import CLIP_MEAN, CLIP_STD
from fewshot.data.images import ImageError, decode_batch_gpu, jpeg_channels, read_bytes

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


def _tiny_model():
    from fewshot.models.backbones import build_clip

    torch.manual_seed(0)
    return build_clip(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                      context_length=8, transformer_width=64, transformer_layers=1).eval()


@pytest.mark.parametrize("workers, decode_batch", [(0, None), (2, None), (0, 5)])
def test_encode_images_gpu_equals_one_image_at_a_time(tmp_path, workers, decode_batch):
    """The pipelined path (packed bytes from workers, decode thread, batched resize by size) gives
    each image the features of decoding, resizing and encoding it alone, in the input order."""
    from fewshot.features.loaders import encode_images_gpu
    from fewshot.features.preprocess import normalize_pixels
    from fewshot.data.images import resize_crop_batch

    sizes = [(500, 375), (375, 500), (500, 375), (64, 80), (500, 375)]
    paths = [_photo(tmp_path / f"{i}.jpg", size=s) for i, s in enumerate(sizes)]
    paths.append(_photo(tmp_path / "cmyk.jpg", "CMYK"))
    Image.open(paths[0]).save(tmp_path / "p.png")
    paths.append(tmp_path / "p.png")
    names = [p.name for p in paths]
    model = _tiny_model()
    got = encode_images_gpu(model, tmp_path, names, 64, "cpu", batch_size=3, num_workers=workers,
                            progress=False, decode_batch=decode_batch)  # 5: decoded 5, encoded 3+2
    assert got.shape[0] == len(names)
    with torch.no_grad():
        for i, p in enumerate(paths):
            one = decode_batch_gpu([read_bytes(p)], [str(p)], 64, "cpu")
            ref = model.encode_image(normalize_pixels(one)).half()
            assert torch.allclose(got[i].float(), ref[0].float(), atol=1e-3), p.name
    # the batched resize equals resizing each image on its own (same size groups or not)
    imgs = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for w, h in sizes]
    together = resize_crop_batch(imgs, 64)
    for img, row in zip(imgs, together):
        assert torch.equal(resize_crop_batch([img], 64)[0], row)


def test_encode_images_gpu_names_a_bad_file(tmp_path):
    from fewshot.features.loaders import encode_images_gpu

    _photo(tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)
    model = _tiny_model()
    with pytest.raises(ImageError, match="bad.jpg"):
        encode_images_gpu(model, tmp_path, ["good.jpg", "bad.jpg"], 64, "cpu", batch_size=1,
                          num_workers=0, progress=False)


def test_byte_batches_hold_each_files_bytes(tmp_path):
    """One loader batch: the files' bytes back to back in one tensor, their lengths, whether
    nvjpeg can decode each (not CMYK, PNG or an empty file), and their paths."""
    from fewshot.features.loaders import ByteBatches

    rgb = _photo(tmp_path / "a.jpg")
    _photo(tmp_path / "c.jpg", "CMYK")
    Image.open(rgb).save(tmp_path / "p.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    names = ["a.jpg", "c.jpg", "p.png", "empty.jpg", "a.jpg"]
    packed, lengths, decodable, files = ByteBatches(tmp_path, names)[[0, 1, 2, 3, 4]]
    assert files == [str(tmp_path / n) for n in names]
    assert decodable == [True, False, False, False, True]
    assert [bytes(t.numpy()) for t in torch.split(packed, lengths)] == [(tmp_path / n).read_bytes() for n in names]


def test_ahead_yields_in_order_and_raises_the_producers_error():
    from fewshot.features.loaders import ahead

    def items():
        yield from range(5)
        raise ValueError("bad file: x.jpg")

    got = []
    with pytest.raises(ValueError, match="x.jpg"):
        for item in ahead(items()):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_closing_a_chain_of_stages_stops_every_thread():
    """A consumer that stops early (an error in the encoder, say) ends every stage's thread and
    closes the source, even when the source would never end."""
    import threading

    from fewshot.features.loaders import ahead

    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    def double(items):
        for x in items:
            yield 2 * x

    chain = ahead(double(ahead(endless())))
    assert [next(chain) for _ in range(3)] == [0, 2, 4]
    chain.close()
    assert closed.wait(5)
    assert not [t for t in threading.enumerate() if t.name == "fewshot-ahead"]


def test_import_sets_32_hardware_queues_unless_the_user_chose():
    import os
    import subprocess
    import sys

    code = "import fewshot, os; print(os.environ['CUDA_DEVICE_MAX_CONNECTIONS'])"
    env = {k: v for k, v in os.environ.items() if k != "CUDA_DEVICE_MAX_CONNECTIONS"}
    run = lambda e: subprocess.run([sys.executable, "-c", code], env=e, capture_output=True,  # noqa: E731
                                   text=True, check=True).stdout.strip()
    assert run(env) == "32"
    assert run({**env, "CUDA_DEVICE_MAX_CONNECTIONS": "4"}) == "4"
