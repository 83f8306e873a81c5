"""Backbones: a registry of CLIP checkpoints and one loader for registered names and local files.

Everything goes through OpenAI's ``clip.load`` so the suite runs the same code on RN50 and on the
mini-world's tiny CLIP. Every file is checked against a SHA-256 before loading: a name against its
own, a path against every known checkpoint (OpenAI's and the shipped ones; a file that matches
none is used with a printed warning). A missing download, a corrupt file or an unknown name gets
one :class:`~fewshot.base.errors.BackboneError` that says what to do.
"""
from __future__ import annotations

import json
import os
import urllib.error
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from fewshot import _clip_compat
from fewshot.base.atomic import atomic_path, atomic_write_json
from fewshot.base.hashing import sha256_file
from fewshot.base.errors import BackboneError, FewshotWarning
from fewshot.models.bn_fold import fuse_image_tower

__all__ = ["Backbone", "LazyBackbone", "BackboneError", "list_backbones", "load_backbone",
           "known_checksums", "build_clip", "save_checkpoint", "shipped_path"]

_PACKAGE_DIR = Path(__file__).resolve().parent.parent

# Shipped checkpoints: name -> (path in the package, the command that makes it); SHA-256 in the .sha256 beside it.
_SHIPPED = {"miniclip-rn": ("world/assets/miniclip-rn.pt", "python -m fewshot world train-clip"),
            "miniclip-vit": ("world/assets/miniclip-vit.pt", "python -m fewshot world train-clip --tower vit")}

@dataclass
class Backbone:
    """A loaded CLIP model plus what a feature cache must know about it."""

    name: str  # registry name, or the file name for a local path
    path: Path  # the checkpoint file that was loaded
    sha256: str  # checksum of that file (part of every cache key)
    model: torch.nn.Module  # clip.model.CLIP, eval mode, on `device`
    preprocess: Callable  # PIL image -> [3, R, R] tensor, as clip.load returns it
    device: torch.device

    @property
    def input_resolution(self) -> int:
        return int(self.model.visual.input_resolution)

    @property
    def context_length(self) -> int:
        return int(self.model.context_length)

    @property
    def logit_scale(self) -> float:
        """exp of the learned temperature: 100 for OpenAI's checkpoints."""
        return float(self.model.logit_scale.detach().exp())

    @property
    def image_tower(self) -> str:
        """"fused" when :func:`fewshot.models.bn_fold.fuse_image_tower` runs the image tower, else "clip"."""
        return "fused" if hasattr(self.model.visual, "fused_params") else "clip"

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1])


def _clip():
    return _clip_compat.import_clip()  # on first use: cached-feature steps never import it


def list_backbones() -> list[str]:
    """Registered names: OpenAI's downloadable checkpoints, then the ones this project ships."""
    return list(_clip().available_models()) + sorted(_SHIPPED)


def _expected_sha(name: str) -> str:
    return _clip().clip._MODELS[name].split("/")[-2]  # OpenAI's URLs carry the SHA-256


def shipped_path(name: str) -> Path:
    """Path of a checkpoint this project ships (e.g. ``miniclip-rn``), whether or not it is made yet
    (loading one that is not fails with the command that makes it)."""
    return _PACKAGE_DIR / _SHIPPED[name][0]


def _shipped_sha(name: str) -> str:
    sha_file = shipped_path(name).with_suffix(".sha256")
    return sha_file.read_text().split()[0] if sha_file.exists() else ""


