"""Robustness figures: WiSE-FT paths, in- vs out-of-distribution accuracy, and what each
fine-tuning strategy costs. Like :mod:`fewshot.report.figures`, each function takes records and returns
a pyplot-free matplotlib Figure.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import seaborn as sns

from fewshot.report.figstyle import legend_below
from fewshot.report.figures import eval_sets_of, few_shot_records, method_order, method_style, subplots
from fewshot.report.narrative import mixing_key
from fewshot.methods import baseline_method

__all__ = ["mixing_paths", "sweep_shots", "plot_wise_curve", "plot_id_vs_ood", "plot_strategies"]


def mixing_paths(records, shots=None) -> dict:
    """{method: {eval_set: {coefficient: mean top-1 over seeds}}} of every sweep, at ``shots``
    (default: each method's most shots)."""
    raw = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in records:
        if r["role"] == "sweep":
            raw[(r["method"], r["shots"])][r["eval_set"]][mixing_key(r["hyperparameters"])].append(r["metrics"]["top1"])
    out = {}
    for method in {m for m, _ in raw}:
        ks = [k for m, k in raw if m == method]
        k = shots if shots in ks else max(ks)
        out[method] = {s: {a: float(np.mean(v)) for a, v in sorted(c.items())} for s, c in raw[(method, k)].items()}
    return out


def sweep_shots(records) -> int:
    """The shot count with the most swept methods (the largest on ties)."""
    counts = defaultdict(set)
    for r in records:
        if r["role"] == "sweep":
            counts[r["shots"]].add(r["method"])
    return max(counts, key=lambda k: (len(counts[k]), k))


def plot_wise_curve(records: list[dict], method: str, shots: int | None = None):
    """Top-1 against the mixing coefficient of one WiSE-FT path, on every test set; dotted: the
    coefficient chosen (per seed)."""
    shots = shots or max(r["shots"] for r in records if r["method"] == method and r["role"] == "sweep")
    curves = mixing_paths([r for r in records if r["method"] == method], shots)[method]
    fig, ax = subplots(figsize=(6, 4))
    for (s, c), color in zip(sorted(curves.items()), sns.color_palette("colorblind", len(curves))):
        ax.plot(list(c), list(c.values()), marker="o", color=color, label=s)
    chosen = {mixing_key(r["hyperparameters"]) for r in records if r["method"] == method
              and r["role"] == "final" and r["shots"] == shots and r["eval_set"] == "val"}
    for a in sorted(chosen):
        ax.axvline(a, color="grey", ls=":", lw=1)
    ax.set(xlabel="mixing coefficient (0: the starting model, 1: the fine-tuned one)",
           ylabel="top-1 accuracy (%)", title=f"{method}, {shots}-shot\n(dotted: the choice made "
                                               f"without test data, per seed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, title="test set", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside the curves
    fig.tight_layout()
    return fig


def plot_id_vs_ood(records: list[dict], shots: int | None = None):
    """The WiSE-FT paper's view: val (in-distribution) against the mean of the shifted sets, for
    every WiSE-FT path (a line per method, from its starting point to its fine-tuned end) and every
    other method (a point), with zero-shot CLIP as a star."""
    records = few_shot_records(records)  # the merge tasks' test sets are no shifts of val
    shots = shots or sweep_shots(records)
    sets = eval_sets_of(records)[1:]
    if not sets:
        raise ValueError("no shifted test set in this run: the ID-vs-OOD plot needs one")
    fig, ax = subplots(figsize=(7.5, 5.5), layout="constrained")
    paths = mixing_paths(records, shots)
    for method in method_order(paths):
        c = paths[method]
        if "val" not in c or not all(s in c for s in sets):
            continue
        coef = list(c["val"])
        x = [c["val"][a] for a in coef]
        y = [np.mean([c[s][a] for s in sets]) for a in coef]
        style = method_style(method)
        ax.plot(x, y, "-", color=style["color"], marker=style["marker"], ms=4, label=f"{method} (path)")
        ax.annotate("1", (x[-1], y[-1]), textcoords="offset points", xytext=(4, 3), fontsize=9)
    finals = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["role"] == "final" and r["shots"] == shots and r["method"] not in paths:
            finals[r["method"]][r["eval_set"]].append(r["metrics"]["top1"])
    for method in method_order(finals):
        c = finals[method]
        if "val" in c and all(s in c for s in sets):
            ax.scatter([np.mean(c["val"])], [np.mean([np.mean(c[s]) for s in sets])],
                       marker=method_style(method)["marker"], color=method_style(method)["color"], s=30, label=method)
    zs, base = defaultdict(list), baseline_method()
    for r in records:
        if r["method"] == base:
            zs[r["eval_set"]].append(r["metrics"]["top1"])
    if "val" in zs:
        ax.scatter([zs["val"][0]], [np.mean([zs[s][0] for s in sets if s in zs])], marker="*", s=220,
                   color=method_style(base)["color"], label=base, zorder=5)
    ax.set(xlabel="val top-1 (%)", ylabel=f"mean top-1 on {', '.join(sets)} (%)",
           title=f"in- vs out-of-distribution, {shots}-shot (lines: WiSE-FT paths, 0 → 1)")
    ax.grid(alpha=0.3)
    legend = legend_below(fig, [ax], ncol=3)  # dozens of entries: under the data, the figure grows
    fig.set_figheight(5.5 + 0.23 * -(-len(legend.get_texts()) // 3))
    return fig


def plot_strategies(records: list[dict]):
    """Trainable parameters and training time per fine-tuning run (mean over shots and seeds), for
    every method whose records say so."""
    params, secs = defaultdict(list), defaultdict(list)
    for r in records:
        extra = r.get("extra") or {}
        if r["role"] == "final" and r["eval_set"] == "val" and "trainable_params" in extra:
            params[r["method"]].append(extra["trainable_params"])
            secs[r["method"]].append(extra["train_seconds"])
    if not params:
        raise ValueError("no fine-tuning records with trainable_params in this run")
    names = method_order(params)
    fig, (a, b) = subplots(1, 2, figsize=(10, 3.2))
    colors = [method_style(m)["color"] for m in names]
    a.barh(names, [np.mean(params[m]) for m in names], color=colors)
    a.set(xscale="log", xlabel="trainable parameters", title="what each strategy trains")
    b.barh(names, [np.mean(secs[m]) for m in names], color=colors)
    b.set(xlabel="seconds per fine-tuning (mean)", title="training time")
    for ax in (a, b):
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig
