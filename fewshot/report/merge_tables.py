"""The merge study's part of the report: FusionBench's table shape (merging rules × tasks and their
average, with the pre-trained, individual and multi-task references), the task vectors' cosine
similarities, and accuracy against λ for task arithmetic and TIES; all from the results files.
This is the report's own "merging" section: its records (role ``merge``) never enter the few-shot
tables and figures, and the few-shot records never enter these."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from fewshot.report.figstyle import readable, subplots
from fewshot.report.i18n import tr
from fewshot.report.merge_adaptive import adaptive_section

__all__ = ["merge_table", "generalisation_table", "soup_table", "cross_table", "plot_cross", "plot_cosine", "plot_lambda_curves",
           "merging_section"]

_ADAPTIVE = ["adamerging-task-wise", "adamerging-layer-wise", "concrete-task-arithmetic",
             "concrete-adamerging-layer-wise", "wemoe", "e-wemoe"]
_ORDER = ["pre-trained", "individual", "multi-task", "average", "task-arithmetic", "ties", "ties-sum", "fisher",
          "fisher-unnormalised", "regmean", *_ADAPTIVE, "task-arithmetic (oracle)", "ties (oracle)", "ties-sum (oracle)",
          *(f"{r} (test-unlabeled)" for r in _ADAPTIVE)]


def merge_table(records, tasks: list[str]) -> str:
    """Markdown: one row per (rule, strategy), one column per task, then the average."""
    cells = defaultdict(dict)
    for r in records:
        if r["role"] == "merge" and r["method"].startswith("merge:"):
            rule, hp = r["method"][6:], r["hyperparameters"]
            key = (rule, hp.get("strategy", ""), hp.get("lambda"))
            cells[key][r["eval_set"]] = r["metrics"]["top1"]
    lines = ["| method | encoders | λ | " + " | ".join(tasks) + " | average |", "|---|---|---|" + "---|" * (len(tasks) + 1)]
    for key in sorted(cells, key=lambda k: (_ORDER.index(k[0]) if k[0] in _ORDER else 99, k[1])):
        rule, strategy, lam = key
        vals = [cells[key].get(t) for t in tasks]
        avg = np.mean([v for v in vals if v is not None]) if any(v is not None for v in vals) else None
        lines.append(f"| {rule} | {strategy or '—'} | {'' if lam is None else lam} | "
                     + " | ".join("" if v is None else f"{v:.1f}" for v in vals)
                     + f" | {'' if avg is None else f'{avg:.1f}'} |")
    return "\n".join(lines)


def generalisation_table(records, tasks: list[str]) -> str:
    """Markdown in FusionBench's generalisation shape: per experiment (exp1, exp2) and rule, top-1
    on the seen tasks and their mean, then on the unseen ones and theirs; "" without such records."""
    cells, seen = defaultdict(dict), {}
    for r in records:
        if r["role"] == "merge" and r["method"].startswith("generalisation:"):
            _, exp, rule = r["method"].split(":", 2)
            cells[(exp, rule)][r["eval_set"]] = r["metrics"]["top1"]
            seen[exp] = r["hyperparameters"]["seen"]
    if not cells:
        return ""
    lines = ["| experiment | method | λ | seen tasks | seen mean | unseen tasks | unseen mean |", "|---|---|---|---|---|---|---|"]
    lams = {(r["method"].split(":", 2)[1], r["method"].split(":", 2)[2]): r["hyperparameters"].get("lambda")
            for r in records if r["role"] == "merge" and r["method"].startswith("generalisation:")}
    for (exp, rule), v in sorted(cells.items()):
        s, u = [t for t in tasks if t in seen[exp]], [t for t in tasks if t not in seen[exp]]

        def part(ts):
            return ", ".join(f"{t} {v[t]:.1f}" for t in ts), f"{np.mean([v[t] for t in ts]):.1f}"
        (st, sm), (ut, um) = part(s), part(u)
        lam = lams[(exp, rule)]
        lines.append(f"| {exp} | {rule} | {'' if lam is None else lam} | {st} | {sm} | {ut} | {um} |")
    return "\n".join(lines)


def soup_table(records) -> str:
    """Markdown: the seed experts of one task, their average (the soup) and WiSE-FT of one."""
    rows = [(r["method"][5:], r["eval_set"], r["metrics"]["top1"]) for r in records
            if r["role"] == "merge" and r["method"].startswith("soup:")]
    if not rows:
        return ""
    lines = [f"| model | top-1 on {rows[0][1]} (%) |", "|---|---|"]
    lines += [f"| {name} | {v:.1f} |" for name, _, v in rows]
    return "\n".join(lines)


def cross_table(diag: dict, strategy: str) -> str:
    """Markdown: each expert (row) on every task (column), top-1 (%): FusionBench's cross-task matrix."""
    tasks, m = diag["tasks"], diag["cross"][strategy]
    lines = ["| expert | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    lines += [f"| {t} | " + " | ".join(f"**{v:.1f}**" if i == j else f"{v:.1f}" for j, v in enumerate(row)) + " |"
              for i, (t, row) in enumerate(zip(tasks, m))]
    return "\n".join(lines)


