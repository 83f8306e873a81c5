"""Pipeline: one run of the suite; every registered method evaluated the same way over shots ×
seeds × test sets. Steps: ``zeroshot``, ``splits``, ``features``, then one per group of methods;
each reads what earlier steps wrote to the run folder (:mod:`fewshot.run.rundir`) and writes its own."""
from __future__ import annotations

import dataclasses
import os
import sys

import torch
from tqdm import tqdm

from fewshot.protocol import budget
from fewshot.run.kept_analysis import save_analysis
from fewshot.run.config import RunConfig, config_digest
from fewshot.data.datasets import check_shots
from fewshot.base.errors import ConfigError
from fewshot.protocol.evaluation import class_accuracy, evaluate, predict
from fewshot.merging.study import check_tasks, run_study
from fewshot.run.preflight import check_device, check_run
from fewshot.protocol.method import Context, Fitted, Head, Shots, precision_fields
from fewshot.methods import baseline_method, get_method, list_methods
from fewshot.run.resources import Resources, TrainPool
from fewshot.protocol.results import format_table, git_revision, make_record, summarize
from fewshot.run.rundir import RunDir
from fewshot.data.splits import write_manifests

__all__ = ["Run", "TrainPool", "resolve_device", "list_steps", "print_summaries"]


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; another name must be a device this machine has."""
    return check_device(name)  # ConfigError otherwise (fewshot.run.preflight)


def list_steps() -> list[str]:
    """Step names in run order: zeroshot, splits, features, the methods' steps, then merging."""
    steps = ["zeroshot", "splits", "features"]
    for name in list_methods():
        if get_method(name).step not in steps:
            steps.append(get_method(name).step)
    return steps + ["merging"]


