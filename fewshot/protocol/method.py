"""The method protocol: what every few-shot method is, what it gets, and what it gives back.

A method is a :class:`Method`: a name and a pure function ``fit(shots, ctx) -> Head``.

- ``shots`` (:class:`Shots`) holds the k-shot training features of one (k, seed): centre crops,
  augmented views, labels, shot ranks. Shot-free methods (zero-shot) get ``None``.
- ``ctx`` (:class:`Context`) holds what is shared: the zero-shot head, the logit scale, the config,
  the device, the fitted state of the methods this one builds on (``after``), and, only in a
  labelled oracle run, the test set to tune on.
- The returned :class:`Head` gives logits for any features, says how its hyperparameters were
  chosen (``tuned_on``, from :mod:`fewshot.protocol.selection`), and carries the tensors that dependent
  methods and the run folder keep (``state``).
- ``rebuild(fitted, shots, ctx) -> Head`` gives that head back from what the run folder kept
  (:class:`Fitted`) and the shots, with the same logits; ``fit`` builds its final head through
  the same function, so the formula has one home.

The run (:mod:`fewshot.run.pipeline`) evaluates every registered method the same way, over shots ×
seeds × test sets, and writes the same records; the report draws any method that has records.
Adding a method is one module in ``fewshot/methods/`` that calls :func:`register`, plus its test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import torch

__all__ = ["Method", "Source", "Head", "Fitted", "Shots", "EvalSet", "Context", "EncoderAccess", "register",
           "cache_dtype_for", "precision_fields", "get_method", "list_methods", "list_record_names", "list_learnable", "TUNED_ON",
           "with_report_role", "baseline_method", "REPORT_ROLES", "current_name", "former_names"]

# How a hyperparameter was chosen; every record carries one of these.
TUNED_ON = ("none", "default", "loo-train", "cv-train", "unlabeled-train", "test-unlabeled", "test-oracle")


@dataclass(frozen=True)
class EvalSet:
    """A test set's cached features."""

    name: str  # "val", "sketch", "imagenet-a", ...
    feats: torch.Tensor  # [N, D] L2-normalised, fp32, on the run's device
    labels: torch.Tensor  # [N] class indices into the full class list
    classes: tuple  # class indices present; logits are restricted to these when fewer than C
    paths: tuple = ()  # [N] relative paths (for examples in the report)
    skipped: int = 0  # images that could not be decoded and were left out (skip_bad_images)


@dataclass(frozen=True)
class Shots:
    """The k-shot training data of one (shots, seed), in manifest order (class, then draw)."""

    shots: int  # k as configured (a class may hold fewer images: see ``labels``)
    seed: int  # split seed
    center: torch.Tensor  # [M, D] normalised centre-crop features
    views: torch.Tensor  # [V, M, D] raw (unnormalised) features of V augmented views
    labels: torch.Tensor  # [M]
    ranks: torch.Tensor  # [M] rank of each image among its class's shots (0 = first drawn)
    num_classes: int  # C
    paths: tuple = ()  # [M] relative paths of the shots (for methods that read pixels)


@dataclass(frozen=True)
class EncoderAccess:
    """What methods that run the image or text encoder get (``Method.needs_encoder``)."""

    model: object  # the loaded CLIP model (frozen; fine-tuning works on copies)
    pool: Callable  # () -> (PixelSet of the training pool's stored crops, {path: row}), decoded once
    eval_pixels: Callable  # set name -> PixelSet of its centre crops at the input resolution
    classnames: tuple  # [C]
    eval_counts: Mapping = field(default_factory=dict)  # set name -> images (for fewshot.protocol.budget)


@dataclass(frozen=True)
class Fitted:
    """What persists of a fitted head (saved in the run folder, read by dependent methods)."""

    method: str
    shots: Optional[int]
    seed: Optional[int]
    hyperparameters: dict
    tuned_on: str
    state: dict  # name -> tensor

    def head(self, logits: Callable, encoder: Optional[Callable] = None) -> "Head":
        """The :class:`Head` this state rebuilds to (what ``Method.rebuild`` returns): ``logits``
        feats [n, D] -> [n, C], ``encoder`` set name -> feats [N, D] (None: the cached ones)."""
        return Head(logits, self.tuned_on, dict(self.hyperparameters), dict(self.state), encoder=encoder)


