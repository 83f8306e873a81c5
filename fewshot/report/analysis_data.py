"""The run-folder side of the qualitative analysis, read back for the report.

During a run (:func:`fewshot.run.kept_analysis.save_analysis`, called for every fit of the first seed), at the shot counts
of :data:`fewshot.run.kept_analysis.ANALYSIS_SHOTS` that the config runs: the top-3 classes and probabilities of every val
image (int16 + float16, 12 bytes an image: 0.6 MB per method and shot count on ImageNet's 50,000)
for zero-shot, every learnable method (``Method.learnable``) and ``cfg.report_method``, plus the
snapshot of a method's ``explain`` hook (Tip-Adapter-F's cache before and after fine-tuning).
Heads with their own fine-tuned encoder are kept only when named in ``report_method`` (each
costs one more pass of the encoder over val). Files: ``analysis/`` of :mod:`fewshot.run.rundir`.

For the report, :func:`load_analysis` reads them back and :func:`choose_method` picks the method
to show.
"""
from __future__ import annotations

from pathlib import Path

from fewshot.base.errors import MissingStepError
from fewshot.report.i18n import tr
from fewshot.methods import list_learnable
from fewshot.protocol import selection
from fewshot.protocol.results import summarize
from fewshot.run.kept_analysis import analysis_shots, step_of
from fewshot.run.rundir import RunDir

__all__ = ["load_analysis", "choose_method", "image_path"]

def load_analysis(run_dir) -> dict | None:
    """Everything kept for the analysis: ``{"shots": [k], "seed", "labels": [N], "paths": [N],
    "root": dataset root, "classnames": [C], "top3": {name: {k: (classes [N, 3], probs [N, 3])}},
    "cache": {name: {k: snapshot}}}`` (k = 0 for zero-shot); None when the run kept none."""
    rd = RunDir(run_dir)
    index = rd.read_json(rd.predictions_path("index"))
    folder = rd.root / "analysis"
    if index is None or not folder.is_dir():
        return None
    cfg, digest = rd.read_config(), rd.digest
    shots, seed = analysis_shots(cfg.shots), cfg.seeds[0]
    out = {"shots": shots, "seed": seed, "labels": index["labels"], "paths": index["paths"],
           "root": index["dataset_root"], "classnames": index["classnames"], "top3": {}, "cache": {}}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for k in [0] + shots:
            data = rd.load_analysis(sub.name, k or None, seed if k else None, digest)
            if data is None:
                continue
            if "top3_classes" in data:
                if len(data["top3_classes"]) != len(out["labels"]):
                    raise MissingStepError(f"{rd.analysis_path(sub.name, k or None, seed)} holds "
                                           f"{len(data['top3_classes'])} images, the val set "
                                           f"{len(out['labels'])}: rerun the {step_of(sub.name)} step.")
                out["top3"].setdefault(sub.name, {})[k] = (data["top3_classes"].long(), data["top3_probs"].float())
            if "cache" in data:
                out["cache"].setdefault(sub.name, {})[k] = data["cache"]
    return out


def choose_method(records: list[dict], data: dict, requested: str = "", lang: str = "en") -> tuple[str, str]:
    """(record name, why): ``requested`` when given, else the learnable method with the best
    mean val top-1 at the largest analysis shot count, among those kept at every analysis shot
    count and not tuned on test (in an oracle run, among the test-tuned ones: it says so);
    a tie goes to the earlier method in the registry. ``why`` is written in ``lang``.

    A ``requested`` name without its kept predictions raises :class:`MissingStepError` naming
    the step to rerun.
    """
    shots = data["shots"]
    kept = [n for n, by_k in data["top3"].items() if all(k in by_k for k in shots)]
    if requested:
        if requested not in kept:
            raise MissingStepError(f"report_method {requested}: no per-image predictions kept at "
                                   f"{', '.join(map(str, shots))} shots; run its step with it set "
                                   f"(`python -m fewshot run --steps {step_of(requested)} --set "
                                   f"report_method={requested}`).")
        return requested, tr("a_why_chosen", lang)
    finals = [r for r in records if r["role"] == "final" and r["eval_set"] == "val" and r["shots"] == shots[-1]]
    honest = [r for r in finals if "test-oracle" not in r["tuned_on"]]
    rows = {r["method"]: r for r in summarize(honest or finals)}
    candidates = [n for n in list_learnable() if n in kept and n in rows]
    if not candidates:
        raise MissingStepError("no learnable method has per-image predictions at "
                               f"{', '.join(map(str, shots))} shots: run e.g. the tip_adapter_f step.")
    best = candidates[selection.first_best([rows[n]["mean"] for n in candidates])]
    how = tr("a_why_honest" if honest else "a_why_oracle", lang)
    ties = [n for n in candidates if n != best and rows[best]["mean"] - rows[n]["mean"]
            <= max(rows[best]["std"], rows[n]["std"])]
    named = tr("list_sep", lang).join(tr("a_why_item", lang, m=n, mean=f"{rows[n]['mean']:.2f}") for n in ties)
    tied = tr("a_why_tied", lang, named=named) if ties else ""
    return best, tr("a_why_best", lang, k=shots[-1], mean=f"{rows[best]['mean']:.2f}", how=how,
                    n=len(candidates), tied=tied)


def image_path(data: dict, relative: str) -> Path:
    """The file of a dataset-relative path (val images and shots)."""
    return Path(data["root"]) / relative