def plot_cross(diag: dict, base: dict):
    """Each expert's top-1 on every task minus the pre-trained encoder's there (points), per kind of
    expert: the diagonal is what fine-tuning gains, the rest what it costs elsewhere."""
    tasks, mats = diag["tasks"], diag["cross"]
    fig, axes = subplots(1, len(mats), figsize=(3.75 * len(mats), 3.9), squeeze=False, layout="constrained")
    for ax, (strategy, m) in zip(axes[0], sorted(mats.items())):
        d = np.array(m) - np.array([base[t] for t in tasks])[None, :]
        lim = max(1.0, float(np.abs(d).max()))
        im = ax.imshow(d, vmin=-lim, vmax=lim, cmap="RdBu")
        ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right")
        ax.set_yticks(range(len(tasks)), tasks)
        for i in range(len(tasks)):
            for j in range(len(tasks)):
                ax.text(j, i, f"{d[i][j]:+.0f}", ha="center", va="center", fontsize=9,
                        color="white" if abs(d[i][j]) > 0.6 * lim else "black")
        ax.set(title=f"{strategy} fine-tuning", xlabel="evaluated on task", ylabel="expert of task")
        fig.colorbar(im, ax=ax, shrink=0.8, label="top-1 − pre-trained (points)")
    return readable(fig)


def _cross_caption(diag, base, lang) -> str:
    parts = []
    for strategy, m in sorted(diag["cross"].items()):
        d = np.array(m) - np.array([base[t] for t in diag["tasks"]])[None, :]
        off = d[~np.eye(len(d), dtype=bool)]
        parts.append(tr("cap_cross_part", lang, s=strategy, own=f"{np.diag(d).mean():+.1f}", other=f"{off.mean():+.1f}"))
    return tr("cap_cross", lang, parts="; ".join(parts))


def plot_cosine(diag: dict):
    """Cosine similarity of the task vectors, per kind of expert."""
    tasks, mats = diag["tasks"], diag["cosine"]
    fig, axes = subplots(1, len(mats), figsize=(3.75 * len(mats), 3.9), squeeze=False, layout="constrained")
    for ax, (strategy, m) in zip(axes[0], sorted(mats.items())):
        im = ax.imshow(np.array(m), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right")
        ax.set_yticks(range(len(tasks)), tasks)
        for i in range(len(tasks)):
            for j in range(len(tasks)):
                ax.text(j, i, f"{m[i][j]:.1f}", ha="center", va="center", fontsize=9)
        ax.set_title(f"task vectors\n({strategy} fine-tuning)")
        fig.colorbar(im, ax=ax, shrink=0.8)
    return readable(fig)


def plot_lambda_curves(diag: dict):
    """Mean top-1 over the tasks against λ: on the held-out shots (what chooses λ) and on test."""
    curves = diag["curves"]
    ncols = min(3, len(curves))
    nrows = -(-len(curves) // ncols)
    fig, axes = subplots(nrows, ncols, figsize=(7.5, 2.6 * nrows + 0.6), squeeze=False, layout="constrained")
    for ax, (name, c) in zip(axes.flat, sorted(curves.items())):
        lams = sorted(c, key=float)
        ax.plot([float(x) for x in lams], [c[x][0] for x in lams], marker="o", label="held-out shots")
        ax.plot([float(x) for x in lams], [c[x][1] for x in lams], marker="s", label="test")
        ax.set(title=name.replace(":", ", "), xlabel="λ", ylabel="mean top-1 (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(curves):]:
        ax.set_visible(False)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncol=2, frameon=False)
    return readable(fig)


def _cosine_caption(diag, lang) -> str:
    parts = []
    for strategy, m in sorted(diag["cosine"].items()):
        m = np.array(m)
        off = m[~np.eye(len(m), dtype=bool)]
        parts.append(tr("cap_cos_part", lang, s=strategy, mean=f"{off.mean():.2f}", max=f"{off.max():.2f}"))
    return tr("cap_cos", lang, parts="; ".join(parts))


def _lambda_caption(diag, lang) -> str:
    parts = []
    for name, c in sorted(diag["curves"].items()):
        held = max(c, key=lambda x: c[x][0])
        test = max(c, key=lambda x: c[x][1])
        parts.append(tr("cap_lambda_part", lang, m=name.replace(":", ", "), held=held, vh=f"{c[held][1]:.1f}",
                        test=test, vt=f"{c[test][1]:.1f}"))
    return tr("cap_lambda", lang, parts="; ".join(parts))


def merging_section(c) -> str | None:
    """The merging study's section (c: :class:`fewshot.report.sections.Context`): its table, the
    task vectors' similarities and the λ curves, each figure with its caption; None without
    merge records or diagnostics."""
    from fewshot.run.rundir import RunDir

    rd = RunDir(c.run["dir"], writer=False)
    diag = rd.read_json(rd.diagnostics_path("merging"))
    if not diag or not c.merge_recs:
        return None
    text = tr("merge_intro", c.lang) + "\n\n" + merge_table(c.merge_recs, diag["tasks"])
    base = {r["eval_set"]: r["metrics"]["top1"] for r in c.merge_recs if r["method"] == "merge:pre-trained"}
    if diag.get("cross") and all(t in base for t in diag["tasks"]):
        text += "\n\n" + tr("merge_cross", c.lang) + "\n\n" + cross_table(diag, sorted(diag["cross"])[0])
        text += "\n\n" + c.figure(plot_cross(diag, base), "merge_cross", _cross_caption(diag, base, c.lang))
    text += "\n\n" + c.figure(plot_cosine(diag), "merge_task_vectors", _cosine_caption(diag, c.lang))
    text += "\n\n" + c.figure(plot_lambda_curves(diag), "merge_lambda", _lambda_caption(diag, c.lang))
    gen = generalisation_table(c.merge_recs, diag["tasks"])
    text += ("\n\n" + tr("merge_generalisation", c.lang) + "\n\n" + gen) if gen else ""
    text += adaptive_section(c, diag)
    soup = soup_table(c.merge_recs)
    return text + ("\n\n" + tr("merge_soup", c.lang) + "\n\n" + soup if soup else "")
