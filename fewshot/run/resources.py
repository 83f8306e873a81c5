"""Resources: what a run's methods work on, loaded lazily and once: the backbone, the dataset, the
zero-shot head, the test sets' and the training pool's cached features, each (shots, seed)'s
:class:`~fewshot.protocol.method.Shots`, and, for methods that run the encoder, the pixel caches.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from fewshot.protocol import budget
from fewshot.models.backbones import LazyBackbone
from fewshot.data.datasets import ImageSet, load_dataset
from fewshot.data.shifts import find_shift_sets, load_shift_set
from fewshot.base.errors import MissingStepError
from fewshot.features.encode import extraction, image_features, text_classifier
from fewshot.protocol.method import EncoderAccess, EvalSet, Shots, precision_fields
from fewshot.protocol.results import git_revision
from fewshot.data.splits import load_manifest, shot_ranks

__all__ = ["Resources", "TrainPool"]


@dataclass(frozen=True)
class TrainPool:
    """Cached features of every training image any manifest of the run uses."""

    rows: dict  # relative path -> row
    center: torch.Tensor  # [P, D] raw centre-crop features, fp16
    views: torch.Tensor  # [V, P, D] raw augmented views, fp16
    labels: torch.Tensor  # [P]


class Resources:
    """The loaded inputs of one run (``cfg``) on ``device``; ``dir`` gives the manifests;
    ``dataset``, when given, is ``cfg.data`` already loaded (not scanned again)."""

    def __init__(self, cfg, device: torch.device, rundir, digest: str, dataset=None):
        self.cfg, self.device, self.dir, self.digest = cfg, device, rundir, digest
        if dataset is not None:
            self.dataset = dataset  # fills the lazy property below

    @cached_property
    def backbone(self) -> LazyBackbone:
        """The CLIP backbone; a step on cached features never builds the model (its identity
        comes from the run folder's record of an earlier load: :class:`LazyBackbone`)."""
        return LazyBackbone(self.cfg.backbone, self.device, self.cfg.download_root or None,
                            self.dir.backbone_path, self.dir.writer)

    @cached_property
    def dataset(self):
        return load_dataset(self.cfg.data)

    @property
    def decode(self) -> str:
        """"gpu" (nvjpeg) when asked for or, with "auto", when the device is CUDA; else "pil"."""
        if self.cfg.decode == "auto":
            return "gpu" if self.device.type == "cuda" else "pil"
        return self.cfg.decode

    @cached_property
    def context(self) -> dict:
        """Run-wide fields of every record."""
        dev = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return {"backbone": self.backbone.name, "backbone_sha256": self.backbone.sha256,
                "dataset": self.dataset.root.name, "templates": self.cfg.templates,
                "views": self.cfg.views, "git_rev": git_revision(), "device": dev,
                **precision_fields(self.device), "decode": self.decode,
                "image_tower": self.backbone.image_tower, "config_digest": self.digest}

    @cached_property
    def text_weights(self) -> torch.Tensor:  # [C, D] fp32
        return text_classifier(self.backbone, self.dataset.classnames, self.cfg.templates,
                               self.cfg.cache_dir, self.device, self.cfg.progress)

    def text_head(self, templates: str, ensemble: str = "clip") -> torch.Tensor:
        """[C, D] fp32 head of another template set (cached like the run's own; ``ensemble``:
        :func:`fewshot.models.text_head.build_text_classifier`)."""
        if (templates, ensemble) == (self.cfg.templates, "clip"):
            return self.text_weights
        return text_classifier(self.backbone, self.dataset.classnames, templates, self.cfg.cache_dir,
                               self.device, self.cfg.progress, ensemble)

    @cached_property
    def logit_scale(self) -> float:
        return self.backbone.logit_scale

    def _check_extraction(self, sets: list, what: str) -> None:
        """Announce, or refuse over ``time_budget`` (:mod:`fewshot.protocol.budget`), the encoding of the
        (image set, views) in ``sets`` that are not in the feature cache yet."""
        c, plan = self.cfg, budget.Plan(cheaper=self._cheaper_extraction)
        for image_set, views in sets:
            if len(image_set) and not self._extraction(image_set, views).is_cached(c.cache_dir):
                rate = f"encode ({views} views)" if views else "encode"
                plan.works.append(budget.Work(f"encode {image_set.name}: {len(image_set):,} images"
                                              + (f" × {views} views" if views else ""),
                                              len(image_set) * max(1, views), "image encodes", rate))
                plan.probes.setdefault(rate, lambda s=image_set, v=views: self._probe_extraction(s, v))
        budget.check(plan, c, f"feature extraction ({what})", device=self.device)

    def _probe_extraction(self, image_set: ImageSet, views: int) -> float:
        """Seconds per encode of ``image_set``'s first images through the run's own loader."""
        n = min(len(image_set), self.cfg.batch_size * max(2, self.cfg.num_workers))
        sub = ImageSet(image_set.name, image_set.root, image_set.items[:n], image_set.class_indices)
        return budget.seconds_per(self._extraction(sub, views, progress=False).compute, n * max(1, views))

    def _cheaper_extraction(self, share: float) -> list:
        c, out = self.cfg, []
        if c.views > 1:
            out.append(f"--set views={max(1, int(c.views * share))}")
        if self.device.type == "cuda" and self.decode != "gpu":
            out.append("--set decode=gpu")
        if (os.cpu_count() or 1) > c.num_workers:
            out.append(f"--set num_workers={os.cpu_count()}")
        return out

    def _extraction(self, image_set: ImageSet, views: int = 0, progress=None):
        c = self.cfg
        return extraction(self.backbone, image_set, views, c.aug_seed, c.batch_size, c.num_workers,
                          c.progress if progress is None else progress, self.decode, c.skip_bad_images)

    def _features(self, image_set: ImageSet, views: int = 0):
        c = self.cfg
        return image_features(self.backbone, image_set, c.cache_dir, views, c.aug_seed,
                              c.batch_size, c.num_workers, self.device, c.progress, self.decode,
                              c.skip_bad_images)

    @cached_property
    def image_sets(self) -> dict[str, ImageSet]:
        """The val set and every shifted test set, as image lists."""
        shifts = self.cfg.shift_sets or find_shift_sets(self.cfg.data)
        sets = {"val": self.dataset.val}
        for name, (path, kind) in sorted(shifts.items()):
            sets[name] = load_shift_set(path, kind, self.dataset.wnids, name)
        return sets

    @cached_property
    def eval_sets(self) -> dict[str, EvalSet]:
        """The val set and every shifted test set, as normalised cached features."""
        self._check_extraction([(s, 0) for s in self.image_sets.values()], "test sets")
        out = {}
        for name, s in self.image_sets.items():
            f = self._features(s)
            out[name] = EvalSet(name, F.normalize(f.feats.float(), dim=-1), f.labels,
                                tuple(s.class_indices), tuple(f.paths), len(f.skipped))
        return out

    def manifest(self, shots: int, seed: int) -> dict:
        """The (shots, seed) split manifest written by the splits step."""
        path = self.dir.manifest_path(shots, seed)
        if not path.exists():
            raise MissingStepError(f"{path} is missing: run the splits step first "
                                   f"(notebook 02, or `python -m fewshot run --steps splits`).")
        return load_manifest(path)

    @cached_property
    def pool_set(self) -> ImageSet:
        """Every training image of any of the run's manifests."""
        paths = sorted({p for seed in self.cfg.seeds
                        for p, _ in self.manifest(max(self.cfg.shots), seed)["items"]})
        label_of = dict(self.dataset.train.items)
        return ImageSet("train-pool", self.dataset.root, [(p, label_of[p]) for p in paths],
                        self.dataset.train.class_indices)

    @cached_property
    def pool(self) -> TrainPool:
        """Features of the training pool: centre crops and augmented views."""
        self._check_extraction([(self.pool_set, 0), (self.pool_set, self.cfg.views)], "training pool")
        center, views = self._features(self.pool_set), self._features(self.pool_set, self.cfg.views)
        if center.paths != views.paths:
            raise RuntimeError("centre-crop and augmented passes kept different files")
        return TrainPool({p: i for i, p in enumerate(center.paths)}, center.feats, views.feats,
                         center.labels)

    def shots(self, shots: int, seed: int) -> Shots:
        """The cached tensors of one manifest (minus skipped files)."""
        pool = self.pool
        items = [it for it in self.manifest(shots, seed)["items"] if it[0] in pool.rows]
        rows = torch.tensor([pool.rows[p] for p, _ in items], device=pool.center.device)
        return Shots(shots, seed, F.normalize(pool.center[rows].float(), dim=-1),
                     pool.views[:, rows], pool.labels[rows],
                     torch.tensor(shot_ranks(items), device=rows.device), self.dataset.num_classes,
                     tuple(p for p, _ in items))

    @cached_property
    def encoder(self) -> EncoderAccess:
        """Pixel caches and the model, for methods that run the encoder."""
        from fewshot.features.pixels import pixel_cache, train_size

        res, c = self.backbone.input_resolution, self.cfg
        loaded = {}

        def pool():
            if "pool" not in loaded:
                kept = [(p, y) for p, y in self.pool_set.items if p in self.pool.rows]
                pixels = pixel_cache(ImageSet("train-pool", self.pool_set.root, kept, self.pool_set.class_indices),
                                     train_size(res), c.cache_dir, c.num_workers, c.progress)
                loaded["pool"] = (pixels, {p: i for i, (p, _) in enumerate(kept)})
            return loaded["pool"]

        def eval_pixels(name: str):
            if name not in loaded:
                s, kept_paths = self.image_sets[name], set(self.eval_sets[name].paths)
                items = [it for it in s.items if it[0] in kept_paths]
                loaded[name] = pixel_cache(ImageSet(name, s.root, items, s.class_indices), res,
                                           c.cache_dir, c.num_workers, c.progress)
            return loaded[name]

        return EncoderAccess(self.backbone.model, pool, eval_pixels, tuple(self.dataset.classnames),
                             {n: len(s.labels) for n, s in self.eval_sets.items()})
