"""The paragraph beside each analysis figure, computed from the same numbers the figure draws
(:mod:`fewshot.report.analysis_figures`): what it shows, and what the numbers suggest about why. A claim
is made only where its number is there to support it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fewshot.report.analysis_figures import class_label
from fewshot.report.i18n import tr
from fewshot.protocol.results import summary_cells, summarize
from fewshot.methods import baseline_method, with_report_role

__all__ = ["confusion_text", "feature_text", "explanation_text", "failure_text", "gain_text",
           "coursework_table"]

_REFERENCE = Path(__file__).resolve().parent.parent / "reference.json"


def _n(x: float) -> str:
    return f"{x:.1f}"


def _shots(k: int, lang: str) -> str:
    """``1 shot`` / ``5 shots`` in ``lang``."""
    return tr("k_shots" if k > 1 else "k_shot", lang, k=k)


def _twin_text(a: int, b: int, raw, data, conf: dict, method: str, zs_pred, lang: str) -> str:
    """The sentence on two classes of the same name: how often zero-shot and ``method`` mix them."""
    labels = np.asarray(data["labels"])
    def mixed(pred, a, b):
        return int(((labels == a) & (pred == b)).sum() + ((labels == b) & (pred == a)).sum())
    z = mixed(zs_pred, a, b)
    counts = {k: mixed(np.asarray(data["top3"][method][k][0][:, 0]), a, b) for k in conf}
    last = counts[max(counts)]
    return tr("a_conf_twins", lang, a=a, b=b, name=raw[a], z=z, m=method,
              counts=tr("list_sep", lang).join(tr("a_conf_twin_count", lang, n=n, shots=_shots(k, lang))
                                               for k, n in counts.items()),
              verdict=tr("a_conf_twin_apart" if last < z else "a_conf_twin_alike", lang))


def confusion_text(conf: dict, data, method: str, zs_pred, lang: str = "en") -> str:
    """conf: :func:`fewshot.report.analysis_figures.confusion_data`; zs_pred [N] zero-shot's top-1;
    ``lang``: the report's language (:func:`fewshot.report.i18n.list_languages`)."""
    raw, labels = data["classnames"], np.asarray(data["labels"])
    names = [class_label(raw, c) for c in range(len(raw))]
    zs_pred, parts, keys = np.asarray(zs_pred), [], []
    for k, pairs in conf.items():
        errors = int((np.asarray(data["top3"][method][k][0][:, 0]) != labels).sum())
        if not pairs:
            parts.append(tr("a_conf_none", lang, k=k, m=method))
            continue
        p = pairs[0]
        share = 100 * sum(q["total"] for q in pairs) / max(errors, 1)
        parts.append(tr("a_conf_pair", lang, shots=_shots(k, lang), a=names[p["a"]], b=names[p["b"]],
                        ab=p["a_to_b"], ba=p["b_to_a"], n=len(pairs), share=_n(share), errors=errors))
        keys.append({tuple(sorted((q["a"], q["b"]))) for q in pairs})
    twins = sorted({pair for ks in keys for pair in ks if raw[pair[0]] == raw[pair[1]]})
    for a, b in twins:
        parts.append(_twin_text(a, b, raw, data, conf, method, zs_pred, lang))
    lasting = set.intersection(*keys) if len(keys) > 1 else set()
    for a, b in sorted(lasting):
        z = int(((labels == a) & (zs_pred == b)).sum() + ((labels == b) & (zs_pred == a)).sum())
        parts.append(tr("a_conf_lasting", lang, a=names[a], b=names[b], z=z,
                        why=tr("a_conf_in_clip" if z > 0 else "a_conf_from_shots", lang)))
    if len(keys) > 1 and not lasting:
        parts.append(tr("a_conf_no_lasting", lang))
    return tr("a_sep", lang).join(parts)


