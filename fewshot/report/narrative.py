"""Narrative: the sentences of the report and of the notebooks' "what you should see", each
computed from the results files, so that they stay true on ImageNet and on the mini-world.

Every function takes records (:mod:`fewshot.protocol.results`) and returns Markdown text; none of them
holds a number of its own.
"""
from __future__ import annotations

import math
from collections import defaultdict
from statistics import mean

from fewshot.report.figures import few_shot_records
from fewshot.report.i18n import join, tr
from fewshot.protocol.results import summary_cells, summarize
from fewshot.methods import baseline_method

__all__ = ["summary_sentences", "method_sentence", "mixing_key", "sweet_spots", "honesty_gap",
           "ranking", "rank_sentence", "sampling_error", "shots_phrase", "cell", "table_rows",
           "zero_shot_top1"]

_HOW = {"loo-train": "by leave-one-out on the shots", "cv-train": "by cross-validation on the shots",
        "default": "at published defaults", "none": "with nothing to tune",
        "unlabeled-train": "on the training images, labels unused",
        "test-unlabeled": "on the test images, labels unused (transductive)",
        "test-oracle": "on the test set (oracle)"}


def table_rows(records, eval_set="val") -> dict:
    """{(method, shots): summary row} of the few-shot records on ``eval_set``."""
    return summary_cells(summarize(few_shot_records(records)), eval_set)


def zero_shot_top1(rows) -> float | None:
    """Zero-shot's mean top-1 in ``rows`` (of :func:`table_rows`), or None."""
    key = (baseline_method(), 0)
    return rows[key]["mean"] if key in rows else None


def mixing_key(hp: dict):
    """The mixing coefficient of a sweep point (λ of the adapters and heads, α of encoders)."""
    return hp.get("lambda", hp.get("alpha"))


def method_sentence(records, method: str, eval_set: str = "val") -> str:
    """One sentence on ``method``: its accuracy at its fewest and most shots, the gain over
    zero-shot, and how its hyperparameters were chosen."""
    rows = table_rows(records, eval_set)
    zs = zero_shot_top1(rows)
    mine = sorted((k, r) for (m, k), r in rows.items() if m == method and k > 0)
    if not mine:
        return f"There are no {method} results on {eval_set} yet."
    parts = []
    for k, r in (mine[0], mine[-1]) if len(mine) > 1 else (mine[0],):
        gain = f" ({r['mean'] - zs:+.2f} over zero-shot)" if zs is not None else ""
        parts.append(f"{r['mean']:.2f} % at {k} shot{'s' if k > 1 else ''}{gain}")
    tuned = sorted({t for _, r in mine for t in r["tuned_on"].split("/")})
    how = ", ".join(_HOW.get(t, t) for t in tuned)
    return f"On {eval_set}, {method} reaches " + " and ".join(parts) + f"; chosen {how}."


def sweet_spots(records, shifted: list[str]) -> list[tuple[str, int, float, float, float, float]]:
    """For every method with a mixing sweep: (method, shots, best coefficient, its mean of val and
    the shifted sets, and the same mean at the two ends), at the method's most shots."""
    curves = defaultdict(lambda: defaultdict(list))  # (method, shots) -> coefficient -> accs
    for r in records:
        if r["role"] == "sweep" and r["eval_set"] in ["val", *shifted]:
            curves[(r["method"], r["shots"])][mixing_key(r["hyperparameters"])].append(r["metrics"]["top1"])
    out = []
    for method in sorted({m for m, _ in curves}):
        k = max(s for m, s in curves if m == method)
        c = {a: mean(v) for a, v in curves[(method, k)].items()}
        lo, hi = min(c), max(c)
        best = max(c, key=lambda a: (c[a], -abs(a - 0.5)))
        out.append((method, k, best, c[best], c[lo], c[hi]))
    return out


def honesty_gap(honest, oracle) -> dict:
    """{method: mean over shots of (oracle − honest) top-1 on val} for methods in both runs."""
    h, o = table_rows(honest), table_rows(oracle)
    gaps = defaultdict(list)
    for (m, k), r in h.items():
        if k > 0 and (m, k) in o:
            gaps[m].append(o[(m, k)]["mean"] - r["mean"])
    return {m: mean(v) for m, v in gaps.items()}


def cell(row: dict) -> str:
    """``mean ± std`` of a summary row (the mean alone for one seed), as the tables print it."""
    return f"{row['mean']:.2f}" + (f" ± {row['std']:.2f}" if row["n"] > 1 else "")


def shots_phrase(k: int, lang: str = "en") -> str:
    """"1 shot", "16 shots" (in ``lang``)."""
    return tr("k_shot" if k == 1 else "k_shots", lang, k=k)


def sampling_error(top1: float, num_test: int | None) -> float:
    """The binomial standard error (points) of a top-1 of ``top1`` % on ``num_test`` images
    (0 when the count is unknown)."""
    if not num_test:
        return 0.0
    p = min(max(top1 / 100, 0.0), 1.0)
    return 100 * math.sqrt(p * (1 - p) / num_test)


def ranking(rows: dict, shots: int, num_test: int | None = None) -> dict | None:
    """The leader at ``shots`` (rows: {(method, shots): summary row}) and every method tied with
    it: a method is tied when the leader's margin over it is at most the larger of the two
    seeds' stds and the test set's sampling error. Returns {"leader", "tied", "runner_up",
    "se", "one_seed"} (methods as (name, row)) or None without rows."""
    cands = sorted(((m, r) for (m, k), r in rows.items() if k == shots), key=lambda mr: -mr[1]["mean"])
    if not cands:
        return None
    (lead, lr), rest = cands[0], cands[1:]
    se = sampling_error(lr["mean"], num_test)
    tied = [(m, r) for m, r in rest if lr["mean"] - r["mean"] <= max(lr["std"], r["std"], se)]
    return {"leader": (lead, lr), "tied": tied, "runner_up": rest[0] if rest else None, "se": se,
            "one_seed": lr["n"] < 2 or bool(rest and rest[0][1]["n"] < 2)}


