"""Narrative: the sentences of the report and of the notebooks' "what you should see", each
computed from the results files, so that they stay true on ImageNet and on the mini-world.

Every function takes records (:mod:`fewshot.results`) and returns Markdown text; none of them
holds a number of its own.
"""
from __future__ import annotations

from collections import defaultdict
from statistics import mean

from fewshot.results import summarize

__all__ = ["summary_sentences", "method_sentence", "mixing_key", "sweet_spots", "honesty_gap"]

_HOW = {"loo-train": "by leave-one-out on the shots", "cv-train": "by cross-validation on the shots",
        "default": "at published defaults", "none": "with nothing to tune",
        "test-oracle": "on the test set (oracle)"}


def _table(records, eval_set="val"):
    return {(r["method"], r["shots"]): r for r in summarize(records) if r["eval_set"] == eval_set}


def _zero_shot(rows) -> float | None:
    return rows[("zero-shot", 0)]["mean"] if ("zero-shot", 0) in rows else None


def mixing_key(hp: dict):
    """The mixing coefficient of a sweep point (λ of the adapters and heads, α of encoders)."""
    return hp.get("lambda", hp.get("alpha"))


def method_sentence(records, method: str, eval_set: str = "val") -> str:
    """One sentence on ``method``: its accuracy at its fewest and most shots, the gain over
    zero-shot, and how its hyperparameters were chosen."""
    rows = _table(records, eval_set)
    zs = _zero_shot(rows)
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
    h, o = _table(honest), _table(oracle)
    gaps = defaultdict(list)
    for (m, k), r in h.items():
        if k > 0 and (m, k) in o:
            gaps[m].append(o[(m, k)]["mean"] - r["mean"])
    return {m: mean(v) for m, v in gaps.items()}


def summary_sentences(records, oracle_records=None, oracle_run: bool = False,
                      num_classes: int | None = None) -> list[str]:
    """The report's summary, sentence by sentence. With ``num_classes``, a zero-shot accuracy
    under twice the chance level (100/C %) is called out first: every comparison is then noise."""
    rows = _table(records)
    zs = _zero_shot(rows)
    sets = sorted({r["eval_set"] for r in records} - {"val"})
    out = []
    if oracle_run:
        out.append("**This is an oracle run**: hyperparameters were chosen on the test set, as the "
                   "coursework notebook and the official scripts do; its numbers are optimistic.")
    if zs is not None and num_classes and zs < 2 * 100 / num_classes:
        out.append(f"**Zero-shot accuracy is at chance** ({zs:.2f} % against 1/{num_classes} = "
                   f"{100 / num_classes:.2f} %): the backbone does not recognise these classes "
                   f"(random or wrong weights, or class names that do not match the folders), so "
                   f"every difference below is noise.")
    if zs is not None:
        shifts = _table(records, sets[0]) if sets else {}
        extra = f" ({_zero_shot(shifts):.2f} % on {sets[0]})" if sets and _zero_shot(shifts) is not None else ""
        out.append(f"Zero-shot CLIP reaches {zs:.2f} % top-1 on val{extra}, with no training image.")
    shots = sorted({k for (_, k) in rows if k > 0})
    for k in ([shots[0], shots[-1]] if len(shots) > 1 else shots):
        cands = {m: r["mean"] for (m, kk), r in rows.items() if kk == k}
        if not cands:
            continue
        best = max(cands, key=cands.get)
        gain = f", {cands[best] - zs:+.2f} points over zero-shot" if zs is not None else ""
        worse = sorted(m for m, v in cands.items() if zs is not None and v < zs)
        out.append(f"With {k} shot{'s' if k > 1 else ''} per class the best method is **{best}** "
                   f"({cands[best]:.2f} %{gain})" + (f"; below zero-shot: {', '.join(worse)}" if worse else "") + ".")
    if sets and shots:
        k = shots[-1]
        shift = sets[0]
        srows = _table(records, shift)
        szs = _zero_shot(srows)
        lose = sorted(m for (m, kk), r in rows.items() if kk == k and (m, k) in srows and zs is not None
                      and szs is not None and r["mean"] > zs and srows[(m, k)]["mean"] < szs)
        if lose:
            verbs = ("beats", "falls") if len(lose) == 1 else ("beat", "fall")
            out.append(f"Under distribution shift the picture changes: at {k} shots, "
                       f"{', '.join(lose)} {verbs[0]} zero-shot on val but {verbs[1]} below it on {shift}.")
    for method, k, best, acc, lo, hi in sweet_spots(records, sets):
        if acc - max(lo, hi) >= 0.01:  # a margin the two decimals shown can see
            out.append(f"Along the {method} path ({k} shots), the mix {best} gives the best mean of "
                       f"val and the shifted sets ({acc:.2f} %), above both ends ({lo:.2f} % and "
                       f"{hi:.2f} %; {acc - max(lo, hi):+.2f} points over the better one).")
    if oracle_records:
        gap = honesty_gap(records, oracle_records)
        if gap:
            avg = mean(gap.values())
            out.append(f"Tuning on the test set (the oracle run) adds {avg:+.2f} points on average "
                       f"over the methods both runs share: the cost of honesty.")
    return out
