"""fewshot: few-shot image classification with CLIP on cached features.

Modules, one concept each: ``backbones`` (loading CLIP), ``datasets`` (folder layouts),
``splits`` (seeded nested k-shot manifests), ``images`` (decoding), ``features`` (the on-disk
feature cache), ``templates`` and ``zeroshot`` (text heads), ``tip_adapter``, ``wise``,
``metrics``, ``results``, ``pipeline`` and ``report``. Importing the package is cheap: it
imports no torch until a submodule needs it.
"""
from fewshot import _clip_compat

_clip_compat.install()

__version__ = "0.1.0"
