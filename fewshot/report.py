"""Report: a Markdown report with PNG and PDF figures, and the same as one self-contained HTML
file to hand in, built from a run folder's files alone.

:func:`load_run` reads the records, diagnostics, predictions and config through
:class:`fewshot.rundir.RunDir` and refuses records made under different configs (a half-finished
rerun never mixes with an older run's numbers). :func:`build_report` writes ``report.md`` and
``report.html``: a summary computed from the results (:mod:`fewshot.narrative`), the setup, the
leaderboard with the published (test-tuned) figures beside it where comparable, a table per test
set, and every figure of :mod:`fewshot.figures` and :mod:`fewshot.robustness` as PNG and PDF.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from fewshot.analysis_report import analysis_section
from fewshot.atomic import atomic_path, atomic_write_text
from fewshot.errors import MissingStepError
from fewshot.figures import (eval_sets_of, method_order, plot_accuracy_vs_shots, plot_examples,
                             plot_grid, plot_training_curves)
from fewshot.markdown import to_html
from fewshot.narrative import summary_sentences
from fewshot.protocol import get_method, list_methods
from fewshot.results import format_table, summarize
from fewshot.robustness import mixing_paths, plot_id_vs_ood, plot_strategies, plot_wise_curve
from fewshot.rundir import RunDir

__all__ = ["load_run", "build_report", "leaderboard"]

_REFERENCE_PATH = Path(__file__).resolve().parent / "reference.json"


def load_run(run_dir: str | os.PathLike) -> dict:
    """Everything a report needs from a run folder: records, grids, predictions, config."""
    rd = RunDir(run_dir)
    records = rd.read_records()
    if not records:
        raise MissingStepError(f"{rd.root / 'results'} holds no results: run the notebooks or "
                               f"`python -m fewshot run` first.")
    digests = {}
    for r in records:
        digests.setdefault(r.get("config_digest"), set()).add(r["method"])
    if len(digests) > 1:
        parts = "; ".join(f"config {d}: {', '.join(sorted(m))}" for d, m in digests.items())
        raise MissingStepError(f"{rd.root} holds records of different configs ({parts}): a step "
                               f"was rerun with other settings or did not finish. Rerun the "
                               f"stale steps, or start a fresh run folder.")
    config = rd.read_json(rd.config_path)
    if config is not None and None not in digests:
        from fewshot.config import RunConfig, config_digest

        current = config_digest(RunConfig(**config))
        if current not in digests:
            raise MissingStepError(f"the records in {rd.root / 'results'} were made under config "
                                   f"{next(iter(digests))}, but {rd.config_path} is {current}: "
                                   f"rerun the steps.")
    return {"records": records, "grids": rd.diagnostics("tip-adapter"), "config": config,
            "predictions": rd.predictions(), "dir": rd.root}


def _save(fig, out: Path, name: str) -> str:
    with atomic_path(out / f"{name}.png") as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    with atomic_path(out / f"{name}.pdf") as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})  # same bytes on every run
    return f"![{name}]({name}.png)"


def _provenance(records, config) -> str:
    first = records[0]
    seeds = sorted({r["seed"] for r in records if r["seed"] is not None})
    tuned = sorted({r["tuned_on"] for r in records if r["role"] == "final"})
    rows = [("dataset", first["dataset"]), ("backbone", f"{first['backbone']} (sha256 {first['backbone_sha256'][:12]}…)"),
            ("templates", first.get("templates", "")), ("seeds", ", ".join(map(str, seeds))),
            ("protocol", "oracle: tuned on test" if config and config.get("oracle") else
             "no tuning on test (from the shots: leave-one-out, cross-validation or held-out "
             "shots; published defaults where the shots cannot tell)"),
            ("tuned_on", ", ".join(tuned)), ("git revision", first["git_rev"]),
            ("device", first["device"]), ("feature decode path", first.get("decode", "pil")),
            ("image tower", first.get("image_tower", "clip")),
            ("config digest", first.get("config_digest", "")),
            ("test images left out (undecodable)", _skipped(records)),
            ("date", max(r["date"] for r in records))]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _skipped(records) -> str:
    per_set = {}
    for r in records:
        per_set[r["eval_set"]] = max(per_set.get(r["eval_set"], 0), r.get("skipped", 0))
    if not any(per_set.values()):
        return "none"
    return ", ".join(f"{n} in {s}" for s, n in sorted(per_set.items()) if n) + " (skip_bad_images)"


def _published(records):
    """{method: [top-1 per shot of reference.json] } when the run is ImageNet with RN50, else None."""
    first = records[0]
    if first["backbone"] not in ("RN50", "RN50.pt") or "imagenet" not in first["dataset"].lower():
        return None
    return json.loads(_REFERENCE_PATH.read_text())


def _reference_section(records) -> str:
    ref = _published(records)
    if ref is None:
        return ("Published ImageNet/RN50 numbers are shown only for runs on ImageNet with CLIP "
                "RN50; this run used other data or another model, so they would not be comparable.")
    lines = ["| source (protocol) | method | " + " | ".join(f"{k}-shot" for k in ref["shots"]) + " |",
             "|---|---|" + "---|" * len(ref["shots"])]
    for row in ref["rows"]:
        lines.append(f"| {row['source']} | {row['method']} | " +
                     " | ".join("" if v is None else f"{v:.2f}" for v in row["top1"]) + " |")
    return "\n".join(lines)


def leaderboard(records, oracle_records=None) -> str:
    """Every method × shots on val (mean ± std), with the best published (test-tuned) figure and,
    given an oracle run, its number beside ours."""
    rows = {(r["method"], r["shots"]): r for r in summarize(records) if r["eval_set"] == "val"}
    oracle = {(r["method"], r["shots"]): r for r in summarize(oracle_records) if r["eval_set"] == "val"} if oracle_records else {}
    ref = _published(records)
    best_ref = {}
    if ref:
        for row in ref["rows"]:
            for k, v in zip(ref["shots"], row["top1"]):
                if v is not None:
                    best_ref[(row["method"], k)] = max(v, best_ref.get((row["method"], k), 0))
    shots = sorted({k for _, k in rows if k > 0})
    lines = ["| method | " + " | ".join(f"{k}-shot" for k in shots) + " | tuned on |", "|---|" + "---|" * (len(shots) + 1)]
    for m in method_order({m for m, _ in rows}):
        cells = []
        for k in shots:
            r = rows.get((m, k)) or rows.get((m, 0))
            if r is None:
                cells.append("")
                continue
            cell = f"{r['mean']:.2f}" + (f" ± {r['std']:.2f}" if r["n"] > 1 else "")
            if (m, k) in oracle:
                cell += f" (oracle {oracle[(m, k)]['mean']:.2f})"
            if (m, k) in best_ref:
                cell += f" [pub. {best_ref[(m, k)]:.2f}]"
            cells.append(cell)
        tuned = "/".join(sorted({t for (mm, k), r in rows.items() if mm == m for t in r["tuned_on"].split("/")}))
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {tuned} |")
    note = ("Mean ± std over seeds, top-1 (%) on val; zero-shot, which uses no shot, is repeated in "
            "every column.")
    if best_ref:
        note += " [pub.] is the published figure (ImageNet, RN50; tuned on test: see the last section)."
    if oracle:
        note += " (oracle) is the same method with its hyperparameters tuned on test."
    return note + "\n\n" + "\n".join(lines)


def _groups(records) -> tuple[list, list]:
    """(cached-feature methods, fine-tuning methods and their companions) present in records."""
    present = {r["method"] for r in records}
    tuned = {n for m in list_methods() if get_method(m).needs_encoder for n in (m, *get_method(m).companions)}
    return sorted(present - tuned), sorted(present & tuned)


def build_report(run_dir: str | os.PathLike, out: str | os.PathLike = "report",
                 oracle_run: str | os.PathLike | None = None) -> Path:
    """Write ``out/report.md``, ``out/report.html`` (self-contained) and the figures (PNG, PDF)
    from the run in ``run_dir``; ``oracle_run``: an oracle run of the same setting, whose numbers
    are set beside the honest ones. Returns the .md path."""
    run = load_run(run_dir)
    oracle_records = load_run(oracle_run)["records"] if oracle_run else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recs, sections = run["records"], []
    oracle = bool(run["config"] and run["config"].get("oracle"))
    rows = summarize(recs)
    classes = (run["predictions"] or {}).get("classnames")
    sentences = summary_sentences(recs, oracle_records, oracle, len(classes) if classes else None)
    sections.append("## Summary\n\n" + ("\n".join(f"- {s}" for s in sentences) or
                                         "No per-shot results in this run; see the sections below."))
    sections.append("## Setup\n\n" + _provenance(recs, run["config"]))
    sections.append("## Leaderboard\n\n" + leaderboard(recs, oracle_records))
    for s in eval_sets_of(recs):
        sections.append(f"### Top-1 (%) on {s}, mean ± std over seeds\n\n{format_table(rows, s)}")
    cached, tuned = _groups(recs)
    text = "## Accuracy against shots\n\n" + _save(plot_accuracy_vs_shots(recs, cached, "methods on cached features"), out, "accuracy_vs_shots")
    if tuned:
        text += "\n\n" + _save(plot_accuracy_vs_shots(recs, tuned, "fine-tuning the encoders and prompts"), out, "accuracy_vs_shots_finetuning")
    sections.append(text)
    if len(eval_sets_of(recs)) > 1 and mixing_paths(recs):
        sections.append("## Robustness: in- vs out-of-distribution\n\nEach line is a WiSE-FT path from "
                        "its starting model (0) to the fine-tuned one (1); points are the other "
                        "methods; the star is zero-shot CLIP.\n\n" + _save(plot_id_vs_ood(recs), out, "id_vs_ood"))
    if run["grids"]:
        g = max(run["grids"], key=lambda g: g["shots"])
        how = ("on the test set itself (oracle run: the coursework's protocol)" if oracle else
               "without test data" if g["tuned_on"] != "default" else "from the published defaults")
        edge = [name for name, v, grid in (("β", g["chosen"][1], g["betas"]), ("α", g["chosen"][0], g["alphas"]))
                if v in (grid[0], grid[-1])]
        note = f" The chosen {' and '.join(edge)} sit{'s' if len(edge) == 1 else ''} on the edge of the published range." if edge else ""
        sections.append(f"## Tip-Adapter hyperparameters\n\nThe red × is the point chosen {how}; "
                        f"the circle is where the test optimum lies.{note}\n\n"
                        + _save(plot_grid(g), out, "tip_adapter_grid"))
    if any(r["method"] == "tip-adapter-f" for r in recs):
        sections.append("## Tip-Adapter-F training\n\n" + _save(plot_training_curves(recs), out, "tip_adapter_f_training"))
    paths = [m for m in method_order(mixing_paths(recs))]
    if paths:
        sections.append("## WiSE-FT paths\n\n" + "\n\n".join(
            _save(plot_wise_curve(recs, m), out, f"path_{m.replace('-', '_').replace('+', 'p')}") for m in paths))
    if any("trainable_params" in (r.get("extra") or {}) for r in recs):
        sections.append("## What fine-tuning costs\n\n" + _save(plot_strategies(recs), out, "finetuning_costs"))
    if run["predictions"] and len(run["predictions"]["predictions"]) > 1:
        sections.append("## Qualitative examples\n\n" + _save(plot_examples(run["predictions"]), out, "examples"))
    sections.append(analysis_section(run, out))  # fewshot.analysis_report (its per-class gain supersedes class_changes)
    merge_diag = RunDir(run["dir"]).read_json(RunDir(run["dir"]).diagnostics_path("merging"))
    if merge_diag and any(r["role"] == "merge" for r in recs):
        from fewshot.merge_report import merge_table, plot_cosine, plot_lambda_curves, soup_table

        sections.append("## Merging several fine-tuned encoders\n\nOne expert encoder per task, merged by "
                        "each rule; λ chosen on the held-out shots of every task (oracle rows: on test). "
                        "Top-1 (%) on each task's test set.\n\n" + merge_table(recs, merge_diag["tasks"])
                        + "\n\n" + _save(plot_cosine(merge_diag), out, "merge_task_vectors")
                        + "\n\n" + _save(plot_lambda_curves(merge_diag), out, "merge_lambda")
                        + "\n\nA soup of one task's experts from different seeds, beside WiSE-FT (α = 0.5) "
                        "of one of them:\n\n" + soup_table(recs))
    sections.append("## Published numbers (for comparison)\n\n" + _reference_section(recs))
    md = out / "report.md"
    text = ("# Few-shot CLIP report\n\nBuilt by `python -m fewshot report` from "
            f"`{run['dir']}` alone; the same report as one file to hand in: "
            "[report.html](report.html).\n\n" + "\n\n".join(sections) + "\n")
    atomic_write_text(md, text)
    atomic_write_text(out / "report.html", to_html(text, out, "Few-shot CLIP report"))
    return md
