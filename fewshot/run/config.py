"""Config: the frozen, validated settings of one run, saved beside its results.

Named configs ship in ``fewshot/configs/*.json`` (``list_configs()``); any field can be overridden
from the command line (``--set key=value``) or a notebook's parameters cell. Every value is checked
where it enters (:class:`RunConfig` validates itself), so a wrong value fails before any work with
one :class:`~fewshot.base.errors.ConfigError` line that names the field. Each default is written once, here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from fewshot.base.errors import ConfigError
from fewshot.base.paths import expand_path, path_setting as _path
from fewshot.data import DEFAULT_SEEDS, DEFAULT_SHOTS

__all__ = ["RunConfig", "list_configs", "load_config", "save_config", "read_config",
           "config_digest", "describe_fields", "RUNTIME_FIELDS", "DEFAULT_SHOTS", "DEFAULT_SEEDS"]

_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
SEED_MAX = 2**63 - 1  # the largest seed: torch generators take 64 bits, fine-tuning also seeds seed + 1
DEFAULT_LAMBDAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

# Fields that change how a run executes or where it writes, never its numbers. They may differ
# between the notebooks of one run; every other field is fixed once the run folder exists.
RUNTIME_FIELDS = frozenset({"out", "report_dir", "cache_dir", "download_root", "device", "decode",
                            "batch_size", "num_workers", "progress", "methods", "grad_checkpointing",
                            "time_budget", "report_method"})


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on. Relative paths are relative to the working directory."""

    data: str = "data/miniworld"  # dataset root in the ImageNet-1K-16shot layout
    backbone: str = "miniclip-rn"  # registered name (fewshot.models.backbones.list_backbones) or a path
    out: str = "runs/miniworld"  # the run folder (fewshot.run.rundir): results, splits, config.json
    report_dir: str = "report"  # where notebook 07 / `fewshot report` write the report
    report_method: str = ""  # the method the report's qualitative analysis shows; "" = the best honest learnable one at 16 shots
    cache_dir: str = "cache"  # feature cache (safe to share between runs)
    download_root: str = ""  # where named CLIP checkpoints are downloaded ("" = ~/.cache/clip)
    templates: str = "clip80"  # prompt set: fewshot.models.templates.list_templates()
    shots: tuple = DEFAULT_SHOTS  # k-shot settings to run
    seeds: tuple = DEFAULT_SEEDS  # split seeds; results are mean ± std over these
    methods: tuple = ()  # methods to evaluate (fewshot.methods.list_methods()); () = all registered
    views: int = 10  # augmented views per training image for the cache (Tip-Adapter: 10)
    aug_seed: int = 1  # seed of the augmented views
    shift_sets: dict = field(default_factory=dict)  # name -> [path, kind]; {} = found beside data
    beta_max: float = 7.0  # Tip-Adapter grid: beta in [0.1, beta_max) ...
    beta_steps: int = 200  # ... in this many steps
    alpha_max: float = 3.0  # alpha in [0.1, alpha_max) ...
    alpha_steps: int = 20  # ... in this many steps
    epochs: int = 20  # Tip-Adapter-F epochs (fixed; the oracle keeps the best epoch on test)
    lr: float = 1e-3  # Tip-Adapter-F AdamW learning rate
    train_batch_size: int = 256  # Tip-Adapter-F batch size
    tip_f_recipe: str = "auto"  # Tip-Adapter-F: "fp32", "official" (fp16 state: fewshot.training.optim), "auto" (CV)
    recipe: str = "default"  # peers' recipe (fewshot.protocol.recipes): "default" (each method's docstring) or "official" (the authors' dtype, crops, context)
    lambdas: tuple = DEFAULT_LAMBDAS  # WiSE-FT mixing coefficients evaluated
    cv_folds: int = 4  # folds over the shots for choosing WiSE-FT's lambda
    ft_shots: tuple = ()  # shots at which the encoders are fine-tuned (fewshot.training.encoder, CoOp); () = all
    ft_seeds: tuple = ()  # seeds at which they are; () = all
    ft_epochs: int = 10  # encoder fine-tuning epochs
    ft_lr: float = 3e-5  # encoder fine-tuning AdamW rate (WiSE-FT's); LoRA trains at 10x
    ft_batch_size: int = 256  # encoder fine-tuning batch size (split across GPUs under torchrun)
    ft_alphas: tuple = (0.0, 0.25, 0.5, 0.75, 1.0)  # WiSE-FT path of fine-tuned encoders
    ft_recipe: str = "suite"  # encoder fine-tuning recipe: "suite" or "wise-ft" (mlfoundations/wise-ft's: fewshot.training.encoder)
    clip_lora_iters: int = 500  # CLIP-LoRA iterations per shot (the official 500: 8,000 at 16 shots)
    grad_checkpointing: bool = False  # recompute activations in backward (less GPU memory); always on GPUs < 20 GiB
    coop_epochs: int = 50  # CoOp epochs (its ImageNet recipe: 50)
    merge_tasks: str = ""  # folder of task datasets for the merging study (fewshot.merging.study); "" = none
    merge_shots: int = 16  # shots per class of each task's experts (one fold held out to choose λ)
    merge_epochs: int = 40  # epochs of each expert (and of the multi-task reference)
    merge_lr: float = 1e-4  # AdamW rate of the experts (batch 32, as FusionBench's experts)
    adamerging_steps: int = 1000  # AdaMerging's Adam steps (fewshot.merging.adamerging; FusionBench: 1000); 0 = no AdaMerging rows
    oracle: bool = False  # tune on the test set, as the official scripts do (labelled test-oracle)
    device: str = "auto"  # "auto" (cuda if present), "cpu", "cuda", "cuda:1", ...
    decode: str = "auto"  # test-image decoding: "pil", "gpu" (nvjpeg) or "auto" (gpu on CUDA)
    skip_bad_images: bool = False  # skip (and count) undecodable images instead of stopping
    batch_size: int = 128  # image-encoder batch size
    num_workers: int = 2  # image loader workers
    progress: bool = True  # progress bars
    time_budget: float = 0.0  # minutes a long step may take (its measured estimate, fewshot.protocol.budget); 0 = no limit

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = _CHECKS[f.name](f.name, getattr(self, f.name))
            object.__setattr__(self, f.name, value)  # normalised: tuples, floats

    def replace(self, **changes) -> "RunConfig":
        """A validated copy with ``changes`` applied (unknown fields raise ConfigError)."""
        _check_known(changes, "overrides")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready fields (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ----------------------------------------------------------------------------- value checks
def _fail(name, expected, value):
    raise ConfigError(f"config field {name!r} must be {expected}, got {value!r}")


def _str(choices=None, pattern=None, empty=False, desc=""):
    def check(name, v):
        if not isinstance(v, str) or (not empty and not v.strip()):
            _fail(name, "a non-empty string" if not empty else "a string", v)
        options = choices() if callable(choices) else choices
        if options is not None and v not in options:
            _fail(name, f"one of {', '.join(options)}", v)
        if pattern and not re.fullmatch(pattern, v):
            _fail(name, desc, v)
        return v
    return check


def _int(lo=None, hi=None):
    def check(name, v):
        if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo) or (hi is not None and v > hi):
            _fail(name, (f"an integer >= {lo}" if lo is not None else "an integer")
                  + (f" and <= {hi}" if hi is not None else ""), v)
        return v
    return check