def feature_text(cache_by_k: dict, shares: dict, method: str, lang: str = "en") -> str:
    """cache_by_k: {k: snapshot} (:func:`fewshot.methods.tip_adapter.explain.cache_snapshot`); shares: {k: fraction
    of the val features' variance the two axes hold}; ``lang``: the report's language."""
    parts = []
    for k, s in cache_by_k.items():
        shift = float(np.median(s["move_shift"].numpy()))
        before = 100 * float((s["move_own0"] > s["move_other0"]).float().mean())
        after = 100 * float((s["move_own"] > s["move_other"]).float().mean())
        own0, own = float(s["move_own0"].mean()), float(s["move_own"].mean())
        norm = s["move_norm"].numpy()
        verdict = tr("a_feat_closer" if own > own0 else "a_feat_further", lang)
        parts.append(tr("a_feat_k", lang, shots=_shots(k, lang), shift=f"{shift:.4f}", verdict=verdict,
                        own0=f"{own0:.3f}", own=f"{own:.3f}", before=_n(before), after=_n(after),
                        lo=f"{norm.min():.2f}", hi=f"{norm.max():.2f}", mean=f"{norm.mean():.2f}"))
    spread = [k for k, s in cache_by_k.items() if float(s["move_norm"].max() - s["move_norm"].min()) > 0.2]
    if spread:
        parts.append(tr("a_feat_spread", lang, ks=tr("list_sep", lang).join(map(str, spread))))
    share = min(shares.values()) if shares else None
    if share is not None:
        parts.append(tr("a_feat_share", lang, share=_n(100 * share)))
    return tr("a_sep", lang).join(parts)


def explanation_text(snap: dict, data, method: str, lang: str = "en") -> str:
    """One sentence per explained image of the snapshot, then what they have in common;
    ``lang``: the report's language."""
    names = [class_label(data["classnames"], c) for c in range(len(data["classnames"]))]
    labels, parts = data["labels"], []
    key_labels = snap["key_labels"].long()
    agree_fixed, agree_other = [], []
    for r, i in enumerate(snap["explained"].tolist()):
        y, near = labels[i], snap["explain_nearest"][r].tolist()
        same = sum(int(key_labels[m]) == y for m in near)
        top, zs = int(snap["explain_ad"][r, 0]), int(snap["explain_zs"][r, 0])
        kind = snap["explained_kind"][r]
        parts.append(tr("a_expl_image", lang, y=names[y], kind=tr("a_kind_" + kind.replace(" ", "_"), lang),
                        zs=names[zs], pzs=f"{float(snap['explain_zs_probs'][r, 0]):.2f}", same=same,
                        n=len(near), near=names[key_labels[near[0]]],
                        a0=f"{float(snap['explain_affinity0'][r, 0]):.2f}",
                        a1=f"{float(snap['explain_affinity'][r, 0]):.2f}",
                        cache=f"{float(snap['explain_cache_logits'][r, 0]):.1f}",
                        text=f"{float(snap['explain_zs_logits'][r, 0]):.1f}", top=names[top], m=method,
                        pad=f"{float(snap['explain_ad_probs'][r, 0]):.2f}"))
        (agree_fixed if top == y else agree_other).append(same / len(near))
    if agree_fixed and agree_other:
        parts.append(tr("a_expl_agree", lang, m=method, right=_n(100 * np.mean(agree_fixed)),
                        wrong=_n(100 * np.mean(agree_other))))
    return tr("a_sep", lang).join(parts)


def failure_text(data, method: str, k: int, shown: list[int], lang: str = "en") -> str:
    """How wrong the mistakes are (rank of the true class) and how confident (calibration);
    ``lang``: the report's language."""
    classes, probs = data["top3"][method][k]
    labels = np.asarray(data["labels"])
    classes, conf = classes.numpy(), probs[:, 0].float().numpy()
    wrong = classes[:, 0] != labels
    if not wrong.any():
        return tr("a_fail_none", lang, m=method, k=k)
    in3 = 100 * float((classes[wrong, 1:] == labels[wrong, None]).any(1).mean())
    cw, cr = float(conf[wrong].mean()), float(conf[~wrong].mean()) if (~wrong).any() else float("nan")
    calib = tr("a_fail_calib_ok" if cr - cw > 0.1 else "a_fail_calib_bad", lang)
    names = data["classnames"]
    same = sum(names[labels[i]] == names[classes[i, 0]] for i in shown)  # a twin's name
    text = tr("a_fail_main", lang, k=k, m=method, wrong=int(wrong.sum()), n=len(labels),
              pct=_n(100 * wrong.mean()), in3=_n(in3), cw=f"{cw:.2f}", cr=f"{cr:.2f}", calib=calib)
    if shown:
        text += tr("a_fail_shown", lang, lo=f"{float(conf[shown].min()):.2f}", hi=f"{float(conf[shown].max()):.2f}")
    if same:
        text += tr("a_fail_twin", lang, same=same, n=len(shown))
    return text


