"""Phenomena: does a mini-world run show what the real benchmark shows? One check per target.

``python -m fewshot world check --run runs/miniworld`` prints the table and exits non-zero when a
target is missed. Everything is read from the run's results (default protocol, all seeds).
"""
from __future__ import annotations

from collections import defaultdict
from statistics import mean

__all__ = ["check_phenomena", "format_checks"]


def _mean_top1(records, method, eval_set, shots=None):
    vals = [r["metrics"]["top1"] for r in records if r["method"] == method and r["role"] == "final"
            and r["eval_set"] == eval_set and (shots is None or r["shots"] == shots)]
    if not vals:
        raise ValueError(f"no {method} results on {eval_set} at {shots} shots in this run")
    return mean(vals)


def check_phenomena(records: list[dict], shift: str = "sketch") -> list[dict]:
    """Rows ``{"check", "value", "target", "ok"}`` for the mini-world's targets (issue 5)."""
    records = [r for r in records if r["role"] in ("final", "sweep")]  # not the merge study's rows
    if any(r["tuned_on"] == "test-oracle" for r in records):
        raise ValueError("this run tuned on test (oracle); the targets are for the default protocol")
    shots = sorted({r["shots"] for r in records if r["shots"]})
    lo, hi = shots[0], shots[-1]
    zs, zs_shift = _mean_top1(records, "zero-shot", "val"), _mean_top1(records, "zero-shot", shift)
    tip_hi, tipf_hi = _mean_top1(records, "tip-adapter", "val", hi), _mean_top1(records, "tip-adapter-f", "val", hi)
    best_lo = max(_mean_top1(records, m, "val", lo) for m in ("tip-adapter", "tip-adapter-f"))
    gap_val = tipf_hi - zs
    gap_shift = _mean_top1(records, "tip-adapter-f", shift, hi) - zs_shift
    curve = defaultdict(list)  # lambda -> accuracies on val and shift, all seeds
    for r in records:
        if r["method"] == "wise-tip-adapter" and r["role"] == "sweep" and r["shots"] == hi \
                and r["eval_set"] in ("val", shift):
            curve[r["hyperparameters"]["lambda"]].append(r["metrics"]["top1"])
    curve = {lam: mean(v) for lam, v in sorted(curve.items())}
    ends = max(curve[min(curve)], curve[max(curve)])
    inner = max((v, lam) for lam, v in curve.items() if 0 < lam < 1)
    rows = [
        {"check": "zero-shot top-1 on val", "value": f"{zs:.2f}", "target": "30-70", "ok": 30 <= zs <= 70},
        {"check": f"{hi}-shot Tip-Adapter − zero-shot (val)", "value": f"{tip_hi - zs:+.2f}", "target": ">= +5", "ok": tip_hi - zs >= 5},
        {"check": f"{hi}-shot Tip-Adapter-F − Tip-Adapter (val)", "value": f"{tipf_hi - tip_hi:+.2f}", "target": ">= +1", "ok": tipf_hi - tip_hi >= 1},
        {"check": f"{lo}-shot best adapter − zero-shot (val)", "value": f"{best_lo - zs:+.2f}", "target": "> 0", "ok": best_lo > zs},
        {"check": f"Tip-Adapter-F − zero-shot: {shift} minus val", "value": f"{gap_shift - gap_val:+.2f}", "target": "< 0", "ok": gap_shift < gap_val},
        {"check": f"best inner λ vs best endpoint, mean(val, {shift})", "value": f"λ={inner[1]}: {inner[0] - ends:+.2f}", "target": ">= 0", "ok": inner[0] >= ends},
    ]
    return rows + _finetuning_checks(records, shift, zs, zs_shift, lo)


def _finetuning_checks(records, shift, zs, zs_shift, lo) -> list[dict]:
    """The fine-tuning issue's targets, where the run has those methods."""
    rows = []
    methods = {r["method"] for r in records}
    if "ft-full" in methods:
        k = max(r["shots"] for r in records if r["method"] == "ft-full")
        val, sk = _mean_top1(records, "ft-full", "val", k) - zs, _mean_top1(records, "ft-full", shift, k) - zs_shift
        rows.append({"check": f"{k}-shot full fine-tuning − zero-shot: val; {shift}", "value": f"{val:+.2f}; {sk:+.2f}",
                     "target": "> 0; < 0", "ok": val > 0 and sk < 0})
        curve = defaultdict(list)
        for r in records:
            if r["method"] == "wise-ft-full" and r["role"] == "sweep" and r["shots"] == k and r["eval_set"] in ("val", shift):
                curve[r["hyperparameters"]["alpha"]].append(r["metrics"]["top1"])
        curve = {a: mean(v) for a, v in sorted(curve.items())}
        if curve:
            ends = max(curve[min(curve)], curve[max(curve)])
            inner = max((v, a) for a, v in curve.items() if 0 < a < 1)
            rows.append({"check": f"WiSE-FT of full fine-tuning: best inner α vs best end, mean(val, {shift})",
                         "value": f"α={inner[1]}: {inner[0] - ends:+.2f}", "target": ">= 0", "ok": inner[0] >= ends})
        if "wise-ft-full-default" in methods:  # WiSE-FT at the authors' α = 0.5 (issue 26)
            half = {e: _mean_top1(records, "wise-ft-full-default", e, k) for e in ("val", shift)}
            ft = {e: _mean_top1(records, "ft-full", e, k) for e in ("val", shift)}
            gain, mix = half[shift] - zs_shift, mean(half.values()) - mean(ft.values())
            rows.append({"check": f"WiSE-FT at α = 0.5 − zero-shot ({shift}); − full fine-tuning, mean(val, {shift})",
                         "value": f"{gain:+.2f}; {mix:+.2f}", "target": "> 0; > 0", "ok": gain > 0 and mix > 0})
    if {"linear-probe", "linear-probe-zs"} <= methods:
        gap = _mean_top1(records, "linear-probe-zs", "val", lo) - _mean_top1(records, "linear-probe", "val", lo)
        rows.append({"check": f"{lo}-shot linear probe: zero-shot-initialised − from scratch (val)",
                     "value": f"{gap:+.2f}", "target": "> 0", "ok": gap > 0})
    return rows


def format_checks(rows: list[dict]) -> str:
    """Markdown table of :func:`check_phenomena` rows."""
    return "\n".join(["| check | value | target | ok |", "|---|---|---|---|"] +
                     [f"| {r['check']} | {r['value']} | {r['target']} | {'yes' if r['ok'] else 'NO'} |" for r in rows])
