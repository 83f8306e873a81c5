"""The paragraph beside each analysis figure, computed from the same numbers the figure draws
(:mod:`fewshot.analysis_figures`): what it shows, and what the numbers suggest about why. A claim
is made only where its number is there to support it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fewshot.analysis_figures import class_label
from fewshot.results import summarize

__all__ = ["confusion_text", "feature_text", "explanation_text", "failure_text", "gain_text",
           "coursework_table"]

_REFERENCE = Path(__file__).resolve().parent / "reference.json"


def _n(x: float) -> str:
    return f"{x:.1f}"


def confusion_text(conf: dict, data, method: str, zs_pred) -> str:
    """conf: :func:`fewshot.analysis_figures.confusion_data`; zs_pred [N] zero-shot's top-1."""
    raw, labels = data["classnames"], np.asarray(data["labels"])
    names = [class_label(raw, c) for c in range(len(raw))]
    zs_pred, parts, keys = np.asarray(zs_pred), [], []
    for k, pairs in conf.items():
        errors = int((np.asarray(data["top3"][method][k][0][:, 0]) != labels).sum())
        if not pairs:
            parts.append(f"At {k} shots {method} makes no mistake on val.")
            continue
        p = pairs[0]
        share = 100 * sum(q["total"] for q in pairs) / max(errors, 1)
        parts.append(f"At {k} shot{'s' if k > 1 else ''} the most confused pair is {names[p['a']]} ↔ "
                     f"{names[p['b']]} ({p['a_to_b']} + {p['b_to_a']} val images); the {len(pairs)} "
                     f"pairs shown hold {_n(share)} % of its {errors} mistakes.")
        keys.append({tuple(sorted((q["a"], q["b"]))) for q in pairs})
    twins = sorted({pair for ks in keys for pair in ks if raw[pair[0]] == raw[pair[1]]})
    def mixed(pred, a, b):
        return int(((labels == a) & (pred == b)).sum() + ((labels == b) & (pred == a)).sum())
    for a, b in twins:
        z = mixed(zs_pred, a, b)
        counts = {k: mixed(np.asarray(data["top3"][method][k][0][:, 0]), a, b) for k in conf}
        last = counts[max(counts)]
        parts.append(f"Classes {a} and {b} share the name '{raw[a]}' (a label ambiguity of the "
                     f"dataset): zero-shot, which only has the names, mixes them up {z} times; "
                     f"{method} " + ", ".join(f"{n} times at {k} shot{'s' if k > 1 else ''}" for k, n in counts.items()) + ", "
                     + ("so the images separate what the names cannot." if last < z else
                        "so their images look alike too."))
    lasting = set.intersection(*keys) if len(keys) > 1 else set()
    for a, b in sorted(lasting):
        z = int(((labels == a) & (zs_pred == b)).sum() + ((labels == b) & (zs_pred == a)).sum())
        parts.append(f"{names[a]} ↔ {names[b]} stays among the top pairs at every shot count "
                     f"(more shots do not separate them); zero-shot confuses it {z} times, so the confusion "
                     f"{'is already in CLIP’s features and prompts' if z > 0 else 'comes with the shots'}.")
    if len(keys) > 1 and not lasting:
        parts.append("No pair stays on top at every shot count: the shots change which classes "
                     "are confused, rather than leaving one hard pair.")
    return " ".join(parts)


