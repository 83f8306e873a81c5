"""Results: one JSON line per measured number, with its provenance; summaries over seeds.

A record's fields: ``method`` (zero-shot, tip-adapter, tip-adapter-f, wise-tip-adapter, ...),
``role`` ("final": the method's reported number; "sweep": a diagnostic point such as one λ of the
WiSE-FT curve), ``backbone``, ``backbone_sha256``, ``dataset``, ``eval_set``, ``shots``, ``seed``,
``hyperparameters``, ``tuned_on`` ("none", "default", "loo-train", "cv-train", "unlabeled-train", "test-unlabeled",
"test-oracle"),
``metrics`` (``top1``/``top5`` in percent), ``extra`` (e.g. training history), ``skipped`` (test
images left out because they could not be decoded), and the run-wide ``config_digest`` (records of
one experiment share it: it covers the science fields and ``device_type``), ``git_rev``, ``device``,
``device_type`` and ``cache_dtype`` (the precision the device type sets:
:func:`fewshot.protocol.method.precision_fields`), ``decode``, ``date``.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import subprocess
from collections import defaultdict
from pathlib import Path

from fewshot.base.errors import MissingStepError
from fewshot.protocol.method import current_name

__all__ = ["git_revision", "summary_cells", "make_record", "dumps_records", "append_records", "load_records",
           "summarize", "format_table", "records_table"]


def git_revision(cwd: str | os.PathLike | None = None) -> str:
    """Short commit of the repository holding ``cwd`` (with ``+dirty`` if modified); outside git,
    the commit stamped into ``fewshot/REVISION`` by ``make release``; else "unknown"."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=cwd, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               text=True, capture_output=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):  # no git: a release archive (make release)?
        stamp = Path(__file__).resolve().parent.parent / "REVISION"  # filled in by git archive (export-subst)
        rev = stamp.read_text().strip() if stamp.is_file() else ""
        return rev[:10] if rev and not rev.startswith("$") else "unknown"


