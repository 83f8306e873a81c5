"""Crops: fresh random resized crops of the shots every epoch, through the frozen image encoder.

The official code of CoOp, CLIP-Adapter and TaskRes (Dassl's ``random_resized_crop``,
``random_flip``: area scale 0.08–1, aspect 3/4–4/3, a flip with probability ½) draws a new crop of
every training image at every epoch and encodes it with the frozen CLIP image encoder; the suite's
default recipe reuses the cache's V views (scale 0.5–1) instead. :class:`FreshViews` gives the
official images to :func:`fewshot.training.heads.train_head` unchanged: it looks like the ``[V, N, D]``
tensor of views the loop reads (``shape``, ``device``, ``view[e]``) with V = the epochs, and
draws view e when it is read, from the pixel cache of the training pool (:mod:`fewshot.features.pixels`:
images decoded once, resized to R·256/224 and centre-cropped; the crop is taken inside that square,
where Dassl crops the whole decoded image). Each epoch's boxes come from a CPU generator seeded by
(seed, epoch), so a resumed or repeated fit sees the same crops on any device.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from fewshot.features.pixels import augment
from fewshot.features.preprocess import normalize_pixels

__all__ = ["FreshViews", "OFFICIAL_SCALE"]

OFFICIAL_SCALE = (0.08, 1.0)  # Dassl's INPUT.RRCROP_SCALE (torchvision's RandomResizedCrop default)


class FreshViews:
    """Views ``[epochs, N, D]`` of the images ``paths`` (in the pool of ``encoder``, an
    :class:`fewshot.protocol.method.EncoderAccess`), drawn and encoded when indexed: ``view[e]`` ->
    normalised fp32 features [N, D] on ``device`` of fresh crops (area ``scale``) and flips."""

    def __init__(self, encoder, paths, epochs: int, seed: int, device, scale=OFFICIAL_SCALE,
                 batch_size: int = 256):
        pixels, rows = encoder.pool()
        missing = [p for p in paths if p not in rows]
        if missing:
            raise KeyError(f"{len(missing)} shot(s) are not in the training pool's pixel cache, e.g. {missing[0]}")
        self.pixels, self.rows = pixels, [rows[p] for p in paths]
        self.model, self.seed, self.scale, self.batch_size = encoder.model, seed, tuple(scale), batch_size
        self.device = torch.device(device)
        self.shape = (epochs, len(paths), int(self.model.text_projection.shape[1]))
        self.keep = None  # rows kept by subset(): every shot is still drawn, so the crops match

    def subset(self, mask) -> "FreshViews":
        """The same draws restricted to the shots where ``mask`` [N] is true (``views[:, mask]``)."""
        out = object.__new__(FreshViews)
        out.__dict__.update(self.__dict__)
        out.keep = torch.nonzero(mask.cpu()).flatten() if self.keep is None else self.keep[mask.cpu()]
        out.shape = (self.shape[0], len(out.keep), self.shape[2])
        return out

    def generator(self, epoch: int) -> torch.Generator:
        """The CPU generator of epoch ``epoch``'s crops."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)

    @torch.no_grad()
    def __getitem__(self, epoch: int) -> torch.Tensor:
        gen, res = self.generator(int(epoch)), int(self.model.visual.input_resolution)
        dtype = next(self.model.visual.parameters()).dtype
        cast = torch.autocast("cuda", dtype=torch.float16) if self.device.type == "cuda" else contextlib.nullcontext()
        out = []
        for s in range(0, len(self.rows), self.batch_size):
            x = augment(self.pixels.batch(self.rows[s:s + self.batch_size]).to(self.device), res, gen, self.scale)
            with cast:
                out.append(F.normalize(self.model.encode_image(normalize_pixels(x).to(dtype)).float(), dim=-1))
        out = torch.cat(out)
        return out if self.keep is None else out[self.keep.to(out.device)]
