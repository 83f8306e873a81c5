"""The report's prose in each language it is written in: string templates, one per sentence.

Numbers and method names are filled in by the caller (:mod:`fewshot.narrative`,
:mod:`fewshot.captions`, :mod:`fewshot.report`), so every language states the same figures.
"""
from __future__ import annotations

from fewshot.errors import ConfigError

__all__ = ["tr", "join", "list_languages", "EN", "ZH"]

EN = {
    # summary
    "oracle_run": "**This is an oracle run**: hyperparameters were chosen on the test set, as the "
                  "coursework notebook and the official scripts do; its numbers are optimistic.",
    "chance": "**Zero-shot accuracy is at chance** ({zs} % against 1/{c} = {chance} %): the backbone "
              "does not recognise these classes (random or wrong weights, or class names that do not "
              "match the folders), so every difference below is noise.",
    "zero_shot": "Zero-shot CLIP reaches {zs} % top-1 on val{extra}, with no training image.",
    "zero_shot_extra": " ({v} % on {s})",
    "best": "With {k} per class the best method is **{m}** ({a}{gain}), ahead of {m2} ({b}) "
            "by {d} points, more than {noise}.",
    "tied": "With {k} per class no single method is best: **{m}** tied with {others} "
            "({vals}); the differences are within {noise}.",
    "gain": ", {d} points over zero-shot",
    "noise_std": "the seeds' spread (std)",
    "noise_std_se": "the seeds' spread (std) and the test set's sampling error (±{se} points for {n} images)",
    "one_seed": " (on one seed only: the seeds' spread is unknown)",
    "noise_se": "the test set's sampling error (±{se} points for {n} images)",
    "noise_none": "nothing measured: no second seed, no test-set size",
    "below_zs": " Below zero-shot: {ms}.",
    "shift": "Under distribution shift the picture changes: at {k}, {ms} {beat} zero-shot on "
             "val but {fall} below it on {s}.",
    "shift_verbs": "beats|falls|beat|fall",
    "honesty": "Tuning on the test set (the oracle run) adds {d} points on average over the methods "
               "both runs share: the cost of honesty.",
    "k_shot": "{k} shot",
    "k_shots": "{k} shots",
    # report frame
    "title": "Few-shot CLIP report",
    "intro": "Built by `python -m fewshot report` from `{run}` alone; the same report as one file "
             "to hand in: [report.html](report.html). Sections: {sections}.",
    "h_summary": "Summary",
    "h_setup": "Setup",
    "h_leaderboard": "Leaderboard",
    "h_tables": "Top-1 on the shifted test sets",
    "h_accuracy": "Accuracy against shots",
    "h_robustness": "Robustness: in- vs out-of-distribution",
    "h_tip": "Tip-Adapter hyperparameters",
    "h_tip_f": "Tip-Adapter-F training",
    "h_wise": "WiSE-FT paths",
    "h_costs": "What fine-tuning costs",
    "h_examples": "Qualitative examples",
    "h_merging": "Merging several fine-tuned encoders",
    "h_published": "Published numbers (for comparison)",
    "missing": "This run holds no results for this section (its step has not run).",
    "t_cached": "methods on cached features",
    "t_tuned": "fine-tuning the encoders and prompts",
    "how_oracle": "on the test set itself (oracle run: the coursework's protocol)",
    "how_honest": "without test data (leave-one-out on the shots)",
    "how_default": "from the published defaults",
    "merge_intro": "A study of its own, on the merge tasks' test sets (not shifts of val): one "
                   "expert encoder per task, merged by each rule; λ chosen on the held-out shots of "
                   "every task (oracle rows: on test). Top-1 (%) on each task's test set.",
    "merge_soup": "A soup of one task's experts from different seeds, beside WiSE-FT (α = 0.5) of "
                  "one of them:",
    "cap_cos": "Cosine similarity between the task vectors (fine-tuned minus pre-trained weights) "
               "of the experts: {parts}.",
    "cap_cos_part": "{s} fine-tuning: mean {mean} and largest {max} between two tasks",
    "cap_lambda": "Mean top-1 over the tasks against the merge coefficient λ, on the held-out "
                  "shots (which choose λ) and on test: {parts}; a λ chosen on test is shown for "
                  "illustration only.",
    "cap_lambda_part": "{m}: held-out shots pick λ = {held} ({vh} % on test), test would pick "
                       "{test} ({vt} %)",
    # captions
    "figure": "Figure {n}.",
    "cap_accuracy": "Top-1 (%) against shots per class on {sets} (mean over seeds; bars: std) for "
                    "{n} methods; dashed: zero-shot, which uses no shot.",
    "cap_on_set": "On {s}: ",
    "cap_grid": "Tip-Adapter's top-1 over the searched grid (α from {a0} to {a1}, β from {b0} to "
                "{b1}) at {k}, seed {seed}: × is the point chosen {how}, ○ each panel's optimum. "
                "On test, the chosen point gives {chosen} % against the test optimum's {best} % "
                "({d} points left on the table without looking at test).",
    "cap_grid_edge": "**The test optimum lies on the edge of the searched range** ({where}) at "
                     "{n} of {total} shot counts ({ks} shots): the range is too small to show "
                     "where the accuracy peaks.",
    "cap_training": "Tip-Adapter-F's training loss and accuracy on the augmented views per epoch "
                    "(seed {seed}), one line per shot count. Last epoch: {parts}.",
    "cap_training_over": " At {ks} the training accuracy ends more than 5 points above val: the "
                         "adapter fits its shots better than it generalises.",
    "cap_training_ok": " At no shot count does the training accuracy end more than 5 points above "
                       "val (the views are augmented, so this is no sign of overfitting).",
    "cap_training_part": "{k}: {train} % on the shots, {val} % on val",
    "cap_path": "Top-1 (%) along the {m} path at {k} on {sets} (mean over seeds), from the starting "
                "model (0) to the fine-tuned one (1); dotted: the coefficient chosen on the shots "
                "per seed ({chosen}), which gives {got}.",
    "cap_path_inside": "Chosen on test, for illustration only: the mix {best} gives the best mean "
                       "over the sets ({v} %), {d} points over the better end, more than the "
                       "seeds' spread (±{s}).",
    "cap_path_flat": "Chosen on test, for illustration only: no mix beats both ends by more than "
                     "the seeds' spread (best mean {v} % at {best}; ends {lo} % and {hi} %; "
                     "{d} points against ±{s}).",
    "cap_path_one": "Chosen on test, for illustration only, on one seed (its spread unknown): "
                    "the best mean over the sets is {v} % at {best} ({d} points against the "
                    "better end; ends {lo} % and {hi} %).",
    "cap_idood": "Val top-1 (in distribution) against the mean top-1 on {sets} (out of "
                 "distribution) at {k}: lines are WiSE-FT paths from 0 to 1, points the other "
                 "methods, the star zero-shot.",
    "cap_idood_both": "Against zero-shot ({zx} %, {zy} %), {n} of {total} methods gain on both "
                      "axes; the best out of distribution is {m} ({x} %, {y} %).",
    "cap_costs": "Trainable parameters and seconds per fine-tuning run for each strategy, with "
                 "its val top-1: {parts}.",
    "cap_costs_part": "{m} trains {p} parameters in {t} s and reaches {a} %",
    "cap_examples": "Val images with the zero-shot and {m} predictions ({k}, seed {seed}; green: "
                    "right, red: wrong), those where the two disagree first. Over all {n} val "
                    "images, {m} fixes {fixed} zero-shot errors and breaks {broken} correct "
                    "answers ({net} points).",
    "cap_classes": "Per-class top-1 change of {m} against zero-shot, the ten classes that lose and "
                   "the ten that gain most: {gain} classes gain, {lose} lose, {same} are unchanged "
                   "(median change {med} points).",
    "no_results": "No per-shot results in this run; see the sections below.",
    "and": " and ",
    "list_sep": ", ",
    "more": "{n} more",
}

ZH: dict = {}

_LANGS = {"en": EN, "zh": ZH}


def list_languages() -> list[str]:
    """The languages the report can be written in."""
    return list(_LANGS)


def tr(key: str, lang: str = "en", **fields) -> str:
    """The sentence ``key`` in ``lang``, its ``{fields}`` filled in (English where a language
    lacks the key); an unknown language is a :class:`ConfigError` listing the known ones."""
    if lang not in _LANGS:
        raise ConfigError(f"unknown report language {lang!r}; known: {', '.join(_LANGS)}")
    template = _LANGS[lang].get(key, EN[key])
    return template.format(**fields)


def join(items: list[str], lang: str = "en", limit: int = 4) -> str:
    """``a, b and c`` (at most ``limit`` items, then "and N more")."""
    items = list(items)
    if len(items) > limit:
        items = items[:limit] + [tr("more", lang, n=len(items) - limit)]
    if len(items) <= 1:
        return "".join(items)
    return tr("list_sep", lang).join(items[:-1]) + tr("and", lang) + items[-1]
