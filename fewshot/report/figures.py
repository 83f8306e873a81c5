"""Figures: every plot of the report, each a function of loaded data returning a matplotlib Figure.

Figures are built without pyplot (``matplotlib.figure.Figure``), so no backend is chosen and no
global state changes: ``fig.savefig`` writes files anywhere, and a notebook shows a figure with
``display(fig)`` or by ending a cell with it. Styles (one colour and marker per method, readable
text) live in :mod:`fewshot.report.figstyle`. The few-shot figures draw the few-shot run's own records
(val and its shifts); the merging study's records (role ``merge``) have their own figures
(:mod:`fewshot.report.merge_tables`).
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import seaborn as sns

from fewshot.report.figstyle import legend_below, method_style, readable, subplots
from fewshot.protocol.results import summarize
from fewshot.methods import baseline_method, with_report_role

__all__ = ["method_order", "method_style", "plot_accuracy_vs_shots", "plot_grid",
           "plot_training_curves", "plot_examples", "plot_class_changes", "plot_class_accuracy",
           "plot_shots", "eval_sets_of", "few_shot_records", "grid_optimum", "best_adapted", "subplots"]

MAX_PANELS_PER_ROW = 3


def method_order(methods) -> list[str]:
    """``methods`` in registry order (zero-shot first; dependencies before what builds on them;
    companions after their method), then any unregistered names alphabetically."""
    from fewshot.methods import list_record_names

    known = [m for m in list_record_names() if m in set(methods)]
    return known + sorted(set(methods) - set(known))


def few_shot_records(records) -> list[dict]:
    """The few-shot run's records: every record but the merging study's (role ``merge``, methods
    ``merge:*`` and ``soup:*``, evaluated on the merge tasks' own test sets)."""
    return [r for r in records if r.get("role", "final") != "merge"
            and not str(r["method"]).startswith(("merge:", "soup:"))]


def eval_sets_of(records) -> list[str]:
    """The few-shot test sets in the records (merge tasks left out): val first, then the
    others sorted."""
    sets = sorted({r["eval_set"] for r in few_shot_records(records)})
    return ["val"] + [s for s in sets if s != "val"] if "val" in sets else sets


def plot_accuracy_vs_shots(records: list[dict], methods=None, title: str = ""):
    """Top-1 against shots, mean ± std over seeds, one panel per few-shot test set (at most
    three per row; ``methods``: a subset to draw; zero-shot is always drawn as the reference
    line). One legend for all panels, under them."""
    records = few_shot_records(records)
    rows = [r for r in summarize(records) if methods is None or r["method"] in set(methods) | {baseline_method()}]
    sets = eval_sets_of(records)
    ncols = min(MAX_PANELS_PER_ROW, max(1, len(sets)))
    nrows = math.ceil(len(sets) / ncols)
    fig, axes = subplots(nrows, ncols, figsize=(7.5 if ncols < 3 else 10.0, 3.0 * nrows + 1.6),
                         squeeze=False, layout="constrained")
    shots = sorted({r["shots"] for r in rows if r["shots"]})
    for ax, s in zip(axes.flat, sets):
        for m in method_order({r["method"] for r in rows}):
            pts = sorted((r["shots"], r["mean"], r["std"]) for r in rows
                         if r["method"] == m and r["eval_set"] == s)
            if not pts:
                continue
            style = method_style(m)
            if pts[0][0] == 0:  # a shot-free method: one number, drawn as a reference line
                ax.axhline(pts[0][1], color=style["color"], ls="--", label=m)
                continue
            k, mean, std = map(np.array, zip(*pts))
            ax.errorbar(k, mean, yerr=std, capsize=3, label=m, ms=4, **style)
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.minorticks_off()
        ax.set(title=s, xlabel="shots per class", ylabel="top-1 (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(sets):]:
        ax.set_visible(False)  # the unused cells of the last row
    legend_below(fig, list(axes.flat)[:len(sets)])
    if title:
        fig.suptitle(title)
    return readable(fig)


def grid_optimum(grid: dict, key: str = "test") -> tuple[float, float, float]:
    """(alpha, beta, top-1 %) of the best point of a Tip-Adapter grid (``grid[key]``: [B, A])."""
    acc = 100 * np.array(grid[key])
    bi, ai = np.unravel_index(np.argmax(acc), acc.shape)
    return float(grid["alphas"][ai]), float(grid["betas"][bi]), float(acc.max())


def plot_grid(grid: dict):
    """Tip-Adapter (β, α) accuracy heatmaps on test (and leave-one-out, if any), with the chosen
    point (×) and the optimum (○) drawn unclipped, the legend under the panels."""
    panels = [("test", "test (diagnostic only)")]
    if grid.get("loo"):
        panels.insert(0, ("loo", "leave-one-out on the shots (chooses)"))
    alphas, betas = np.array(grid["alphas"]), np.array(grid["betas"])
    fig, axes = subplots(1, len(panels), figsize=(7.5, 4.2), squeeze=False, layout="constrained")
    for ax, (key, title) in zip(axes[0], panels):
        acc = 100 * np.array(grid[key])
        mesh = ax.pcolormesh(alphas, betas, acc, shading="nearest", cmap="viridis")
        fig.colorbar(mesh, ax=ax, label="top-1 (%)")
        a, b, best = grid_optimum(grid, key)
        first = key == panels[0][0]
        ax.plot(a, b, "o", mfc="none", mec="black", ms=13, mew=2, clip_on=False, zorder=5,
                label="optimum of its panel" if first else None)
        ax.plot(*grid["chosen"], "x", color="red", ms=12, mew=3, clip_on=False, zorder=6,
                label=f"chosen ({grid['tuned_on']})" if first else None)
        title += f"\nbest {best:.1f} % at α={a:.3g}, β={b:.3g}"
        ax.set(xlabel="alpha (cache weight)", ylabel="beta (sharpness)", title=title)
    legend_below(fig, axes[0], ncol=2)
    fig.suptitle(f"Tip-Adapter grid, {grid['shots']}-shot, seed {grid['seed']}")
    return readable(fig)


def plot_training_curves(records: list[dict]):
    """Loss and training accuracy per epoch (first seed) of the method whose ``report`` says
    "training" (Tip-Adapter-F), one line per shot count."""
    runs = [r for r in records if r["method"] in with_report_role("training") and r["eval_set"] == "val"]
    if not runs:
        raise ValueError("no Tip-Adapter-F records: run the tip_adapter_f step (notebook 05)")
    seed = min(r["seed"] for r in runs)
    fig, (a, b) = subplots(1, 2, figsize=(7.5, 3.6), layout="constrained")
    colors = sns.color_palette("colorblind", len(runs))
    for c, r in zip(colors, sorted((r for r in runs if r["seed"] == seed), key=lambda r: r["shots"])):
        h = r["extra"]["history"]
        epochs = [e["epoch"] for e in h]
        a.plot(epochs, [e["loss"] for e in h], color=c, label=f"{r['shots']}-shot")
        b.plot(epochs, [100 * e["train_acc"] for e in h], color=c, label=f"{r['shots']}-shot")
    a.set(xlabel="epoch", ylabel="cross-entropy", title="training loss")
    b.set(xlabel="epoch", ylabel="accuracy (%)", title="training accuracy\n(augmented views)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    legend_below(fig, [a])
    fig.suptitle(f"Tip-Adapter-F, seed {seed}")
    return readable(fig)


def best_adapted(pred: dict) -> str:
    """The most accurate method other than zero-shot in a predictions file (registry order on ties)."""
    labels = np.array(pred["labels"])
    scores = {m: float((np.array(p) == labels).mean()) for m, p in pred["predictions"].items()
              if m != baseline_method()}
    return max(method_order(scores), key=lambda m: scores[m])


def show_image(ax, path) -> None:
    """Draw the image file ``path`` on ``ax``; a file that is not there (a run folder read on
    another machine, a dataset moved) leaves a grey square that says so, not a failed report."""
    from PIL import Image

    if Path(path).is_file():
        ax.imshow(Image.open(path).convert("RGB"))
    else:
        ax.imshow(np.full((8, 8, 3), 0.85))
        ax.text(0.5, 0.5, "image not found:\n" + Path(path).name, ha="center", va="center", fontsize=9,
                transform=ax.transAxes, wrap=True)


def plot_examples(pred: dict, adapted: str | None = None, n: int = 12, seed: int = 0):
    """Val images with zero-shot and adapted predictions (green: right, red: wrong); images where
    the two disagree are shown first. ``adapted``: a method with predictions (default: the most
    accurate one)."""
    adapted = adapted or best_adapted(pred)
    labels, names = pred["labels"], pred["classnames"]
    base = baseline_method()
    zs, ad = pred["predictions"][base], pred["predictions"][adapted]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    picked = [i for i in order if zs[i] != ad[i]][: n * 2 // 3]
    picked += [i for i in order if i not in picked][: n - len(picked)]
    cols = 4
    nrows = (len(picked) + cols - 1) // cols
    fig, axes = subplots(nrows, cols, figsize=(7.5, 2.35 * nrows + 0.5), squeeze=False,
                         layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, picked):
        show_image(ax, Path(pred["dataset_root"]) / pred["paths"][i])
        ax.set_title(f"true: {names[labels[i]]}", fontsize=9)
        for row, (who, p) in enumerate(((base, zs[i]), ("adapted", ad[i]))):
            ax.annotate(f"{who}: {names[p]}", (0.0, 0.0), xycoords="axes fraction", xytext=(0, -3 - 11 * row),
                        textcoords="offset points", fontsize=9, va="top",
                        color="green" if p == labels[i] else "red")
    fig.suptitle(f"val images: zero-shot vs adapted = {adapted}\n({pred['shots']}-shot, seed {pred['seed']}; "
                 f"green: right, red: wrong)")
    fig.get_layout_engine().set(h_pad=0.3)
    return readable(fig)


def plot_class_changes(pred: dict, adapted: str | None = None, top: int = 10):
    """Per-class accuracy change (adapted − zero-shot): the classes that gained and lost most
    (``adapted`` as in :func:`plot_examples`)."""
    adapted = adapted or best_adapted(pred)
    labels = np.array(pred["labels"])
    zs = np.array(pred["predictions"][baseline_method()]) == labels
    ad = np.array(pred["predictions"][adapted]) == labels
    classes = np.unique(labels)
    delta = np.array([100 * (ad[labels == c].mean() - zs[labels == c].mean()) for c in classes])
    order = np.argsort(delta)
    idx = np.concatenate([order[:top], order[-top:]])
    fig, ax = subplots(figsize=(7, 0.28 * len(idx) + 1))
    colors = [sns.color_palette("colorblind")[2] if d > 0 else sns.color_palette("colorblind")[3]
              for d in delta[idx]]
    ax.barh([pred["classnames"][classes[i]] for i in idx], delta[idx], color=colors)
    ax.axvline(0, color="black", lw=0.8)
    ax.set(xlabel=f"per-class top-1 change, {adapted} − zero-shot (points)",
           title=f"classes that lost and gained most ({pred['shots']}-shot)")
    return readable(fig)


def plot_class_accuracy(acc, classnames: list[str], title: str = "zero-shot accuracy per class"):
    """Per-class top-1 (%), sorted: acc is a sequence [C] in [0, 100]."""
    acc = np.asarray(acc, dtype=float)
    order = np.argsort(acc)
    fig, ax = subplots(figsize=(9, 3.2))
    ax.bar(range(len(acc)), acc[order], color=sns.color_palette("colorblind")[0], width=1.0)
    for i in list(order[:3]) + list(order[-3:]):
        pos = int(np.where(order == i)[0][0])
        ax.annotate(classnames[i], (pos, acc[i]), rotation=90, fontsize=7, ha="center", va="bottom")
    ax.set(xlabel="classes, sorted by accuracy", ylabel="top-1 (%)", title=title, ylim=(0, 110))
    fig.tight_layout()
    return fig


def plot_shots(manifest: dict, root: str | os.PathLike, classnames: list[str], classes: int = 5,
               max_shots: int = 8):
    """The images a manifest drew for its first ``classes`` classes (one row per class)."""
    by_class = defaultdict(list)
    for path, label in manifest["items"]:
        by_class[label].append(path)
    labels = sorted(by_class)[:classes]
    cols = min(max_shots, max(len(by_class[c]) for c in labels))
    fig, axes = subplots(len(labels), cols, figsize=(1.6 * cols, 1.7 * len(labels)), squeeze=False)
    for row, c in zip(axes, labels):
        for j, ax in enumerate(row):
            ax.axis("off")
            if j < len(by_class[c]):
                show_image(ax, Path(root) / by_class[c][j])
        row[0].set_title(classnames[c], fontsize=8, loc="left")
    fig.suptitle(f"{manifest['shots']}-shot split, seed {manifest['seed']}")
    fig.tight_layout()
    return fig


