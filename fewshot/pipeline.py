"""Pipeline: zero-shot → splits → features → Tip-Adapter → Tip-Adapter-F → WiSE-FT, on one config.

Each step is a method of :class:`Run` that reads what earlier steps wrote (manifests, feature
caches, adapters) and writes its own results file, so a notebook can run one step after a restart.
Layout of ``cfg.out``::

    config.json                     the RunConfig (reproduces the run)
    splits/shots{k}_seed{s}.json    manifests
    results/{step}.jsonl            records (fewshot.results), rewritten when the step reruns
    grids.json                      Tip-Adapter (β, α) grids: leave-one-out and test (for plots)
    adapters/shots{k}_seed{s}.pt    chosen (α, β), fine-tuned keys, training history
    predictions.json                per-image predictions on val (first seed, most shots)
"""
from __future__ import annotations

import json
import os
import sys
from functools import cached_property
from pathlib import Path

import torch
import torch.nn.functional as F

from fewshot import selection, tip_adapter as tip
from fewshot.backbones import load_backbone
from fewshot.config import RunConfig, load_config, save_config
from fewshot.datasets import ImageSet, find_shift_sets, load_dataset, load_shift_set
from fewshot.features import atomic_save, image_features, text_classifier
from fewshot.metrics import restrict_to_classes, topk_correct
from fewshot.results import (append_records, format_table, git_revision, load_records,
                             make_record, summarize)
from fewshot.splits import load_manifest, manifest_name, shot_ranks, write_manifests
from fewshot.wise import DEFAULT_LAMBDA, interpolate
from fewshot.zeroshot import zeroshot_logits

__all__ = ["Run", "run_all", "resolve_device", "STEPS"]

STEPS = ("zeroshot", "splits", "features", "tip_adapter", "tip_adapter_f", "wise")


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; any other name is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class MissingStepError(FileNotFoundError):
    """An input that an earlier step writes is missing; the message names that step."""


