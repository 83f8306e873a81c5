"""Pipeline: one run of the suite. Resources are loaded once; then any registered method is
evaluated the same way over shots × seeds × test sets (:mod:`fewshot.protocol`).

Steps, in order: ``zeroshot``, ``splits``, ``features``, then one step per group of methods
(``tip_adapter``, ``tip_adapter_f``, ``wise``, ...: each method names its step). Each step reads
what earlier steps wrote to the run folder (:mod:`fewshot.rundir`) and writes its own files, so a
notebook can run one step after a restart.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fewshot.backbones import load_backbone
from fewshot.config import RunConfig, config_digest, load_config
from fewshot.datasets import ImageSet, check_shots, find_shift_sets, load_dataset, load_shift_set
from fewshot.errors import ConfigError
from fewshot.evaluation import class_accuracy, evaluate, predict
from fewshot.features import image_features, text_classifier
from fewshot.protocol import Context, EvalSet, Fitted, Shots, get_method, list_methods
from fewshot.results import format_table, git_revision, make_record, summarize
from fewshot.rundir import RunDir
from fewshot.splits import load_manifest, shot_ranks, write_manifests

__all__ = ["Run", "TrainPool", "run_all", "resolve_device", "list_steps"]


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; any other name is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def list_steps() -> list[str]:
    """Step names in run order: zeroshot, splits, features, then the methods' steps."""
    steps = ["zeroshot", "splits", "features"]
    for name in list_methods():
        if get_method(name).step not in steps:
            steps.append(get_method(name).step)
    return steps


@dataclass(frozen=True)
class TrainPool:
    """Cached features of every training image any manifest of the run uses."""

    rows: dict  # relative path -> row
    center: torch.Tensor  # [P, D] raw centre-crop features, fp16
    views: torch.Tensor  # [V, P, D] raw augmented views, fp16
    labels: torch.Tensor  # [P]


