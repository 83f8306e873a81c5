"""The features section of a run's config: the feature cache, its augmented views, image decoding
and the image encoder's batches.

Declared here, where the features layer reads them; :mod:`fewshot.run.config` assembles every
section into ``RunConfig``. Imports no torch (see :mod:`fewshot.base.fields`).

``decode`` is a science field (it enters the config digest): nvjpeg's pixels differ from PIL's, so
the decoder moves the features and every number after them. Its ``"auto"`` resolves by device
type, which the digest of the records made also covers (:func:`fewshot.run.config.config_digest`).
"""
from __future__ import annotations

from fewshot.base.fields import SEED_MAX, Field, int_check, make_section, str_check
from fewshot.base.paths import path_setting

__all__ = ["FIELDS"]

FIELDS = make_section(
    "features",
    Field("cache_dir", str, "cache", path_setting(), "feature cache (safe to share between runs)", runtime=True),
    Field("views", int, 10, int_check(1), "augmented views per training image for the cache (Tip-Adapter: 10)"),
    Field("aug_seed", int, 1, int_check(0, SEED_MAX), "seed of the augmented views"),
    Field("decode", str, "auto", str_check(choices=("auto", "pil", "gpu")),
          'test-image decoding: "pil", "gpu" (nvjpeg, whose pixels differ from PIL\'s) or "auto" (gpu on CUDA)'),
    Field("batch_size", int, 128, int_check(1), "image-encoder batch size", runtime=True),
    Field("num_workers", int, 2, int_check(0), "image loader workers", runtime=True),
)
