"""Features: encode images (and prompts) once, keep them in the verified cache, reload them.

Glue between the loaders (:mod:`fewshot.loaders`), the preprocessing (:mod:`fewshot.preprocess`)
and the cache (:mod:`fewshot.cache`). Labels always come from the dataset, never from a cache file.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass

import torch

from fewshot.cache import CacheKey, cache_path, cached, files_fingerprint
from fewshot.datasets import ImageSet
from fewshot.errors import NonFiniteError
from fewshot.loaders import encode_images, encode_images_gpu
from fewshot.preprocess import AUG_SCALE, augmented, centered
from fewshot.templates import prompts_digest
from fewshot.zeroshot import build_text_classifier

__all__ = ["Features", "Extraction", "extraction", "image_features", "text_classifier"]


@dataclass(frozen=True)
class Features:
    """Raw image features of an image set, as cached."""

    feats: torch.Tensor  # fp16 [N, D] (centre crops) or [V, N, D] (V augmented views)
    labels: torch.Tensor  # long [N], from the dataset
    paths: list  # [N] relative paths of the rows
    skipped: list  # relative paths left out because they could not be decoded


def _expect(image_set: ImageSet, views: int, skip_bad: bool):
    def check(data: dict):
        feats, paths = data.get("feats"), data.get("paths")
        if not isinstance(feats, torch.Tensor) or not isinstance(paths, list):
            return "fields missing"
        if feats.dim() != (3 if views else 2) or (views and feats.shape[0] != views):
            return f"shape {tuple(feats.shape)} does not fit {views or 'no'} views"
        if feats.shape[-2] != len(paths):
            return f"{feats.shape[-2]} rows for {len(paths)} images"
        wanted = set(image_set.paths)
        if not skip_bad and paths != image_set.paths or skip_bad and not set(paths) <= wanted:
            return "rows belong to other images"
        if len(paths) + len(data.get("skipped", [])) != len(image_set):
            return f"{len(paths)} rows (+{len(data.get('skipped', []))} skipped) for {len(image_set)} images"
        if not bool(torch.isfinite(feats).all()):
            return "non-finite values"
        return None
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
        return {"feats": feats.index_select(-2, keep).contiguous(),
                "paths": [paths[i] for i in keep.tolist()],
                "skipped": [p for p, good in zip(paths, ok.tolist()) if not good]}

    return Extraction(key, f"{image_set.name}-{views}v", compute, _expect(image_set, views, skip_bad))


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
    """Cached :func:`fewshot.zeroshot.build_text_classifier`: [C, D] fp32 on ``device``."""
    extra = ([ensemble] if ensemble != "clip" else []) + ([prompts_digest(templates)] if prompts_digest(templates) else [])
    digest = hashlib.sha256(json.dumps([classnames, templates] + extra).encode()).hexdigest()
    stem = templates if ensemble == "clip" else f"{templates}-{ensemble}"  # the clip head's key as before
    key = CacheKey("text", backbone.name, backbone.sha256, f"templates-{stem}", digest, dtype="float32")

    def expect(data):
        w = data.get("weights")
        if not isinstance(w, torch.Tensor) or w.dim() != 2 or w.shape[0] != len(classnames):
            return f"not a [{len(classnames)}, D] text head"
        return None if bool(torch.isfinite(w).all()) else "non-finite values"

    data = cached(key, cache_dir, f"text-{stem}", lambda: {"weights": build_text_classifier(
        backbone.model, classnames, templates, backbone.device, progress=progress, ensemble=ensemble).cpu()}, expect)
    return data["weights"].to(device or backbone.device)
