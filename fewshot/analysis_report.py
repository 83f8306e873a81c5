"""The report's qualitative analysis section: :func:`analysis_section` writes its figures (PNG and
PDF) and returns its Markdown, for the method the student picks (``report_method``) or the best
honest learnable one, at 1, 5 and 16 shots (those the run has), first seed, on val.
"""
from __future__ import annotations

from pathlib import Path

from fewshot.analysis import failures, variance_share
from fewshot.analysis_data import choose_method, load_analysis
from fewshot.analysis_figures import (confusion_data, feature_map_data, gain_data, plot_cache_explanation,
                                      plot_class_gain, plot_confusions, plot_failures, plot_feature_map)
from fewshot.analysis_text import (confusion_text, coursework_table, explanation_text, failure_text,
                                   feature_text, gain_text)
from fewshot.atomic import atomic_path
from fewshot.errors import MissingStepError

__all__ = ["analysis_section", "analysis_figures"]

_TITLE = "## Qualitative analysis"


def _save(fig, out: Path, name: str) -> str:
    """PNG and PDF of ``fig`` in ``out`` (as the report's figures); returns the Markdown image."""
    with atomic_path(out / f"{name}.png") as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    with atomic_path(out / f"{name}.pdf") as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})
    return f"![{name}]({name}.png)"


def analysis_figures(run: dict, method: str = "") -> dict:
    """``{"method": shown, "why": why it was chosen, "data": the kept data (load_analysis),
    "figures": [(file name, heading, Figure, paragraph)]}`` of a loaded run
    (:func:`fewshot.report.load_run`); ``method`` overrides the config's ``report_method``.
    Raises :class:`MissingStepError` when the run kept no analysis data."""
    data = load_analysis(run["dir"])
    if data is None or "zero-shot" not in data["top3"] or not data["shots"]:
        raise MissingStepError("This run kept no per-image top-3 predictions at 1, 5 or 16 shots "
                               "(made by an older version, or without those shots): rerun its "
                               "zeroshot and method steps.")
    name, why = choose_method(run["records"], data, method or (run["config"] or {}).get("report_method", ""))
    zs, big, figs = data["top3"]["zero-shot"][0][0][:, 0].numpy(), data["shots"][-1], []
    conf = confusion_data(data, name)
    figs.append(("analysis_confusions", "Most confused classes", plot_confusions(data, name, conf),
                 confusion_text(conf, data, name, zs)))
    gains = gain_data(data, name)
    figs.append(("analysis_class_gain", "Per-class gain over zero-shot",
                 plot_class_gain(gains, data["classnames"], name), gain_text(gains, data["classnames"], name)))
    fig = plot_failures(data, name, big)
    shown = failures(data["labels"], *data["top3"][name][big])
    figs.append(("analysis_failures", f"Failure gallery ({big} shots)", fig, failure_text(data, name, big, shown)))
    for cache_name, by_k in data["cache"].items():
        fmap = feature_map_data(data, by_k)
        shares = {k: variance_share(s["val_feats"]) for k, s in by_k.items()}
        figs.append(("analysis_features", f"Features and {cache_name}'s cache keys before and after fine-tuning",
                     plot_feature_map(fmap, data, cache_name), feature_text(by_k, shares, cache_name)))
        kk = max(by_k)
        figs.append(("analysis_cache", f"How {cache_name}'s cache decides ({kk} shots)",
                     plot_cache_explanation(data, by_k[kk], kk, cache_name),
                     explanation_text(by_k[kk], data, cache_name)))
        break  # one cache method (Tip-Adapter-F) is enough to show how a cache decides
    return {"method": name, "why": why, "data": data, "figures": figs}


def analysis_section(run: dict, out: Path, method: str = "", figure=None) -> str:
    """The Markdown of the qualitative analysis of a loaded run, its figures saved in ``out``;
    a run without the data says what to rerun instead. ``figure(fig, name, caption) -> str``
    (the report's :meth:`fewshot.report_sections.Context.figure`) saves and captions each figure
    with its computed paragraph; the section's title is then the caller's."""
    title = "" if figure is not None else _TITLE
    try:
        got = analysis_figures(run, method)
    except MissingStepError as err:
        return f"{title}\n\n{err}".strip()
    name, why, data, figs = got["method"], got["why"], got["data"], got["figures"]
    shots = ", ".join(map(str, data["shots"]))
    head = (f"{title + ': ' + name if title else ''}\n\nThe method shown is **{name}**, {why}; set "
            f"`report_method` in the config to show another. Every figure is on val, split seed "
            f"{data['seed']}, at {shots} shots; every paragraph is computed from the numbers it "
            f"describes.\n\n" + coursework_table(run["records"], name, data["shots"])).strip()
    if figure is None:
        body = [f"### {t}\n\n{_save(fig, Path(out), fname)}\n\n{text}" for fname, t, fig, text in figs]
    else:
        body = [f"### {t}\n\n{figure(fig, fname, text)}" for fname, t, fig, text in figs]
    return "\n\n".join([head, *body])
