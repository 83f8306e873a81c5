"""Does the task world show what the merging literature shows? The merge study over several seeds,
and the criteria of issue #25 read off its records (honest protocol, fully fine-tuned experts):

    1. every expert at least +20 points over the pre-trained encoder on its own task;
    2. the mean of task arithmetic, TIES and RegMean at least +5 over simple averaging;
    3. layer-wise AdaMerging at least as good as task arithmetic;
    4. every merge below the individual experts (five-task means);
    5. the five-task mean's standard error at most 0.5 points (binomial, test-set sizes).

    python bench/calibrate_merging.py --tasks data/tasks-full --train 64 --val 480 --unlabeled 256 \
        --seeds 1 2 3 --set merge_shots=48 merge_steps=400 merge_lr=1e-4 adamerging_steps=300 device=cuda

Writes the task world if needed (``world make-tasks`` with those sizes), then prints one line per
rule (mean over the tasks, mean ± std over the seeds) and the criteria; ``--out`` keeps the rows.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from fewshot.merging.study import run_study  # noqa: E402
from fewshot.models.backbones import load_backbone  # noqa: E402
from fewshot.run.config import RunConfig  # noqa: E402
from fewshot.run.overrides import parse_overrides  # noqa: E402
from fewshot.world.tasks import make_tasks  # noqa: E402

FIVE = ("shape", "colour", "count", "position", "style")


def _rows(records, strategy="full") -> dict:
    """{rule: {task: top-1}} of the merge records of one strategy (and the pre-trained row)."""
    out = defaultdict(dict)
    for r in records:
        if r["method"].startswith("merge:") and r["hyperparameters"].get("strategy", strategy) == strategy:
            out[r["method"][6:]][r["eval_set"]] = r["metrics"]["top1"]
    return out


def criteria(rows: dict, sizes: dict) -> dict:
    """The issue's five checks on one seed's rows (module docstring)."""
    tasks = sorted(rows["individual"])
    mean = {rule: sum(v[t] for t in tasks) / len(tasks) for rule, v in rows.items() if set(tasks) <= set(v)}
    gains = {t: rows["individual"][t] - rows["pre-trained"][t] for t in tasks}
    honest = [r for r in mean if r not in ("individual", "multi-task", "pre-trained") and "(oracle)" not in r
              and "(test-unlabeled)" not in r]
    ta = rows["task-arithmetic"]
    se = math.sqrt(sum((ta[t] / 100) * (1 - ta[t] / 100) / sizes[t] for t in tasks)) / len(tasks) * 100
    strong = [mean[r] for r in ("task-arithmetic", "ties", "regmean") if r in mean]
    return {"expert_gain_min": min(gains.values()), "expert_gains": gains,
            "strong_minus_average": sum(strong) / len(strong) - mean["average"],
            "adamerging_minus_ta": mean.get("adamerging-layer-wise", float("nan")) - mean["task-arithmetic"],
            "merges_below_experts": all(mean[r] < mean["individual"] for r in honest),
            "se_points": se, "means": mean}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="data/tasks-calibration")
    ap.add_argument("--names", nargs="+", default=list(FIVE))
    ap.add_argument("--train", type=int, default=64)
    ap.add_argument("--val", type=int, default=480)
    ap.add_argument("--unlabeled", type=int, default=256)
    ap.add_argument("--backbone", default="miniclip-rn")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    t0 = time.time()
    root = make_tasks(args.tasks, train=args.train, val=args.val, unlabeled=args.unlabeled, tasks=tuple(args.names))
    print(f"task world {root}: {time.time() - t0:.0f} s", flush=True)
    base = {"merge_tasks": str(root), "cache_dir": "cache", "templates": "clip80", "merge_robustness": False,
            "progress": False, **parse_overrides(args.set)}
    bb = load_backbone(args.backbone, RunConfig(**base).device if RunConfig(**base).device != "auto" else
                       ("cuda" if torch.cuda.is_available() else "cpu"))
    results = []
    for seed in args.seeds:
        cfg = RunConfig(**{**base, "seeds": (seed,)})
        t1 = time.time()
        records, _ = run_study(type("R", (), {"backbone": bb})(), cfg, bb.device, _record, progress=False)
        sizes = {t: sum(1 for p in (root / t / "val").rglob("*") if p.is_file()) for t in args.names}
        c = criteria(_rows(records), sizes)
        c.update(seed=seed, seconds=round(time.time() - t1, 1))
        results.append(c)
        print(json.dumps({k: v for k, v in c.items() if k != "means"}), flush=True)
    rules = sorted(set.intersection(*(set(c["means"]) for c in results)))
    for rule in rules:
        vals = [c["means"][rule] for c in results]
        print(f"{rule:40s} {statistics.mean(vals):6.2f} ± {statistics.stdev(vals) if len(vals) > 1 else 0:.2f}")
    for key in ("expert_gain_min", "strong_minus_average", "adamerging_minus_ta", "se_points"):
        print(f"{key:24s} " + " ".join(f"{c[key]:+.2f}" for c in results))
    print("merges_below_experts     " + " ".join(str(c["merges_below_experts"]) for c in results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


def _record(method, eval_set, metrics, shots, seed, hp, tuned_on):
    return {"method": method, "eval_set": eval_set, "metrics": metrics, "hyperparameters": hp, "tuned_on": tuned_on}


if __name__ == "__main__":
    raise SystemExit(main())
