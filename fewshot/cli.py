"""Command line: ``python -m fewshot <command>``; every notebook step is reachable from here."""
from __future__ import annotations

import argparse
import sys
import warnings

from fewshot.run.overrides import parse_overrides

__all__ = ["main"]


def _check_range(option: str, values: list[int], lo: int, hi: int | None = None) -> None:
    from fewshot.base.errors import ConfigError

    bad = [v for v in values if v < lo or hi is not None and v > hi]
    if bad:
        raise ConfigError(f"{option} takes integers >= {lo}" + (f" and <= {hi}" if hi else "")
                          + f", got {bad[0]}")


def _cmd_splits(args) -> int:
    from fewshot.run.config import SEED_MAX
    from fewshot.data.datasets import check_shots, load_dataset
    from fewshot.run.preflight import check_folder
    from fewshot.data.splits import write_manifests

    _check_range("--shots", args.shots, 1)
    _check_range("--seeds", args.seeds, 0, SEED_MAX)
    check_folder(args.out, "--out")
    dataset = load_dataset(args.data)
    for warning in check_shots(dataset, args.shots):
        print(f"warning: {warning}", file=sys.stderr)
    paths = write_manifests(dataset, args.out, args.shots, args.seeds)
    print(f"wrote {len(paths)} manifests to {args.out}")
    return 0


def _cmd_run(args) -> int:
    from fewshot.run.config import load_config
    from fewshot.run.launch import run_all

    cfg = load_config(args.config, **parse_overrides(args.set))
    run_all(cfg, args.steps or None, fresh=args.fresh)
    return 0


def _run_epilog() -> str:
    from fewshot.run.config import describe_fields, list_configs
    from fewshot.run.pipeline import list_steps
    from fewshot.methods import get_method, list_methods
    from fewshot.models.templates import list_templates

    methods = "\n".join(f"  {m}: {get_method(m).summary}" for m in list_methods())
    return (f"shipped configs: {', '.join(list_configs())}\n"
            f"steps, in order: {', '.join(list_steps())}\n"
            f"template sets: {', '.join(list_templates())}\n"
            f"methods:\n{methods}\n"
            f"config fields (--set NAME=VALUE; lists as [1,16], booleans true/false):\n"
            f"{describe_fields()}")


def _cmd_report(args) -> int:
    from fewshot.report.build import build_report

    path = build_report(args.run, args.out, args.oracle_run, args.sections, args.lang, args.force)
    print(f"report written to {path}")
    return 0


def _report_epilog() -> str:
    from fewshot.report.i18n import list_languages
    from fewshot.report.build import default_sections, list_sections

    return (f"sections, in report order: {', '.join(list_sections())}\n"
            f"  default: {', '.join(default_sections())}\n"
            f"  all: every section, the merging study included (its tasks' own test sets)\n"
            f"  e.g. --sections default merging, --sections summary leaderboard accuracy\n"
            f"languages (--lang): {', '.join(list_languages())}")


def _cmd_check_data(args) -> int:
    from fewshot.data.checks import check_dataset

    report = check_dataset(args.data, decode=not args.no_decode)
    print(report.text())
    return 0 if report.usable else 1


def _cmd_world(args) -> int:
    from fewshot.world import commands as world_cli

    return world_cli.run(args)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose ``epilog`` may be a function, called only when help is shown (the
    run command's lists every method and config field: importing them all costs seconds)."""

    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    from fewshot.run.config import DEFAULT_SEEDS, DEFAULT_SHOTS

    p = argparse.ArgumentParser(prog="python -m fewshot", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("splits", help="write nested k-shot manifests (one JSON per shots x seed)")
    s.add_argument("--data", required=True, help="dataset root (train/, val/, classnames.txt)")
    s.add_argument("--out", required=True, help="folder for the manifests")
    s.add_argument("--shots", type=int, nargs="+", default=list(DEFAULT_SHOTS))
    s.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    s.set_defaults(func=_cmd_splits)

    r = sub.add_parser("run", help="the whole pipeline on a config; prints a summary table",
                       epilog=_run_epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--config", default="miniworld", help="shipped config name or JSON file")
    r.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="override config fields (repeatable; later values win)")
    r.add_argument("--steps", nargs="+", help="subset of steps (default: all, in order)")
    r.add_argument("--fresh", action="store_true",
                   help="the run folder holds another config: move it aside and start anew")
    r.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", help="build report/ (Markdown, PNG, PDF) from a run's results",
                         epilog=_report_epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("--run", default="runs/miniworld", help="the run's output folder")
    rep.add_argument("--out", default="report", help="where to write the report")
    rep.add_argument("--oracle-run", help="an oracle run of the same setting: its numbers beside ours")
    rep.add_argument("--sections", nargs="+", metavar="NAME",
                     help="sections to write, in report order (default: 'default'; see below)")
    rep.add_argument("--lang", default="en", help="language of prose and captions (en, zh)")
    rep.add_argument("--force", action="store_true",
                     help="--out holds files a report did not write: move that folder aside (never deleted)")
    rep.set_defaults(func=_cmd_report)

    c = sub.add_parser("check-data", help="validate a dataset folder; non-zero exit if unusable")
    c.add_argument("data")
    c.add_argument("--no-decode", action="store_true", help="skip decoding every image (headers are still read: size limits)")
    c.set_defaults(func=_cmd_check_data)

    w = sub.add_parser("world", help="the mini-world: generate data, train the tiny CLIP")
    from fewshot.world.commands import add_arguments

    add_arguments(w)
    w.set_defaults(func=_cmd_world)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    from fewshot.base.errors import FewshotWarning

    if issubclass(category, FewshotWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


_PATH_ARGUMENTS = ("data", "out", "run", "oracle_run", "config", "src")  # every command's path arguments


def _expand_paths(args) -> None:
    """``~`` and ``$VAR`` in path arguments, as in config fields (``--out=~/x``: no shell does it)."""
    from fewshot.base.paths import expand_path

    for name in _PATH_ARGUMENTS:
        value = getattr(args, name, None)
        if isinstance(value, str) and value:
            setattr(args, name, expand_path(value, f"the argument {name.replace('_', '-')} {value!r}"))


def main(argv=None) -> int:
    """The CLI. Problems with input, data or settings end in one ``error:`` line (exit code 2;
    a full disk: 1); the suite's own warnings are printed as one ``warning:`` line each."""
    from fewshot.base.errors import FewshotError, explain_os_error

    warnings.showwarning = _show_warning
    try:
        args = build_parser().parse_args(argv)
        _expand_paths(args)
        return args.func(args)
    except FewshotError as err:  # bad input, data or settings: say what, no traceback
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:  # a full disk, a read-only folder, a file where a folder belongs
        known = explain_os_error(err)
        if known is None:
            raise  # anything else is a bug: it keeps its traceback
        print(f"error: {known}", file=sys.stderr)
        return known.exit_code
