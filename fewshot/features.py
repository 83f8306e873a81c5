"""Features: encode images (and prompts) once, keep them on disk in fp16, reload them onto a device.

A cache file's name ends in the digest of a :class:`CacheKey`, which holds everything that changes
the tensor: backbone and checkpoint SHA-256, preprocessing, the image list (paths, labels and
file sizes), number of augmented views and their seed, dtype, decode path and image tower (CLIP's
forward or the fused one). A changed input gives a new file; nothing stale is ever reused. Writes
go to a temporary file that is renamed into place, so an interrupted run leaves no half-written
cache.

Augmented views follow Tip-Adapter: RandomResizedCrop(R, scale 0.5–1, bicubic) + horizontal flip,
drawn from a generator seeded by (seed, view, image index), so they do not depend on the number
of loader workers. Each image is decoded once for all its views.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import queue
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode
from tqdm.auto import tqdm

from fewshot.datasets import ImageSet
from PIL import Image

from fewshot.images import ImageError, decode_images, load_rgb, nvjpeg_decodable, resize_crop_batch
from fewshot.zeroshot import build_text_classifier

__all__ = ["CacheKey", "CLIP_MEAN", "CLIP_STD", "normalize_pixels", "center_pixels",
           "augment_views", "encode_images",
           "encode_images_gpu", "atomic_save",
           "cached", "image_features", "text_classifier", "items_digest"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
AUG_SCALE, AUG_RATIO = (0.5, 1.0), (3 / 4, 4 / 3)


@dataclass(frozen=True)
class CacheKey:
    """Everything that determines a cached tensor; its digest names the file."""

    kind: str  # "image" or "text"
    backbone: str  # registry name or file name
    checkpoint_sha256: str  # of the checkpoint file
    preprocessing: str  # e.g. "clip-center-224" or "tip-rrc0.5-1-bicubic-hflip-224"
    inputs_sha256: str  # image list (paths, labels, sizes) or classnames + templates
    views: int = 0  # 0: the test-time centre crop; V: V augmented views
    aug_seed: int = 0  # seed of the augmented views (unused when views == 0)
    dtype: str = "float16"  # storage dtype
    decode: str = "pil"  # "pil" (CPU, the reference) or "gpu" (nvjpeg)
    tower: str = "clip"  # image tower: "clip" (CLIP's forward) or "fused" (fewshot.fusion)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def items_digest(image_set: ImageSet) -> str:
    """SHA-256 over (relative path, label, file size) of every item: a replaced file changes it."""
    h = hashlib.sha256()
    for path, label in image_set.items:
        h.update(f"{path}\t{label}\t{os.path.getsize(image_set.root / path)}\n".encode())
    return h.hexdigest()


def normalize_pixels(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels [..., 3, H, W] -> CLIP's normalised fp32 input (ToTensor + Normalize)."""
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(3, 1, 1)
    return (x.float() / 255 - mean) / std


def center_pixels(img, size: int) -> torch.Tensor:
    """CLIP's test-time Resize(size, bicubic) + CenterCrop(size) of a PIL image: uint8 [3, size, size]."""
    img = TF.center_crop(TF.resize(img, size, InterpolationMode.BICUBIC), size)
    return TF.pil_to_tensor(img)


def augment_views(img, size: int, views: int, seed: int, index: int) -> torch.Tensor:
    """``views`` Tip-Adapter augmentations of a PIL image, uint8: [V, 3, size, size].

    Crop parameters follow torchvision's RandomResizedCrop (10 tries, then a centre crop) but are
    drawn from ``torch.Generator`` seeded by ``(seed, view, index)``.
    """
    width, height = img.size
    area, log_ratio = width * height, (math.log(AUG_RATIO[0]), math.log(AUG_RATIO[1]))
    out = []
    for v in range(views):
        g = torch.Generator().manual_seed((seed * 1_000_003 + v) * 10_000_019 + index)
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
        crop = TF.resized_crop(img, *box, [size, size], InterpolationMode.BICUBIC)
        if u[31] < 0.5:
            crop = TF.hflip(crop)
        out.append(TF.pil_to_tensor(crop))
    return torch.stack(out)


