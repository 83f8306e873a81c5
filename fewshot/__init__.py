"""fewshot: few-shot image classification with CLIP on cached features.

Modules, one concept each: ``backbones`` (loading CLIP), ``datasets`` (folder layouts),
``checks`` (dataset validation), ``splits`` (seeded nested k-shot manifests), ``images``
(decoding), ``features`` (the on-disk feature cache), ``templates`` and ``zeroshot`` (text heads),
``tip_adapter``, ``wise``, ``selection`` (hyperparameters from the shots), ``metrics``,
``results``, ``config``, ``pipeline``, ``report``, ``notebooks`` and ``hosted`` (running the
notebooks), and ``world`` (the mini-world and the ImageNet-shaped rehearsal data). Importing the package is cheap: it
imports no torch until a submodule needs it.
"""
from fewshot import _clip_compat

_clip_compat.install()

__version__ = "0.1.0"