@dataclass(frozen=True)
class Context:
    """Everything shared by the fits of one run."""

    text_weights: torch.Tensor  # [C, D] zero-shot head, normalised rows, fp32
    logit_scale: float  # CLIP's temperature (100 for OpenAI's checkpoints)
    cfg: object  # the RunConfig (fewshot.run.config)
    device: torch.device
    prior: Mapping[str, Fitted] = field(default_factory=dict)  # the methods in ``after``
    oracle: Optional[EvalSet] = None  # set only when cfg.oracle: the test set to tune on
    progress: bool = True
    encoder: Optional[EncoderAccess] = None  # only for methods with ``needs_encoder``
    checkpoint: Optional[Callable] = None  # fit part ("main", "fold0") -> fewshot.training.checkpoint.Checkpoint; None: none
    text_head: Optional[Callable] = None  # (template set, ensemble "clip" | "raw") -> [C, D] fp32
    #                                       head of another prompt set (cached); None: not available

    @property
    def cache_dtype(self):
        """fp16 products of affinities and values on a GPU (as the official code), fp32 on a CPU
        (None: the features' own dtype); :func:`cache_dtype_for`."""
        return cache_dtype_for(self.device)


def cache_dtype_for(device) -> Optional[torch.dtype]:
    """The dtype of the cache products (affinities @ values) on ``device``: float16 on CUDA,
    None (fp32, the features' own) elsewhere. The one place a device type picks it; records carry
    it (``cache_dtype``), and the device type enters their digest (fewshot.run.config.config_digest)."""
    return torch.float16 if torch.device(device).type == "cuda" else None


def precision_fields(device) -> dict:
    """What every record says of the precision it was made at: ``device_type`` ("cpu", "cuda",
    ...) and ``cache_dtype`` ("float16" or "float32", :func:`cache_dtype_for`)."""
    dtype = cache_dtype_for(device)
    return {"device_type": torch.device(device).type, "cache_dtype": str(dtype or torch.float32).replace("torch.", "")}


@dataclass
class Head:
    """A fitted classifier: logits for features, and how it came to be."""

    logits: Callable[[torch.Tensor], torch.Tensor]  # feats [n, D] normalised -> [n, C]
    tuned_on: str = "none"  # one of TUNED_ON
    hyperparameters: dict = field(default_factory=dict)  # JSON-able, recorded with every result
    state: dict = field(default_factory=dict)  # tensors dependents need (e.g. fine-tuned keys)
    extra: dict = field(default_factory=dict)  # JSON-able diagnostics: history, CV curves
    sweep: tuple = ()  # ((hyperparameters, logits_fn[, encoder]), ...): diagnostic heads, role "sweep"
    notes: dict = field(default_factory=dict)  # neither saved nor recorded: for ``diagnose``
    encoder: Optional[Callable] = None  # set name -> its features [N, D], when the head needs
    #                                     its own (a fine-tuned encoder); None: the cached ones
    companions: dict = field(default_factory=dict)  # other record names -> Head, reported too

    def __post_init__(self):
        if self.tuned_on not in TUNED_ON:
            raise ValueError(f"tuned_on must be one of {TUNED_ON}, got {self.tuned_on!r}")


@dataclass(frozen=True)
class Source:
    """Where a method comes from: what the report and README tables cite beside its rows."""

    paper: str  # "Yu et al., CVPR 2023"
    repo: str = ""  # the official repository, "owner/name" on GitHub ("" = none published)
    commit: str = ""  # the commit whose files were read
    files: tuple = ()  # the official files its formulas and recipe were read from


