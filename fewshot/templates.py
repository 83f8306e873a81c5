"""Templates: prompt sets for the zero-shot head, by name (``list_templates()``).

- ``single``: the coursework notebook's ``a photo of a {}.``
- ``tip7``: the 7 ImageNet templates of CoOp / Tip-Adapter
- ``clip80``: CLIP's 80-template ImageNet ensemble (OpenAI's prompt-engineering notebook)
- ``tip7+single``: ``tip7`` and ``single``, the ImageNet base head of TaskRes and CLAP
  (``IMAGENET_TEMPLATES_SELECT`` + ``CUSTOM_TEMPLATES["ImageNet"]`` in ``geekyutao/TaskRes``
  ``trainers/taskres.py`` and ``jusiro/CLAP`` ``trainers/adapters.py``)
"""
from __future__ import annotations

__all__ = ["list_templates", "get_templates"]

_TIP7 = [
    "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
    "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
]

_CLIP80 = [
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
    "graffiti of a {}.", "a bad photo of the {}.", "a cropped photo of the {}.", "a tattoo of a {}.",
    "the embroidered {}.", "a photo of a hard to see {}.", "a bright photo of a {}.",
    "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.",
    "a bright photo of the {}.", "a cropped photo of a {}.", "a plastic {}.",
    "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.",
    "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.",
    "a close-up photo of the {}.", "a photo of a {}.", "the origami {}.",
    "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
    "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.",
    "a photo of a nice {}.", "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.",
    "art of a {}.", "a sketch of the {}.", "a embroidered {}.", "a pixelated photo of a {}.",
    "itap of the {}.", "a jpeg corrupted photo of the {}.", "a good photo of a {}.",
    "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.",
    "a dark photo of a {}.", "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.",
    "a photo of a cool {}.", "a photo of a small {}.", "a tattoo of the {}.",
]

_TEMPLATES = {"single": ["a photo of a {}."], "tip7": _TIP7, "clip80": _CLIP80,
              "tip7+single": _TIP7 + ["a photo of a {}."]}


def list_templates() -> list[str]:
    """Names of the template sets."""
    return sorted(_TEMPLATES)


def get_templates(name: str) -> list[str]:
    """The templates of set ``name`` (a copy); each holds one ``{}`` for the class name."""
    if name not in _TEMPLATES:
        raise KeyError(f"Unknown template set {name!r}; use one of {', '.join(list_templates())}.")
    return list(_TEMPLATES[name])
