"""Where the GPU decode path spends its time: each stage alone, then together (CUDA only).

    python bench/decode_probe.py [--images 4096]

Rows: the image tower by memory layout (NCHW, channels-last) and fused (fewshot.models.bn_fold); loader
workers alone, with the old per-file pickled bytes and with the current zero-copy batches; loader +
nvjpeg decode (no encoder); the whole path; and how long a decode call takes behind queued,
unrelated GPU work (run it with CUDA_DEVICE_MAX_CONNECTIONS=8 to see CUDA's default).
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from common import forward_rate, report, timed
from extract import synthetic_jpegs
from fewshot.models.backbones import build_clip, load_backbone, save_checkpoint
from fewshot.features.loaders import ByteBatches, ahead, decode_stage, encode_images_gpu
from fewshot.data.images import nvjpeg_decodable, read_bytes


class _OldFileBytes(torch.utils.data.Dataset):
    """The previous loader: bytes per file, joined into one tensor by the collate function."""

    def __init__(self, root, paths):
        self.root, self.paths = root, paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        path = self.root / self.paths[i]
        return path.read_bytes(), str(path)


def _old_pack(batch):
    datas = [b[0] for b in batch]
    packed = torch.frombuffer(bytearray(b"".join(datas)), dtype=torch.uint8)
    return packed, [len(d) for d in datas], [nvjpeg_decodable(d) for d in datas], [b[1] for b in batch]


def loader(root, names, old: bool, workers: int = 2, batch: int = 256):
    if old:
        return torch.utils.data.DataLoader(_OldFileBytes(root, names), batch_size=batch,
                                           num_workers=workers, collate_fn=_old_pack)
    sampler = torch.utils.data.BatchSampler(range(len(names)), batch, drop_last=False)
    return torch.utils.data.DataLoader(ByteBatches(root, names), batch_size=None, sampler=sampler,
                                       num_workers=workers)


def stage_rows(ckpt, tmp, names, dev) -> dict:
    """Each stage alone: the image tower three ways, loader workers, loader + decode."""
    from fewshot.models.bn_fold import fuse_image_tower

    n, rows = len(names), {}
    vis = load_backbone(str(ckpt), dev, fast_inference=False).model.visual
    x = torch.randn(256, 3, 224, 224, device=dev, dtype=torch.float16)
    rows["encoder_clip_forward_nchw_img_s"] = round(forward_rate(vis, x))
    vis.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    rows["encoder_clip_forward_channels_last_img_s"] = round(forward_rate(vis, x))
    fuse_image_tower(vis)
    rows["encoder_fused_channels_last_img_s"] = round(forward_rate(vis, x))

    def drain(items):
        t0 = time.perf_counter()
        for _ in items:
            pass
        torch.cuda.synchronize()
        return round(n / (time.perf_counter() - t0))

    for old in (True, False):
        tag = "old_pickled" if old else "zero_copy"
        rows[f"loader_2_workers_{tag}_img_s"] = drain(ahead(loader(tmp, names, old)))
        rows[f"loader_decode_{tag}_img_s"] = drain(ahead(decode_stage(ahead(loader(tmp, names, old)), dev, torch.cuda.Stream(dev))))
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--quick", action="store_true", help="only the whole path and the queued decode")
    args = p.parse_args()
    from torchvision.io import ImageReadMode, decode_jpeg

    dev = torch.device("cuda")
    tmp = Path(tempfile.mkdtemp())
    save_checkpoint(build_clip(), tmp / "rn50.pt")
    bb = load_backbone(str(tmp / "rn50.pt"), dev)  # as the suite runs it: fused, channels-last
    vis, n = bb.model.visual, args.images
    names = synthetic_jpegs(tmp, n)
    rows = {"images": n, "CUDA_DEVICE_MAX_CONNECTIONS": os.environ.get("CUDA_DEVICE_MAX_CONNECTIONS", "")}
    if not args.quick:
        rows.update(stage_rows(tmp / "rn50.pt", tmp, names, dev))
    run = lambda: encode_images_gpu(bb.model, tmp, names, 224, dev, 256, 2, progress=False)  # noqa: E731
    run()
    rows["whole_path_img_s"] = [round(n / timed(run, dev)[1]) for _ in range(3)]

    # a decode call behind ~0.3 s of queued matmuls on another stream. nvjpeg converts each image
    # with a small kernel and waits for it before the next image; with CUDA's default 8 hardware
    # queues, its stream can share a queue with the busy one and wait for all of it
    datas = [read_bytes(tmp / nm) for nm in names[:256]]
    decode = lambda: decode_jpeg(datas, mode=ImageReadMode.RGB, device=dev)  # noqa: E731
    decode()
    _, idle = timed(decode, dev, repeat=3)
    a = torch.randn(8192, 8192, device=dev, dtype=torch.float16)
    work = torch.cuda.Stream(dev)
    torch.cuda.synchronize()
    with torch.cuda.stream(work):
        for _ in range(200):
            a @ a
    t0 = time.perf_counter()
    decode()
    rows["decode_256_idle_s"] = round(idle, 4)
    rows["decode_256_behind_queued_work_s"] = round(time.perf_counter() - t0, 4)
    torch.cuda.synchronize()
    _, busy = timed(lambda: [a @ a for _ in range(200)], dev)
    rows["queued_work_s"] = round(busy, 4)
    x = torch.randn(256, 3, 224, 224, device=dev, dtype=torch.float16)
    with torch.no_grad(), torch.cuda.stream(work):
        _, enc = timed(lambda: [vis(x) for _ in range(10)], dev)
        for _ in range(10):
            vis(x)
        t0 = time.perf_counter()
        decode()
    rows["decode_256_behind_queued_encoder_s"] = round(time.perf_counter() - t0, 4)
    rows["queued_encoder_s"] = round(enc, 4)
    report("decode_probe", rows, dev)


if __name__ == "__main__":
    main()