class Run:
    """One run folder's resources (loaded lazily, once) and the steps that fill it."""

    def __init__(self, cfg: RunConfig, fresh: bool = False, resume: dict | None = None,
                 device: torch.device | None = None, writer: bool = True, dataset=None):
        """Start (or continue) the run of ``cfg`` in ``cfg.out``. With ``resume`` (a later
        notebook's explicit overrides), the folder's own config.json is used instead, and an
        override that contradicts it is an error. ``device`` overrides ``cfg.device`` (one GPU
        per process under torchrun); ``writer=False`` computes everything and writes nothing;
        ``dataset``: ``cfg.data`` already loaded (not scanned again)."""
        self.device = device if device is not None else resolve_device(cfg.device)
        check_run(cfg, dataset, self.device)  # paths, shifted sets, official recipes: before any write
        self.dir = RunDir(cfg.out, writer)
        if resume is not None and self.dir.config_path.exists():
            cfg = self.dir.adopt(cfg, resume)
        else:
            self.dir.start(cfg, fresh)
        self.cfg, self.out = cfg, self.dir.root
        self.digest = config_digest(cfg, self.device.type)  # the device type sets precision
        self.res = Resources(cfg, self.device, self.dir, self.digest, dataset)
        self.methods = list(cfg.methods) or list_methods()
        for name in self.methods:
            missing = [d for d in get_method(name).after if d not in self.methods]
            if missing:
                raise ConfigError(f"method {name} builds on {', '.join(missing)}: add "
                                  f"{'it' if len(missing) == 1 else 'them'} to `methods`.")

    @classmethod
    def from_tensors(cls, cfg: RunConfig, dataset, text_weights: torch.Tensor, logit_scale: float,
                     eval_sets: dict, pool: TrainPool) -> "Run":
        """A run over features already in memory (benchmarks, tests): no backbone and no
        feature cache are touched; records name the backbone "in-memory"."""
        run = cls(cfg)
        run.res.__dict__.update(dataset=dataset, text_weights=text_weights, logit_scale=logit_scale, text_head=None,
                                eval_sets=eval_sets, pool=pool, context={
                                "backbone": "in-memory", "backbone_sha256": "", "dataset": "in-memory",
                                "templates": cfg.templates, "views": cfg.views, "git_rev": git_revision(),
                                "device": str(run.device), **precision_fields(run.device),
                                "decode": "none", "image_tower": "none",
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

    # ------------------------------------------------------------------ resources (fewshot.run.resources)
    backbone = property(lambda self: self.res.backbone)
    dataset = property(lambda self: self.res.dataset)
    text_weights = property(lambda self: self.res.text_weights)
    logit_scale = property(lambda self: self.res.logit_scale)
    eval_sets = property(lambda self: self.res.eval_sets)
    pool = property(lambda self: self.res.pool)
    context = property(lambda self: self.res.context)

    def manifest(self, shots: int, seed: int) -> dict:
        """The (shots, seed) split manifest written by the splits step."""
        return self.res.manifest(shots, seed)

    def shots_data(self, shots: int, seed: int) -> Shots:
        """The cached tensors of one (shots, seed) manifest."""
        return self.res.shots(shots, seed)

    # ------------------------------------------------------------------ methods
    def _context(self, method, shots, seed) -> Context:
        prior = {d: self.dir.load_fitted(d, shots, seed, self.digest, get_method(d).step, self.device)
                 for d in method.after}
        return Context(self.text_weights, self.logit_scale, self.cfg, self.device, prior,
                       self.eval_sets["val"] if self.cfg.oracle else None, self.cfg.progress,
                       self.res.encoder if method.needs_encoder or (method.encoder_for and method.encoder_for(self.cfg)) else None,
                       self.dir.checkpoint(method.name, shots, seed, self.digest), self.res.text_head)

    def _records(self, method, scores, head, shots, seed, role="final", hp=None):
        return [make_record(method, name, m, context=self.context, shots=shots, seed=seed,
                            hyperparameters=head.hyperparameters if hp is None else hp,
                            tuned_on=head.tuned_on if role == "final" else "none", role=role,
                            extra=head.extra if role == "final" else None,
                            skipped=self.eval_sets[name].skipped)
                for name, m in scores.items()]

    def _score(self, name: str, head, k, seed, what: str) -> list[dict]:
        """Records of a head, its sweep and its companions. Entries with their own encoder are
        scored on the features it computes for each test set, once per encoder."""
        entries = []
        for rec_name, h in [(name, head), *head.companions.items()]:
            entries.append((rec_name, "final", None, h, h.logits, h.encoder))
            entries += [(rec_name, "sweep", hp, h, fn, enc[0] if enc else None) for hp, fn, *enc in h.sweep]
        encoders = list(dict.fromkeys(e[5] for e in entries))  # None (the cached features) first
        records = []
        for enc in encoders:
            sets = self.eval_sets if enc is None else \
                {n: dataclasses.replace(s, feats=enc(n)) for n, s in self.eval_sets.items()}
            self._val[enc] = sets["val"].feats  # kept for the fit's predictions: not encoded again
            for rec_name, role, hp, h, fn, e in entries:
                if e is enc:
                    records += self._records(rec_name, evaluate(fn, sets, what), h, k, seed, role, hp)
        return records

    def shots_of(self, method) -> list[int]:
        """The shot counts ``method`` runs at: its config field (``shots_field``), else cfg.shots."""
        chosen = getattr(self.cfg, method.shots_field, ()) if method.shots_field else ()
        return [k for k in self.cfg.shots if k in chosen] if chosen else list(self.cfg.shots)

    def seeds_of(self, method) -> list[int]:
        """The seeds ``method`` runs at: its config field (``seeds_field``), else cfg.seeds."""
        chosen = getattr(self.cfg, method.seeds_field, ()) if method.seeds_field else ()
        return [s for s in self.cfg.seeds if s in chosen] if chosen else list(self.cfg.seeds)

    def run_method(self, name: str) -> list[dict]:
        """Fit ``name`` on every (shots, seed), evaluate it on every test set, write its records
        (``results/<name>.jsonl``), fitted state, diagnostics and predictions."""
        m = get_method(name)
        grid = [(0, None)] if m.shot_free else [(k, s) for s in self.seeds_of(m) for k in self.shots_of(m)]
        records, diagnostics = [], []
        with self.dir.lock(name):
            bar = tqdm(grid, desc=name, disable=not self.cfg.progress or len(grid) == 1)
            for k, seed in bar:
                bar.set_postfix_str("" if m.shot_free else f"{k}-shot, seed {seed}")
                what, shots = (name, None) if m.shot_free else (f"{name} ({k}-shot, seed {seed})", self.shots_data(k, seed))
                ctx = self._context(m, k, seed)
                head, self._val = m.fit(shots, ctx), {}
                records += self._score(name, head, k, seed, what)
                self.dir.save_fitted(Fitted(name, k, seed, head.hyperparameters, head.tuned_on,
                                            head.state), self.digest)
                if m.shot_free or seed == self.seeds_of(m)[0]:  # the first seed's figures' data
                    diagnostics += [m.diagnose(shots, ctx, head, self.eval_sets["val"])] if m.diagnose else []
                    self._save_predictions(m, head, shots, ctx)
            self.dir.write_records(name, records)
            self._val = {}
            self.dir.remove_checkpoints(name)  # the long fits' results are written
            if m.diagnose:
                self.dir.write_json(self.dir.diagnostics_path(name), diagnostics)
        return records

    def rebuild(self, name: str, shots: int, seed: int | None) -> Head:
        """``name``'s head at (shots, seed) rebuilt from the run folder (``Method.rebuild``: its
        saved Fitted, the shots and the run's context); a shot-free method's is at (0, None)."""
        m = get_method(name)
        if m.rebuild is None:
            raise ConfigError(f"{name} has no Method.rebuild: its head cannot be rebuilt from the run folder")
        fitted = self.dir.load_fitted(name, shots, seed, self.digest, m.step, self.device)
        return m.rebuild(fitted, None if m.shot_free else self.shots_data(shots, seed), self._context(m, shots, seed))

    def _save_predictions(self, m, head, shots, ctx) -> None:
        val = self.eval_sets["val"]
        val_of = lambda enc: self._val[enc] if enc in self._val else enc("val")  # noqa: E731
        save_analysis(self.dir, m, head, shots, ctx, val, self.digest, val_of)  # top-3 at 1, 5, 16 shots
        if m.shot_free or shots.shots == max(self.shots_of(m)):  # top-1 at the most shots
            self.dir.write_json(self.dir.predictions_path("index"), {
                "shots": max(self.cfg.shots), "seed": self.cfg.seeds[0], "dataset_root": os.path.abspath(self.dataset.root),
                "paths": list(val.paths), "labels": val.labels.tolist(), "classnames": self.dataset.classnames,
                "test_images": {n: len(s.labels) for n, s in self.eval_sets.items()}})
            feats = val.feats if head.encoder is None else val_of(head.encoder)
            self.dir.write_json(self.dir.predictions_path(m.name), predict(head.logits, feats, m.name).tolist())

    # ------------------------------------------------------------------ steps
    def splits(self) -> list:
        """Write the k-shot manifests for every (shots, seed) of the config."""
        with self.dir.lock("splits"):
            return write_manifests(self.dataset, self.dir.splits_dir, self.cfg.shots, self.cfg.seeds)

    def features(self) -> dict:
        """Encode (or find in the cache) the text head, the training pool and every test set."""
        _ = self.text_weights, self.pool, self.eval_sets
        return {name: tuple(s.feats.shape) for name, s in self.eval_sets.items()}

    def merging(self) -> list:
        """The merge study (:mod:`fewshot.merging.study`) on ``cfg.merge_tasks``; skipped without."""
        if not self.cfg.merge_tasks:
            print("merging: no merge_tasks in the config; skipped")
            return []
        check_tasks(self.cfg.merge_tasks)
        res, context = self.res, self.context
        if self.cfg.merge_backbone:  # the study's own CLIP (WEMoE's routers sit on a ViT's blocks)
            from fewshot.models.backbones import load_backbone

            bb = load_backbone(self.cfg.merge_backbone, self.device, self.cfg.download_root or None)
            res, context = type("MergeResources", (), {"backbone": bb})(), {**context, "backbone": bb.name,
                                                                             "backbone_sha256": bb.sha256}

        def record(method, eval_set, metrics, shots, seed, hp, tuned_on):
            return make_record(method, eval_set, metrics, context=context, shots=shots, seed=seed,
                               hyperparameters=hp, tuned_on=tuned_on, role="merge")
        with self.dir.lock("merging"):
            records, diagnostics = run_study(res, self.cfg, self.device, record, self.cfg.progress)
            self.dir.write_records("merging", records)
            self.dir.write_json(self.dir.diagnostics_path("merging"), diagnostics)
        return records

    def step(self, step: str) -> list:
        """Run one step: ``splits``, ``features``, or every configured method of that step."""
        if step not in list_steps():
            raise ConfigError(f"unknown step {step!r}; steps are {', '.join(list_steps())}")
        if step in ("splits", "features", "merging"):
            return getattr(self, step)()
        _ = self.eval_sets  # the test sets' features first: their extraction is announced (fewshot.protocol.budget)
        budget.check(self.plan(step), self.cfg, f"step {step}", device=self.device)
        return [r for name in list_methods() if name in self.methods
                and get_method(name).step == step for r in self.run_method(name)]

    def plan(self, step: str) -> budget.Plan:
        """The long fits of ``step`` (:mod:`fewshot.protocol.budget`); a narrower scope among the cheaper settings."""
        plan = budget.Plan()
        for m in [get_method(n) for n in self.methods if get_method(n).step == step and get_method(n).budget]:
            grid = [(k, s) for s in self.seeds_of(m) for k in self.shots_of(m)]
            for k, seed in grid:
                plan.add(m.budget(self.shots_data(k, seed), self._context(m, k, seed)))
            if len(grid) > 1 and m.shots_field:
                narrow = f"--set {m.shots_field}=[{max(self.shots_of(m))}] {m.seeds_field}=[{self.seeds_of(m)[0]}]"
                plan.add(budget.Plan(cheaper=lambda share, narrow=narrow: [narrow]))
        return plan

    def zeroshot(self) -> list[dict]:
        """Zero-shot CLIP on every test set (the ``zeroshot`` step)."""
        return self.step("zeroshot")

    def class_accuracy(self, name: str | None = None, eval_set: str = "val") -> list[float]:
        """Per-class top-1 (%) of a shot-free method (default: the baseline, zero-shot) on ``eval_set``: [C]."""
        name = name or baseline_method()
        head = get_method(name).fit(None, self._context(get_method(name), 0, None))
        return class_accuracy(head.logits, self.eval_sets[eval_set], self.dataset.num_classes)

    def records(self) -> list[dict]:
        """All records the steps have written so far."""
        return self.dir.read_records()

    def summary(self, eval_set: str = "val") -> str:
        """Markdown table of mean ± std top-1 over seeds."""
        return format_table(summarize(self.records()), eval_set)


def print_summaries(run: Run, stream) -> None:
    """The mean ± std table of every test set, as ``python -m fewshot run`` ends."""
    for name in run.eval_sets:
        print(f"\nTop-1 (%) on {name}, mean ± std over seeds {list(run.cfg.seeds)}:\n"
              f"{run.summary(name)}", file=stream)
