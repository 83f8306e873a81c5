"""Report: figures and a Markdown report built from a run's files alone (results, grids, predictions).

Every ``plot_*`` function takes loaded data and returns a matplotlib Figure, so notebooks show the
same figures the report contains. :func:`build_report` writes ``report/report.md`` with each
figure as PNG (for reading) and PDF (for print).
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import matplotlib

if "MPLBACKEND" not in os.environ and not os.environ.get("JPY_PARENT_PID"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from fewshot.results import format_table, summarize  # noqa: E402

__all__ = ["load_run", "plot_accuracy_vs_shots", "plot_grid", "plot_training_curves",
           "plot_wise_curve", "plot_id_vs_ood", "plot_examples", "plot_class_changes",
           "plot_class_accuracy", "plot_shots", "build_report", "METHOD_ORDER"]

METHOD_ORDER = ["zero-shot", "tip-adapter", "tip-adapter-f", "wise-ft", "wise-ft-fisher"]
_PALETTE = dict(zip(METHOD_ORDER, sns.color_palette("colorblind", len(METHOD_ORDER))))
_REFERENCE_PATH = Path(__file__).resolve().parent / "reference.json"


def load_run(run_dir: str | os.PathLike) -> dict:
    """Everything a report needs from a run folder: records, grids, predictions, config."""
    run_dir = Path(run_dir)
    files = sorted((run_dir / "results").glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"{run_dir / 'results'} holds no results: run the notebooks 01-06 "
                                f"or `python -m fewshot run` first.")
    records = [json.loads(line) for f in files for line in f.read_text().splitlines() if line]

    def read(name):
        p = run_dir / name
        return json.loads(p.read_text()) if p.exists() else None

    return {"records": records, "grids": read("grids.json") or [], "config": read("config.json"),
            "predictions": read("predictions.json"), "dir": run_dir}


def _eval_sets(records) -> list[str]:
    sets = sorted({r["eval_set"] for r in records})
    return ["val"] + [s for s in sets if s != "val"] if "val" in sets else sets


def plot_accuracy_vs_shots(records: list[dict]):
    """Top-1 against shots, mean ± std over seeds, one panel per test set."""
    rows = summarize(records)
    sets = _eval_sets(records)
    fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 4), squeeze=False)
    for ax, s in zip(axes[0], sets):
        for m in METHOD_ORDER:
            pts = sorted((r["shots"], r["mean"], r["std"]) for r in rows
                         if r["method"] == m and r["eval_set"] == s)
            if not pts:
                continue
            if pts[0][0] == 0:  # zero-shot: one number, drawn as a reference line
                ax.axhline(pts[0][1], color=_PALETTE[m], ls="--", label=m)
                continue
            k, mean, std = map(np.array, zip(*pts))
            ax.errorbar(k, mean, yerr=std, marker="o", capsize=3, color=_PALETTE[m], label=m)
        ax.set_xscale("log", base=2)
        shots = sorted({r["shots"] for r in rows if r["shots"]})
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.set(title=f"{s}", xlabel="shots per class", ylabel="top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_grid(grid: dict):
    """Tip-Adapter (β, α) accuracy heatmaps on test (and leave-one-out, if any), with the chosen
    point (×) and the test optimum (○)."""
    panels = [("test", "test accuracy (diagnostic, not used to choose)")]
    if grid.get("loo"):
        panels.insert(0, ("loo", "leave-one-out accuracy on the shots (used to choose)"))
    alphas, betas = np.array(grid["alphas"]), np.array(grid["betas"])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.4), squeeze=False)
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
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
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


def _wise_curves(records, shots):
    curves = defaultdict(lambda: defaultdict(list))  # eval_set -> lambda -> [acc per seed]
    for r in records:
        if r["method"] == "wise-ft" and r["role"] == "sweep" and r["shots"] == shots:
            curves[r["eval_set"]][r["hyperparameters"]["lambda"]].append(r["metrics"]["top1"])
    return {s: {lam: float(np.mean(v)) for lam, v in sorted(c.items())} for s, c in curves.items()}


def plot_wise_curve(records: list[dict], shots: int | None = None):
    """WiSE-FT: top-1 against λ (0 = Tip-Adapter, 1 = Tip-Adapter-F) on every test set."""
    shots = shots or max(r["shots"] for r in records if r["method"] == "wise-ft")
    curves = _wise_curves(records, shots)
    fig, ax = plt.subplots(figsize=(6, 4))
    for (s, c), color in zip(sorted(curves.items()), sns.color_palette("colorblind", len(curves))):
        ax.plot(list(c), list(c.values()), marker="o", color=color, label=s)
    chosen = [r["hyperparameters"]["lambda"] for r in records if r["method"] == "wise-ft"
              and r["role"] == "final" and r["shots"] == shots and r["eval_set"] == "val"]
    for lam in sorted(set(chosen)):
        ax.axvline(lam, color="grey", ls=":", lw=1)
    ax.set(xlabel="λ (0: Tip-Adapter keys, 1: Tip-Adapter-F keys)", ylabel="top-1 accuracy (%)",
           title=f"WiSE-FT of the cache keys, {shots}-shot\n(dotted: λ chosen by CV per seed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_id_vs_ood(records: list[dict], shots: int | None = None):
    """The WiSE-FT paper's view: val (in-distribution) against the mean of the shifted sets."""
    shots = shots or max(r["shots"] for r in records if r["method"] == "wise-ft")
    curves = _wise_curves(records, shots)
    shifted = [s for s in curves if s != "val"]
    if not shifted:
        raise ValueError("no shifted test set in this run: the ID-vs-OOD plot needs one")
    lams = list(curves["val"])
    x = [curves["val"][l] for l in lams]
    y = [np.mean([curves[s][l] for s in shifted]) for l in lams]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(x, y, "-", color="grey", lw=1)
    sc = ax.scatter(x, y, c=lams, cmap="viridis", zorder=3, s=40)
    fig.colorbar(sc, ax=ax, label="λ (0: Tip-Adapter, 1: Tip-Adapter-F)")
    pad_x, pad_y = max(0.5, 0.3 * np.ptp(x)), max(0.5, 0.3 * np.ptp(y))
    ax.set_xlim(min(x) - pad_x, max(x) + pad_x)
    ax.set_ylim(min(y) - pad_y, max(y) + pad_y)
    zs = [r for r in records if r["method"] == "zero-shot"]
    if zs:  # the WiSE-FT paper's anchor; named in the legend when it lies off these axes
        zx = next(r["metrics"]["top1"] for r in zs if r["eval_set"] == "val")
        zy = float(np.mean([r["metrics"]["top1"] for r in zs if r["eval_set"] in shifted]))
        inside = ax.get_xlim()[0] <= zx <= ax.get_xlim()[1] and ax.get_ylim()[0] <= zy <= ax.get_ylim()[1]
        label = "zero-shot" if inside else f"zero-shot: ({zx:.1f}, {zy:.1f}), off these axes"
        ax.scatter([zx] if inside else [], [zy] if inside else [], marker="*", s=200,
                   color=_PALETTE["zero-shot"], label=label, zorder=4)
        ax.legend(fontsize=8, loc="lower right")
    ax.annotate("λ=0", (x[0], y[0]), textcoords="offset points", xytext=(6, -10), fontsize=8)
    ax.annotate("λ=1", (x[-1], y[-1]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set(xlabel="val top-1 (%)", ylabel=f"mean top-1 on {', '.join(shifted)} (%)",
           title=f"in- vs out-of-distribution along the WiSE-FT path, {shots}-shot")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_examples(pred: dict, adapted: str = "tip-adapter-f", n: int = 12, seed: int = 0):
    """Val images with zero-shot and adapted predictions (green: right, red: wrong); images where
    the two disagree are shown first."""
    from PIL import Image

    labels, names = pred["labels"], pred["classnames"]
    zs, ad = pred["predictions"]["zero-shot"], pred["predictions"][adapted]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    picked = [i for i in order if zs[i] != ad[i]][: n * 2 // 3]
    picked += [i for i in order if i not in picked][: n - len(picked)]
    cols = 6
    fig, axes = plt.subplots((len(picked) + cols - 1) // cols, cols, figsize=(2.3 * cols, 3.3 * ((len(picked) + cols - 1) // cols)), squeeze=False)
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


def plot_class_changes(pred: dict, adapted: str = "tip-adapter-f", top: int = 10):
    """Per-class accuracy change (adapted − zero-shot): the classes that gained and lost most."""
    labels = np.array(pred["labels"])
    zs = np.array(pred["predictions"]["zero-shot"]) == labels
    ad = np.array(pred["predictions"][adapted]) == labels
    classes = np.unique(labels)
    delta = np.array([100 * (ad[labels == c].mean() - zs[labels == c].mean()) for c in classes])
    order = np.argsort(delta)
    idx = np.concatenate([order[:top], order[-top:]])
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(idx) + 1))
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
    fig, ax = plt.subplots(figsize=(9, 3.2))
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
    fig, axes = plt.subplots(len(labels), cols, figsize=(1.6 * cols, 1.7 * len(labels)), squeeze=False)
    for row, c in zip(axes, labels):
        for j, ax in enumerate(row):
            ax.axis("off")
            if j < len(by_class[c]):
                ax.imshow(Image.open(Path(root) / by_class[c][j]).convert("RGB"))
        row[0].set_title(classnames[c], fontsize=8, loc="left")
    fig.suptitle(f"{manifest['shots']}-shot split, seed {manifest['seed']}")
    fig.tight_layout()
    return fig


def _save(fig, out: Path, name: str) -> str:
    fig.savefig(out / f"{name}.png", dpi=130)
    fig.savefig(out / f"{name}.pdf", metadata={"CreationDate": None})  # same bytes on every run
    plt.close(fig)
    return f"![{name}]({name}.png)"


def _provenance(records, config) -> str:
    first = records[0]
    seeds = sorted({r["seed"] for r in records if r["seed"] is not None})
    tuned = sorted({r["tuned_on"] for r in records if r["role"] == "final"})
    rows = [("dataset", first["dataset"]), ("backbone", f"{first['backbone']} (sha256 {first['backbone_sha256'][:12]}…)"),
            ("templates", first.get("templates", "")), ("seeds", ", ".join(map(str, seeds))),
            ("protocol", "oracle: tuned on test" if config and config.get("oracle") else
             "no tuning on test (α, β by leave-one-out, λ by cross-validation on the shots)"),
            ("tuned_on", ", ".join(tuned)), ("git revision", first["git_rev"]),
            ("device", first["device"]), ("feature decode path", first.get("decode", "pil")),
            ("image tower", first.get("image_tower", "clip")),
            ("date", max(r["date"] for r in records))]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _reference_section(records) -> str:
    first = records[0]
    if first["backbone"] not in ("RN50", "RN50.pt") or "imagenet" not in first["dataset"].lower():
        return ("Published ImageNet/RN50 numbers are shown only for runs on ImageNet with CLIP "
                "RN50; this run used other data or another model, so they would not be comparable.")
    ref = json.loads(_REFERENCE_PATH.read_text())
    lines = ["| source (protocol) | method | " + " | ".join(f"{k}-shot" for k in ref["shots"]) + " |",
             "|---|---|" + "---|" * len(ref["shots"])]
    for row in ref["rows"]:
        lines.append(f"| {row['source']} | {row['method']} | " +
                     " | ".join("" if v is None else f"{v:.2f}" for v in row["top1"]) + " |")
    return "\n".join(lines)


def build_report(run_dir: str | os.PathLike, out: str | os.PathLike = "report") -> Path:
    """Write ``out/report.md`` plus PNG/PDF figures from the run in ``run_dir``; returns the .md path."""
    run = load_run(run_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recs, sections = run["records"], []
    rows = summarize(recs)
    sections.append("## Results\n\n" + _provenance(recs, run["config"]))
    for s in _eval_sets(recs):
        sections.append(f"### Top-1 (%) on {s}, mean ± std over seeds\n\n{format_table(rows, s)}")
    sections.append("## Accuracy against shots\n\n" + _save(plot_accuracy_vs_shots(recs), out, "accuracy_vs_shots"))
    if run["grids"]:
        g = max(run["grids"], key=lambda g: g["shots"])
        sections.append("## Tip-Adapter hyperparameters\n\nThe red × is the point the protocol chose "
                        "without test data; the circle is where the test optimum lies.\n\n"
                        + _save(plot_grid(g), out, "tip_adapter_grid"))
    if any(r["method"] == "tip-adapter-f" for r in recs):
        sections.append("## Tip-Adapter-F training\n\n" + _save(plot_training_curves(recs), out, "tip_adapter_f_training"))
    if any(r["method"] == "wise-ft" for r in recs):
        text = "## WiSE-FT of the adapter\n\n" + _save(plot_wise_curve(recs), out, "wise_curve")
        if len(_eval_sets(recs)) > 1:
            text += "\n\n" + _save(plot_id_vs_ood(recs), out, "wise_id_vs_ood")
        sections.append(text)
    if run["predictions"]:
        sections.append("## Qualitative examples\n\n" + _save(plot_examples(run["predictions"]), out, "examples")
                        + "\n\n" + _save(plot_class_changes(run["predictions"]), out, "class_changes"))
    sections.append("## Published numbers (for comparison)\n\n" + _reference_section(recs))
    md = out / "report.md"
    md.write_text("# Few-shot CLIP report\n\nBuilt by `python -m fewshot report` from "
                  f"`{run['dir']}` alone.\n\n" + "\n\n".join(sections) + "\n")
    return md
