"""Report: a Markdown report with PNG and PDF figures, built from a run folder's files alone.

:func:`load_run` reads the records, diagnostics, predictions and config through
:class:`fewshot.rundir.RunDir` and refuses records made under different configs (a half-finished
rerun never mixes with an older run's numbers). :func:`build_report` writes ``report.md`` with each
figure of :mod:`fewshot.figures` as PNG (for reading) and PDF (for print).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from fewshot.atomic import atomic_path, atomic_write_text
from fewshot.errors import MissingStepError
from fewshot.figures import (eval_sets_of, plot_accuracy_vs_shots, plot_class_changes,
                             plot_examples, plot_grid, plot_id_vs_ood, plot_training_curves,
                             plot_wise_curve)
from fewshot.results import format_table, summarize
from fewshot.rundir import RunDir

__all__ = ["load_run", "build_report"]

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
             "no tuning on test (α, β by leave-one-out, λ by cross-validation on the shots)"),
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
    oracle = bool(run["config"] and run["config"].get("oracle"))
    rows = summarize(recs)
    sections.append("## Results\n\n" + _provenance(recs, run["config"]))
    for s in eval_sets_of(recs):
        sections.append(f"### Top-1 (%) on {s}, mean ± std over seeds\n\n{format_table(rows, s)}")
    sections.append("## Accuracy against shots\n\n" + _save(plot_accuracy_vs_shots(recs), out, "accuracy_vs_shots"))
    if run["grids"]:
        g = max(run["grids"], key=lambda g: g["shots"])
        how = ("on the test set itself (oracle run: the coursework's protocol)" if oracle else
               "without test data" if g["tuned_on"] != "default" else "from the published defaults")
        sections.append(f"## Tip-Adapter hyperparameters\n\nThe red × is the point chosen {how}; "
                        "the circle is where the test optimum lies.\n\n"
                        + _save(plot_grid(g), out, "tip_adapter_grid"))
    if any(r["method"] == "tip-adapter-f" for r in recs):
        sections.append("## Tip-Adapter-F training\n\n" + _save(plot_training_curves(recs), out, "tip_adapter_f_training"))
    if any(r["method"] == "wise-ft" for r in recs):
        text = "## WiSE-FT of the adapter\n\n" + _save(plot_wise_curve(recs), out, "wise_curve")
        if len(eval_sets_of(recs)) > 1:
            text += "\n\n" + _save(plot_id_vs_ood(recs), out, "wise_id_vs_ood")
        sections.append(text)
    if run["predictions"]:
        sections.append("## Qualitative examples\n\n" + _save(plot_examples(run["predictions"]), out, "examples")
                        + "\n\n" + _save(plot_class_changes(run["predictions"]), out, "class_changes"))
    sections.append("## Published numbers (for comparison)\n\n" + _reference_section(recs))
    md = out / "report.md"
    atomic_write_text(md, "# Few-shot CLIP report\n\nBuilt by `python -m fewshot report` from "
                      f"`{run['dir']}` alone.\n\n" + "\n\n".join(sections) + "\n")
    return md