def feature_text(cache_by_k: dict, shares: dict, method: str) -> str:
    """cache_by_k: {k: snapshot} (:func:`fewshot.analysis.cache_snapshot`); shares: {k: fraction
    of the val features' variance the two axes hold}."""
    parts = []
    for k, s in cache_by_k.items():
        shift = float(np.median(s["move_shift"].numpy()))
        before = 100 * float((s["move_own0"] > s["move_other0"]).float().mean())
        after = 100 * float((s["move_own"] > s["move_other"]).float().mean())
        own0, own = float(s["move_own0"].mean()), float(s["move_own"].mean())
        norm = s["move_norm"].numpy()
        verdict = "closer to" if own > own0 else "further from"
        parts.append(f"At {k} shot{'s' if k > 1 else ''} fine-tuning turns the keys by a median "
                     f"1 − cos = {shift:.4f}, {verdict} their own class's test images (mean cosine "
                     f"{own0:.3f} → {own:.3f}; keys nearer their own class's mean test feature than any "
                     f"other's: {_n(before)} % → {_n(after)} %), and changes their lengths from 1 to "
                     f"{norm.min():.2f}–{norm.max():.2f} (mean {norm.mean():.2f}).")
    spread = [k for k, s in cache_by_k.items() if float(s["move_norm"].max() - s["move_norm"].min()) > 0.2]
    if spread:
        parts.append(f"Since the affinity exp(−β(1 − f·k)) grows with a key's length (above 1 once "
                     f"f·k > 1), fine-tuning at {', '.join(map(str, spread))} shots reweights the shots "
                     f"as much as it turns them: a long key can outvote nearer shots of the right class "
                     f"(see the next figure).")
    share = min(shares.values()) if shares else None
    if share is not None:
        parts.append(f"The picture is a projection: its two axes hold {_n(100 * share)} % or more of "
                     f"the kept val features' variance, so classes that overlap here may still be "
                     f"apart in the full space.")
    return " ".join(parts)


def explanation_text(snap: dict, data, method: str) -> str:
    """One sentence per explained image of the snapshot, then what they have in common."""
    names = [class_label(data["classnames"], c) for c in range(len(data["classnames"]))]
    labels, parts = data["labels"], []
    key_labels = snap["key_labels"].long()
    agree_fixed, agree_other = [], []
    for r, i in enumerate(snap["explained"].tolist()):
        y, near = labels[i], snap["explain_nearest"][r].tolist()
        same = sum(int(key_labels[m]) == y for m in near)
        top, zs = int(snap["explain_ad"][r, 0]), int(snap["explain_zs"][r, 0])
        parts.append(f"A {names[y]} image ({snap['explained_kind'][r]}): zero-shot says {names[zs]} "
                     f"({float(snap['explain_zs_probs'][r, 0]):.2f}); {same} of its {len(near)} nearest "
                     f"shots are {names[y]} (the nearest a {names[key_labels[near[0]]]}, affinity "
                     f"{float(snap['explain_affinity0'][r, 0]):.2f} → {float(snap['explain_affinity'][r, 0]):.2f}); "
                     f"the cache adds {float(snap['explain_cache_logits'][r, 0]):.1f} to the text logit "
                     f"{float(snap['explain_zs_logits'][r, 0]):.1f} of {names[top]}, so {method} says "
                     f"{names[top]} ({float(snap['explain_ad_probs'][r, 0]):.2f}).")
        (agree_fixed if top == y else agree_other).append(same / len(near))
    if agree_fixed and agree_other:
        parts.append(f"Where {method} is right, {_n(100 * np.mean(agree_fixed))} % of the nearest shots "
                     f"share the image's class; where it is wrong, {_n(100 * np.mean(agree_other))} %: "
                     f"the decision follows the neighbours in the cache.")
    return " ".join(parts)


def failure_text(data, method: str, k: int, shown: list[int]) -> str:
    """How wrong the mistakes are (rank of the true class) and how confident (calibration)."""
    classes, probs = data["top3"][method][k]
    labels = np.asarray(data["labels"])
    classes, conf = classes.numpy(), probs[:, 0].float().numpy()
    wrong = classes[:, 0] != labels
    if not wrong.any():
        return f"{method} makes no mistake on val at {k} shots."
    in3 = 100 * float((classes[wrong, 1:] == labels[wrong, None]).any(1).mean())
    cw, cr = float(conf[wrong].mean()), float(conf[~wrong].mean()) if (~wrong).any() else float("nan")
    calib = ("so on average its confidence is a usable warning" if cr - cw > 0.1 else
             "so a wrong answer looks almost as sure as a right one")
    names = data["classnames"]
    same = sum(names[labels[i]] == names[classes[i, 0]] for i in shown)  # a twin's name
    text = (f"At {k} shots {method} gets {int(wrong.sum())} of {len(labels)} val images wrong "
            f"({_n(100 * wrong.mean())} %); for {_n(in3)} % of them the true class is second or third. "
            f"Its mean top-1 probability is {cw:.2f} on mistakes against {cr:.2f} on correct answers, {calib}.")
    if shown:
        text += (f" The mistakes shown are its most confident ones (top-1 probability "
                 f"{float(conf[shown].min()):.2f}–{float(conf[shown].max()):.2f}): on those it warns of nothing.")
    if same:
        text += (f" {same} of the {len(shown)} most confident mistakes shown pick a class with the "
                 f"same name as the true one: label ambiguity, not a failure of the method.")
    return text


