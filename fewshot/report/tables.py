"""Report tables: the setup (provenance), the leaderboard on val with the published
(test-tuned) figures beside it where comparable, one table per shifted test set, and the
published numbers. All from the few-shot records (:func:`fewshot.report.figures.few_shot_records`).
"""
from __future__ import annotations

import json
from pathlib import Path

from fewshot.report.figures import eval_sets_of, few_shot_records, method_order
from fewshot.report.i18n import tr
from fewshot.protocol.results import summary_cells, format_table, summarize

__all__ = ["provenance", "leaderboard", "shift_tables", "reference_section", "source_of", "sources_table"]

_REFERENCE_PATH = Path(__file__).resolve().parent.parent / "reference.json"


def provenance(records, config, lang: str = "en") -> str:
    """The setup table: data, backbone, seeds, protocol, provenance of the records."""
    first = records[0]
    seeds = sorted({r["seed"] for r in records if r["seed"] is not None})
    tuned = sorted({r["tuned_on"] for r in records if r["role"] == "final"})
    rows = [("dataset", first["dataset"]), ("backbone", f"{first['backbone']} (sha256 {first['backbone_sha256'][:12]}…)"),
            ("templates", first.get("templates", "")), ("seeds", ", ".join(map(str, seeds))),
            ("protocol", tr("proto_oracle" if config and config.get("oracle") else "proto_honest", lang)),
            ("tuned_on", ", ".join(tuned)), ("git revision", first["git_rev"]),
            ("device", first["device"]), ("feature decode path", first.get("decode", "pil")),
            ("image tower", first.get("image_tower", "clip")),
            ("config digest", first.get("config_digest", "")),
            ("test images left out (undecodable)", _skipped(records)),
            ("date", max(r["date"] for r in records))]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _skipped(records) -> str:
    per_set = {}
    for r in records:
        per_set[r["eval_set"]] = max(per_set.get(r["eval_set"], 0), r.get("skipped", 0))
    if not any(per_set.values()):
        return "none"
    return ", ".join(f"{n} in {s}" for s, n in sorted(per_set.items()) if n) + " (skip_bad_images)"


def _published(records):
    """{method: [top-1 per shot of reference.json] } when the run is ImageNet with RN50, else None."""
    first = records[0]
    if first["backbone"] not in ("RN50", "RN50.pt") or "imagenet" not in first["dataset"].lower():
        return None
    return json.loads(_REFERENCE_PATH.read_text())


def reference_section(records, lang: str = "en") -> str:
    """The published ImageNet/RN50 numbers, or why they are not shown."""
    ref = _published(records)
    if ref is None:
        return tr("pub_none", lang)
    lines = ["| source (protocol) | method | " + " | ".join(f"{k}-shot" for k in ref["shots"]) + " |",
             "|---|---|" + "---|" * len(ref["shots"])]
    for row in ref["rows"]:
        lines.append(f"| {row['source']} | {row['method']} | " +
                     " | ".join("" if v is None else f"{v:.2f}" for v in row["top1"]) + " |")
    return "\n".join(lines)


def source_of(name: str) -> str:
    """"paper · repo@commit" of the registered method a record name belongs to (companions too),
    from its registration's ``source`` (:class:`fewshot.protocol.method.Source`); "" when none is declared."""
    from fewshot.methods import get_method, list_methods

    owner = next((m for m in list_methods() if name == m or name in get_method(m).companions), None)
    src = get_method(owner).source if owner else None
    if src is None:
        return ""
    repo = f" · [{src.repo}](https://github.com/{src.repo})" if src.repo else ""
    return src.paper + repo + (f"@{src.commit[:7]}" if src.commit else "")


def sources_table() -> str:
    """Every registered method with its source and the recipes it offers (README, notebook 10)."""
    from fewshot.methods import get_method, list_methods

    lines = ["| method | source (paper · repository@commit read) | recipes | files read |", "|---|---|---|---|"]
    for m in list_methods():
        method, src = get_method(m), get_method(m).source
        files = ", ".join(f"`{f}`" for f in src.files) if src else ""
        names = ", ".join((m,) + method.companions)
        lines.append(f"| {names} | {source_of(m) or 'this suite'} | {', '.join(('default',) + method.recipes)} | {files} |")
    return "\n".join(lines)


def _recipes(records, method: str) -> str:
    return "/".join(sorted({str(r["hyperparameters"].get("recipe", "default")) for r in records
                            if r["method"] == method and r.get("role", "final") == "final"
                            and isinstance(r.get("hyperparameters"), dict)})) or "default"


def leaderboard(records, oracle_records=None, lang: str = "en") -> str:
    """Every method × shots on val (mean ± std), with the best published (test-tuned) figure and,
    given an oracle run, its number beside ours (the merging study's records left out)."""
    records = few_shot_records(records)
    oracle_records = few_shot_records(oracle_records) if oracle_records else None
    rows = summary_cells(summarize(records))
    oracle = summary_cells(summarize(oracle_records)) if oracle_records else {}
    ref = _published(records)
    best_ref = {}
    if ref:
        for row in ref["rows"]:
            for k, v in zip(ref["shots"], row["top1"]):
                if v is not None:
                    best_ref[(row["method"], k)] = max(v, best_ref.get((row["method"], k), 0))
    shots = sorted({k for _, k in rows if k > 0})
    lines = ["| method | " + " | ".join(f"{k}-shot" for k in shots) + " | tuned on | recipe | source |",
             "|---|" + "---|" * (len(shots) + 3)]
    for m in method_order({m for m, _ in rows}):
        cells = []
        for k in shots:
            r = rows.get((m, k)) or rows.get((m, 0))
            if r is None:
                cells.append("")
                continue
            cell = f"{r['mean']:.2f}" + (f" ± {r['std']:.2f}" if r["n"] > 1 else "")
            if (m, k) in oracle:
                cell += f" (oracle {oracle[(m, k)]['mean']:.2f})"
            if (m, k) in best_ref:
                cell += f" [pub. {best_ref[(m, k)]:.2f}]"
            cells.append(cell)
        tuned = "/".join(sorted({t for (mm, k), r in rows.items() if mm == m for t in r["tuned_on"].split("/")}))
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {tuned} | {_recipes(records, m)} | {source_of(m)} |")
    note = tr("lb_note", lang)
    if best_ref:
        note += tr("lb_pub", lang)
    if oracle:
        note += tr("lb_oracle", lang)
    return note + "\n\n" + "\n".join(lines)


def shift_tables(records, lang: str = "en") -> str:
    """One table per test set other than val (val is the leaderboard), mean ± std over seeds."""
    rows = summarize(records)
    return "\n\n".join(f"### {tr('h_shift', lang, s=s)}\n\n{format_table(rows, s)}"
                        for s in eval_sets_of(records)[1:])