def make_record(method: str, eval_set: str, metrics: dict, *, context: dict, shots=None, seed=None,
                hyperparameters=None, tuned_on: str = "none", role: str = "final",
                extra=None, skipped: int = 0) -> dict:
    """A result record; ``context`` holds the run-wide fields (backbone, dataset, git_rev,
    config_digest, ...)."""
    return {"method": method, "role": role, "eval_set": eval_set, "shots": shots, "seed": seed,
            "hyperparameters": hyperparameters or {}, "tuned_on": tuned_on, "metrics": metrics,
            **context, "extra": extra or {}, "skipped": skipped,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def dumps_records(records: list[dict]) -> str:
    """Records as JSON lines (keys sorted; NaN and infinity refused)."""
    return "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in records)


def append_records(path: str | os.PathLike, records: list[dict]) -> None:
    """Append records as JSON lines to a file of one's own (the run folder replaces whole files
    atomically instead: :meth:`fewshot.run.rundir.RunDir.write_records`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(dumps_records(records))


def _record_problem(rec) -> str | None:
    """What makes ``rec`` unusable as a record (see the module docstring), or None: the fields
    every reader uses, of the right types, and every metric a finite percentage."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not an object"
    missing = [k for k in ("method", "eval_set", "metrics", "tuned_on") if k not in rec]
    if missing:
        return f"no {', '.join(missing)}"
    wrong = [k for k in ("method", "eval_set", "tuned_on", "role", "config_digest")
             if k in rec and not isinstance(rec[k], str)]
    wrong += [k for k in ("shots", "seed")
              if rec.get(k) is not None and (isinstance(rec[k], bool) or not isinstance(rec[k], int))]
    wrong += [k for k in ("hyperparameters", "extra") if k in rec and not isinstance(rec[k], dict)]
    metrics = rec["metrics"]
    if not isinstance(metrics, dict) or "top1" not in metrics:
        return "metrics without top1"
    wrong += [f"metrics.{k}" for k, v in metrics.items() if isinstance(v, bool) or not isinstance(v, (int, float))
              or not math.isfinite(v) or not 0 <= v <= 100]
    return f"{', '.join(wrong)} of the wrong type or out of range" if wrong else None


def load_records(path: str | os.PathLike) -> list[dict]:
    """Read a results file; a missing or damaged file is an error that names it."""
    path = Path(path)
    if not path.exists():
        raise MissingStepError(f"{path} not found: run the pipeline (`python -m fewshot run`) or "
                               f"the notebooks first.")
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise MissingStepError(f"{path}:{lineno} is not a complete record ({err.msg}); the file "
                                   f"is damaged: rerun the step that writes it.") from err
        problem = _record_problem(rec)
        if problem:
            raise MissingStepError(f"{path}:{lineno} is not a result record ({problem}); the file "
                                   f"was edited or damaged: rerun the step that writes it.")
        rec["shots"] = rec.get("shots") or 0  # shot-free methods: 0 (older files wrote null)
        rec["method"] = current_name(rec["method"])  # a renamed method's older records read as it now
        records.append(rec)
    return records


def summarize(records: list[dict], metric: str = "top1", role: str = "final") -> list[dict]:
    """Mean and sample std over seeds per (method, eval_set, shots).

    Returns rows ``{"method", "eval_set", "shots", "mean", "std", "n", "tuned_on"}`` sorted by
    method, eval set and shots; a shot-free method (zero-shot) has shots 0, n = 1 and std 0.
    """
    groups = defaultdict(list)
    tuned = {}
    for r in records:
        if r.get("role", "final") != role:
            continue
        key = (r["method"], r["eval_set"], r["shots"])
        groups[key].append(r["metrics"][metric])
        tuned.setdefault(key, set()).add(r["tuned_on"])
    rows = []
    for (method, eval_set, shots), vals in sorted(groups.items()):
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        rows.append({"method": method, "eval_set": eval_set, "shots": shots, "mean": mean,
                     "std": std, "n": len(vals),
                     "tuned_on": "/".join(sorted(tuned[(method, eval_set, shots)]))})
    return rows


def _cell(row: dict) -> str:
    return f"{row['mean']:.2f}" + (f" ± {row['std']:.2f}" if row["n"] > 1 else "")


def summary_cells(rows: list[dict], eval_set: str = "val") -> dict:
    """{(method, shots): row} of the :func:`summarize` rows on ``eval_set`` (the one lookup)."""
    return {(r["method"], r["shots"]): r for r in rows if r["eval_set"] == eval_set}


def format_table(rows: list[dict], eval_set: str = "val") -> str:
    """Markdown table: one row per method (registry order: zero-shot first), one column per shot
    count, ``mean ± std`` over seeds (the mean alone for a single seed)."""
    from fewshot.protocol.method import list_methods

    cell = summary_cells(rows, eval_set)
    shots = sorted({k for _, k in cell if k}) or [0]
    present = {m for m, _ in cell}
    methods = [m for m in list_methods() if m in present] + sorted(present - set(list_methods()))
    lines = ["| method | " + " | ".join(f"{k}-shot" if k else "top-1" for k in shots) + " | tuned on |",
             "|---|" + "---|" * (len(shots) + 1)]
    for m in methods:
        if (m, 0) in cell:  # shot-free (zero-shot): the same number in every column
            vals = [f"{cell[(m, 0)]['mean']:.2f}"] * len(shots)
            tuned = cell[(m, 0)]["tuned_on"]
        else:
            vals = [_cell(cell[(m, k)]) if (m, k) in cell else "" for k in shots]
            tuned = "/".join(sorted({cell[(m, k)]["tuned_on"] for k in shots if (m, k) in cell}))
        lines.append(f"| {m} | " + " | ".join(vals) + f" | {tuned} |")
    return "\n".join(lines)


def records_table(records: list[dict], role: str = "final") -> str:
    """Markdown table of individual records: method, set, shots, seed, top-1/5, tuning."""
    lines = ["| method | eval set | shots | seed | top-1 | top-5 | hyperparameters | tuned on |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        if r.get("role", "final") != role:
            continue
        hp = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in r["hyperparameters"].items())
        lines.append(f"| {r['method']} | {r['eval_set']} | {r['shots'] or ''} | {r['seed'] or ''} | "
                     f"{r['metrics']['top1']:.2f} | {r['metrics']['top5']:.2f} | {hp} | {r['tuned_on']} |")
    return "\n".join(lines)