def gain_text(gains: dict, classnames, method: str, lang: str = "en") -> str:
    """gains: {k: (acc, base_acc, gain)} (:func:`fewshot.report.analysis_figures.gain_data`), each [C];
    ``lang``: the report's language."""
    parts, classnames = [], [class_label(list(classnames), c) for c in range(len(classnames))]
    sep = tr("list_sep", lang)
    for k, (acc, base, gain) in gains.items():
        ok = ~np.isnan(gain)
        up, down = int((gain[ok] > 0).sum()), int((gain[ok] < 0).sum())
        best = np.flatnonzero(ok)[np.argsort(-gain[ok], kind="stable")][:3]
        r = float(np.corrcoef(base[ok], gain[ok])[0, 1]) if np.std(base[ok]) and np.std(gain[ok]) else float("nan")
        top = sep.join(tr("a_gain_item", lang, c=classnames[c], base=_n(base[c]), acc=_n(acc[c])) for c in best)
        text = tr("a_gain_k", lang, shots=_shots(k, lang), up=up, down=down,
                  mean=f"{float(np.mean(gain[ok])):+.1f}", top=top)
        if r < -0.3:
            text += tr("a_gain_falls", lang, r=f"{r:.2f}")
        elif r == r:
            text += tr("a_gain_unrelated", lang, r=f"{r:.2f}")
        worst = np.flatnonzero(ok)[np.argsort(gain[ok], kind="stable")][:3]
        if gain[worst[0]] < 0:
            text += tr("a_gain_losers", lang, cs=sep.join(classnames[c] for c in worst if gain[c] < 0),
                       base=_n(float(np.mean(base[worst]))))
        parts.append(text)
    return tr("a_sep", lang).join(parts)


def coursework_table(records: list[dict], method: str, shots: list[int], lang: str = "en") -> str:
    """Ours (mean ± std over seeds, val top-1) for zero-shot, ``method`` and Tip-Adapter-F at
    ``shots``, beside the coursework notebook's published numbers (fewshot/reference.json,
    tuned on test) where the run is ImageNet with RN50 and the coursework has the method; the note
    under it in ``lang``."""
    rows = summary_cells(summarize(records))
    ref = json.loads(_REFERENCE.read_text())
    first = records[0]
    comparable = first["backbone"] in ("RN50", "RN50.pt") and "imagenet" in first["dataset"].lower()
    course = {row["method"]: dict(zip(ref["shots"], row["top1"])) for row in ref["rows"]
              if row["source"].startswith("coursework")} if comparable else {}
    lines = ["| method | " + " | ".join(f"{k}-shot" for k in shots) + " |", "|---|" + "---|" * len(shots)]
    base = baseline_method()
    for m in dict.fromkeys([base, method, *with_report_role("training")]):
        cells = []
        for k in shots:
            r = rows.get((m, k)) or rows.get((m, 0))
            cell = "" if r is None else f"{r['mean']:.2f}" + (f" ± {r['std']:.2f}" if r["n"] > 1 else "")
            pub = course.get(m, {}).get(k) if m != base else course.get(m, {}).get(1)
            cells.append(cell + (f" [coursework {pub:.2f}]" if pub is not None else ""))
        if any(cells):
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    note = tr("a_cw_course" if course else "a_cw_none", lang)
    return "\n".join(lines) + "\n\n" + note
