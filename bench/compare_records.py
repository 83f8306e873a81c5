"""Compare two run folders' results record by record: did a change move any number?

    python bench/compare_records.py RUN_A RUN_B [--methods tip-adapter wise-ft ...]

Records are matched on (method, eval_set, shots, seed, role) and, for ``sweep`` records (one
point of a path), their hyperparameters; a ``final`` record's hyperparameters (the chosen α, λ,
recipe) are compared as values. Prints, per method, the records matched, those in one folder only,
the final records whose chosen hyperparameters differ, and the largest |difference| of top-1 and
top-5 (percentage points); then the overall maximum. Exit status 0 whatever the differences.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from fewshot.methods import current_name


def _key(r: dict) -> tuple:
    hp = json.dumps(r.get("hyperparameters", {}), sort_keys=True) if r["role"] != "final" else ""
    return r["method"], r["eval_set"], r["shots"], r["seed"], r["role"], hp


def load(run: str | Path, methods=None) -> dict:
    """{key: record} of every results/*.jsonl in ``run`` (only ``methods`` if given)."""
    out = {}
    for path in sorted(Path(run, "results").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                r["method"] = current_name(r["method"])  # older folders: wise-ft… is wise-tip-adapter… now
                if methods is None or r["method"] in methods:
                    out[_key(r)] = r
    return out


def compare(a: dict, b: dict) -> dict:
    """Per method: {"matched", "only_a", "only_b", "hp_differ", "max_top1", "max_top5", "worst"}."""
    stats = defaultdict(lambda: {"matched": 0, "only_a": 0, "only_b": 0, "hp_differ": 0,
                                 "max_top1": 0.0, "max_top5": 0.0, "worst": None})
    for key in a.keys() | b.keys():
        s = stats[key[0]]
        if key not in b:
            s["only_a"] += 1
            continue
        if key not in a:
            s["only_b"] += 1
            continue
        ra, rb = a[key], b[key]
        s["matched"] += 1
        if ra.get("hyperparameters") != rb.get("hyperparameters"):
            s["hp_differ"] += 1
        d1 = abs(ra["metrics"]["top1"] - rb["metrics"]["top1"])
        d5 = abs(ra["metrics"].get("top5", 0.0) - rb["metrics"].get("top5", 0.0))  # merge records: top-1 only
        if d1 > s["max_top1"]:
            s["worst"] = (key[1:5], ra["metrics"]["top1"], rb["metrics"]["top1"])
        s["max_top1"], s["max_top5"] = max(s["max_top1"], d1), max(s["max_top5"], d5)
    return dict(stats)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--methods", nargs="*", help="only these record names")
    args = p.parse_args(argv)
    stats = compare(load(args.run_a, args.methods), load(args.run_b, args.methods))
    print(f"{'method':24} {'matched':>7} {'only A':>6} {'only B':>6} {'hp≠':>4} {'max|Δtop1|':>10} {'max|Δtop5|':>10}")
    for name, s in sorted(stats.items()):
        print(f"{name:24} {s['matched']:7d} {s['only_a']:6d} {s['only_b']:6d} {s['hp_differ']:4d} "
              f"{s['max_top1']:10.4f} {s['max_top5']:10.4f}"
              + (f"   worst: {s['worst'][0]} {s['worst'][1]} vs {s['worst'][2]}" if s["worst"] else ""))
    top1 = max((s["max_top1"] for s in stats.values()), default=0.0)
    top5 = max((s["max_top5"] for s in stats.values()), default=0.0)
    total = sum(s["matched"] for s in stats.values())
    print(f"overall: {total} records matched; max |Δtop1| = {top1:.4f}, max |Δtop5| = {top5:.4f} "
          f"(percentage points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
