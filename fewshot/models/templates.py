"""Templates: prompt sets for the zero-shot head, by name (``list_templates()``).

- ``single``: the coursework notebook's ``a photo of a {}.``
- ``tip7``: the 7 ImageNet templates of CoOp / Tip-Adapter
- ``clip80``: CLIP's 80-template ImageNet ensemble (OpenAI's prompt-engineering notebook)
- ``tip7+single``: ``tip7`` and ``single``, the ImageNet base head of TaskRes and CLAP
  (``IMAGENET_TEMPLATES_SELECT`` + ``CUSTOM_TEMPLATES["ImageNet"]`` in ``geekyutao/TaskRes``
  ``trainers/taskres.py`` and ``jusiro/CLAP`` ``trainers/adapters.py``)
- ``cupl+tip7``: ``tip7`` plus each class's CuPL prompts (Pratt et al., ICCV 2023: GPT-3 sentences
  per ImageNet class), the ImageNet head of APE's official code (``extract_text_feature`` in
  ``yangyangyang127/APE``). Its prompts are per class, read from the published JSON (an object
  ``{class name: [sentence, ...]}``) at :data:`CUPL_PATH` (``./download_data.sh cupl`` fetches it).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from fewshot.base.errors import DatasetError

__all__ = ["list_templates", "get_templates", "per_class", "class_prompts", "prompts_digest", "load_cupl", "cupl_path"]

CUPL_PATH = "data/cupl/CuPL_image_prompts.json"  # default location (env FEWSHOT_CUPL overrides)
_PER_CLASS = {"cupl+tip7": "tip7"}  # per-class sets: name -> the template set they add to

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
    """Names of the template sets (the per-class ``cupl+tip7`` included)."""
    return sorted([*_TEMPLATES, *_PER_CLASS])


def get_templates(name: str) -> list[str]:
    """The templates of set ``name`` (a copy); each holds one ``{}`` for the class name. A
    per-class set gives its shared templates (``cupl+tip7``: ``tip7``; see :func:`class_prompts`)."""
    if name in _PER_CLASS:
        return get_templates(_PER_CLASS[name])
    if name not in _TEMPLATES:
        raise KeyError(f"Unknown template set {name!r}; use one of {', '.join(list_templates())}.")
    return list(_TEMPLATES[name])


def cupl_path() -> Path:
    """Where the CuPL ImageNet prompts are read from: $FEWSHOT_CUPL, else :data:`CUPL_PATH`."""
    return Path(os.environ.get("FEWSHOT_CUPL") or CUPL_PATH)


def load_cupl(path=None) -> dict:
    """The CuPL JSON ``{class name: [prompt, ...]}`` (each list non-empty, all strings); a missing
    or malformed file raises :class:`~fewshot.base.errors.DatasetError` saying how to get it."""
    path = Path(path) if path is not None else cupl_path()
    if not path.is_file():
        raise DatasetError(f"no CuPL prompts at {path}: run ./download_data.sh cupl (or set FEWSHOT_CUPL "
                           f"to the published CuPL_image_prompts.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: not a JSON file of CuPL prompts ({err}); run ./download_data.sh cupl again") from err
    bad = [k for k, v in data.items() if not isinstance(v, list) or not v or not all(isinstance(t, str) for t in v)] \
        if isinstance(data, dict) else ["(top level)"]
    if bad:
        raise DatasetError(f"{path}: expected {{class name: [prompt, ...]}}; bad entry {bad[0]!r}")
    return data


def per_class(name: str) -> bool:
    """Whether set ``name`` adds each class's own prompts from a file (``cupl+tip7``)."""
    return name in _PER_CLASS


def class_prompts(name: str, classnames) -> list[list[str]]:
    """The prompts of every class [C][T_c] under set ``name``: the templates filled in, and for a
    per-class set the class's own prompts after them (APE's order). A class the CuPL file lacks is
    an error naming it."""
    shared = [[t.format(c) for t in get_templates(name)] for c in classnames]
    if name not in _PER_CLASS:
        return shared
    cupl = load_cupl()
    missing = [c for c in classnames if c not in cupl]
    if missing:
        raise DatasetError(f"{cupl_path()} has no CuPL prompts for {len(missing)} of {len(classnames)} classes, "
                           f"e.g. {missing[0]!r}: the set is for ImageNet's class names (templates cupl+tip7)")
    return [s + list(cupl[c]) for s, c in zip(shared, classnames)]


def prompts_digest(name: str) -> str:
    """SHA-256 of the files a set reads ("" for the built-in sets): part of the text cache key."""
    if name not in _PER_CLASS:
        return ""
    path = cupl_path()
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