def _resolve(name_or_path: str, download_root: str | None) -> tuple[str, Path, str | None]:
    """Map a registry name or a file path to (name, local file, expected SHA-256 or None)."""
    if name_or_path in _SHIPPED:
        path, (rel, command) = shipped_path(name_or_path), _SHIPPED[name_or_path]
        if not path.is_file():
            raise BackboneError(f"The checkpoint of {name_or_path} ({path}) is absent: make it with `{command}`,"
                                f" or restore it if your checkout ships it (git checkout fewshot/{rel}).")
        return name_or_path, path, _shipped_sha(name_or_path) or None
    if name_or_path in _clip().available_models():
        root = Path(download_root or os.path.expanduser("~/.cache/clip"))
        url = _clip().clip._MODELS[name_or_path]
        target = root / os.path.basename(url)
        if not target.exists():
            try:
                _clip().clip._download(url, str(root))
            except (urllib.error.URLError, OSError) as err:
                raise BackboneError(f"Could not download CLIP {name_or_path!r} ({err}). Without network access, "
                                    f"copy the file {os.path.basename(url)} (SHA-256 {_expected_sha(name_or_path)}) "
                                    f"to {target}, or pass its path instead of the name.") from err
        return name_or_path, target, _expected_sha(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.name, path, None  # checked against every known checksum by load_backbone
    if path.suffix or os.sep in name_or_path:
        raise BackboneError(f"Checkpoint file {path} does not exist. Check the path, or use one of "
                            f"the registered names: {', '.join(list_backbones())}.")
    raise BackboneError(f"Unknown backbone {name_or_path!r}. Use a checkpoint path or one of: "
                        f"{', '.join(list_backbones())}.")


def load_backbone(name_or_path: str, device: str | torch.device = "cpu",
                  download_root: str | None = None, sha256: str | None = None,
                  fast_inference: bool = True) -> Backbone:
    """Load a CLIP model by registered name or local file, verifying its SHA-256.

    ``sha256`` overrides the expected checksum (for a local file whose checksum you know). A
    registered name uses the checksum in OpenAI's URL or the one shipped beside the file. Loading
    goes through ``clip.load(path, jit=False)``; on a CPU the weights come back as fp32. On a GPU,
    ``fast_inference`` sets the image tower up for speed with the same weights: channels-last
    memory layout (tensor-core GPUs) and, for ResNet towers, :func:`fewshot.models.bn_fold.fuse_image_tower`
    (features within fp16 rounding of CLIP's own forward; False runs CLIP's forward as it is)."""
    name, path, expected = _resolve(name_or_path, download_root)
    actual = sha256_file(path)
    expected = sha256 or expected
    if expected and actual != expected:
        raise BackboneError(f"Checksum mismatch for {path}: expected SHA-256 {expected}, got {actual}. The file "
                            f"is incomplete or a different checkpoint: delete it and download it again.")
    if not expected:
        _check_known(path, actual)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            model, preprocess = _clip().load(str(path), device=device, jit=False)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise BackboneError(f"{path} is not a loadable CLIP checkpoint ({type(err).__name__}: "
                            f"{err}). Save models as TorchScript archives (fewshot.models.backbones.save_checkpoint).") from err
    model.eval().requires_grad_(False)
    if fast_inference and torch.device(device).type == "cuda":  # speed only: bench/RESULTS.md
        if torch.cuda.get_device_capability(device)[0] >= 7:
            model.visual.to(memory_format=torch.channels_last)  # tensor cores' layout
        fuse_image_tower(model.visual)  # ResNet towers: BatchNorm folded, conv+ReLU fused
    return Backbone(name=name, path=path, sha256=actual, model=model, preprocess=preprocess,
                    device=torch.device(device))


class LazyBackbone:
    """A backbone whose model loads on first use of ``model`` (or ``preprocess``).

    ``record`` (a JSON file: the run folder's) keeps what a load of the same request (name or
    path, download root, device type) found: the checkpoint's path, size, modification time and
    SHA-256, and the facts that cache keys and records need (:attr:`FACTS`). While the checkpoint
    file keeps its size and time (the trust the feature cache gives images), a step that works on
    cached features reads them there instead of hashing the file and building the model; any
    other case loads at once through :func:`load_backbone` (checksum verified) and rewrites it."""

    FACTS = ("input_resolution", "context_length", "logit_scale", "image_tower", "embed_dim")

    def __init__(self, name_or_path: str, device="cpu", download_root: str | None = None,
                 record: str | os.PathLike | None = None, writer: bool = True):
        self.device = torch.device(device)
        self._args, self._loaded = (name_or_path, self.device, download_root), None
        self._request = {"backbone": str(name_or_path), "download_root": download_root or "",
                         "device": self.device.type}
        self._record, self._writer = (Path(record) if record else None), writer
        known = self._read()
        if known is None:
            self._load()
        else:
            self.name, self.path, self.sha256 = known["name"], Path(known["path"]), known["sha256"]
            self._facts = known["facts"]

    def _read(self) -> dict | None:
        try:
            rec = json.loads(self._record.read_text(encoding="utf-8"))
            st = os.stat(rec["path"])
            same = (rec["request"] == self._request and rec["size"] == st.st_size
                    and rec["mtime_ns"] == st.st_mtime_ns and set(rec["facts"]) == set(self.FACTS))
        except (AttributeError, OSError, ValueError, KeyError, TypeError):  # none, gone, damaged
            return None
        name = self._request["backbone"]
        if name in _SHIPPED and Path(rec["path"]) != shipped_path(name).resolve():
            return None  # another copy of the package
        return rec if same else None

    def _load(self) -> Backbone:
        if self._loaded is None:
            bb = self._loaded = load_backbone(*self._args)
            self.name, self.path, self.sha256 = bb.name, bb.path, bb.sha256
            self._facts = {k: getattr(bb, k) for k in self.FACTS}
            if self._record is not None and self._writer:
                st = os.stat(bb.path)
                atomic_write_json(self._record, {
                    "request": self._request, "name": bb.name, "path": str(Path(bb.path).resolve()),
                    "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": bb.sha256,
                    "facts": self._facts})
        return self._loaded

    model = property(lambda self: self._load().model, doc="the CLIP model (loaded on first use)")
    preprocess = property(lambda self: self._load().preprocess)
    loaded = property(lambda self: self._loaded is not None, doc="whether the model is in memory")
    input_resolution = property(lambda self: int(self._facts["input_resolution"]))
    context_length = property(lambda self: int(self._facts["context_length"]))
    logit_scale = property(lambda self: float(self._facts["logit_scale"]))
    image_tower = property(lambda self: self._facts["image_tower"])
    embed_dim = property(lambda self: int(self._facts["embed_dim"]))


def known_checksums() -> dict[str, str]:
    """{SHA-256: name} of every checkpoint the suite knows: OpenAI's and the shipped ones."""
    known = {_expected_sha(n): n for n in _clip().available_models()}
    known.update({_shipped_sha(n): n for n in _SHIPPED if _shipped_sha(n)})
    return known


def _check_known(path: Path, actual: str) -> None:
    """A checkpoint given by path: a file named like a known model (``RN50.pt``, ``miniclip-rn.pt``)
    must hold that model's bytes (another known model's too would put a wrong name in every
    record); a known model's bytes under another name are fine; anything else is warned about."""
    known = known_checksums()
    claimed = {os.path.basename(_clip().clip._MODELS[n]): (n, _expected_sha(n)) for n in _clip().available_models()}
    claimed.update({shipped_path(n).name: (n, _shipped_sha(n)) for n in _SHIPPED if _shipped_sha(n)})
    if path.name in claimed and claimed[path.name][1] != actual:
        (model, sha), holds = claimed[path.name], f"holds the bytes of {known.get(actual, 'another model')}"
        fix = (f"restore it (git checkout fewshot/{_SHIPPED[model][0]})" if model in _SHIPPED else
               f"download it again (./download_data.sh weights {model})")
        raise BackboneError(f"{path} is named like CLIP {model} but its SHA-256 is {actual}, not {sha}: the "
                            f"file {holds if actual in known else 'is incomplete, corrupt or another model'}. "
                            f"Rename it if it is another model, or {fix}.")
    if actual not in known:
        warnings.warn(f"{path}: SHA-256 {actual[:16]}... matches no known CLIP checkpoint; using it as "
                      f"given (its checksum is recorded with every result).", FewshotWarning, stacklevel=3)


def build_clip(embed_dim: int = 1024, image_resolution: int = 224, vision_layers=(3, 4, 6, 3),
               vision_width: int = 64, context_length: int = 77, transformer_width: int = 512,
               transformer_layers: int = 12, vocab_size: int = 49408,
               vision_patch_size: int | None = None) -> torch.nn.Module:
    """A randomly initialised ``clip.model.CLIP``: a ModifiedResNet image tower when
    ``vision_layers`` is a 4-tuple (defaults: RN50), a ViT of that many blocks when it is an int
    (then ``vision_patch_size`` is required, as in CLIP's own constructor).

    Head counts are the ones ``clip.model.build_model`` infers when reloading (``width // 64``
    for text and ViT, ``vision_width * 32 // 64`` for the attention pool), so a saved model reloads
    with the same maths. ``image_resolution`` must be a multiple of 32 (ResNet) or of the patch size (ViT).
    """
    vit = isinstance(vision_layers, int)
    if vit and not vision_patch_size:
        raise ValueError("a ViT image tower (an int vision_layers) needs a vision_patch_size")
    step = vision_patch_size if vit else 32
    if image_resolution % step:
        raise ValueError(f"image_resolution must be a multiple of {step}, got {image_resolution}")
    widths = {"transformer_width": transformer_width, **({"vision_width": vision_width} if vit else {})}
    for name, width in widths.items():
        if width % 64:
            raise ValueError(f"{name} must be a multiple of 64, got {width}")
    return _clip().model.CLIP(embed_dim, image_resolution, vision_layers if vit else tuple(vision_layers),
                              vision_width, vision_patch_size if vit else None, context_length, vocab_size,
                              transformer_width, transformer_width // 64, transformer_layers)


@torch.no_grad()
def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike) -> str:
    """Save a CLIP model as OpenAI does: an fp16 TorchScript archive that ``clip.load(path,
    jit=False)`` accepts (and, where this torch can trace fp16 on the CPU, ``jit=True`` too).
    Writes atomically and returns the file's SHA-256.

    (A plain ``torch.save`` state dict does not load: ``clip.load`` retries ``torch.load`` on the
    file handle that ``torch.jit.load`` already consumed.)
    """
    model = _clip().model.build_model(model.state_dict()).eval()  # fp16, exactly as clip.load builds
    model.token_embedding.half()  # build_model leaves it fp32; fp16 halves the file, same values
    res, ctx = model.visual.input_resolution, model.context_length
    text = torch.zeros(1, ctx, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, not gone
        try:
            traced = torch.jit.trace(model, (torch.zeros(1, 3, res, res, dtype=torch.float16), text),
                                     check_trace=False)
        except RuntimeError:  # torch < 2.1 has no fp16 convolution on the CPU: trace in fp32,
            half = {k for k, v in model.state_dict().items() if v.dtype == torch.float16}
            traced = torch.jit.trace(model.float(), (torch.zeros(1, 3, res, res), text), check_trace=False)
            for name, p in list(traced.named_parameters()) + list(traced.named_buffers()):
                if name in half:  # then store the weights as they were (jit=False reads only these)
                    p.data = p.data.half()
    with atomic_path(path) as tmp:
        traced.save(str(tmp))
    return sha256_file(path)