@dataclass(frozen=True)
class Method:
    """A registered few-shot method."""

    name: str  # as in records and figures, e.g. "class-means"
    fit: Callable  # (Shots | None, Context) -> Head
    step: str  # the pipeline step (and notebook) that runs it: "tip_adapter_f"
    summary: str  # one line for listings
    after: tuple = ()  # methods whose Fitted state ``fit`` reads from ``ctx.prior``
    shot_free: bool = False  # fit once, without shots (zero-shot)
    diagnose: Optional[Callable] = None  # (Shots, Context, Head, EvalSet) -> JSON for figures
    needs_encoder: bool = False  # fit gets ``ctx.encoder`` (pixels and the CLIP model)
    shots_field: str = ""  # a config field listing the shots it runs at (empty: cfg.shots)
    seeds_field: str = ""  # a config field listing the seeds it runs at (empty: cfg.seeds)
    companions: tuple = ()  # names its Head's companions are recorded under
    budget: Optional[Callable] = None  # (Shots, Context) -> fewshot.protocol.budget.Plan of one fit: its ETA
    learnable: bool = False  # trains parameters on the shots by optimisation (not a cache, not
    #                          closed-form statistics): the course's "learnable model"; companions too
    explain: Optional[Callable] = None  # (Shots, Context, Head, EvalSet) -> tensors for the
    #                                     qualitative analysis (fewshot.protocol.analysis), first seed only
    source: Optional[Source] = None  # the paper, repository and commit it was read from
    recipes: tuple = ()  # training recipes ``cfg.recipe`` may pick beyond "default" (e.g. "official")
    encoder_for: Optional[Callable] = None  # cfg -> bool: fit also gets ``ctx.encoder`` under this config
    #                                       (a recipe that encodes fresh crops); the report still groups it by ``needs_encoder``
    report: tuple = ()  # what the report draws of it beyond the tables, from REPORT_ROLES
    formerly: Mapping = field(default_factory=dict)  # old record name -> its name now (this method
    #                                              or a companion): run folders of older versions still read
    rebuild: Optional[Callable] = None  # (Fitted, Shots | None, Context) -> Head: the fitted head again
    #   from its saved state and the shots (``Fitted.head``; fewshot.run.pipeline.Run.rebuild), its logits
    #   feats [n, D] -> [n, C] those of the fit; with an ``encoder`` (set name -> feats [N, D], the test
    #   set's pixels through the saved encoder state) where the head needs its own. None: cannot rebuild

    def __post_init__(self):
        unknown = [r for r in self.report if r not in REPORT_ROLES]
        if unknown:
            raise ValueError(f"{self.name}: unknown report roles {unknown}; known: {', '.join(REPORT_ROLES)}")


# What a method may ask the report to draw of it: "baseline" (the reference every gain is measured
# from; one method), "grid" (its diagnostics are a hyperparameter grid, drawn as a heat map),
# "training" (its records carry a training history, drawn as curves).
REPORT_ROLES = ("baseline", "grid", "training")


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (names are unique); returns it."""
    if method.name in _REGISTRY:
        raise ValueError(f"a method named {method.name!r} is already registered")
    missing = [m for m in method.after if m not in _REGISTRY]
    if missing:
        raise ValueError(f"{method.name} builds on unregistered methods {missing}; register those first")
    _REGISTRY[method.name] = method
    return method


def _registry() -> dict[str, Method]:
    """The registry, refused while empty: the built-in methods are registered by importing
    :mod:`fewshot.methods` (its :func:`~fewshot.methods.load_methods`), never from here, so that
    this layer imports nothing above it."""
    if not _REGISTRY:
        raise RuntimeError("no method is registered yet: import fewshot.methods (or call "
                           "fewshot.methods.load_methods()) before reading the registry")
    return _REGISTRY


def list_methods() -> list[str]:
    """Registered method names, in registration order (dependencies first)."""
    return list(_registry())


def list_record_names() -> list[str]:
    """Every name records can carry: each method, followed by its companions."""
    return [n for m in list_methods() for n in (m, *get_method(m).companions)]


def list_learnable() -> list[str]:
    """Record names of the learnable methods (``Method.learnable``), companions included."""
    return [n for m in list_methods() if get_method(m).learnable for n in (m, *get_method(m).companions)]


def with_report_role(role: str) -> list[str]:
    """Names of the methods that declare ``role`` (:data:`REPORT_ROLES`), in registration order."""
    if role not in REPORT_ROLES:
        raise ValueError(f"unknown report role {role!r}; known: {', '.join(REPORT_ROLES)}")
    return [m for m in list_methods() if role in get_method(m).report]


def baseline_method() -> str:
    """The one method every gain is measured from (its ``report`` says "baseline": zero-shot CLIP)."""
    found = with_report_role("baseline")
    if len(found) != 1:
        raise RuntimeError(f"exactly one method must declare the report role 'baseline', found {found}")
    return found[0]


def current_name(name: str) -> str:
    """The record name ``name`` goes by now (a name some method's ``formerly`` lists is mapped;
    any other name is returned as it is). Reads the registry as filled so far: readers above
    this layer import :mod:`fewshot.methods` first."""
    for m in _REGISTRY.values():
        if name in m.formerly:
            return m.formerly[name]
    return name


def former_names(name: str) -> list[str]:
    """The older record names that now read as ``name`` (none for most)."""
    return [old for m in _REGISTRY.values() for old, new in m.formerly.items() if new == name]


def get_method(name: str) -> Method:
    """The registered method ``name``; an unknown name lists the valid ones."""
    if name not in _registry():
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]
