"""Config: the typed settings of one run, saved beside its results.

Named configs ship in ``fewshot/configs/*.json`` (``list_configs()``); any field can be
overridden from the command line or a notebook's parameters cell.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ConfigError", "RunConfig", "list_configs", "load_config", "save_config"]

_CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A config file or override that names an unknown field."""


@dataclass
class RunConfig:
    """Everything a run depends on. Paths are relative to the working directory."""

    data: str = "data/miniworld"  # dataset root in the ImageNet-1K-16shot layout
    backbone: str = "miniclip-rn"  # registered name (fewshot.backbones.list_backbones) or a path
    out: str = "runs/miniworld"  # results/, grids.json, predictions.json, splits/, config.json
    report_dir: str = "report"  # where notebook 07 / `fewshot report` write the report
    cache_dir: str = "cache"  # feature cache (safe to share between runs)
    download_root: str = ""  # where named CLIP checkpoints are downloaded ("" = ~/.cache/clip)
    templates: str = "clip80"  # prompt set: single, tip7 or clip80
    shots: tuple = (1, 2, 4, 5, 8, 16)  # k-shot settings to run
    seeds: tuple = (1, 2, 3)  # split seeds; results are mean ± std over these
    views: int = 10  # augmented views per training image for the cache (Tip-Adapter: 10)
    aug_seed: int = 1  # seed of the augmented views
    shift_sets: dict = field(default_factory=dict)  # name -> [path, kind]; {} = <data>/shift/*
    beta_max: float = 7.0  # Tip-Adapter grid: beta in [0.1, beta_max) ...
    beta_steps: int = 200  # ... in this many steps
    alpha_max: float = 3.0  # alpha in [0.1, alpha_max) ...
    alpha_steps: int = 20  # ... in this many steps
    epochs: int = 20  # Tip-Adapter-F epochs (fixed; never picked on test)
    lr: float = 1e-3  # Tip-Adapter-F AdamW learning rate
    train_batch_size: int = 256  # Tip-Adapter-F batch size
    lambdas: tuple = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # WiSE-FT sweep
    cv_folds: int = 4  # folds over the shots for choosing WiSE-FT's lambda
    fisher: bool = True  # also report the Fisher-weighted WiSE-FT merge
    oracle: bool = False  # tune alpha/beta/lambda on the test set (labelled test-oracle)
    device: str = "auto"  # "auto" (cuda if present), "cpu", "cuda", "cuda:1", ...
    decode: str = "auto"  # image decoding for test features: "pil", "gpu" (nvjpeg) or "auto" (gpu on CUDA)
    skip_bad_images: bool = False  # skip (and list) undecodable images instead of stopping
    batch_size: int = 128  # image-encoder batch size
    num_workers: int = 2  # image loader workers
    progress: bool = True  # tqdm progress bars

    def replace(self, **changes) -> "RunConfig":
        """A copy with ``changes`` applied (unknown fields raise TypeError)."""
        return dataclasses.replace(self, **changes)


def list_configs() -> list[str]:
    """Names of the shipped configs."""
    return sorted(p.stem for p in _CONFIG_DIR.glob("*.json"))


def load_config(name_or_path: str | os.PathLike, **overrides) -> RunConfig:
    """A shipped config by name, or a JSON file, with ``overrides`` applied."""
    path = Path(name_or_path)
    if not path.exists():
        if str(name_or_path) not in list_configs():
            raise FileNotFoundError(f"No config file {name_or_path!r} and no shipped config of "
                                    f"that name; shipped: {', '.join(list_configs())}.")
        path = _CONFIG_DIR / f"{name_or_path}.json"
    fields = json.loads(path.read_text(encoding="utf-8"))
    known = {f.name for f in dataclasses.fields(RunConfig)}
    for where, given in ((str(path), fields), ("overrides", overrides)):
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown config fields {unknown}; known: {sorted(known)}.")
    cfg = RunConfig(**fields).replace(**overrides)
    return cfg.replace(shots=tuple(cfg.shots), seeds=tuple(cfg.seeds), lambdas=tuple(cfg.lambdas))


def save_config(cfg: RunConfig, path: str | os.PathLike) -> None:
    """Write the config as JSON (the file that reproduces the run)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n", encoding="utf-8")
