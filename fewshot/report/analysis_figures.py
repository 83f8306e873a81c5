"""Figures of the qualitative analysis, each a function of the kept data returning a pyplot-free
matplotlib Figure (:func:`fewshot.report.figures.subplots`); their paragraphs are :mod:`fewshot.report.analysis_text`.

``data`` is :func:`fewshot.report.analysis_data.load_analysis`'s dict; every figure draws what its
``*_data`` companion computes (so tests check the numbers a figure shows, not its pixels).
"""
from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure
import seaborn as sns
from fewshot.protocol.analysis import class_gain, confused_pairs, failures, project_2d
from fewshot.report.analysis_data import image_path
from fewshot.report.figures import show_image, subplots
from fewshot.methods import baseline_method

__all__ = ["class_label", "confusion_data", "plot_confusions", "feature_map_data", "plot_feature_map",
           "plot_cache_explanation", "plot_failures", "gain_data", "plot_class_gain", "FONT"]

FONT = 9  # the smallest text of these figures (points), readable at page width
_PAL = sns.color_palette("colorblind", 10)


def class_label(names, c: int) -> str:
    """The name of class ``c``, with its index where another class has the same name."""
    return names[c] + (f" (#{c})" if names.count(names[c]) > 1 else "")


def _image(ax, data, relative):
    show_image(ax, image_path(data, relative))
    ax.set_xticks([]), ax.set_yticks([])


def _top1(data, name, k):
    return data["top3"][name][k][0][:, 0].numpy()


def confusion_data(data, method, pairs: int = 3) -> dict:
    """{k: [pair + {"example_ab": val row of a said b, "example_ba": row of b said a, or a right
    b, or None}]} for every analysis shot count (:func:`fewshot.protocol.analysis.confused_pairs`, each
    pair turned so that a → b is its more frequent direction)."""
    labels = np.asarray(data["labels"])
    out = {}
    for k in data["shots"]:
        pred = _top1(data, method, k)
        rows = confused_pairs(labels, pred, top=pairs)
        for p in rows:
            if p["a_to_b"] < p["b_to_a"]:
                p.update(a=p["b"], b=p["a"], a_to_b=p["b_to_a"], b_to_a=p["a_to_b"])
            ab = np.flatnonzero((labels == p["a"]) & (pred == p["b"]))
            ba = np.flatnonzero((labels == p["b"]) & (pred == p["a"]))
            right = np.flatnonzero(labels == p["b"])
            p["example_ab"] = int(ab[0])
            p["example_ba"] = int(ba[0]) if len(ba) else (int(right[0]) if len(right) else None)
        out[k] = rows
    return out


def plot_confusions(data, method, conf: dict):
    """The most confused pairs at each shot count: one row per shot count, two val images per
    pair (a said b; b said a, or a b image when that never happened)."""
    labels = data["labels"]
    names = [class_label(data["classnames"], c).replace(" (#", "\n(#") for c in range(len(data["classnames"]))]
    ks = [k for k in conf if conf[k]]  # a twin's index on its own line: six cells share 7.5 in
    pairs = max(len(conf[k]) for k in ks)
    fig, axes = subplots(len(ks), 2 * pairs, figsize=(2.2 * 2 * pairs, 4.4 * len(ks)), squeeze=False)
    for row, k in zip(axes, ks):
        for ax in row:
            ax.axis("off")
        for j, p in enumerate(conf[k]):
            a, b = names[p["a"]], names[p["b"]]
            cells = [(p["example_ab"], f"{a}\nsaid\n{b}\n({p['a_to_b']}×)")]
            if p["example_ba"] is not None:
                said = p["b_to_a"] and labels[p["example_ba"]] == p["b"]
                cells.append((p["example_ba"], f"{b}\nsaid\n{a}\n({p['b_to_a']}×)" if said else f"{b}\n(never said\n{a})"))
            for ax, (i, title) in zip(row[2 * j:2 * j + 2], cells):
                ax.axis("on")
                _image(ax, data, data["paths"][i])
                ax.set_title(title, fontsize=FONT)
        row[0].set_ylabel(f"{k}-shot", fontsize=FONT + 2)
    fig.suptitle(f"most confused class pairs of {method} on val (seed {data['seed']}); "
                 "counts: val images sent the other way", fontsize=FONT + 2)
    fig.tight_layout()
    return fig


def feature_map_data(data, cache_by_k: dict, method: str = "pca") -> dict:
    """{k: {"val": [n, 2], "keys0": [m, 2], "keys": [m, 2], "val_labels": [n], "key_labels": [m],
    "classes": [c]}}: the kept val features and keys of the kept classes, projected by one map
    per shot count fitted on the val features (:func:`fewshot.protocol.analysis.project_2d`)."""
    labels, out = np.asarray(data["labels"]), {}
    for k, s in cache_by_k.items():
        xy, (k0, k1) = project_2d(s["val_feats"], [s["keys0"], s["keys"]], method)
        out[k] = {"val": xy, "keys0": k0, "keys": k1, "classes": s["classes"].tolist(),
                  "val_labels": labels[s["val_index"].numpy()],
                  "key_labels": s["key_labels"].long()[s["key_index"]].numpy()}
    return out


