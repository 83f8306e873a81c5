"""Where the GPU decode path spends its time: each stage alone, then together (CUDA only).

    python bench/decode_probe.py [--images 4096]

Rows: the image encoder by memory layout (NCHW, channels-last) and with BatchNorm folded into
cudnn's fused conv+bias+ReLU (a prototype, not used by the package); loader workers alone, with the
old per-file pickled bytes and with the current zero-copy batches; loader + nvjpeg decode (no
encoder); the whole path; and how long a decode call takes behind queued, unrelated GPU work.
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import report, timed
from extract import synthetic_jpegs
from fewshot.backbones import build_clip, load_backbone, save_checkpoint
from fewshot.features import _ahead, _ByteBatches, _decode_stage, encode_images_gpu
from fewshot.images import nvjpeg_decodable, read_bytes


def encoder_rate(forward, dev, channels_last: bool, batch: int = 256) -> float:
    x = torch.randn(batch, 3, 224, 224, device=dev, dtype=torch.float16)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for _ in range(3):
            forward(x)
        _, sec = timed(lambda: [forward(x) for _ in range(10)], dev, repeat=3)
    return 10 * batch / sec


def _fold(conv, bn):
    """(weight, bias) of conv followed by eval-mode BatchNorm, as one conv."""
    scale = bn.weight.float() / (bn.running_var.float() + bn.eps).sqrt()
    w = (conv.weight.float() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype)
    return w.contiguous(memory_format=torch.channels_last), (bn.bias.float() - bn.running_mean.float() * scale).to(conv.weight.dtype)


def fused_visual(visual):
    """CLIP's ModifiedResNet forward with BatchNorm folded into the convs, conv+bias+ReLU and
    conv+bias+residual+ReLU as single cudnn calls (F.conv2d + relu on a CPU)."""
    stem = [_fold(getattr(visual, f"conv{i}"), getattr(visual, f"bn{i}")) for i in (1, 2, 3)]
    blocks = []
    for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
        for b in layer:
            ds = _fold(b.downsample._modules["0"], b.downsample._modules["1"]) if b.downsample is not None else None
            blocks.append((b.stride, _fold(b.conv1, b.bn1), _fold(b.conv2, b.bn2), _fold(b.conv3, b.bn3), ds))

    def conv_relu(x, wb, stride, pad):
        if not x.is_cuda:
            return F.relu(F.conv2d(x, wb[0], wb[1], stride, pad))
        return torch.cudnn_convolution_relu(x, wb[0], wb[1], (stride, stride), (pad, pad), (1, 1), 1)

    def conv_add_relu(x, wb, z):
        if not x.is_cuda:
            return F.relu(F.conv2d(x, wb[0], wb[1]) + z)
        return torch.cudnn_convolution_add_relu(x, wb[0], z, 1.0, wb[1], (1, 1), (0, 0), (1, 1), 1)

    def forward(x):
        x = x.to(stem[0][0].dtype).contiguous(memory_format=torch.channels_last)
        x = F.avg_pool2d(conv_relu(conv_relu(conv_relu(x, stem[0], 2, 1), stem[1], 1, 1), stem[2], 1, 1), 2)
        for stride, w1, w2, w3, ds in blocks:
            out = conv_relu(conv_relu(x, w1, 1, 0), w2, 1, 1)
            if stride > 1:
                out = F.avg_pool2d(out, stride)
            identity = x
            if ds is not None:
                identity = F.conv2d(F.avg_pool2d(x, stride) if stride > 1 else x, ds[0], ds[1])
            x = conv_add_relu(out, w3, identity)
        return visual.attnpool(x)
    return forward


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
    return torch.utils.data.DataLoader(_ByteBatches(root, names), batch_size=None, sampler=sampler,
                                       num_workers=workers)


def stage_rows(bb, tmp, names, dev) -> dict:
    """Each stage alone: encoder variants, loader workers, loader + decode."""
    vis, n, rows = bb.model.visual, len(names), {}
    with torch.no_grad():  # BatchNorm statistics that make folding non-trivial
        for m in vis.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        fused = fused_visual(vis)
        x = torch.randn(64, 3, 224, 224, device=dev, dtype=torch.float16)
        ref = vis(x).float()
        rows["fused_rel_err_vs_eager_fp16"] = round(float((fused(x).float() - ref).norm() / ref.norm()), 6)
    rows["encoder_channels_last_img_s"] = round(encoder_rate(vis, dev, True))
    rows["encoder_fused_prototype_img_s"] = round(encoder_rate(fused, dev, True))
    vis.to(memory_format=torch.contiguous_format)
    rows["encoder_nchw_img_s"] = round(encoder_rate(vis, dev, False))
    vis.to(memory_format=torch.channels_last)

    def drain(items):
        t0 = time.perf_counter()
        for _ in items:
            pass
        torch.cuda.synchronize()
        return round(n / (time.perf_counter() - t0))

    for old in (True, False):
        tag = "old_pickled" if old else "zero_copy"
        rows[f"loader_2_workers_{tag}_img_s"] = drain(_ahead(loader(tmp, names, old)))
        rows[f"loader_decode_{tag}_img_s"] = drain(_ahead(_decode_stage(_ahead(loader(tmp, names, old)), dev, torch.cuda.Stream(dev))))
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--quick", action="store_true", help="only the whole path and the queued decode")
    p.add_argument("--fused-path", action="store_true", help="also the whole path with the fused encoder")
    args = p.parse_args()
    from torchvision.io import ImageReadMode, decode_jpeg

    dev = torch.device("cuda")
    tmp = Path(tempfile.mkdtemp())
    save_checkpoint(build_clip(), tmp / "rn50.pt")
    bb = load_backbone(str(tmp / "rn50.pt"), dev)  # channels-last on CUDA
    vis, n = bb.model.visual, args.images
    names = synthetic_jpegs(tmp, n)
    rows = {"images": n, "CUDA_DEVICE_MAX_CONNECTIONS": os.environ.get("CUDA_DEVICE_MAX_CONNECTIONS", "")}
    if not args.quick:
        rows.update(stage_rows(bb, tmp, names, dev))
    run = lambda m: encode_images_gpu(m, tmp, names, 224, dev, 256, 2, progress=False)  # noqa: E731
    run(bb.model)
    rows["whole_path_img_s"] = [round(n / timed(lambda: run(bb.model), dev)[1]) for _ in range(3)]
    if args.fused_path:
        class Fused:  # what encode_images_gpu uses of a CLIP model
            visual = vis
            encode_image = staticmethod(fused_visual(vis))
        run(Fused)
        rows["whole_path_fused_img_s"] = [round(n / timed(lambda: run(Fused), dev)[1]) for _ in range(3)]
        rows["whole_path_img_s_again"] = [round(n / timed(lambda: run(bb.model), dev)[1]) for _ in range(3)]

    # a decode call behind ~0.3 s of queued matmuls on another stream: it waits for them, because
    # nvjpeg converts each image with a small kernel and waits for it before the next image
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
