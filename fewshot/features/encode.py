"""Features: encode images (and prompts) once, keep them in the verified cache, reload them.

Glue between the loaders (:mod:`fewshot.features.loaders`), the preprocessing (:mod:`fewshot.features.preprocess`)
and the cache (:mod:`fewshot.features.cache`). Labels always come from the dataset, never from a cache file.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass

import torch

from fewshot.features.cache import CacheKey, cache_path, cached, files_fingerprint
from fewshot.data.datasets import ImageSet
from fewshot.base.errors import BackboneError, NonFiniteError
from fewshot.features.loaders import encode_images, encode_images_gpu
from fewshot.features.preprocess import AUG_SCALE, augmented, centered
from fewshot.models.templates import prompts_digest
from fewshot.models.text_head import build_text_classifier

__all__ = ["Features", "Extraction", "extraction", "image_features", "text_classifier", "degeneracy"]

# Rank one is judged from at least _RANK_ROWS rows whose unit vectors all lie within _ONE_DIRECTION
# of one direction (or its opposite): fp16 storage of an exact rank-one matrix moves them by at
# most 4.4e-4 (measured, D = 64 and 1024); the least informative model of the suite (the tests'
# random tiny CLIP) spreads 3.5e-3 and more over 32 images or more, trained CLIPs about 1. Fewer
# rows cannot be told from rounding: only exact zeros and identical rows are refused there.
_ONE_DIRECTION, _RANK_ROWS = 1e-3, 32


def degeneracy(feats: torch.Tensor) -> str | None:
    """Why ``feats`` (``[N, D]`` or ``[V, N, D]``, any float dtype, finite) carry no information
    about their rows, or None: all zero, every row identical, or (from 32 rows) every row a
    multiple of one vector (rank one) to within fp16 rounding (rows under 1 % of the longest
    row's length, whose fp16 directions are too coarse, left out of that test). Chunks of 8,192
    rows (fp32 temporaries of 8,192 × D); features with information stop at the first chunk."""
    rows = feats.reshape(-1, feats.shape[-1]) if feats.dim() else feats.reshape(1, 1)
    if rows.numel() == 0:
        return None
    chunks = rows.split(8192)
    if not any(bool(c.any()) for c in chunks):
        return "all zero"
    if rows.shape[0] < 2:
        return None
    if all(bool((c == rows[0]).all()) for c in chunks):
        return f"all {rows.shape[0]} rows identical"
    if rows.shape[0] < _RANK_ROWS:
        return None
    ref, tested = None, 0
    for chunk in chunks:
        chunk = chunk.float()
        norm = chunk.norm(dim=-1)
        if ref is None:  # the longest row of the first chunk that has one (all zero: skipped)
            if not bool(norm.any()):
                continue
            ref, longest = chunk[norm.argmax()] / norm.max(), float(norm.max())
        # rows under 1 % of that length hold fp16 values too coarse for a direction: left out
        unit = chunk[norm > 0.01 * longest] / norm[norm > 0.01 * longest].unsqueeze(1)
        off = (unit - torch.sign(unit @ ref).unsqueeze(1) * ref).norm(dim=-1)
        if off.numel() and float(off.max()) >= _ONE_DIRECTION:
            return None
        tested += off.numel()
    if tested < max(_RANK_ROWS, rows.shape[0] // 2):  # too few rows long enough to tell
        return None
    return f"all {rows.shape[0]} rows one vector times a number (rank one)"


@dataclass(frozen=True)
class Features:
    """Raw image features of an image set, as cached."""

    feats: torch.Tensor  # fp16 [N, D] (centre crops) or [V, N, D] (V augmented views)
    labels: torch.Tensor  # long [N], from the dataset
    paths: list  # [N] relative paths of the rows
    skipped: list  # relative paths left out because they could not be decoded


def _expect(image_set: ImageSet, views: int, skip_bad: bool, width: int):
    def check(data: dict):
        feats, paths = data.get("feats"), data.get("paths")
        if not isinstance(feats, torch.Tensor) or not isinstance(paths, list):
            return "fields missing"
        if feats.dim() != (3 if views else 2) or (views and feats.shape[0] != views):
            return f"shape {tuple(feats.shape)} does not fit {views or 'no'} views"
        if feats.shape[-1] != width or feats.dtype != torch.float16:
            return f"{feats.dtype} rows of width {feats.shape[-1]}, not the backbone's float16 x {width}"
        if feats.shape[-2] != len(paths):
            return f"{feats.shape[-2]} rows for {len(paths)} images"
        wanted = set(image_set.paths)
        if not skip_bad and paths != image_set.paths or skip_bad and not set(paths) <= wanted:
            return "rows belong to other images"
        if len(paths) + len(data.get("skipped", [])) != len(image_set):
            return f"{len(paths)} rows (+{len(data.get('skipped', []))} skipped) for {len(image_set)} images"
        if not bool(torch.isfinite(feats).all()):
            return "non-finite values"
        why = degeneracy(feats)
        return f"features carry no information ({why})" if why else None
    return check


@dataclass(frozen=True)
class Extraction:
    """How one image set's features are made: the cache ``key`` and file ``stem``, ``compute()``
    (decode and encode every image) and ``expect`` (the checks a cache file must pass)."""

    key: CacheKey
    stem: str
    compute: object  # () -> {"feats", "paths", "skipped"}
    expect: object  # data -> None or the reason it does not fit

    def is_cached(self, cache_dir) -> bool:
        """Whether its cache file exists (not verified: that happens when it is read)."""
        return cache_path(self.key, cache_dir, self.stem).exists()


def extraction(backbone, image_set: ImageSet, views: int = 0, aug_seed: int = 1, batch_size: int = 128,
               num_workers: int = 0, progress: bool = True, decode: str = "pil",
               skip_bad: bool = False) -> Extraction:
    """The :class:`Extraction` of ``image_set`` (arguments as :func:`image_features`)."""
    if skip_bad:
        decode = "pil"
    decode = "gpu" if decode == "gpu" and not views else "pil"
    if decode == "gpu" and backbone.device.type != "cuda":
        raise ValueError("decode='gpu' needs the backbone on a CUDA device; use decode='pil'")
    res = backbone.input_resolution
    if views:
        prep = f"tip-rrc{AUG_SCALE[0]}-{AUG_SCALE[1]}-bicubic-hflip-{res}"
        transform = functools.partial(augmented, size=res, views=views, seed=aug_seed)
    else:
        prep = f"clip-center-{res}"
        transform = functools.partial(centered, size=res)
    key = CacheKey("image", backbone.name, backbone.sha256, prep + ("-skipbad" if skip_bad else ""),
                   files_fingerprint(image_set.root, image_set.items), views,
                   aug_seed if views else 0, decode=decode, tower=backbone.image_tower)
    desc = f"encoding {image_set.name} ({views or 1} view{'s' if views > 1 else ''})"

    def compute():
        if decode == "gpu":
            feats = encode_images_gpu(backbone.model, image_set.root, image_set.paths, res,
                                      backbone.device, batch_size, num_workers, progress,
                                      desc=f"encoding {image_set.name} (nvjpeg)")
            ok = torch.ones(len(image_set), dtype=torch.bool)
        else:
            feats, ok = encode_images(backbone.model, image_set.root, image_set.paths, transform,
                                      backbone.device, batch_size, num_workers, desc=desc,
                                      progress=progress, skip_bad=skip_bad)
        if not bool(torch.isfinite(feats).all()):
            raise NonFiniteError(f"the image encoder gave non-finite features for {image_set.name} "
                                 f"({image_set.root}); with a GPU, try device='cpu' to rule out an "
                                 f"fp16 overflow, and check the checkpoint.")
        keep, paths = ok.nonzero().squeeze(1), image_set.paths  # `paths` builds a list: once
        feats = feats.index_select(-2, keep).contiguous()
        _refuse_degenerate(feats, backbone, f"the images of {image_set.name} ({image_set.root})")
        return {"feats": feats, "paths": [paths[i] for i in keep.tolist()],
                "skipped": [p for p, good in zip(paths, ok.tolist()) if not good]}

    return Extraction(key, f"{image_set.name}-{views}v", compute,
                      _expect(image_set, views, skip_bad, backbone.embed_dim))


def _refuse_degenerate(feats: torch.Tensor, backbone, what: str) -> None:
    why = degeneracy(feats)
    if why:
        raise BackboneError(
            f"the checkpoint {backbone.path} gives features that carry no information about {what}: "
            f"{why}. Its weights are zero, constant or damaged (or every input is the same): use "
            f"another `backbone`, or check the file; nothing was cached.")


def image_features(backbone, image_set: ImageSet, cache_dir, views: int = 0, aug_seed: int = 1,
                   batch_size: int = 128, num_workers: int = 0, device=None,
                   progress: bool = True, decode: str = "pil", skip_bad: bool = False) -> Features:
    """Cached raw features of ``image_set`` on ``device`` (default: the backbone's).

    ``views=0`` uses CLIP's own test-time preprocessing (resize, centre crop); ``views=V`` gives
    Tip-Adapter's V augmented views per image. ``decode="gpu"`` decodes and resizes on the GPU
    (centre crops only); the decode path is part of the cache key, as its pixels differ slightly
    from PIL's. ``skip_bad`` leaves out files that cannot be decoded (listed in ``skipped``)
    instead of stopping with an error that names the first one; it forces the PIL path.
    """
    job = extraction(backbone, image_set, views, aug_seed, batch_size, num_workers, progress, decode, skip_bad)
    data = cached(job.key, cache_dir, job.stem, job.compute, job.expect)
    if data["skipped"]:
        print(f"skipped {len(data['skipped'])} undecodable file(s) in {image_set.root}: "
              + ", ".join(data["skipped"][:5]) + (" ..." if len(data["skipped"]) > 5 else ""))
    label_of = dict(image_set.items)
    device = device or backbone.device
    labels = torch.tensor([label_of[p] for p in data["paths"]], dtype=torch.long)
    return Features(data["feats"].to(device), labels.to(device), data["paths"], data["skipped"])


def text_classifier(backbone, classnames: list[str], templates: str, cache_dir, device=None,
                    progress: bool = True, ensemble: str = "clip") -> torch.Tensor:
    """Cached :func:`fewshot.models.text_head.build_text_classifier`: [C, D] fp32 on ``device``."""
    extra = ([ensemble] if ensemble != "clip" else []) + ([prompts_digest(templates)] if prompts_digest(templates) else [])
    digest = hashlib.sha256(json.dumps([classnames, templates] + extra).encode()).hexdigest()
    stem = templates if ensemble == "clip" else f"{templates}-{ensemble}"  # the clip head's key as before
    key = CacheKey("text", backbone.name, backbone.sha256, f"templates-{stem}", digest, dtype="float32")

    def expect(data):
        w, width = data.get("weights"), backbone.embed_dim
        if not isinstance(w, torch.Tensor) or w.shape != (len(classnames), width) or w.dtype != torch.float32:
            return f"not a float32 [{len(classnames)}, {width}] text head"
        if not bool(torch.isfinite(w).all()):
            return "non-finite values"
        why = degeneracy(w)
        return f"text head carries no information ({why})" if why else None

    def compute():
        w = build_text_classifier(backbone.model, classnames, templates, backbone.device,
                                  progress=progress, ensemble=ensemble).cpu()
        if bool(torch.isfinite(w).all()):
            _refuse_degenerate(w, backbone, f"the {len(classnames)} class names (text tower)")
        return {"weights": w}

    data = cached(key, cache_dir, f"text-{stem}", compute, expect)
    return data["weights"].to(device or backbone.device)
