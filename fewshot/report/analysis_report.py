"""The report's qualitative analysis section: :func:`analysis_section` writes its figures (PNG and
PDF) and returns its Markdown, for the method the student picks (``report_method``) or the best
honest learnable one, at 1, 5 and 16 shots (those the run has), first seed, on val.
"""
from __future__ import annotations

from pathlib import Path

from fewshot.protocol.analysis import failures, variance_share
from fewshot.report.analysis_data import choose_method, load_analysis
from fewshot.report.analysis_figures import (confusion_data, feature_map_data, gain_data, plot_cache_explanation,
                                      plot_class_gain, plot_confusions, plot_failures, plot_feature_map)
from fewshot.report.analysis_text import (confusion_text, coursework_table, explanation_text, failure_text,
                                   feature_text, gain_text)
from fewshot.base.atomic import atomic_path
from fewshot.base.errors import MissingStepError
from fewshot.report.i18n import tr
from fewshot.methods import baseline_method

__all__ = ["analysis_section", "analysis_figures"]


def _save(fig, out: Path, name: str) -> str:
    """PNG and PDF of ``fig`` in ``out`` (as the report's figures); returns the Markdown image."""
    with atomic_path(out / f"{name}.png") as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    with atomic_path(out / f"{name}.pdf") as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})
    return f"![{name}]({name}.png)"


def analysis_figures(run: dict, method: str = "", lang: str = "en") -> dict:
    """``{"method": shown, "why": why it was chosen, "data": the kept data (load_analysis),
    "figures": [(file name, heading, Figure, paragraph)]}`` of a loaded run
    (:func:`fewshot.report.build.load_run`), headings and paragraphs in ``lang``; ``method`` overrides
    the config's ``report_method``. Raises :class:`MissingStepError` when the run kept no
    analysis data."""
    data = load_analysis(run["dir"])
    base = baseline_method()
    if data is None or base not in data["top3"] or not data["shots"]:
        raise MissingStepError("This run kept no per-image top-3 predictions at 1, 5 or 16 shots "
                               "(made by an older version, or without those shots): rerun its "
                               "zeroshot and method steps.")
    name, why = choose_method(run["records"], data, method or (run["config"] or {}).get("report_method", ""), lang)
    zs, big, figs = data["top3"][base][0][0][:, 0].numpy(), data["shots"][-1], []
    conf = confusion_data(data, name)
    figs.append(("analysis_confusions", tr("a_t_confusions", lang), plot_confusions(data, name, conf),
                 confusion_text(conf, data, name, zs, lang)))
    gains = gain_data(data, name)
    figs.append(("analysis_class_gain", tr("a_t_gain", lang), plot_class_gain(gains, data["classnames"], name),
                 gain_text(gains, data["classnames"], name, lang)))
    fig = plot_failures(data, name, big)
    shown = failures(data["labels"], *data["top3"][name][big])
    figs.append(("analysis_failures", tr("a_t_failures", lang, k=big), fig,
                 failure_text(data, name, big, shown, lang)))
    for cache_name, by_k in data["cache"].items():
        fmap = feature_map_data(data, by_k)
        shares = {k: variance_share(s["val_feats"]) for k, s in by_k.items()}
        figs.append(("analysis_features", tr("a_t_features", lang, m=cache_name),
                     plot_feature_map(fmap, data, cache_name), feature_text(by_k, shares, cache_name, lang)))
        kk = max(by_k)
        figs.append(("analysis_cache", tr("a_t_cache", lang, m=cache_name, k=kk),
                     plot_cache_explanation(data, by_k[kk], kk, cache_name),
                     explanation_text(by_k[kk], data, cache_name, lang)))
        break  # one cache method (Tip-Adapter-F) is enough to show how a cache decides
    return {"method": name, "why": why, "data": data, "figures": figs}


def analysis_section(run: dict, out: Path, method: str = "", figure=None, lang: str = "en") -> str:
    """The Markdown of the qualitative analysis of a loaded run in ``lang``, its figures saved in
    ``out``; a run without the data says what to rerun instead. ``figure(fig, name, caption) -> str``
    (the report's :meth:`fewshot.report.sections.Context.figure`) saves and captions each figure
    with its computed paragraph; the section's title is then the caller's."""
    title = "" if figure is not None else f"## {tr('h_analysis', lang)}"
    try:
        got = analysis_figures(run, method, lang)
    except MissingStepError as err:
        return tr("analysis_missing", lang) if figure is not None else f"{title}\n\n{err}".strip()
    name, why, data, figs = got["method"], got["why"], got["data"], got["figures"]
    shots = tr("list_sep", lang).join(map(str, data["shots"]))
    head = (f"{title + ': ' + name if title else ''}\n\n"
            + tr("a_head", lang, m=name, why=why, seed=data["seed"], shots=shots) + "\n\n"
            + coursework_table(run["records"], name, data["shots"], lang)).strip()
    if figure is None:
        body = [f"### {t}\n\n{_save(fig, Path(out), fname)}\n\n{text}" for fname, t, fig, text in figs]
    else:
        body = [f"### {t}\n\n{figure(fig, fname, text)}" for fname, t, fig, text in figs]
    return "\n\n".join([head, *body])