def _augmented(img, index: int, size: int, views: int, seed: int) -> torch.Tensor:
    return augment_views(img, size, views, seed, index)


def _centered(img, index: int, size: int) -> torch.Tensor:
    return center_pixels(img, size)


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, root: Path, paths: list[str], transform: Callable, skip_bad: bool = False):
        self.root, self.paths, self.transform, self.skip_bad = root, paths, transform, skip_bad

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return self.transform(load_rgb(self.root / self.paths[i]), i), True
        except ImageError:
            if not self.skip_bad:
                raise
            probe = self.transform(Image.new("RGB", (8, 8)), i)  # a placeholder of the right shape
            return torch.zeros_like(probe), False


@torch.no_grad()
def encode_images(model, root: Path, paths: list[str], transform: Callable, device,
                  batch_size: int = 128, num_workers: int = 0, desc: str = "images",
                  progress: bool = True, skip_bad: bool = False):
    """Raw image features in fp16 on the CPU: [N, D], or [V, N, D] when ``transform`` returns
    [V, 3, R, R] per image. ``transform(pil_image, index)`` yields uint8 pixels (cheap to pass
    from loader workers); they are normalised on ``device``. With V views, a loader batch holds
    ``batch_size // V`` images, so one forward pass stays at about ``batch_size`` images.

    A file that cannot be decoded raises :class:`fewshot.images.ImageError` naming it; with
    ``skip_bad`` it is encoded as a blank image instead and ``ok`` [N] (bool) marks it, so the
    return value is ``(feats, ok)``; without, just ``feats``.
    """
    dataset = _ImageFiles(Path(root), paths, transform, skip_bad)
    probe = dataset.transform(Image.new("RGB", (8, 8)), 0)  # [3, R, R] or [V, 3, R, R]
    per_batch = max(1, batch_size // probe.shape[0]) if probe.dim() == 4 else batch_size
    loader = torch.utils.data.DataLoader(dataset, batch_size=per_batch, num_workers=num_workers,
                                         pin_memory=torch.device(device).type == "cuda")
    dtype = model.visual.conv1.weight.dtype
    chunks, oks = [], []
    for x, ok in tqdm(loader, desc=desc, disable=not progress, leave=False):
        oks.append(ok)
        multi = x.dim() == 5  # [B, V, 3, R, R]
        flat = x.flatten(0, 1) if multi else x
        f = model.encode_image(normalize_pixels(flat.to(device, non_blocking=True)).to(dtype)).to(torch.float16)
        chunks.append((f.view(x.shape[0], x.shape[1], -1).transpose(0, 1) if multi else f).cpu())
    feats = torch.cat(chunks, dim=-2)
    return (feats, torch.cat(oks)) if skip_bad else feats


class _ByteBatches(torch.utils.data.Dataset):
    """Indexed by a list of item indices (a loader batch): those files' bytes read straight into
    ONE uint8 tensor, in shared memory when in a loader worker, so a batch crosses to the main
    process with no copy and no pickled bytes; plus each file's length, whether nvjpeg can decode
    it, and its path."""

    def __init__(self, root: Path, paths: list[str]):
        self.root, self.paths = root, paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, indices: list[int]):
        files = [str(self.root / self.paths[i]) for i in indices]
        sizes = [os.path.getsize(f) for f in files]
        total = max(sum(sizes), 1)
        if torch.utils.data.get_worker_info() is not None:  # a worker: allocate it shared
            packed = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(total))
        else:
            packed = torch.empty(total, dtype=torch.uint8)
        buf, lengths, offset = memoryview(packed.numpy()), [], 0
        for path, size in zip(files, sizes):
            with open(path, "rb") as f:
                lengths.append(f.readinto(buf[offset:offset + size]))  # fewer if it shrank meanwhile
            offset += lengths[-1]
        decodable, offset = [], 0
        for n in lengths:
            decodable.append(nvjpeg_decodable(buf[offset:offset + min(n, 65536)]))
            offset += n
        return packed[:offset], lengths, decodable, files


