"""Captions of the report's figures: what each figure shows and the conclusion its numbers
support, computed from the same records the figure draws (never a canned sentence).

Each function returns one paragraph of Markdown in ``lang`` (templates in :mod:`fewshot.report.i18n`).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from fewshot.report.figures import eval_sets_of, few_shot_records, grid_optimum
from fewshot.report.i18n import join, tr
from fewshot.report.narrative import (cell, mixing_key, rank_sentence, shots_phrase, table_rows,
                               zero_shot_top1)
from fewshot.protocol.results import summarize
from fewshot.methods import baseline_method, with_report_role

__all__ = ["caption_accuracy", "caption_grid", "caption_training", "caption_wise_path",
           "caption_id_vs_ood", "caption_costs", "caption_examples", "caption_class_changes",
           "grid_edges"]


def caption_accuracy(records, methods, num_test=None, lang="en") -> str:
    """The accuracy-against-shots figure: its sets and methods, then the ranking at most shots
    on every set it draws; ``num_test``: val's image count, or {test set: images} (a lead within
    a set's sampling error is a tie)."""
    sizes = num_test if isinstance(num_test, dict) else {"val": num_test}
    records = few_shot_records(records)
    keep = set(methods) | {baseline_method()}
    sub = [r for r in records if r["method"] in keep]
    sets = eval_sets_of(sub)
    text = tr("cap_accuracy", lang, sets=join(sets, lang, limit=9), n=len({r["method"] for r in sub}))
    for s in sets:
        rows = table_rows(sub, s)
        shots = sorted({k for _, k in rows if k > 0})
        if shots:
            sentence = rank_sentence(rows, shots[-1], zero_shot_top1(rows), sizes.get(s), lang)
            if sentence:
                text += " " + tr("cap_on_set", lang, s=s) + (sentence[0].lower() + sentence[1:] if lang == "en" else sentence)
    return text


def grid_edges(grids, lang: str = "en") -> list[tuple[int, int, list[str]]]:
    """(shots, seed, ["largest α", ...]) for every grid whose test optimum lies on an edge of the
    searched range (the largest or smallest α or β tried)."""
    out = []
    for g in grids:
        if not g.get("test"):
            continue
        a, b, _ = grid_optimum(g)
        edges = [tr("edge_largest" if v == grid[-1] else "edge_smallest", lang, p=name)
                 for name, v, grid in (("α", a, g["alphas"]), ("β", b, g["betas"]))
                 if v in (grid[0], grid[-1])]
        if edges:
            out.append((g["shots"], g["seed"], edges))
    return out


def caption_grid(grid: dict, grids: list, how: str, lang="en") -> str:
    """The Tip-Adapter grid of ``grid`` (one shot count), with the test accuracy at the chosen
    point against the test optimum, and every shot count whose test optimum is on an edge."""
    alphas, betas = grid["alphas"], grid["betas"]
    a, b, best = grid_optimum(grid)
    ai = int(np.argmin(np.abs(np.array(alphas) - grid["chosen"][0])))
    bi = int(np.argmin(np.abs(np.array(betas) - grid["chosen"][1])))
    at_chosen = 100 * grid["test"][bi][ai]
    text = tr("cap_grid", lang, k=shots_phrase(grid["shots"], lang), seed=grid["seed"],
              a0=f"{alphas[0]:.3g}", a1=f"{alphas[-1]:.3g}", b0=f"{betas[0]:.3g}", b1=f"{betas[-1]:.3g}",
              how=how, chosen=f"{at_chosen:.2f}", best=f"{best:.2f}", d=f"{best - at_chosen:.2f}")
    edges = grid_edges(grids, lang)
    if edges:
        where = sorted({e for _, _, es in edges for e in es})
        ks = sorted({k for k, _, _ in edges})
        total = len({g["shots"] for g in grids if g.get("test")})
        text += " " + tr("cap_grid_edge", lang, where=join(where, lang),
                         ks=", ".join(map(str, ks)), n=len(ks), total=total)
    return text


def caption_training(records, lang="en") -> str:
    """The training curves' caption (the methods whose ``report`` says "training": Tip-Adapter-F),
    with the last epoch's training accuracy against val top-1."""
    runs = [r for r in records if r["method"] in with_report_role("training") and r["eval_set"] == "val"
            and r["role"] == "final" and (r.get("extra") or {}).get("history")]
    seed = min(r["seed"] for r in runs)
    parts, over = [], []
    for r in sorted((r for r in runs if r["seed"] == seed), key=lambda r: r["shots"]):
        train = 100 * r["extra"]["history"][-1]["train_acc"]
        parts.append(tr("cap_training_part", lang, k=shots_phrase(r["shots"], lang),
                        train=f"{train:.1f}", val=f"{r['metrics']['top1']:.2f}"))
        if train - r["metrics"]["top1"] > 5:
            over.append(shots_phrase(r["shots"], lang))
    verdict = tr("cap_training_over", lang, ks=join(over, lang, 9)) if over else tr("cap_training_ok", lang)
    return tr("cap_training", lang, seed=seed, parts="; ".join(parts)) + verdict


def _path_stats(records, method, shots):
    """{eval_set: {coef: [per-seed top-1]}} of one sweep at ``shots``."""
    out = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["role"] == "sweep" and r["method"] == method and r["shots"] == shots:
            out[r["eval_set"]][mixing_key(r["hyperparameters"])].append(r["metrics"]["top1"])
    return out