def _float(lo=None, hi=None, lo_open=True):
    def check(name, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
                (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi):
            low = f"{'>' if lo_open else '>='} {lo}" if lo is not None else ""
            _fail(name, "a finite number" + (f" {low}" if low else "") + (f" and <= {hi}" if hi is not None else ""), v)
        return float(v)
    return check


def _bool(name, v):
    if not isinstance(v, bool):
        _fail(name, "true or false", v)
    return v


def _list(item, what):
    def check(name, v):
        if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)) or not v:
            _fail(name, f"a non-empty list of {what}", v)
        out = tuple(item(f"{name}[{i}]", x) for i, x in enumerate(v))
        if len(set(out)) != len(out):
            _fail(name, f"a list of distinct {what}", v)
        return out
    return check


def _shift_sets(name, v):
    from fewshot.data.shifts import list_shift_kinds

    if not isinstance(v, dict):
        _fail(name, "an object {name: [path, kind]}", v)
    out = {}
    for key, spec in v.items():
        if not isinstance(spec, (list, tuple)) or len(spec) != 2 or not all(isinstance(s, str) for s in spec):
            _fail(f"{name}.{key}", "[path, kind]", spec)
        if spec[1] not in list_shift_kinds():
            _fail(f"{name}.{key} kind", f"one of {', '.join(list_shift_kinds())}", spec[1])
        out[str(key)] = (expand_path(spec[0], f"config field '{name}.{key}'"), spec[1])
    return out


def _templates():
    from fewshot.models.templates import list_templates

    return list_templates()


def _report_method(name, v):
    from fewshot.methods import current_name, list_record_names

    v = current_name(v) if isinstance(v, str) else v  # a renamed method's older name
    if not isinstance(v, str) or (v and v not in list_record_names()):
        _fail(name, f'"" (automatic) or one of {", ".join(list_record_names())}', v)
    return v


def _methods(name, v):
    from fewshot.methods import current_name, list_methods

    if isinstance(v, (list, tuple)) and not v:
        return ()  # every registered method
    if isinstance(v, (list, tuple)):
        v = [current_name(m) if isinstance(m, str) else m for m in v]  # renamed methods' older names
    return _list(_str(choices=list_methods), "method names")(name, v)


