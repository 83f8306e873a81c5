"""Feature extraction throughput: encoder-only ceiling, PIL + DataLoader (the notebook's way), and
the GPU path (bytes from workers, nvjpeg decode + resize on the GPU); plus the agreement of the two
paths on real photographs (scikit-image's sample images).

    python bench/extract.py [--images 4096] [--workers 2 16]      # CUDA
    python bench/extract.py --small                               # CPU: PIL path only
"""
import argparse
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import forward_rate, report, timed
from fewshot.models.backbones import build_clip, load_backbone, save_checkpoint
from fewshot.features.loaders import encode_images, encode_images_gpu
from fewshot.features.preprocess import center_pixels, centered, normalize_pixels
from fewshot.data.images import decode_batch_gpu, read_bytes


def _write_jpeg(job):
    path, seed = job
    rng = np.random.default_rng(seed)
    w, h = (500, 375) if seed % 3 else (375, 500)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * rng.uniform(0.2, 1) + yy * rng.uniform(0, 0.5)) % 256,
                    (yy * rng.uniform(0.2, 1)) % 256, rng.integers(0, 256, (h, w))], -1)
    Image.fromarray(img.astype(np.uint8)).save(path, quality=90)


def synthetic_jpegs(folder: Path, n: int) -> list[str]:
    names = [f"img_{i:06d}.jpg" for i in range(n)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write_jpeg, [(folder / nm, i) for i, nm in enumerate(names)], chunksize=64))
    return names


def agreement(backbone, folder: Path, plain=None) -> dict:
    """Mean |pixel difference| (0-255) and feature cosine, PIL path vs GPU path, on real photos;
    with ``plain`` (the same CLIP running its own forward), also the cosine of the suite's image
    tower (fused on CUDA) to CLIP's forward on the PIL path's pixels."""
    from skimage import data

    photos = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(),
              "rocket": data.rocket(), "camera (gray)": data.camera(), "immunohistochemistry": data.immunohistochemistry()}
    diffs, cos, tower_cos = [], [], []
    size = backbone.input_resolution
    for name, arr in photos.items():
        path = folder / f"{name.split()[0]}.jpg"
        Image.fromarray(arr).save(path, quality=95)
        pil = backbone.preprocess(Image.open(path))  # normalised [3, R, R]
        gpu = decode_batch_gpu([read_bytes(path)], [str(path)], size, backbone.device)[0].cpu()
        diffs.append(float((center_pixels(Image.open(path).convert("RGB"), size).float() - gpu.float()).abs().mean()))
        x = torch.stack([pil, normalize_pixels(gpu)]).to(backbone.device)
        with torch.no_grad():
            f = torch.nn.functional.normalize(backbone.model.encode_image(x.to(backbone.model.dtype)).float(), dim=-1)
        cos.append(float(f[0] @ f[1]))
        if plain is not None:
            with torch.no_grad():
                g = torch.nn.functional.normalize(plain.encode_image(x[:1].to(plain.dtype)).float(), dim=-1)
            tower_cos.append(float(f[0] @ g[0]))
    return {"agreement_photos": list(photos), "mean_abs_pixel_diff_0_255": round(float(np.mean(diffs)), 3),
            "max_mean_abs_pixel_diff": round(max(diffs), 3), "feature_cosine_min": round(min(cos), 5),
            **({"tower_vs_clip_forward_cosine_min": round(min(tower_cos), 6)} if tower_cos else {})}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--workers", type=int, nargs="+", default=[2, 16])
    p.add_argument("--small", action="store_true", help="CPU sizes: 256 images, tiny model")
    args = p.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() and not args.small else "cpu")
    tmp = Path(tempfile.mkdtemp())
    model = build_clip() if not args.small else build_clip(embed_dim=64, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=16, context_length=16, transformer_width=64, transformer_layers=1)
    save_checkpoint(model, tmp / "rn50-random.pt")
    bb = load_backbone(str(tmp / "rn50-random.pt"), dev)
    n = 256 if args.small else args.images
    names = synthetic_jpegs(tmp, n)
    rows = {"images": n, "image_size": "500x375 / 375x500 JPEG q90", "model": "RN50-shaped, random weights" if not args.small else "tiny"}
    x = torch.randn(256, 3, bb.input_resolution, bb.input_resolution, device=dev, dtype=bb.model.dtype)
    plain = load_backbone(str(tmp / "rn50-random.pt"), dev, fast_inference=False).model
    # CLIP's own forward (the ceiling), then as the suite runs it
    rows["encoder_only_clip_forward_img_s"] = round(forward_rate(plain.encode_image, x, calls=5))
    rows["encoder_only_img_s"] = round(forward_rate(bb.model.encode_image, x, calls=5))
    rows["image_tower"] = bb.image_tower
    import functools
    pil_fn = functools.partial(centered, size=bb.input_resolution)
    for w in args.workers:
        w = min(w, os.cpu_count())
        _, sec = timed(lambda: encode_images(bb.model, tmp, names, pil_fn, dev, 256, w, progress=False), dev)
        rows[f"pil_dataloader_{w}_workers_img_s"] = round(n / sec)
    if dev.type == "cuda":
        run = lambda: encode_images_gpu(bb.model, tmp, names, bb.input_resolution, dev, 256, 2, progress=False)  # noqa: E731
        run()  # warm-up: nvjpeg's decoder, cudnn's plans, the allocator's pools
        rates = [round(n / timed(run, dev)[1]) for _ in range(5)]
        rows["gpu_decode_2_workers_img_s"] = sorted(rates)[len(rates) // 2]  # the median
        rows["gpu_decode_2_workers_img_s_runs"] = rates
        base = rows[f"pil_dataloader_{min(2, os.cpu_count())}_workers_img_s"]
        rows["speedup_vs_pil_2_workers"] = round(rows["gpu_decode_2_workers_img_s"] / base, 1)
        rows.update(agreement(bb, tmp, plain))
    report("extract", rows, dev)


if __name__ == "__main__":
    main()