def _noise(rank, num_test, lang) -> str:
    if rank["one_seed"]:
        return tr("noise_se", lang, se=f"{rank['se']:.2f}", n=num_test) if rank["se"] > 0 else tr("noise_none", lang)
    if rank["se"] > 0:
        return tr("noise_std_se", lang, se=f"{rank['se']:.2f}", n=num_test)
    return tr("noise_std", lang)


def rank_sentence(rows, k, zs, num_test=None, lang="en") -> str | None:
    """The ranking at ``k`` shots in one sentence: the best method, or the methods tied with the
    leader (rows: {(method, shots): summary row}; ``zs``: zero-shot top-1 or None)."""
    rank = ranking(rows, k, num_test)
    if rank is None or rank["runner_up"] is None:
        return None
    (m, r), kp = rank["leader"], shots_phrase(k, lang)
    if rank["tied"]:
        names = [n for n, _ in rank["tied"]]
        vals = " vs ".join(cell(x) + " %" for x in [r] + [x for _, x in rank["tied"]][:4])
        text = tr("tied", lang, k=kp, m=m, others=join(names, lang), vals=vals,
                  noise=_noise(rank, num_test, lang))
    else:
        m2, r2 = rank["runner_up"]
        gain = tr("gain", lang, d=f"{r['mean'] - zs:+.2f}") if zs is not None else ""
        text = tr("best", lang, k=kp, m=m, a=cell(r) + " %", gain=gain, m2=m2, b=cell(r2) + " %",
                  d=f"{r['mean'] - r2['mean']:.2f}", noise=_noise(rank, num_test, lang))
    if rank["one_seed"]:
        text = text[:-1] + tr("one_seed", lang) + text[-1]
    below = sorted(n for (n, kk), x in rows.items() if kk == k and zs is not None
                   and x["mean"] + max(x["std"], sampling_error(x["mean"], num_test)) < zs)
    return text + (tr("below_zs", lang, ms=join(below, lang, limit=8)) if below else "")


def _shift_sentence(records, rows, zs, k, lang, num_test=None) -> str | None:
    """Methods above zero-shot on val and below it on the first shift, each by more than the seeds'
    std plus the sampling error of ``num_test`` images (a tenth of a point is no change)."""
    sets = [s for s in sorted({r["eval_set"] for r in few_shot_records(records)}) if s != "val"]
    if not sets or zs is None:
        return None
    shift, srows = sets[0], table_rows(records, sets[0])
    szs = zero_shot_top1(srows)

    def beyond(r, ref):
        return r["std"] + sampling_error(ref, num_test)
    lose = sorted(m for (m, kk), r in rows.items() if kk == k and (m, k) in srows and szs is not None
                  and r["mean"] - beyond(r, zs) > zs and srows[(m, k)]["mean"] + beyond(srows[(m, k)], szs) < szs)
    if not lose:
        return None
    verbs = tr("shift_verbs", lang).split("|")
    beat, fall = (verbs[0], verbs[1]) if len(lose) == 1 else (verbs[2], verbs[3])
    return tr("shift", lang, k=shots_phrase(k, lang), ms=join(lose, lang, limit=8), beat=beat,
              fall=fall, s=shift)


def summary_sentences(records, oracle_records=None, oracle_run: bool = False,
                      num_classes: int | None = None, num_test: int | None = None,
                      lang: str = "en") -> list[str]:
    """The report's summary, sentence by sentence, from the few-shot records only. With
    ``num_classes``, a zero-shot accuracy under twice the chance level (100/C %) is called out
    first. A method is called best at a shot count only when it beats the runner-up by more than
    the seeds' std (and, given ``num_test`` val images, the sampling error); otherwise the tie is
    named. Nothing chosen on the test set is reported here (see the WiSE-FT paths' captions)."""
    records = few_shot_records(records)
    rows = table_rows(records)
    zs = zero_shot_top1(rows)
    sets = sorted({r["eval_set"] for r in records} - {"val"})
    out = [tr("oracle_run", lang)] if oracle_run else []
    if zs is not None and num_classes and zs < 2 * 100 / num_classes:
        out.append(tr("chance", lang, zs=f"{zs:.2f}", c=num_classes, chance=f"{100 / num_classes:.2f}"))
    if zs is not None:
        szs = zero_shot_top1(table_rows(records, sets[0])) if sets else None
        extra = tr("zero_shot_extra", lang, v=f"{szs:.2f}", s=sets[0]) if szs is not None else ""
        out.append(tr("zero_shot", lang, zs=f"{zs:.2f}", extra=extra))
    shots = sorted({k for (_, k) in rows if k > 0})
    picks = sorted({shots[0], shots[-1]} | ({5} & set(shots))) if shots else []
    out += [s for s in (rank_sentence(rows, k, zs, num_test, lang) for k in picks) if s]
    if shots:
        out += [s for s in [_shift_sentence(records, rows, zs, shots[-1], lang, num_test)] if s]
    if oracle_records:
        gap = honesty_gap(records, oracle_records)
        if gap:
            out.append(tr("honesty", lang, d=f"{mean(gap.values()):+.2f}"))
    return out
