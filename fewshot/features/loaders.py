"""Loaders: images from disk to features, on the CPU (PIL) or with GPU decoding (nvjpeg).

- :func:`encode_images`: PIL decoding and transforms in DataLoader workers (the reference path,
  and the only one for augmented views).
- :func:`encode_images_gpu`: workers only read bytes (:class:`ByteBatches`); three stages overlap,
  each public so that benchmarks can time it alone: :func:`ahead` threads receive byte batches,
  :func:`decode_stage` decodes them on a side CUDA stream, and the caller resizes and encodes.
"""
from __future__ import annotations

import contextlib
import os
import queue
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from PIL import Image
from tqdm import tqdm  # text bars: a notebook widget alive when loader workers fork costs ~1 s per worker

from fewshot.base.errors import ImageError
from fewshot.data.images import decode_images, load_rgb, nvjpeg_decodable, resize_crop_batch
from fewshot.features.preprocess import normalize_pixels

__all__ = ["ImageFiles", "ByteBatches", "ahead", "decode_stage", "encode_images", "encode_images_gpu"]


class ImageFiles(torch.utils.data.Dataset):
    """Item i: ``(transform(decoded image i, i), ok)``; with ``skip_bad`` an undecodable file
    gives a blank of the right shape and ``ok = False`` instead of an :class:`ImageError`."""

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

    Returns ``(feats, ok)``: ``ok`` [N] (bool) is False where a file could not be decoded. Such a
    file raises :class:`fewshot.base.errors.ImageError` naming it; with ``skip_bad`` it is encoded as
    a blank image instead and marked in ``ok``.
    """
    dataset = ImageFiles(Path(root), paths, transform, skip_bad)
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
    return torch.cat(chunks, dim=-2), torch.cat(oks)


class ByteBatches(torch.utils.data.Dataset):
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
        sizes = [_size(f) for f in files]
        total = max(sum(sizes), 1)
        if torch.utils.data.get_worker_info() is not None:  # a worker: allocate it shared
            packed = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(total))
        else:
            packed = torch.empty(total, dtype=torch.uint8)
        buf, lengths, offset = memoryview(packed.numpy()), [], 0
        for path, size in zip(files, sizes):
            try:
                with open(path, "rb") as f:
                    lengths.append(f.readinto(buf[offset:offset + size]))  # fewer if it shrank meanwhile
            except OSError as err:
                raise _unreadable(path, err) from err
            offset += lengths[-1]
        decodable, offset = [], 0
        for n in lengths:
            decodable.append(nvjpeg_decodable(buf[offset:offset + min(n, 65536)]))
            offset += n
        return packed[:offset], lengths, decodable, files


def _unreadable(path: str, err: OSError) -> ImageError:
    return ImageError(f"{path}: cannot be read ({err.strerror or err}). Re-download the file, or run "
                      f"`python -m fewshot check-data` on the dataset to list every bad file.")


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError as err:  # gone, a broken link, no permission: named, not a worker traceback
        raise _unreadable(path, err) from err


class _Failed:
    """An exception raised in a background thread, carried to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


def ahead(items: Iterable, depth: int = 2) -> Iterator:
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


def decode_stage(batches: Iterable, device, stream) -> Iterator:
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
                      num_workers: int = 2, progress: bool = True, desc: str = "images (nvjpeg)",
                      decode_batch: int | None = None) -> torch.Tensor:
    """Like :func:`encode_images` with CLIP's test-time preprocessing, but workers only read bytes
    and JPEG decoding (nvjpeg), resizing, cropping and normalisation run on ``device``. Three
    stages overlap: a thread receives byte batches from the workers, a thread decodes them on a
    side CUDA stream, and this thread resizes and encodes on the current stream. Returns [N, D]
    fp16 on the CPU. On a CPU ``device`` the same code runs with torchvision's CPU decoder.
    ``decode_batch``: images per decoder call (default ``batch_size``); the encoder always sees
    batches of ``batch_size``."""
    device = torch.device(device)
    # nvjpeg alone decodes 512 images per call at 20,800 img/s on an H200, but the whole pipeline ran
    # no faster with 512 than with 256 (7,104 vs 7,902 img/s, bench/RESULTS.md): by default, one size
    per_decode = decode_batch or batch_size
    batches = torch.utils.data.BatchSampler(range(len(paths)), per_decode, drop_last=False)
    loader = torch.utils.data.DataLoader(ByteBatches(Path(root), paths), batch_size=None,
                                         sampler=batches, num_workers=num_workers)
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    dtype = model.visual.conv1.weight.dtype
    chunks = []
    with tqdm(total=len(paths), desc=desc, disable=not progress, leave=False) as bar:
        for images, event in ahead(decode_stage(ahead(loader), device, stream)):
            if event is not None:  # wait for the decode; its memory is in use here until done
                current = torch.cuda.current_stream(device)
                current.wait_event(event)
                for img in images:
                    img.record_stream(current)
            for start in range(0, len(images), batch_size):
                pixels = resize_crop_batch(images[start:start + batch_size], size)
                chunks.append(model.encode_image(normalize_pixels(pixels).to(dtype)).to(torch.float16))
                bar.update(len(pixels))
    return torch.cat(chunks).cpu()  # one copy back at the end