class Run:
    """One run folder's resources (loaded lazily, once) and the steps that fill it."""

    def __init__(self, cfg: RunConfig, fresh: bool = False, resume: dict | None = None):
        """Start (or continue) the run of ``cfg`` in ``cfg.out``. With ``resume`` (a later
        notebook's explicit overrides), the folder's own config.json is used instead, and an
        override that contradicts it is an error."""
        self.dir = RunDir(cfg.out)
        if resume is not None and self.dir.config_path.exists():
            cfg = self.dir.adopt(cfg, resume)
        else:
            self.dir.start(cfg, fresh)
        self.cfg, self.out, self.device = cfg, self.dir.root, resolve_device(cfg.device)
        self.digest = config_digest(cfg)
        self.methods = list(cfg.methods) or list_methods()
        for name in self.methods:
            missing = [d for d in get_method(name).after if d not in self.methods]
            if missing:
                raise ConfigError(f"method {name} builds on {', '.join(missing)}: add "
                                  f"{'it' if len(missing) == 1 else 'them'} to `methods`.")

    @classmethod
    def from_config(cls, name_or_path: str, **overrides) -> "Run":
        """A run from a shipped config name or a JSON file, with field overrides."""
        return cls(load_config(name_or_path, **overrides))

    @classmethod
    def from_tensors(cls, cfg: RunConfig, dataset, text_weights: torch.Tensor, logit_scale: float,
                     eval_sets: dict, pool: TrainPool) -> "Run":
        """A run over features already in memory (benchmarks, tests): no backbone and no
        feature cache are touched; records name the backbone "in-memory"."""
        run = cls(cfg)
        run.__dict__.update(dataset=dataset, text_weights=text_weights, logit_scale=logit_scale,
                            eval_sets=eval_sets, pool=pool, context={
                                "backbone": "in-memory", "backbone_sha256": "", "dataset": "in-memory",
                                "templates": cfg.templates, "views": cfg.views, "git_rev": git_revision(),
                                "device": str(run.device), "decode": "none", "image_tower": "none",
                                "config_digest": run.digest})
        return run

    def preflight(self) -> None:
        """Checks that need the data, before any work: shot counts against class sizes."""
        for warning in check_shots(self.dataset, self.cfg.shots):
            print(f"warning: {warning}", file=sys.stderr)

    def banner(self) -> str:
        """One line saying which data, model, device and code produce the numbers below."""
        c = self.cfg
        gpu = f" ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda" else ""
        text = (f"dataset {c.data} | backbone {c.backbone} | device {self.device}{gpu} | templates "
                f"{c.templates} | shots {list(c.shots)} | seeds {list(c.seeds)} | protocol "
                f"{'ORACLE (tuned on test)' if c.oracle else 'no test tuning'} | run {self.out} "
                f"(config {self.digest}) | git {git_revision()}")
        print(text)
        return text

    # ------------------------------------------------------------------ resources, loaded once
    @cached_property
    def backbone(self):
        return load_backbone(self.cfg.backbone, self.device, self.cfg.download_root or None)

    @cached_property
    def dataset(self):
        return load_dataset(self.cfg.data)

    @cached_property
    def context(self) -> dict:
        """Run-wide fields of every record."""
        dev = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return {"backbone": self.backbone.name, "backbone_sha256": self.backbone.sha256,
                "dataset": self.dataset.root.name, "templates": self.cfg.templates,
                "views": self.cfg.views, "git_rev": git_revision(), "device": dev,
                "decode": self.decode, "image_tower": self.backbone.image_tower,
                "config_digest": self.digest}

    @cached_property
    def text_weights(self) -> torch.Tensor:  # [C, D] fp32
        return text_classifier(self.backbone, self.dataset.classnames, self.cfg.templates,
                               self.cfg.cache_dir, self.device, self.cfg.progress)

    @cached_property
    def logit_scale(self) -> float:
        return self.backbone.logit_scale

    @property
    def decode(self) -> str:
        """"gpu" (nvjpeg) when asked for or, with "auto", when the device is CUDA; else "pil"."""
        if self.cfg.decode == "auto":
            return "gpu" if self.device.type == "cuda" else "pil"
        return self.cfg.decode

    def _features(self, image_set: ImageSet, views: int = 0):
        c = self.cfg
        return image_features(self.backbone, image_set, c.cache_dir, views, c.aug_seed,
                              c.batch_size, c.num_workers, self.device, c.progress, self.decode,
                              c.skip_bad_images)

    @cached_property
    def eval_sets(self) -> dict[str, EvalSet]:
        """The val set and every shifted test set, as normalised cached features."""
        shifts = self.cfg.shift_sets or find_shift_sets(self.cfg.data)
        sets = {"val": self.dataset.val}
        for name, (path, kind) in sorted(shifts.items()):
            sets[name] = load_shift_set(path, kind, self.dataset.wnids, name)
        out = {}
        for name, s in sets.items():
            f = self._features(s)
            out[name] = EvalSet(name, F.normalize(f.feats.float(), dim=-1), f.labels,
                                tuple(s.class_indices), tuple(f.paths), len(f.skipped))
        return out

    def manifest(self, shots: int, seed: int) -> dict:
        """The (shots, seed) split manifest written by the splits step."""
        path = self.dir.manifest_path(shots, seed)
        if not path.exists():
            from fewshot.errors import MissingStepError

            raise MissingStepError(f"{path} is missing: run the splits step first "
                                   f"(notebook 02, or `python -m fewshot run --steps splits`).")
        return load_manifest(path)

    @cached_property
    def pool(self) -> TrainPool:
        """Features of every image in any of the run's manifests: centre crops and views."""
        paths = sorted({p for seed in self.cfg.seeds
                        for p, _ in self.manifest(max(self.cfg.shots), seed)["items"]})
        label_of = dict(self.dataset.train.items)
        pool = ImageSet("train-pool", self.dataset.root, [(p, label_of[p]) for p in paths],
                        self.dataset.train.class_indices)
        center, views = self._features(pool), self._features(pool, self.cfg.views)
        if center.paths != views.paths:
            raise RuntimeError("centre-crop and augmented passes kept different files")
        return TrainPool({p: i for i, p in enumerate(center.paths)}, center.feats, views.feats,
                         center.labels)

    def shots_data(self, shots: int, seed: int) -> Shots:
        """The cached tensors of one manifest (minus skipped files)."""
        pool = self.pool
        items = [it for it in self.manifest(shots, seed)["items"] if it[0] in pool.rows]
        rows = torch.tensor([pool.rows[p] for p, _ in items], device=pool.center.device)
        return Shots(shots, seed, F.normalize(pool.center[rows].float(), dim=-1),
                     pool.views[:, rows], pool.labels[rows],
                     torch.tensor(shot_ranks(items), device=rows.device), self.dataset.num_classes)

    # ------------------------------------------------------------------ methods
    def _context(self, method, shots, seed) -> Context:
        prior = {d: self.dir.load_fitted(d, shots, seed, self.digest, get_method(d).step, self.device)
                 for d in method.after}
        return Context(self.text_weights, self.logit_scale, self.cfg, self.device, prior,
                       self.eval_sets["val"] if self.cfg.oracle else None, self.cfg.progress)

    def _records(self, method, scores, head, shots, seed, role="final", hp=None):
        return [make_record(method, name, m, context=self.context, shots=shots, seed=seed,
                            hyperparameters=head.hyperparameters if hp is None else hp,
                            tuned_on=head.tuned_on if role == "final" else "none", role=role,
                            extra=head.extra if role == "final" else None,
                            skipped=self.eval_sets[name].skipped)
                for name, m in scores.items()]

    def run_method(self, name: str) -> list[dict]:
        """Fit ``name`` on every (shots, seed), evaluate it on every test set, write its records
        (``results/<name>.jsonl``), fitted state, diagnostics and predictions."""
        m = get_method(name)
        grid = [(0, None)] if m.shot_free else [(k, s) for s in self.cfg.seeds for k in self.cfg.shots]
        records, diagnostics = [], []
        with self.dir.lock(name):
            bar = tqdm(grid, desc=name, disable=not self.cfg.progress or len(grid) == 1)
            for k, seed in bar:
                bar.set_postfix_str("" if m.shot_free else f"{k}-shot, seed {seed}")
                what = name if m.shot_free else f"{name} ({k}-shot, seed {seed})"
                shots = None if m.shot_free else self.shots_data(k, seed)
                ctx = self._context(m, k, seed)
                head = m.fit(shots, ctx)
                records += self._records(name, evaluate(head.logits, self.eval_sets, what), head, k, seed)
                for hp, fn in head.sweep:
                    records += self._records(name, evaluate(fn, self.eval_sets, what), head, k,
                                             seed, role="sweep", hp=hp)
                self.dir.save_fitted(Fitted(name, k, seed, head.hyperparameters, head.tuned_on,
                                            head.state), self.digest)
                first = m.shot_free or (seed == self.cfg.seeds[0])
                if m.diagnose and first:
                    diagnostics.append(m.diagnose(shots, ctx, head, self.eval_sets["val"]))
                if first and (m.shot_free or k == max(self.cfg.shots)):
                    self._save_predictions(name, head, k, seed)
            self.dir.write_records(name, records)
            if m.diagnose:
                self.dir.write_json(self.dir.diagnostics_path(name), diagnostics)
        return records

    def _save_predictions(self, name, head, shots, seed) -> None:
        val = self.eval_sets["val"]
        self.dir.write_json(self.dir.predictions_path("index"), {
            "shots": max(self.cfg.shots), "seed": self.cfg.seeds[0],
            "dataset_root": str(self.dataset.root), "paths": list(val.paths),
            "labels": val.labels.tolist(), "classnames": self.dataset.classnames})
        self.dir.write_json(self.dir.predictions_path(name), predict(head.logits, val.feats, name).tolist())

    # ------------------------------------------------------------------ steps
    def splits(self) -> list:
        """Write the k-shot manifests for every (shots, seed) of the config."""
        with self.dir.lock("splits"):
            return write_manifests(self.dataset, self.dir.splits_dir, self.cfg.shots, self.cfg.seeds)

    def features(self) -> dict:
        """Encode (or find in the cache) the text head, the training pool and every test set."""
        _ = self.text_weights, self.pool, self.eval_sets
        return {name: tuple(s.feats.shape) for name, s in self.eval_sets.items()}

    def step(self, step: str) -> list:
        """Run one step: ``splits``, ``features``, or every configured method of that step."""
        if step not in list_steps():
            raise ConfigError(f"unknown step {step!r}; steps are {', '.join(list_steps())}")
        if step in ("splits", "features"):
            return getattr(self, step)()
        return [r for name in list_methods() if name in self.methods
                and get_method(name).step == step for r in self.run_method(name)]

    def zeroshot(self) -> list[dict]:
        """Zero-shot CLIP on every test set (the ``zeroshot`` step)."""
        return self.step("zeroshot")

    def class_accuracy(self, name: str = "zero-shot", eval_set: str = "val") -> list[float]:
        """Per-class top-1 (%) of a shot-free method (default: zero-shot) on ``eval_set``: [C]."""
        head = get_method(name).fit(None, self._context(get_method(name), 0, None))
        return class_accuracy(head.logits, self.eval_sets[eval_set], self.dataset.num_classes)

    def records(self) -> list[dict]:
        """All records the steps have written so far."""
        return self.dir.read_records()

    def summary(self, eval_set: str = "val") -> str:
        """Markdown table of mean ± std top-1 over seeds."""
        return format_table(summarize(self.records()), eval_set)


def run_all(cfg: RunConfig, steps=None, stream=None, fresh: bool = False) -> Run:
    """Run ``steps`` (default: all) in order and print the summary table for every test set (to
    ``stream``, default: the current ``sys.stdout``)."""
    stream = stream or sys.stdout
    steps = list(steps or list_steps())
    unknown = [s for s in steps if s not in list_steps()]
    if unknown:
        raise ConfigError(f"unknown steps {', '.join(unknown)}; steps are {', '.join(list_steps())}")
    for warning in check_shots(load_dataset(cfg.data), cfg.shots):  # before anything is written
        print(f"warning: {warning}", file=sys.stderr)
    run = Run(cfg, fresh=fresh)
    for step in list_steps():
        if step in steps:
            print(f"[fewshot] {step} ...", file=stream, flush=True)
            run.step(step)
    for name in run.eval_sets:
        print(f"\nTop-1 (%) on {name}, mean ± std over seeds {list(cfg.seeds)}:\n"
              f"{run.summary(name)}", file=stream)
    return run