class _Failed:
    """An exception raised in a background thread, carried to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


def _ahead(items: Iterable, depth: int = 2) -> Iterator:
    """Yield ``items`` as a background thread produces them, up to ``depth`` ahead of the
    consumer. An exception in the thread is raised here; closing this generator (or an error in
    the consumer) stops the thread and closes ``items``, so chained stages shut down in order."""
    q: queue.Queue = queue.Queue(depth)
    stop, end = threading.Event(), object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(end)
        except BaseException as e:
            put(_Failed(e))
        finally:
            getattr(items, "close", lambda: None)()  # a generator stage: stop its own upstream

    thread = threading.Thread(target=produce, name="fewshot-ahead", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not end:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


def _decode_stage(batches: Iterable, device, stream) -> Iterator:
    """Per loader batch: (uint8 images [3, H_i, W_i] on ``device``, CUDA event or None), decoded
    on ``stream``. Only decoding happens here: nvjpeg takes one batch at a time per process, so
    this thread is the pipeline's narrowest stage and does nothing else."""
    with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
        for packed, lengths, decodable, files in batches:
            images = decode_images(list(torch.split(packed, lengths)), files, device, decodable)
            event = None
            if stream is not None:
                event = torch.cuda.Event()
                event.record(stream)
            yield images, event


@torch.no_grad()
def encode_images_gpu(model, root: Path, paths: list[str], size: int, device, batch_size: int = 256,
                      num_workers: int = 2, progress: bool = True, desc: str = "images (nvjpeg)") -> torch.Tensor:
    """Like :func:`encode_images` with CLIP's test-time preprocessing, but workers only read bytes
    and JPEG decoding (nvjpeg), resizing, cropping and normalisation run on ``device``. Three
    stages overlap: a thread receives byte batches from the workers, a thread decodes them on a
    side CUDA stream, and this thread resizes and encodes on the current stream. Returns [N, D]
    fp16 on the CPU. On a CPU ``device`` the same code runs with torchvision's CPU decoder."""
    device = torch.device(device)
    batches = torch.utils.data.BatchSampler(range(len(paths)), batch_size, drop_last=False)
    loader = torch.utils.data.DataLoader(_ByteBatches(Path(root), paths), batch_size=None,
                                         sampler=batches, num_workers=num_workers)
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    dtype = model.visual.conv1.weight.dtype
    chunks = []
    with tqdm(total=len(paths), desc=desc, disable=not progress, leave=False) as bar:
        for images, event in _ahead(_decode_stage(_ahead(loader), device, stream)):
            if event is not None:  # wait for the decode; its memory is in use here until done
                current = torch.cuda.current_stream(device)
                current.wait_event(event)
                for img in images:
                    img.record_stream(current)
            pixels = resize_crop_batch(images, size)
            chunks.append(model.encode_image(normalize_pixels(pixels).to(dtype)).to(torch.float16))
            bar.update(len(pixels))
    return torch.cat(chunks).cpu()  # one copy back at the end


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached(key: CacheKey, cache_dir: str | os.PathLike, stem: str, compute: Callable[[], dict]) -> dict:
    """Load ``<cache_dir>/<backbone>/<stem>-<digest[:16]>.pt`` or compute, save and return it.

    ``compute()`` returns a dict of tensors/lists; the key is stored beside them and checked on
    load, so a digest collision or a hand-copied file cannot be mistaken for the right one.
    """
    folder = key.backbone.replace("/", "-").removesuffix(".pt")
    path = Path(cache_dir) / folder / f"{stem}-{key.digest()[:16]}.pt"
    if path.exists():
        data = torch.load(path, map_location="cpu", weights_only=False)
        if data.get("key") == asdict(key):
            return data
    data = {**compute(), "key": asdict(key)}
    atomic_save(data, path)
    return data


