"""The merge study's adaptive rules and robustness in the report: the robustness table in
FusionBench's shape (rules × clean and the seven corruptions, mean over the tasks), AdaMerging's
learned λ per expert and tensor, Concrete's mask (the share of each tensor's entries it keeps), and
WEMoE's routing (the mean weight of each expert per task); all read from the results files and
the study's diagnostics."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from fewshot.report.figstyle import readable, subplots
from fewshot.report.i18n import tr

__all__ = ["robustness_table", "plot_adaptive", "plot_routing", "adaptive_section"]


def robustness_table(records) -> str:
    """Markdown: one row per rule, top-1 (%) clean and under each corruption, each the mean over
    the tasks; "" without robustness records."""
    cells, order = defaultdict(lambda: defaultdict(list)), []
    for r in records:
        if r["role"] == "merge" and r["method"].startswith("robustness:"):
            rule, what = r["method"].split(":", 1)[1], r["hyperparameters"]["corruption"]
            cells[rule][what].append(r["metrics"]["top1"])
            order += [what] if what not in order else []
    if not cells:
        return ""
    cols = ["clean"] + [c for c in order if c != "clean"]
    lines = ["| method | " + " | ".join(c.replace("_", " ") for c in cols) + " | corrupted mean |",
             "|---|" + "---|" * (len(cols) + 1)]
    for rule, by in cells.items():
        means = [float(np.mean(by[c])) for c in cols]
        lines.append(f"| {rule} | " + " | ".join(f"{v:.1f}" for v in means) + f" | {np.mean(means[1:]):.1f} |")
    return "\n".join(lines)


def plot_adaptive(diag: dict):
    """Left: layer-wise AdaMerging's λ [n experts × tensors] as learned on the unlabeled split;
    right: each tensor's share of entries Concrete keeps (σ of its mask logits), per rule."""
    ad = diag["adaptive"]
    lam = np.array(ad["lambda"]["adamerging-layer-wise"])
    fig, (a, b) = subplots(1, 2, figsize=(7.75, 3.4), layout="constrained")
    im = a.imshow(lam, aspect="auto", cmap="viridis")
    a.set(xlabel="tensor (encoder order)", ylabel="expert", yticks=range(len(diag["tasks"])),
          yticklabels=diag["tasks"], title="AdaMerging layer-wise λ (start 0.3)")
    fig.colorbar(im, ax=a, shrink=0.8)
    for rule, keep in ad["mask"].items():
        if "(test-unlabeled)" not in rule:
            b.plot(range(len(keep)), keep, label=rule.replace("concrete-", ""))
    b.set(xlabel="tensor (encoder order)", ylabel="share of entries kept", ylim=(0, 1), title="Concrete's mask")
    b.legend(fontsize=8, loc="lower left")
    return readable(fig)


def plot_routing(diag: dict):
    """WEMoE's routing: per task (rows), the mean weight each expert (columns) gets over the task's
    test images, averaged over the MoE layers; one panel per WEMoE variant adapted on the unlabeled split."""
    rules = [r for r in diag.get("routing", {}) if "(test-unlabeled)" not in r]
    fig, axes = subplots(1, len(rules), figsize=(3.9 * len(rules), 3.4), squeeze=False, layout="constrained")
    for ax, rule in zip(axes[0], rules):
        w = np.array(diag["routing"][rule]).mean(axis=1)  # [T, K, n] -> [T, n]
        im = ax.imshow(w, cmap="magma", vmin=0)
        ax.set(xticks=range(w.shape[1]), xticklabels=diag["tasks"], yticks=range(w.shape[0]), yticklabels=diag["tasks"],
               xlabel="expert", ylabel="task of the images", title=rule)
        ax.tick_params(axis="x", rotation=45)
        for (i, j), v in np.ndenumerate(w):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < w.max() * 0.6 else "black")
        fig.colorbar(im, ax=ax, shrink=0.8)
    return readable(fig)


def _routing_caption(diag, lang) -> str:
    w = np.array(diag["routing"][next(r for r in diag["routing"] if "(test-unlabeled)" not in r)]).mean(axis=1)
    own = float(np.mean(np.diag(w))) if w.shape[0] == w.shape[1] else float("nan")
    other = float((w.sum() - np.trace(w)) / max(1, w.size - len(w))) if w.shape[0] == w.shape[1] else float("nan")
    return tr("cap_routing", lang, own=f"{own:.2f}", other=f"{other:.2f}")


def adaptive_section(c, diag: dict) -> str:
    """The robustness table and the adaptive rules' figures, with their captions ("" without them)."""
    text = ""
    robust = robustness_table(c.merge_recs)
    if robust:
        text += "\n\n" + tr("merge_robustness", c.lang) + "\n\n" + robust
    if diag.get("adaptive", {}).get("lambda", {}).get("adamerging-layer-wise") is not None:
        text += "\n\n" + c.figure(plot_adaptive(diag), "merge_adaptive", tr("cap_adaptive", c.lang))
    if any("(test-unlabeled)" not in r for r in diag.get("routing", {})):
        text += "\n\n" + c.figure(plot_routing(diag), "merge_routing", _routing_caption(diag, c.lang))
    return text