class Run:
    """The state shared by the steps of one run; heavy pieces load lazily and once."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.device = resolve_device(cfg.device)
        self.out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.out / "config.json")

    @classmethod
    def from_config(cls, name_or_path: str, **overrides) -> "Run":
        """A run from a shipped config name or a JSON file, with field overrides."""
        return cls(load_config(name_or_path, **overrides))

    def banner(self) -> str:
        """One line saying which data, model, device and code produce the numbers below."""
        gpu = f" ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda" else ""
        text = (f"dataset {self.cfg.data} | backbone {self.cfg.backbone} | device {self.device}{gpu}"
                f" | templates {self.cfg.templates} | shots {list(self.cfg.shots)} | seeds "
                f"{list(self.cfg.seeds)} | protocol {'ORACLE (tuned on test)' if self.cfg.oracle else 'no test tuning'}"
                f" | git {git_revision()}")
        print(text)
        return text

    # ------------------------------------------------------------------ shared inputs, loaded once
    @cached_property
    def backbone(self):
        return load_backbone(self.cfg.backbone, self.device, self.cfg.download_root or None)

    @cached_property
    def dataset(self):
        return load_dataset(self.cfg.data)

    @cached_property
    def context(self) -> dict:
        dev = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return {"backbone": self.backbone.name, "backbone_sha256": self.backbone.sha256,
                "dataset": Path(self.cfg.data).name, "templates": self.cfg.templates,
                "views": self.cfg.views, "git_rev": git_revision(), "device": dev,
                "decode": self.decode, "image_tower": self.backbone.image_tower}

    @cached_property
    def text_weights(self) -> torch.Tensor:  # [C, D] fp32
        return text_classifier(self.backbone, self.dataset.classnames, self.cfg.templates,
                               self.cfg.cache_dir, self.device, self.cfg.progress)

    @cached_property
    def test_sets(self) -> dict[str, ImageSet]:
        shifts = self.cfg.shift_sets or find_shift_sets(self.cfg.data)
        sets = {"val": self.dataset.val}
        for name, (path, kind) in sorted(shifts.items()):
            sets[name] = load_shift_set(path, kind, self.dataset.wnids, name)
        return sets

    @property
    def decode(self) -> str:
        """"gpu" (nvjpeg) when asked for or, with "auto", when the device is CUDA; else "pil"."""
        if self.cfg.decode == "auto":
            return "gpu" if self.device.type == "cuda" else "pil"
        return self.cfg.decode

    def _features(self, image_set: ImageSet, views: int = 0) -> dict:
        return image_features(self.backbone, image_set, self.cfg.cache_dir, views, self.cfg.aug_seed,
                              self.cfg.batch_size, self.cfg.num_workers, self.device,
                              self.cfg.progress, self.decode, self.cfg.skip_bad_images)

    @cached_property
    def test_feats(self) -> dict[str, dict]:
        """{set: {"feats": normalised fp32 [N, D], "labels": [N], "classes": [...], "paths"}}."""
        out = {}
        for name, s in self.test_sets.items():
            d = self._features(s)
            out[name] = {"feats": F.normalize(d["feats"].float(), dim=-1), "labels": d["labels"],
                         "classes": s.class_indices, "paths": d["paths"]}
        return out

    def manifest(self, shots: int, seed: int) -> dict:
        path = self.out / "splits" / manifest_name(shots, seed)
        if not path.exists():
            raise MissingStepError(f"{path} is missing: run the splits step first "
                                   f"(notebook 02, or `python -m fewshot run --steps splits`).")
        return load_manifest(path)

    @cached_property
    def train_feats(self) -> dict:
        """Features of every image in any run manifest, cached once: centre crops and views."""
        paths = sorted({p for seed in self.cfg.seeds
                        for p, _ in self.manifest(max(self.cfg.shots), seed)["items"]})
        label_of = dict(self.dataset.train.items)
        pool = ImageSet("train-pool", self.dataset.root, [(p, label_of[p]) for p in paths],
                        self.dataset.train.class_indices)
        center, views = self._features(pool), self._features(pool, self.cfg.views)
        if center["paths"] != views["paths"]:  # a file skipped in one pass only: keep the common rows
            raise RuntimeError("centre-crop and augmented passes skipped different files; clear the cache")
        return {"row": {p: i for i, p in enumerate(center["paths"])}, "center": center["feats"],
                "views": views["feats"], "labels": center["labels"]}

    def shots_data(self, shots: int, seed: int) -> dict:
        """Cached tensors of one manifest: centre [M, D] normalised, views [V, M, D] raw, labels,
        ranks, and the training-free cache (keys [M, D], values [M, C])."""
        tf = self.train_feats
        items = [it for it in self.manifest(shots, seed)["items"] if it[0] in tf["row"]]  # minus skipped
        rows = torch.tensor([tf["row"][p] for p, _ in items], device=self.device)
        views, labels = tf["views"][:, rows], tf["labels"][rows]
        keys, values = tip.build_cache(views, labels, self.dataset.num_classes)
        return {"center": F.normalize(tf["center"][rows].float(), dim=-1), "views": views,
                "labels": labels, "ranks": shot_ranks(items), "keys": keys, "values": values}

    # ------------------------------------------------------------------ evaluation helpers
    def evaluate(self, logits_fn, chunk: int = 8192) -> dict[str, dict]:
        """Top-1/top-5 (%) of ``logits_fn(feats [n, D]) -> [n, C]`` on every test set, in chunks;
        sets with fewer classes are scored on their own classes only (ImageNet-A/R)."""
        scores = {}
        for name, t in self.test_feats.items():
            hits = {1: 0, 5: 0}
            for s in range(0, len(t["labels"]), chunk):
                logits, labels = logits_fn(t["feats"][s:s + chunk]), t["labels"][s:s + chunk]
                if len(t["classes"]) < logits.shape[1]:
                    logits, labels = restrict_to_classes(logits, labels, t["classes"])
                for k, h in topk_correct(logits, labels, (1, 5)).items():
                    hits[k] += h.sum()
            n = len(t["labels"])
            scores[name] = {"top1": 100 * float(hits[1]) / n, "top5": 100 * float(hits[5]) / n}
        return scores

    @staticmethod
    def predict(logits_fn, feats: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """Top-1 class of every row: argmax of ``logits_fn`` over chunks of ``feats`` [N, D] -> [N]."""
        return torch.cat([logits_fn(feats[s:s + chunk]).argmax(1) for s in range(0, len(feats), chunk)])

    def class_accuracy(self, logits_fn=None, eval_set: str = "val") -> list[float]:
        """Per-class top-1 (%) on ``eval_set`` ([C]); default head: zero-shot."""
        logits_fn = logits_fn or (lambda f: zeroshot_logits(f, self.text_weights, self.logit_scale))
        t = self.test_feats[eval_set]
        pred = self.predict(logits_fn, t["feats"])
        C = self.dataset.num_classes
        hits = torch.bincount(t["labels"][pred == t["labels"]], minlength=C).float()
        return (100 * hits / torch.bincount(t["labels"], minlength=C).clamp(min=1)).tolist()

    def _records(self, method, scores, **kw) -> list[dict]:
        return [make_record(method, name, m, context=self.context, **kw) for name, m in scores.items()]

    def _write(self, step: str, records: list[dict]) -> list[dict]:
        path = self.out / "results" / f"{step}.jsonl"
        path.unlink(missing_ok=True)
        append_records(path, records)
        return records

    def _adapter_path(self, shots: int, seed: int) -> Path:
        return self.out / "adapters" / f"shots{shots}_seed{seed}.pt"

    def _load_adapter(self, shots: int, seed: int, need: str) -> dict:
        path = self._adapter_path(shots, seed)
        data = torch.load(path, map_location=self.device) if path.exists() else {}
        if need not in data:
            step = {"alpha": "tip_adapter (notebook 04)", "keys_ft": "tip_adapter_f (notebook 05)"}
            raise MissingStepError(f"{path} has no {need!r}: run the {step[need]} step first.")
        return data

    @property
    def cache_dtype(self):
        """fp16 affinity products when evaluating on a GPU, exact fp32 on the CPU."""
        return torch.float16 if self.device.type == "cuda" else None

    @property
    def logit_scale(self) -> float:
        return self.backbone.logit_scale

    @property
    def grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        return tip.official_grid(c.beta_max, c.beta_steps, c.alpha_max, c.alpha_steps)

    # ------------------------------------------------------------------ the steps
    def zeroshot(self) -> list[dict]:
        """Zero-shot CLIP on every test set."""
        scores = self.evaluate(lambda f: zeroshot_logits(f, self.text_weights, self.logit_scale))
        return self._write("zeroshot", self._records(
            "zero-shot", scores, hyperparameters={"templates": self.cfg.templates}))

    def splits(self) -> list[Path]:
        """Write the k-shot manifests for every (shots, seed) of the config."""
        return write_manifests(self.dataset, self.out / "splits", self.cfg.shots, self.cfg.seeds)

    def features(self) -> dict:
        """Encode (or find in the cache) the text head, the training pool and every test set."""
        _ = self.text_weights, self.train_feats, self.test_feats
        return {name: tuple(t["feats"].shape) for name, t in self.test_feats.items()}

    def _val_grid(self, d) -> torch.Tensor:
        t = self.test_feats["val"]
        alphas, betas = self.grid
        return tip.search(t["feats"], t["labels"], self.text_weights, d["keys"], d["values"],
                          alphas, betas, self.logit_scale)

    def tip_adapter(self) -> list[dict]:
        """Training-free Tip-Adapter: (α, β) by leave-one-out on the shots (defaults at 1 shot)."""
        records, grids = [], []
        alphas, betas = self.grid
        for seed in self.cfg.seeds:
            for k in self.cfg.shots:
                d = self.shots_data(k, seed)
                loo = None
                if self.cfg.oracle:
                    alpha, beta, _ = tip.best_point(self._val_grid(d), alphas, betas)
                    tuned_on = "test-oracle"
                elif k >= 2:
                    alpha, beta, loo = selection.loo_alpha_beta(
                        d["center"], d["labels"], self.text_weights, d["keys"], d["values"],
                        alphas, betas, self.logit_scale)
                    tuned_on = "loo-train"
                else:
                    alpha, beta, tuned_on = tip.DEFAULT_ALPHA, tip.DEFAULT_BETA, "default"
                if seed == self.cfg.seeds[0]:  # grids for the report's heatmaps (diagnostic only)
                    grids.append({"shots": k, "seed": seed, "alphas": alphas.tolist(),
                                  "betas": betas.tolist(), "chosen": [alpha, beta],
                                  "tuned_on": tuned_on, "test": self._val_grid(d).tolist(),
                                  "loo": loo.tolist() if loo is not None else None})
                scores = self.evaluate(lambda f: tip.tip_logits(
                    f, self.text_weights, d["keys"], d["values"], alpha, beta, self.logit_scale,
                    self.cache_dtype))
                records += self._records("tip-adapter", scores, shots=k, seed=seed,
                                         hyperparameters={"alpha": alpha, "beta": beta},
                                         tuned_on=tuned_on)
                atomic_save({"alpha": alpha, "beta": beta, "tuned_on": tuned_on},
                            self._adapter_path(k, seed))
        (self.out / "grids.json").write_text(json.dumps(grids))
        return self._write("tip_adapter", records)

    def tip_adapter_f(self) -> list[dict]:
        """Tip-Adapter-F: keys fine-tuned for a fixed number of epochs with Tip-Adapter's (α, β)."""
        records = []
        for seed in self.cfg.seeds:
            for k in self.cfg.shots:
                d, ad = self.shots_data(k, seed), self._load_adapter(k, seed, "alpha")
                res = tip.train_tip_adapter_f(
                    d["views"], d["labels"], self.text_weights, d["keys"], d["values"],
                    ad["alpha"], ad["beta"], self.logit_scale, epochs=self.cfg.epochs,
                    lr=self.cfg.lr, batch_size=self.cfg.train_batch_size, seed=seed,
                    device=self.device, progress=self.cfg.progress)
                alpha, beta, tuned_on = ad["alpha"], ad["beta"], ad["tuned_on"]
                if self.cfg.oracle:  # as the official script: re-search (α, β) on test after training
                    alpha, beta, _ = tip.best_point(self._val_grid({**d, "keys": res["keys"]}),
                                                    *self.grid)
                scores = self.evaluate(lambda f: tip.tip_logits(
                    f, self.text_weights, res["keys"], d["values"], alpha, beta, self.logit_scale,
                    self.cache_dtype))
                records += self._records(
                    "tip-adapter-f", scores, shots=k, seed=seed, tuned_on=tuned_on,
                    hyperparameters={"alpha": alpha, "beta": beta, "epochs": self.cfg.epochs,
                                     "lr": self.cfg.lr}, extra={"history": res["history"]})
                atomic_save({**ad, "keys_ft": res["keys"], "history": res["history"],
                             "alpha_ft": alpha, "beta_ft": beta}, self._adapter_path(k, seed))
        return self._write("tip_adapter_f", records)

    def wise(self) -> list[dict]:
        """WiSE-FT of the keys: the λ curve on every test set, and λ chosen by CV on the shots."""
        records = []
        lambdas = list(self.cfg.lambdas)
        for seed in self.cfg.seeds:
            for k in self.cfg.shots:
                d, ad = self.shots_data(k, seed), self._load_adapter(k, seed, "keys_ft")
                alpha, beta = ad["alpha"], ad["beta"]
                theta0, theta1 = {"keys": d["keys"]}, {"keys": ad["keys_ft"]}

                def scores_at(lam, fishers=None):
                    keys = interpolate(theta0, theta1, lam, fishers)["keys"]
                    return self.evaluate(lambda f: tip.tip_logits(
                        f, self.text_weights, keys, d["values"], alpha, beta, self.logit_scale,
                        self.cache_dtype))

                curve = {lam: scores_at(lam) for lam in lambdas}
                for lam, scores in curve.items():
                    records += self._records("wise-ft", scores, shots=k, seed=seed, role="sweep",
                                             hyperparameters={"lambda": lam}, tuned_on="none")
                if self.cfg.oracle:
                    lam = max(lambdas, key=lambda x: curve[x]["val"]["top1"])
                    tuned_on, cv = "test-oracle", None
                elif k >= 2:
                    lam, cv = selection.cv_lambda(
                        d["views"], d["center"], d["labels"], d["ranks"], self.text_weights,
                        self.dataset.num_classes, alpha, beta, lambdas, self.logit_scale,
                        self.cfg.cv_folds, {"epochs": self.cfg.epochs, "lr": self.cfg.lr,
                                            "batch_size": self.cfg.train_batch_size, "seed": seed})
                    tuned_on = "cv-train"
                else:
                    lam, tuned_on, cv = DEFAULT_LAMBDA, "default", None
                hp = {"lambda": lam, "alpha": alpha, "beta": beta}
                records += self._records("wise-ft", curve[lam] if lam in curve else scores_at(lam),
                                         shots=k, seed=seed, hyperparameters=hp,
                                         tuned_on=tuned_on, extra={"cv_curve": cv})
                if self.cfg.fisher:
                    fishers = tuple({"keys": tip.adapter_fisher(
                        d["center"], d["labels"], self.text_weights, keys, d["values"], alpha,
                        beta, self.logit_scale)} for keys in (d["keys"], ad["keys_ft"]))
                    records += self._records("wise-ft-fisher", scores_at(lam, fishers), shots=k,
                                             seed=seed, hyperparameters=hp, tuned_on=tuned_on)
                if seed == self.cfg.seeds[0] and k == max(self.cfg.shots):
                    self._save_predictions(d, ad, lam)
        return self._write("wise", records)

    def _save_predictions(self, d, ad, lam) -> None:
        t, W, ls, cd = self.test_feats["val"], self.text_weights, self.logit_scale, self.cache_dtype
        keys_lam = interpolate({"k": d["keys"]}, {"k": ad["keys_ft"]}, lam)["k"]
        heads = {"zero-shot": lambda f: zeroshot_logits(f, W, ls),
                 "tip-adapter": lambda f: tip.tip_logits(f, W, d["keys"], d["values"], ad["alpha"], ad["beta"], ls, cd),
                 "tip-adapter-f": lambda f: tip.tip_logits(f, W, ad["keys_ft"], d["values"], ad["alpha"], ad["beta"], ls, cd),
                 "wise-ft": lambda f: tip.tip_logits(f, W, keys_lam, d["values"], ad["alpha"], ad["beta"], ls, cd)}
        preds = {name: self.predict(fn, t["feats"]).tolist() for name, fn in heads.items()}
        payload = {"shots": max(self.cfg.shots), "seed": self.cfg.seeds[0], "lambda": lam,
                   "dataset_root": str(self.dataset.root), "paths": t["paths"],
                   "labels": t["labels"].tolist(), "classnames": self.dataset.classnames,
                   "predictions": preds}
        (self.out / "predictions.json").write_text(json.dumps(payload))

    def records(self) -> list[dict]:
        """All records the steps have written so far."""
        files = sorted((self.out / "results").glob("*.jsonl"))
        return [r for f in files for r in load_records(f)]

    def summary(self, eval_set: str = "val") -> str:
        """Markdown table of mean ± std top-1 over seeds."""
        return format_table(summarize(self.records()), eval_set)


def run_all(cfg: RunConfig, steps=STEPS, stream=None) -> Run:
    """Run ``steps`` in order and print the summary table for every test set (to ``stream``,
    default: the current ``sys.stdout``)."""
    stream = stream or sys.stdout
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown steps {unknown}; steps are {', '.join(STEPS)}")
    run = Run(cfg)
    for step in STEPS:
        if step in steps:
            print(f"[fewshot] {step} ...", file=stream, flush=True)
            getattr(run, step)()
    for name in run.test_sets:
        print(f"\nTop-1 (%) on {name}, mean ± std over seeds {list(cfg.seeds)}:\n"
              f"{run.summary(name)}", file=stream)
    return run
