"""Config: the frozen, validated settings of one run, saved beside its results.

Named configs ship in ``fewshot/configs/*.json`` (``list_configs()``); any field can be overridden
from the command line (``--set key=value``) or a notebook's parameters cell. Every value is checked
where it enters (:class:`RunConfig` validates itself), so a wrong value fails before any work with
one :class:`~fewshot.base.errors.ConfigError` line that names the field.

Each field is declared once, as a :class:`~fewshot.base.fields.Field` (name, type, default, check,
help, section) in the section of the layer that owns it (:data:`SECTIONS`); ``RunConfig`` is
assembled from them here. A ``config.json`` written before a field existed still opens: the
field's default fills in.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from fewshot.base.errors import ConfigError
from fewshot.base.fields import SEED_MAX
from fewshot.data import DEFAULT_SEEDS, DEFAULT_SHOTS
from fewshot.data.data_config import FIELDS as _DATA
from fewshot.features.feature_config import FIELDS as _FEATURES
from fewshot.merging.merge_config import FIELDS as _MERGING
from fewshot.models.model_config import FIELDS as _MODEL
from fewshot.protocol.method_config import DEFAULT_LAMBDAS, FIELDS as _METHODS
from fewshot.protocol.protocol_config import FIELDS as _PROTOCOL
from fewshot.run.runtime_config import FIELDS as _RUNTIME
from fewshot.training.training_config import FIELDS as _TRAINING

__all__ = ["RunConfig", "list_configs", "load_config", "save_config", "read_config",
           "config_digest", "describe_fields", "RUNTIME_FIELDS", "SECTIONS", "FIELDS",
           "DEFAULT_SHOTS", "DEFAULT_SEEDS", "DEFAULT_LAMBDAS", "SEED_MAX"]

_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# Every field, in the order ``run --help`` lists them (and RunConfig's fields are ordered), and
# the sections they form: heading -> fields (the method families' module holds several).
FIELDS = {f.name: f for part in (_DATA, _MODEL, _FEATURES, _PROTOCOL, _METHODS, _TRAINING, _MERGING, _RUNTIME)
          for f in part}
SECTIONS = {title: tuple(f for f in FIELDS.values() if f.section == title)
            for title in dict.fromkeys(f.section for f in FIELDS.values())}

# Fields that change how a run executes or where it writes, never its numbers (``Field.runtime``).
# They may differ between the notebooks of one run; every other field is fixed once the run folder
# exists. ``device`` is one of them although the device type sets precision (fp16 cache products
# and autocast on CUDA, fewshot.protocol.method.cache_dtype_for) and what decode="auto" picks: the
# resolved device type is recorded in every record and enters the digest of the records made
# (:func:`config_digest`), so a number made on another device type never passes for this one.
# ``decode`` is a science field: nvjpeg's pixels differ from PIL's.
RUNTIME_FIELDS = frozenset(f.name for f in FIELDS.values() if f.runtime)


def _mutable_default(f):
    if isinstance(f.default, (dict, list)):
        return dataclasses.field(default_factory=lambda d=f.default: json.loads(json.dumps(d)))
    return dataclasses.field(default=f.default)


def _post_init(self):
    for name, f in FIELDS.items():
        object.__setattr__(self, name, f.check(name, getattr(self, name)))  # normalised: tuples, floats


def _replace(self, **changes) -> "RunConfig":
    """A validated copy with ``changes`` applied (unknown fields raise ConfigError)."""
    _check_known(changes, "overrides")
    return dataclasses.replace(self, **changes)


def _to_dict(self) -> dict:
    """JSON-ready fields (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


RunConfig = dataclasses.make_dataclass(
    "RunConfig", [(f.name, f.type, _mutable_default(f)) for f in FIELDS.values()], frozen=True,
    namespace={"__post_init__": _post_init, "replace": _replace, "to_dict": _to_dict,
               "__doc__": "Everything a run depends on (the fields of SECTIONS). Relative paths "
                          "are relative to the working directory."})
RunConfig.__module__ = __name__  # pickled by name (the loader workers, torchrun), as a class statement's


# Fields a newer version replaced: {old: what to set instead}. A run folder's saved config drops
# them (its records are redone under the new digest anyway); a config file or override that sets
# one is told what replaced it.
RETIRED = {"merge_epochs": "merge_steps (the experts train for a fixed budget of optimiser steps)"}


def _check_known(given: dict, where: str) -> None:
    old = sorted(set(given) & set(RETIRED))
    if old:
        raise ConfigError(f"{where}: {old[0]} is no longer a config field: set {RETIRED[old[0]]}")
    known = list(FIELDS)
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
    fields = {k: v for k, v in _read_json_object(Path(path)).items() if k not in RETIRED}
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


def config_digest(cfg: RunConfig, device_type: str = "cpu") -> str:
    """12 hex digits of SHA-256 over :func:`science_fields` and the resolved ``device_type``
    ("cpu", "cuda", "mps"; the run's ``torch.device(...).type``): records made with the same
    digest belong to the same experiment. The device type is in it because it sets precision
    (the cache products' dtype, autocast) and decode="auto"; ``device`` itself is a runtime field,
    so ``cuda:0`` and ``cuda:1`` give the same digest."""
    text = json.dumps({**science_fields(cfg), "device_type": device_type}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def describe_fields() -> str:
    """The fields under their section headings: name, default and help (for ``run --help``)."""
    out = []
    for title, fields in SECTIONS.items():
        out.append(f" {title}:")
        for f in fields:
            default = list(f.default) if isinstance(f.default, tuple) else f.default
            out.append(f"  {f.name} = {json.dumps(default)}: {f.help}")
    return "\n".join(out)