def gain_text(gains: dict, classnames, method: str) -> str:
    """gains: {k: (acc, base_acc, gain)} (:func:`fewshot.analysis_figures.gain_data`)."""
    parts, classnames = [], [class_label(list(classnames), c) for c in range(len(classnames))]
    for k, (acc, base, gain) in gains.items():
        ok = ~np.isnan(gain)
        up, down = int((gain[ok] > 0).sum()), int((gain[ok] < 0).sum())
        best = np.flatnonzero(ok)[np.argsort(-gain[ok], kind="stable")][:3]
        r = float(np.corrcoef(base[ok], gain[ok])[0, 1]) if np.std(base[ok]) and np.std(gain[ok]) else float("nan")
        top = ", ".join(f"{classnames[c]} ({_n(base[c])} → {_n(acc[c])} %)" for c in best)
        text = (f"At {k} shot{'s' if k > 1 else ''} {up} classes gain and {down} lose (mean "
                f"{float(np.mean(gain[ok])):+.1f} points); most gained: {top}.")
        if r < -0.3:
            text += (f" Gain falls with zero-shot accuracy (Pearson r = {r:.2f}): the shots help "
                     f"most where the text prompts were weakest.")
        elif r == r:
            text += f" Gain and zero-shot accuracy are hardly related (r = {r:.2f})."
        worst = np.flatnonzero(ok)[np.argsort(gain[ok], kind="stable")][:3]
        if gain[worst[0]] < 0:
            text += (f" The classes that lose most ({', '.join(classnames[c] for c in worst if gain[c] < 0)}) "
                     f"stood at {_n(float(np.mean(base[worst])))} % zero-shot on average.")
        parts.append(text)
    return " ".join(parts)


def coursework_table(records: list[dict], method: str, shots: list[int]) -> str:
    """Ours (mean ± std over seeds, val top-1) for zero-shot, ``method`` and Tip-Adapter-F at
    ``shots``, beside the coursework notebook's published numbers (fewshot/reference.json,
    tuned on test) where the run is ImageNet with RN50 and the coursework has the method."""
    rows = {(r["method"], r["shots"]): r for r in summarize(records) if r["eval_set"] == "val"}
    ref = json.loads(_REFERENCE.read_text())
    first = records[0]
    comparable = first["backbone"] in ("RN50", "RN50.pt") and "imagenet" in first["dataset"].lower()
    course = {row["method"]: dict(zip(ref["shots"], row["top1"])) for row in ref["rows"]
              if row["source"].startswith("coursework")} if comparable else {}
    lines = ["| method | " + " | ".join(f"{k}-shot" for k in shots) + " |", "|---|" + "---|" * len(shots)]
    for m in dict.fromkeys(["zero-shot", method, "tip-adapter-f"]):
        cells = []
        for k in shots:
            r = rows.get((m, k)) or rows.get((m, 0))
            cell = "" if r is None else f"{r['mean']:.2f}" + (f" ± {r['std']:.2f}" if r["n"] > 1 else "")
            pub = course.get(m, {}).get(k) if m != "zero-shot" else course.get(m, {}).get(1)
            cells.append(cell + (f" [coursework {pub:.2f}]" if pub is not None else ""))
        if any(cells):
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    note = ("[coursework] is the course notebook's figure (ImageNet, RN50, 1 template, tuned on test)."
            if course else "The coursework's ImageNet/RN50 numbers (fewshot/reference.json) are set "
            "beside ours only for a run on ImageNet with CLIP RN50; this run is not one.")
    return "\n".join(lines) + "\n\n" + note