def plot_feature_map(fmap: dict, data, method_name: str, projection: str = "PCA"):
    """One panel per shot count: val images (dots) of the kept classes, the cache keys before
    (hollow circles) and after fine-tuning (filled triangles), each key's move an arrow."""
    ks = list(fmap)
    fig, axes = subplots(1, len(ks), figsize=(5.0 * len(ks), 5.6), squeeze=False)
    for ax, k in zip(axes[0], ks):
        f = fmap[k]
        vlab = f["val_labels"]
        for j, c in enumerate(f["classes"]):
            col = _PAL[j % 10]
            ax.scatter(*f["val"][vlab == c].T, s=10, color=col, alpha=0.35, label=class_label(data["classnames"], c))
            mine = f["key_labels"] == c
            ax.scatter(*f["keys0"][mine].T, s=46, facecolors="none", edgecolors=col, linewidths=1.4)
            ax.scatter(*f["keys"][mine].T, s=46, marker="^", color=col, edgecolors="black", linewidths=0.5)
            for (x0, y0), (x1, y1) in zip(f["keys0"][mine], f["keys"][mine]):
                ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": col, "lw": 0.8})
        ax.set_title(f"{k}-shot: ○ keys before, ▲ after", fontsize=FONT + 1)
        ax.set_xlabel(f"{projection} 1", fontsize=FONT)
        ax.set_ylabel(f"{projection} 2", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        leg = ax.legend(fontsize=FONT, loc="upper center", bbox_to_anchor=(0.5, -0.27), ncol=1, frameon=False,
                        markerscale=2.0)
        for h in leg.legend_handles:
            h.set_alpha(1.0)
    fig.suptitle(f"val features and {method_name}'s cache keys of its most confused classes", fontsize=FONT + 2)
    fig.tight_layout()
    return fig


def _wrap(name: str, width: int = 16) -> str:
    return "\n".join(textwrap.wrap(name, width)) or name


def plot_cache_explanation(data, snap: dict, k: int, method_name: str):
    """Per explained val image two rows at page width: the image and its nearest shots (affinity
    before → after fine-tuning; green: the image's class), then the zero-shot and adapted top-3
    with their probabilities and the adapted winner's text and cache logits, side by side."""
    names = [class_label(data["classnames"], c) for c in range(len(data["classnames"]))]
    idx = snap["explained"].tolist()
    n_near = snap["explain_nearest"].shape[1]
    fig = Figure(figsize=(1.55 * (n_near + 1), 3.5 * len(idx)), layout="constrained")
    grid = fig.add_gridspec(2 * len(idx), n_near + 1, height_ratios=[2.2, 1.3] * len(idx))
    key_labels = snap["key_labels"].long()
    for r, i in enumerate(idx):
        first = fig.add_subplot(grid[2 * r, 0])
        _image(first, data, data["paths"][i])
        first.set_title(f"test:\n{_wrap(names[data['labels'][i]])}\n({snap['explained_kind'][r]})",
                        fontsize=FONT, weight="bold")
        for j in range(n_near):
            ax, m = fig.add_subplot(grid[2 * r, j + 1]), int(snap["explain_nearest"][r, j])
            _image(ax, data, snap["shot_paths"][m])
            ax.set_title(f"shot:\n{_wrap(names[key_labels[m]])}\nA {snap['explain_affinity0'][r, j]:.2f} → "
                         f"{snap['explain_affinity'][r, j]:.2f}", fontsize=FONT,
                         color="green" if key_labels[m] == data["labels"][i] else "red")
        text = fig.add_subplot(grid[2 * r + 1, :])
        text.axis("off")
        winner = names[int(snap["explain_ad"][r, 0])]
        parts = [_top3_line(baseline_method(), snap["explain_zs"][r], snap["explain_zs_probs"][r], names),
                 _top3_line(method_name, snap["explain_ad"][r], snap["explain_ad_probs"][r], names),
                 f"logit of\n{_wrap(winner, 22)}:\ntext {float(snap['explain_zs_logits'][r, 0]):.1f}\n"
                 f"+ cache {float(snap['explain_cache_logits'][r, 0]):.1f}"]
        for c, part in enumerate(parts):
            text.text(c / 3, 0.5, part, fontsize=FONT, va="center", transform=text.transAxes)
    fig.suptitle(f"why the cache decides ({method_name}, {k}-shot)\nA = exp(−β(1 − f·k)), β = "
                 f"{snap['beta']:.2f}, α = {snap['alpha']:.2f}", fontsize=FONT + 1)
    return fig


def _top3_line(who, classes, probs, names):
    return f"{who}:\n" + "\n".join(f"  {j + 1}. {names[int(c)]} {float(p):.2f}" for j, (c, p) in enumerate(zip(classes, probs)))


def plot_failures(data, method, k: int, n: int = 8, cols: int = 4):
    """The ``n`` most confident mistakes of ``method`` at ``k`` shots: each image over a bar
    chart of its top-3 probabilities (green: the true class)."""
    classes, probs = data["top3"][method][k]
    labels = np.asarray(data["labels"])
    rows = failures(labels, classes, probs, top=n)
    nrow = 2 * ((len(rows) + cols - 1) // cols)
    fig, axes = subplots(nrow, cols, figsize=(2.9 * cols, 2.2 * nrow), squeeze=False,
                         layout="constrained")  # titles over the right column stay inside
    for ax in axes.flat:
        ax.axis("off")
    names = [class_label(data["classnames"], c) for c in range(len(data["classnames"]))]
    for j, i in enumerate(rows):
        img, bar = axes[2 * (j // cols), j % cols], axes[2 * (j // cols) + 1, j % cols]
        img.axis("on")
        _image(img, data, data["paths"][i])
        img.set_title(f"true:\n{_wrap(names[labels[i]], 12)}", fontsize=FONT, weight="bold")
        bar.axis("on")
        c, p = classes[i].tolist(), probs[i].float().numpy()
        bar.barh(range(3)[::-1], p, color=[_PAL[2] if x == labels[i] else _PAL[3] for x in c])
        bar.set_yticks(range(3)[::-1], [names[x] for x in c], fontsize=FONT)
        bar.set_xlim(0, 1)
        bar.tick_params(axis="x", labelsize=FONT)
        for y, v in zip(range(3)[::-1], p):  # inside a long bar, beside a short one
            inside = v > 0.75
            bar.text(v - 0.03 if inside else v + 0.02, y, f"{v:.2f}", va="center", fontsize=FONT,
                     ha="right" if inside else "left", color="white" if inside else "black")
    fig.suptitle(f"the most confident mistakes of {method} ({k}-shot): top-3 probabilities",
                 fontsize=FONT + 2)
    return fig


def gain_data(data, method, base: str | None = None) -> dict:
    """{k: (acc [C], base_acc [C], gain [C])}: per-class val top-1 (%) of ``method`` against the
    shot-free ``base`` (default: the baseline, zero-shot; :func:`fewshot.protocol.analysis.class_gain`)."""
    base = base or baseline_method()
    labels, C = np.asarray(data["labels"]), len(data["classnames"])
    zs = _top1(data, base, 0)
    return {k: class_gain(labels, _top1(data, method, k), zs, C) for k in data["shots"]}


def plot_class_gain(gains: dict, classnames, method, top: int = 8):
    """Left: every class's gain over zero-shot, sorted, one line per shot count. Right: the
    ``top`` classes that gain and lose most at the largest shot count (bars), with their gain at
    the other shot counts (markers)."""
    ks = list(gains)
    fig, (a, b) = subplots(1, 2, figsize=(12, max(4.0, 0.3 * 2 * top + 1.2)))
    for j, k in enumerate(ks):
        g = np.sort(gains[k][2][~np.isnan(gains[k][2])])[::-1]
        a.plot(np.arange(len(g)), g, color=_PAL[j], label=f"{k}-shot (mean {g.mean():+.1f})")
    a.axhline(0, color="black", lw=0.8)
    a.set_xlabel("classes, sorted by gain", fontsize=FONT)
    a.set_ylabel("top-1 gain over zero-shot (points)", fontsize=FONT)
    a.legend(fontsize=FONT)
    a.tick_params(labelsize=FONT)
    g = gains[ks[-1]][2]
    valid = np.flatnonzero(~np.isnan(g))
    order = valid[np.lexsort((valid, -g[valid]))]
    idx = list(dict.fromkeys(list(order[:top]) + list(order[::-1][:top][::-1])))
    y = np.arange(len(idx))[::-1]
    b.barh(y, g[idx], color=[_PAL[2] if v > 0 else _PAL[3] for v in g[idx]], alpha=0.8, label=f"{ks[-1]}-shot")
    for j, k in enumerate(ks[:-1]):
        b.plot(gains[k][2][idx], y, "o^sD"[j], color=_PAL[j], ls="none", label=f"{k}-shot")
    b.set_yticks(y, [class_label(list(classnames), i) for i in idx], fontsize=FONT)
    b.axvline(0, color="black", lw=0.8)
    b.set_xlabel("gain over zero-shot (points)", fontsize=FONT)
    b.tick_params(axis="x", labelsize=FONT)
    b.legend(fontsize=FONT, loc="lower right")
    fig.suptitle(f"per-class gain of {method} over zero-shot on val", fontsize=FONT + 2)
    fig.tight_layout()
    return fig