_CHECKS = {
    "data": _path(), "backbone": _path(name_or_path=True), "out": _path(), "report_dir": _path(),
    "cache_dir": _path(), "report_method": _report_method,
    "download_root": _path(empty=True), "templates": _str(choices=_templates),
    "shots": _list(_int(1), "integers >= 1"), "seeds": _list(_int(0, SEED_MAX), "integers in [0, 2**63 - 1]"),
    "methods": _methods, "views": _int(1), "aug_seed": _int(0, SEED_MAX), "shift_sets": _shift_sets,
    "beta_max": _float(0.1), "beta_steps": _int(1), "alpha_max": _float(0.1), "alpha_steps": _int(1),
    "epochs": _int(1), "lr": _float(0.0, 10.0), "train_batch_size": _int(1),
    "tip_f_recipe": _str(choices=("auto", "fp32", "official")), "recipe": _str(choices=("default", "official")),
    "lambdas": _list(_float(0.0, 1.0, lo_open=False), "numbers in [0, 1]"), "cv_folds": _int(2),
    "ft_shots": lambda n, v: () if isinstance(v, (list, tuple)) and not v else _list(_int(1), "integers >= 1")(n, v),
    "ft_seeds": lambda n, v: () if v in ([], ()) else _CHECKS["seeds"](n, v),  # () = all
    "ft_epochs": _int(1), "ft_lr": _float(0.0, 1.0), "ft_batch_size": _int(1),
    "ft_alphas": _list(_float(0.0, 1.0, lo_open=False), "numbers in [0, 1]"), "grad_checkpointing": _bool, "coop_epochs": _int(1),
    "ft_recipe": _str(choices=("suite", "wise-ft")), "clip_lora_iters": _int(1), "merge_tasks": _path(empty=True), "merge_shots": _int(2), "merge_epochs": _int(1), "merge_lr": _float(0.0, 1.0), "adamerging_steps": _int(0),
    "oracle": _bool, "device": _str(pattern=r"auto|cpu|mps|cuda(:\d+)?", desc="auto, cpu, mps, cuda or cuda:N"),
    "decode": _str(choices=("auto", "pil", "gpu")), "skip_bad_images": _bool, "batch_size": _int(1), "num_workers": _int(0), "progress": _bool, "time_budget": _float(0.0, lo_open=False),
}


def _check_known(given: dict, where: str) -> None:
    known = [f.name for f in dataclasses.fields(RunConfig)]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown config field(s) {', '.join(unknown)}; known: "
                          f"{', '.join(known)}")


# ----------------------------------------------------------------------------- files
def list_configs() -> list[str]:
    """Names of the shipped configs."""
    return sorted(p.stem for p in _CONFIG_DIR.glob("*.json"))


def _read_json_object(path: Path) -> dict:
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file ({err.reason})") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column "
                          f"{err.colno})") from err
    if not isinstance(fields, dict):
        raise ConfigError(f"{path}: expected a JSON object of config fields, got "
                          f"{type(fields).__name__}")
    return fields


def load_config(name_or_path: str | os.PathLike, **overrides) -> RunConfig:
    """A shipped config by name, or a JSON file, with ``overrides`` applied; validated."""
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if not path.is_file():
        if str(name_or_path) not in list_configs():
            raise ConfigError(f"no config file {str(name_or_path)!r} and no shipped config of that "
                              f"name; shipped: {', '.join(list_configs())}")
        path = _CONFIG_DIR / f"{name_or_path}.json"
    fields = _read_json_object(path)
    _check_known(fields, str(path))
    _check_known(overrides, "overrides")
    return RunConfig(**{**fields, **overrides})


def read_config(path: str | os.PathLike) -> RunConfig:
    """The config saved in a run folder (``config.json``), validated."""
    fields = _read_json_object(Path(path))
    _check_known(fields, str(path))
    try:
        return RunConfig(**fields)
    except ConfigError as err:  # a hand-edited value: name the file it came from
        raise ConfigError(f"{path}: {err}") from err


def save_config(cfg: RunConfig, path: str | os.PathLike) -> None:
    """Write the config as JSON (the file that reproduces the run), atomically."""
    from fewshot.base.atomic import atomic_write_json

    atomic_write_json(path, cfg.to_dict(), indent=2)


def science_fields(cfg: RunConfig) -> dict:
    """The fields that change a run's numbers (all but :data:`RUNTIME_FIELDS`), JSON-ready."""
    return {k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_FIELDS}


def config_digest(cfg: RunConfig) -> str:
    """12 hex digits of SHA-256 over :func:`science_fields`: records made with the same digest
    belong to the same experiment."""
    text = json.dumps(science_fields(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def describe_fields() -> str:
    """One line per field: name, default and the comment from this file (for ``run --help``)."""
    comments = {}
    for line in Path(__file__).read_text(encoding="utf-8").splitlines():
        m = re.match(r"\s{4}(\w+): [^=]+= .*?  # (.*)$", line)
        if m:
            comments[m.group(1)] = m.group(2)
    out = []
    for f in dataclasses.fields(RunConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        default = list(default) if isinstance(default, tuple) else default
        out.append(f"  {f.name} = {json.dumps(default)}: {comments.get(f.name, '')}")
    return "\n".join(out)
