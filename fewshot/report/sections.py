"""The report's sections, each a function of the loaded run returning Markdown (or None when the
run holds nothing for it). :data:`SECTIONS` names them in report order; :mod:`fewshot.report.build`
selects and assembles them. Every figure goes through :meth:`Context.figure`, which numbers it,
writes its PNG and PDF and sets its caption under it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fewshot.base.atomic import atomic_path
from fewshot.report.captions import (caption_accuracy, caption_costs,
                              caption_examples, caption_grid, caption_id_vs_ood, caption_training,
                              caption_wise_path)
from fewshot.report.figstyle import readable
from fewshot.report.figures import (best_adapted, method_order, plot_accuracy_vs_shots,
                             plot_examples, plot_grid, plot_training_curves)
from fewshot.report.i18n import tr
from fewshot.report.narrative import summary_sentences
from fewshot.methods import get_method, list_methods
from fewshot.report.tables import leaderboard, provenance, reference_section, shift_tables
from fewshot.report.shift_figures import mixing_paths, plot_id_vs_ood, plot_strategies, plot_wise_curve, sweep_shots
from fewshot.methods import with_report_role

__all__ = ["Context", "SECTIONS"]


@dataclass
class Context:
    """What the sections read: the few-shot records (``recs``), the merging study's
    (``merge_recs``), the run's side files, where to write, and the language."""
    run: dict  # fewshot.report.build.load_run's answer
    recs: list  # few-shot records only (val and its shifts)
    merge_recs: list  # the merging study's records (role "merge")
    out: Path  # the report folder
    lang: str = "en"  # language of prose and captions
    oracle_records: list | None = None  # an oracle run's records, set beside ours
    written: list = field(default_factory=list)  # figure names written so far

    @property
    def oracle(self) -> bool:
        """Whether the run itself tuned on test (config ``oracle``)."""
        return bool(self.run["config"] and self.run["config"].get("oracle"))

    @property
    def num_test(self) -> int | None:
        """Val images, from the predictions file (None without one)."""
        return len(self.run["predictions"]["labels"]) if self.run["predictions"] else None

    @property
    def test_sizes(self) -> dict:
        """{test set: images} from the predictions file (val only for runs made before it said)."""
        pred = self.run["predictions"] or {}
        return pred.get("test_images") or ({"val": self.num_test} if self.num_test else {})

    def figure(self, fig, name: str, caption: str) -> str:
        """Write ``fig`` as ``name``.png/.pdf (text raised to the readable size) and return its
        Markdown: the image, then "**Figure N.** caption"."""
        readable(fig)
        with atomic_path(self.out / f"{name}.png") as tmp:
            fig.savefig(tmp, dpi=130, format="png")
        with atomic_path(self.out / f"{name}.pdf") as tmp:
            fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})  # same bytes every run
        self.written.append(name)
        return f"![{name}]({name}.png)\n\n**{tr('figure', self.lang, n=len(self.written))}** {caption}"


def _summary(c: Context):
    classes = (c.run["predictions"] or {}).get("classnames")
    sentences = summary_sentences(c.recs, c.oracle_records, c.oracle, len(classes) if classes else None,
                                  c.num_test, c.lang)
    return "\n".join(f"- {s}" for s in sentences) or tr("no_results", c.lang)


def _groups(records) -> tuple[list, list]:
    """(cached-feature methods, fine-tuning methods and their companions) present in records."""
    present = {r["method"] for r in records}
    tuned = {n for m in list_methods() if get_method(m).needs_encoder for n in (m, *get_method(m).companions)}
    return sorted(present - tuned), sorted(present & tuned)


def _accuracy(c: Context):
    cached, tuned = _groups(c.recs)
    parts = [c.figure(plot_accuracy_vs_shots(c.recs, cached, tr("t_cached", c.lang)), "accuracy_vs_shots",
                      caption_accuracy(c.recs, cached, c.test_sizes, c.lang))]
    if tuned:
        parts.append(c.figure(plot_accuracy_vs_shots(c.recs, tuned, tr("t_tuned", c.lang)),
                              "accuracy_vs_shots_finetuning", caption_accuracy(c.recs, tuned, c.test_sizes, c.lang)))
    return "\n\n".join(parts)


def _robustness(c: Context):
    if len({r["eval_set"] for r in c.recs}) < 2 or not mixing_paths(c.recs):
        return None
    shots = sweep_shots(c.recs)
    return c.figure(plot_id_vs_ood(c.recs, shots), "id_vs_ood", caption_id_vs_ood(c.recs, shots, c.lang))


def _tip_grid(c: Context):
    grids = c.run["grids"]
    if not grids:
        return None
    g = max(grids, key=lambda g: g["shots"])
    key = "how_oracle" if c.oracle else "how_honest" if g["tuned_on"] != "default" else "how_default"
    return c.figure(plot_grid(g), "tip_adapter_grid", caption_grid(g, grids, tr(key, c.lang), c.lang))


def _tip_f(c: Context):
    if not any(r["method"] in with_report_role("training") and (r.get("extra") or {}).get("history") for r in c.recs):
        return None
    return c.figure(plot_training_curves(c.recs), "tip_adapter_f_training", caption_training(c.recs, c.lang))


def _wise(c: Context):
    paths = method_order(mixing_paths(c.recs))
    return "\n\n".join(c.figure(plot_wise_curve(c.recs, m), f"path_{m.replace('-', '_').replace('+', 'p')}",
                                caption_wise_path(c.recs, m, c.lang)) for m in paths) or None


def _costs(c: Context):
    if not any("trainable_params" in (r.get("extra") or {}) for r in c.recs):
        return None
    return c.figure(plot_strategies(c.recs), "finetuning_costs", caption_costs(c.recs, c.lang))


def _examples(c: Context):
    pred = c.run["predictions"]
    if not pred or len(pred["predictions"]) < 2:
        return None
    adapted = best_adapted(pred)
    return c.figure(plot_examples(pred, adapted), "examples", caption_examples(pred, adapted, c.lang))


def _analysis(c: Context):
    from fewshot.report.analysis_report import analysis_section  # its per-class gain supersedes class_changes

    return analysis_section(c.run, c.out, figure=c.figure, lang=c.lang)


def _merging(c: Context):
    from fewshot.report.merge_tables import merging_section

    return merging_section(c)


# (name, heading key, builder, in the default report); report order
SECTIONS = [
    ("summary", "h_summary", _summary, True),
    ("setup", "h_setup", lambda c: provenance(c.recs, c.run["config"], c.lang), True),
    ("leaderboard", "h_leaderboard", lambda c: leaderboard(c.recs, c.oracle_records, c.lang), True),
    ("tables", "h_tables", lambda c: shift_tables(c.recs, c.lang) or None, True),
    ("accuracy", "h_accuracy", _accuracy, True),
    ("robustness", "h_robustness", _robustness, True),
    ("grid", "h_tip", _tip_grid, True),  # the methods whose report roles say "grid" (Tip-Adapter)
    ("training", "h_tip_f", _tip_f, True),  # ... "training" (Tip-Adapter-F)
    ("paths", "h_wise", _wise, True),  # every WiSE-FT mixing path
    ("costs", "h_costs", _costs, True),
    ("examples", "h_examples", _examples, True),
    ("analysis", "h_analysis", _analysis, True),
    ("merging", "h_merging", _merging, False),
    ("published", "h_published", lambda c: reference_section(c.recs, c.lang), True),
]
