"""Figures: every plot of the report, each a function of loaded data returning a matplotlib Figure.

Figures are built without pyplot (``matplotlib.figure.Figure``), so no backend is chosen and no
global state changes: ``fig.savefig`` writes files anywhere, and a notebook shows a figure with
``display(fig)`` or by ending a cell with it. One colour per method across all figures
(seaborn's colour-blind palette).
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

from fewshot.results import summarize

__all__ = ["method_order", "method_style", "plot_accuracy_vs_shots", "plot_grid",
           "plot_training_curves", "plot_examples", "plot_class_changes", "plot_class_accuracy",
           "plot_shots", "eval_sets_of", "subplots"]

_COLORS = sns.color_palette("colorblind", 10)
_LINES = ("-", "--", ":", "-.")


def method_order(methods) -> list[str]:
    """``methods`` in registry order (zero-shot first; dependencies before what builds on them;
    companions after their method), then any unregistered names alphabetically."""
    from fewshot.protocol import list_record_names

    known = [m for m in list_record_names() if m in set(methods)]
    return known + sorted(set(methods) - set(known))


def method_style(method: str) -> dict:
    """Colour, line style and marker of a method, the same in every figure: the colour-blind
    palette in registry order (line styles tell apart methods ten places apart)."""
    i = method_order([method] + _all_methods()).index(method)
    return {"color": _COLORS[i % 10], "ls": _LINES[(i // 10) % 4], "marker": "osD^v<>ph*"[i % 10]}


def _all_methods() -> list[str]:
    from fewshot.protocol import list_record_names

    return list_record_names()


def subplots(nrows=1, ncols=1, figsize=None, squeeze=True):
    """A pyplot-free ``Figure`` and its axes."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def eval_sets_of(records) -> list[str]:
    """Test sets in the records: val first, then the others sorted."""
    return _eval_sets(records)


def _eval_sets(records) -> list[str]:
    sets = sorted({r["eval_set"] for r in records})
    return ["val"] + [s for s in sets if s != "val"] if "val" in sets else sets