def image_features(backbone, image_set: ImageSet, cache_dir, views: int = 0, aug_seed: int = 1,
                   batch_size: int = 128, num_workers: int = 0, device=None,
                   progress: bool = True, decode: str = "pil", skip_bad: bool = False) -> dict:
    """Cached raw features of ``image_set`` on ``device`` (default: the backbone's).

    Returns ``{"feats": fp16 [N, D] (views=0) or [V, N, D], "labels": long [N], "paths": [N]}``.
    ``views=0`` uses CLIP's own test-time preprocessing (resize, centre crop). ``decode="gpu"``
    decodes and resizes on the GPU (centre crops only; augmented views always use PIL); the
    decode path is part of the cache key, as its pixels differ slightly from PIL's.
    ``skip_bad`` drops files that cannot be decoded (listed under ``"skipped"``) instead of
    stopping with an error that names the first one; it forces the PIL path.
    """
    if skip_bad:
        decode = "pil"
    decode = "gpu" if decode == "gpu" and not views else "pil"
    if decode == "gpu" and backbone.device.type != "cuda":
        raise ValueError("decode='gpu' needs the backbone on a CUDA device; use decode='pil'")
    res = backbone.input_resolution
    if views:
        prep = f"tip-rrc{AUG_SCALE[0]}-{AUG_SCALE[1]}-bicubic-hflip-{res}"
        transform = functools.partial(_augmented, size=res, views=views, seed=aug_seed)
    else:
        prep = f"clip-center-{res}"
        transform = functools.partial(_centered, size=res)
    key = CacheKey("image", backbone.name, backbone.sha256, prep + ("-skipbad" if skip_bad else ""),
                   items_digest(image_set), views, aug_seed if views else 0, decode=decode,
                   tower=backbone.image_tower)

    def compute():
        if decode == "gpu":
            feats = encode_images_gpu(backbone.model, image_set.root, image_set.paths, res,
                                      backbone.device, batch_size, num_workers, progress,
                                      desc=f"{image_set.name} (nvjpeg)")
        else:
            out = encode_images(backbone.model, image_set.root, image_set.paths, transform,
                                backbone.device, batch_size, num_workers,
                                desc=f"{image_set.name} ({views or 1} view{'s' if views > 1 else ''})",
                                progress=progress, skip_bad=skip_bad)
            if skip_bad:
                feats, ok = out
                keep = ok.nonzero().squeeze(1)
                skipped = [p for p, good in zip(image_set.paths, ok.tolist()) if not good]
                return {"feats": feats.index_select(-2, keep), "labels": torch.tensor(image_set.labels)[keep],
                        "paths": [image_set.paths[i] for i in keep.tolist()], "skipped": skipped}
            feats = out
        return {"feats": feats, "labels": torch.tensor(image_set.labels), "paths": image_set.paths,
                "skipped": []}

    data = cached(key, cache_dir, f"{image_set.name}-{views}v", compute)
    if data.get("skipped"):
        print(f"skipped {len(data['skipped'])} undecodable file(s) in {image_set.root}: "
              + ", ".join(data["skipped"][:5]) + (" ..." if len(data["skipped"]) > 5 else ""))
    device = device or backbone.device
    return {"feats": data["feats"].to(device), "labels": data["labels"].to(device),
            "paths": data["paths"], "skipped": data.get("skipped", [])}


def text_classifier(backbone, classnames: list[str], templates: str, cache_dir, device=None,
                    progress: bool = True) -> torch.Tensor:
    """Cached :func:`fewshot.zeroshot.build_text_classifier`: [C, D] fp32 on ``device``."""
    digest = hashlib.sha256(json.dumps([classnames, templates]).encode()).hexdigest()
    key = CacheKey("text", backbone.name, backbone.sha256, f"templates-{templates}", digest,
                   dtype="float32")
    data = cached(key, cache_dir, f"text-{templates}", lambda: {"weights": build_text_classifier(
        backbone.model, classnames, templates, backbone.device, progress=progress).cpu()})
    return data["weights"].to(device or backbone.device)
