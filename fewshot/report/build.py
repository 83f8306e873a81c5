"""Report: a Markdown report with PNG and PDF figures, and the same as one self-contained HTML
file to hand in, built from a run folder's files alone.

:func:`load_run` reads the records, diagnostics, predictions and config through
:class:`fewshot.run.rundir.RunDir` and refuses records made under different configs (a half-finished
rerun never mixes with an older run's numbers). :func:`build_report` writes ``report.md`` and
``report.html`` from the sections of :mod:`fewshot.report.sections` (names:
:func:`list_sections`): the few-shot sections draw the few-shot run's own test sets (val and its
shifts); the merging study, on its tasks' own test sets, is a section of its own, left out
unless asked for (``sections=["all"]`` or ``["default", "merging"]``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from fewshot.base.atomic import atomic_write_text, claim
from fewshot.base.errors import ConfigError, MissingStepError
from fewshot.report.figures import few_shot_records
from fewshot.report.i18n import list_languages, tr
from fewshot.report.markdown import to_html
from fewshot.run.preflight import check_folder
from fewshot.report.sections import SECTIONS, Context
from fewshot.report.tables import leaderboard, sources_table
from fewshot.run.rundir import RunDir
from fewshot.methods import with_report_role

__all__ = ["load_run", "build_report", "leaderboard", "sources_table", "list_sections", "default_sections",
           "resolve_sections"]


def list_sections() -> list[str]:
    """Every section name, in report order."""
    return [name for name, *_ in SECTIONS]


def default_sections() -> list[str]:
    """The sections of a plain ``report``: everything the coursework needs, no merging study."""
    return [name for name, _, _, default in SECTIONS if default]


def resolve_sections(names) -> tuple[list[str], set[str]]:
    """(sections in report order, the names asked for explicitly) for ``names`` (None: the
    default; "default" and "all" expand); an unknown name is a :class:`ConfigError`."""
    names = list(names or ["default"])
    known = list_sections()
    bad = [n for n in names if n not in known + ["default", "all"]]
    if bad:
        raise ConfigError(f"unknown report section(s) {', '.join(map(repr, bad))}; known: "
                          f"{', '.join(known)} (or default, all)")
    picked = set(names) - {"default", "all"}
    picked |= set(default_sections()) if "default" in names else set()
    picked |= set(known) if "all" in names else set()
    return [n for n in known if n in picked], set(names) - {"default", "all"}


def load_run(run_dir: str | os.PathLike) -> dict:
    """Everything a report needs from a run folder: records, grids, predictions, config."""
    rd = RunDir(run_dir)
    records = rd.read_records()
    if not records:
        raise MissingStepError(f"{rd.root / 'results'} holds no results: run the notebooks or "
                               f"`python -m fewshot run` first.")
    digests = {}
    for r in records:
        digests.setdefault(r.get("config_digest"), set()).add(r["method"])
    if len(digests) > 1:
        parts = "; ".join(f"config {d}: {', '.join(sorted(m))}" for d, m in digests.items())
        raise MissingStepError(f"{rd.root} holds records of different configs ({parts}): a step "
                               f"was rerun with other settings or did not finish. Rerun the "
                               f"stale steps, or start a fresh run folder.")
    cfg = rd.read_config() if rd.config_path.exists() else None  # validated: a bad file is named
    config = cfg.to_dict() if cfg is not None else None
    if cfg is not None and None not in digests:
        from fewshot.run.config import config_digest

        current = config_digest(cfg, rd.device_type())
        if current not in digests:
            raise MissingStepError(f"the records in {rd.root / 'results'} were made under config "
                                   f"{next(iter(digests))}, but {rd.config_path} is {current}: "
                                   f"rerun the steps.")
    return {"records": records, "grids": [g for m in with_report_role("grid") for g in rd.diagnostics(m)], "config": config,
            "predictions": rd.predictions(), "dir": rd.root}


def missing_steps(run: dict) -> list[tuple[str, list[str]]]:
    """(step, its methods) of the run's config that have no records yet, in run order: what a
    report of a partial run lacks."""
    from fewshot.methods import baseline_method, get_method, list_methods

    config = run["config"] or {}
    present = {r["method"] for r in run["records"]}
    wanted = list(config.get("methods") or list_methods())
    out: dict[str, list[str]] = {}
    base = baseline_method()
    if base not in present:
        out[get_method(base).step] = [base]
    for name in wanted:
        method = get_method(name)
        if name not in present and name != base:
            out.setdefault(method.step, []).append(name)
    if config.get("merge_tasks") and not any(r.get("role") == "merge" for r in run["records"]):
        out["merging"] = ["merge study"]
    return list(out.items())


def _stale_figures(out: Path) -> set[str]:
    """Figure names the previous report in ``out`` showed (removed unless written again)."""
    md = out / "report.md"
    return set(re.findall(r"!\[[^\]]*\]\(([^)]+)\.png\)", md.read_text(encoding="utf-8"))) if md.exists() else set()


MARKER = ".fewshot-report"  # in every folder build_report writes: the folder is the report's own


def _earlier_report(out: Path) -> bool:
    """Whether ``out`` holds a report made before :data:`MARKER` existed (its ``report.md`` opens
    with the report's title in a known language)."""
    md = out / "report.md"
    if not md.is_file() or md.is_symlink():
        return False
    with open(md, encoding="utf-8", errors="replace") as f:
        first = f.readline().rstrip("\n")
    return first in {f"# {tr('title', lang)}" for lang in list_languages()}


def build_report(run_dir: str | os.PathLike, out: str | os.PathLike = "report",
                 oracle_run: str | os.PathLike | None = None, sections=None, lang: str = "en",
                 force: bool = False) -> Path:
    """Write ``out/report.md``, ``out/report.html`` (self-contained) and the figures (PNG, PDF)
    from the run in ``run_dir``; ``oracle_run``: an oracle run of the same setting, whose numbers
    are set beside the honest ones; ``sections``: names of :func:`list_sections` (plus "default",
    "all"; None: the default, without the merging study); ``lang``: one of
    ``fewshot.report.i18n.list_languages()``; ``force``: move a foreign ``out`` aside (:func:`fewshot.base.atomic.claim`).
    A section asked for by name but empty in this run says so. Returns the .md path."""
    if lang not in list_languages():
        raise ConfigError(f"unknown report language {lang!r}; known: {', '.join(list_languages())}")
    order, explicit = resolve_sections(sections)
    check_folder(out, "report --out (report_dir)")  # a file, /proc or read-only: before any work
    # a user's folder is never written into: the report replaces report.md and removes old figures
    claim(Path(out).resolve() if Path(out).is_dir() else out, MARKER, "python -m fewshot report", force,
          ours=_earlier_report)
    run = load_run(run_dir)
    oracle_records = few_shot_records(load_run(oracle_run)["records"]) if oracle_run else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / MARKER, "written by `python -m fewshot report`\n")
    stale = _stale_figures(out)
    merge = [r for r in run["records"] if not few_shot_records([r])]
    ctx = Context(run, few_shot_records(run["records"]), merge, out, lang, oracle_records)
    builders = {name: (heading, fn) for name, heading, fn, _ in SECTIONS}
    parts, shown = [], []
    for name in order:
        heading, fn = builders[name]
        body = fn(ctx)
        if body is None and name in explicit:
            body = tr("missing", lang)
        if body is not None:
            parts.append(f"## {tr(heading, lang)}\n\n{body}")
            shown.append(name)
    for name in stale - set(ctx.written):
        for ext in ("png", "pdf"):
            (out / f"{name}.{ext}").unlink(missing_ok=True)
    lacking = missing_steps(run)
    partial = tr("partial", lang, steps="; ".join(f"`{s}` ({', '.join(m)})" for s, m in lacking),
                 names=" ".join(s for s, _ in lacking)) + "\n\n" if lacking else ""
    text = (f"# {tr('title', lang)}\n\n" + partial + tr("intro", lang, run=run["dir"], sections=", ".join(shown))
            + "\n\n" + "\n\n".join(parts) + "\n")
    md = out / "report.md"
    atomic_write_text(md, text)
    atomic_write_text(out / "report.html", to_html(text, out, tr("title", lang), lang))
    return md