def plot_accuracy_vs_shots(records: list[dict], methods=None, title: str = ""):
    """Top-1 against shots, mean ± std over seeds, one panel per test set (``methods``: a subset
    to draw; zero-shot is always drawn as the reference line)."""
    rows = [r for r in summarize(records) if methods is None or r["method"] in set(methods) | {"zero-shot"}]
    sets = _eval_sets(records)
    fig, axes = subplots(1, len(sets), figsize=(5.2 * len(sets), 4), squeeze=False)
    for ax, s in zip(axes[0], sets):
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
            ax.errorbar(k, mean, yerr=std, capsize=3, label=m, **style)
        ax.set_xscale("log", base=2)
        shots = sorted({r["shots"] for r in rows if r["shots"]})
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.set(title=f"{s}", xlabel="shots per class", ylabel="top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2 if len({r["method"] for r in rows}) > 6 else 1)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_grid(grid: dict):
    """Tip-Adapter (β, α) accuracy heatmaps on test (and leave-one-out, if any), with the chosen
    point (×) and the test optimum (○)."""
    panels = [("test", "test accuracy (diagnostic, not used to choose)")]
    if grid.get("loo"):
        panels.insert(0, ("loo", "leave-one-out accuracy on the shots (used to choose)"))
    alphas, betas = np.array(grid["alphas"]), np.array(grid["betas"])
    fig, axes = subplots(1, len(panels), figsize=(6 * len(panels), 4.4), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        acc = 100 * np.array(grid[key])
        im = ax.imshow(acc, aspect="auto", origin="lower", cmap="viridis",
                       extent=[alphas[0], alphas[-1], betas[0], betas[-1]])
        fig.colorbar(im, ax=ax, label="top-1 (%)")
        bi, ai = np.unravel_index(np.argmax(acc), acc.shape)
        ax.plot(alphas[ai], betas[bi], "o", mfc="none", mec="white", ms=12, mew=2,
                label=f"{key} optimum ({acc.max():.1f}%)")
        ax.plot(*grid["chosen"], "x", color="red", ms=12, mew=3,
                label=f"chosen ({grid['tuned_on']})")
        ax.set(xlabel="alpha (cache weight)", ylabel="beta (sharpness)", title=title)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"Tip-Adapter grid, {grid['shots']}-shot, seed {grid['seed']}")
    fig.tight_layout()
    return fig


def plot_training_curves(records: list[dict]):
    """Tip-Adapter-F loss and training accuracy per epoch (first seed), one line per shot count."""
    runs = [r for r in records if r["method"] == "tip-adapter-f" and r["eval_set"] == "val"]
    if not runs:
        raise ValueError("no Tip-Adapter-F records: run the tip_adapter_f step (notebook 05)")
    seed = min(r["seed"] for r in runs)
    fig, (a, b) = subplots(1, 2, figsize=(10, 3.8))
    colors = sns.color_palette("colorblind", len(runs))
    for c, r in zip(colors, sorted((r for r in runs if r["seed"] == seed), key=lambda r: r["shots"])):
        h = r["extra"]["history"]
        epochs = [e["epoch"] for e in h]
        a.plot(epochs, [e["loss"] for e in h], color=c, label=f"{r['shots']}-shot")
        b.plot(epochs, [100 * e["train_acc"] for e in h], color=c, label=f"{r['shots']}-shot")
    a.set(xlabel="epoch", ylabel="cross-entropy", title="training loss")
    b.set(xlabel="epoch", ylabel="accuracy (%)", title="training accuracy (augmented views)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    a.legend(fontsize=8)
    fig.suptitle(f"Tip-Adapter-F, seed {seed}")
    fig.tight_layout()
    return fig


def _best_adapted(pred: dict) -> str:
    labels = np.array(pred["labels"])
    scores = {m: float((np.array(p) == labels).mean()) for m, p in pred["predictions"].items()
              if m != "zero-shot"}
    return max(method_order(scores), key=lambda m: scores[m])


def plot_examples(pred: dict, adapted: str | None = None, n: int = 12, seed: int = 0):
    """Val images with zero-shot and adapted predictions (green: right, red: wrong); images where
    the two disagree are shown first. ``adapted``: a method with predictions (default: the most
    accurate one)."""
    from PIL import Image

    adapted = adapted or _best_adapted(pred)
    labels, names = pred["labels"], pred["classnames"]
    zs, ad = pred["predictions"]["zero-shot"], pred["predictions"][adapted]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    picked = [i for i in order if zs[i] != ad[i]][: n * 2 // 3]
    picked += [i for i in order if i not in picked][: n - len(picked)]
    cols = 6
    fig, axes = subplots((len(picked) + cols - 1) // cols, cols, figsize=(2.3 * cols, 3.3 * ((len(picked) + cols - 1) // cols)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, picked):
        ax.imshow(Image.open(Path(pred["dataset_root"]) / pred["paths"][i]).convert("RGB"))
        ax.set_title(f"true: {names[labels[i]]}", fontsize=8)
        for row, (who, p) in enumerate((("zs", zs[i]), ("adapted", ad[i]))):
            ax.text(0.0, -0.08 - 0.12 * row, f"{who}: {names[p]}", transform=ax.transAxes, fontsize=7,
                    color="green" if p == labels[i] else "red", va="top")
    fig.suptitle(f"val images: zero-shot vs {adapted} ({pred['shots']}-shot, seed {pred['seed']})")
    fig.tight_layout(h_pad=4.0)
    return fig


def plot_class_changes(pred: dict, adapted: str | None = None, top: int = 10):
    """Per-class accuracy change (adapted − zero-shot): the classes that gained and lost most
    (``adapted`` as in :func:`plot_examples`)."""
    adapted = adapted or _best_adapted(pred)
    labels = np.array(pred["labels"])
    zs = np.array(pred["predictions"]["zero-shot"]) == labels
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
    fig.tight_layout()
    return fig


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
    from PIL import Image

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
                ax.imshow(Image.open(Path(root) / by_class[c][j]).convert("RGB"))
        row[0].set_title(classnames[c], fontsize=8, loc="left")
    fig.suptitle(f"{manifest['shots']}-shot split, seed {manifest['seed']}")
    fig.tight_layout()
    return fig