def caption_wise_path(records, method: str, lang="en") -> str:
    """One WiSE-FT path: the coefficient chosen on the shots and what it gives, then the
    test-optimal mix of val and the shifts, marked as chosen on test and compared with the ends
    against the seeds' spread."""
    shots = max(r["shots"] for r in records if r["method"] == method and r["role"] == "sweep")
    paths = _path_stats(records, method, shots)
    sets = [s for s in eval_sets_of(records) if s in paths]
    finals = [r for r in records if r["method"] == method and r["role"] == "final" and r["shots"] == shots]
    chosen = sorted({mixing_key(r["hyperparameters"]) for r in finals if r["eval_set"] == "val"})
    got = {s: cell(row) for row in summarize(finals) for s in [row["eval_set"]]}
    text = tr("cap_path", lang, m=method, k=shots_phrase(shots, lang), sets=join(sets, lang, limit=9),
              chosen=", ".join(f"{c:g}" for c in chosen),
              got="; ".join(f"{s} {got[s]} %" for s in sets if s in got))
    coefs = sorted(set.intersection(*[set(paths[s]) for s in sets]))
    seeds = min(len(paths[s][c]) for s in sets for c in coefs)
    per_seed = {c: np.mean([paths[s][c][:seeds] for s in sets], axis=0) for c in coefs}  # [seeds]
    avg = {c: float(v.mean()) for c, v in per_seed.items()}
    best = max(coefs, key=lambda c: avg[c])
    ends = max(avg[coefs[0]], avg[coefs[-1]])
    spread = max(float(np.std(per_seed[c], ddof=1)) if seeds > 1 else 0.0 for c in (best, coefs[0], coefs[-1]))
    key = "cap_path_inside" if best not in (coefs[0], coefs[-1]) and avg[best] - ends > spread else "cap_path_flat"
    text += " " + tr(key if seeds > 1 else "cap_path_one", lang, best=f"{best:g}", v=f"{avg[best]:.2f}", d=f"{avg[best] - ends:+.2f}",
                     s=f"{spread:.2f}", lo=f"{avg[coefs[0]]:.2f}", hi=f"{avg[coefs[-1]]:.2f}")
    return text


def caption_id_vs_ood(records, shots: int, lang="en") -> str:
    """The in- vs out-of-distribution figure: the methods that beat zero-shot on both axes."""
    records = few_shot_records(records)
    sets = eval_sets_of(records)[1:]
    finals = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["role"] == "final" and r["shots"] in (shots, 0):
            finals[r["method"]][r["eval_set"]].append(r["metrics"]["top1"])
    pts = {m: (np.mean(c["val"]), np.mean([np.mean(c[s]) for s in sets])) for m, c in finals.items()
           if "val" in c and all(s in c for s in sets)}
    zs = pts.pop(baseline_method(), None)
    text = tr("cap_idood", lang, k=shots_phrase(shots, lang), sets=join(sets, lang, limit=9))
    if zs and pts:
        both = sorted(m for m, (x, y) in pts.items() if x > zs[0] and y > zs[1])
        best_ood = max(pts, key=lambda m: pts[m][1])
        text += " " + tr("cap_idood_both", lang, zx=f"{zs[0]:.2f}", zy=f"{zs[1]:.2f}", n=len(both),
                         total=len(pts), m=best_ood, x=f"{pts[best_ood][0]:.2f}", y=f"{pts[best_ood][1]:.2f}")
    return text


def caption_costs(records, lang="en") -> str:
    """What each fine-tuning strategy trains and how long it takes, beside its val top-1."""
    runs = defaultdict(list)
    for r in records:
        extra = r.get("extra") or {}
        if r["role"] == "final" and r["eval_set"] == "val" and "trainable_params" in extra:
            runs[r["method"]].append((extra["trainable_params"], extra["train_seconds"], r["metrics"]["top1"]))
    parts = [tr("cap_costs_part", lang, m=m, p=f"{np.mean([v[0] for v in vs]):,.0f}",
                t=f"{np.mean([v[1] for v in vs]):.1f}", a=f"{np.mean([v[2] for v in vs]):.2f}")
             for m, vs in sorted(runs.items(), key=lambda mv: np.mean([v[0] for v in mv[1]]))]
    return tr("cap_costs", lang, parts="; ".join(parts))


def _changes(pred, adapted):
    labels = np.array(pred["labels"])
    zs = np.array(pred["predictions"][baseline_method()]) == labels
    ad = np.array(pred["predictions"][adapted]) == labels
    return labels, zs, ad


def caption_examples(pred, adapted: str, lang="en") -> str:
    """The example images: how many val images the adapted method fixes and breaks."""
    labels, zs, ad = _changes(pred, adapted)
    return tr("cap_examples", lang, m=adapted, k=shots_phrase(pred["shots"], lang), seed=pred["seed"],
              n=len(labels), fixed=int((ad & ~zs).sum()), broken=int((zs & ~ad).sum()),
              net=f"{100 * (ad.mean() - zs.mean()):+.2f}")


def caption_class_changes(pred, adapted: str, lang="en") -> str:
    """Per-class change against zero-shot: how many classes gain, lose and stay."""
    labels, zs, ad = _changes(pred, adapted)
    delta = np.array([100 * (ad[labels == c].mean() - zs[labels == c].mean()) for c in np.unique(labels)])
    return tr("cap_classes", lang, m=adapted, gain=int((delta > 0).sum()), lose=int((delta < 0).sum()),
              same=int((delta == 0).sum()), med=f"{np.median(delta):+.1f}")
