"""Command line: ``python -m fewshot <command>``; every notebook step is reachable from here."""
from __future__ import annotations

import argparse
import ast
import json
import sys

__all__ = ["main"]


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return json.loads(text)  # JSON spellings too: --set progress=false
    except ValueError:
        return text  # plain strings need no quotes: --set device=cpu


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def _cmd_splits(args) -> int:
    from fewshot.datasets import load_dataset
    from fewshot.splits import write_manifests

    paths = write_manifests(load_dataset(args.data), args.out, args.shots, args.seeds)
    print(f"wrote {len(paths)} manifests to {args.out}")
    return 0


def _cmd_run(args) -> int:
    from fewshot.config import load_config
    from fewshot.pipeline import STEPS, run_all

    cfg = load_config(args.config, **_overrides(args.set))
    run_all(cfg, tuple(args.steps) if args.steps else STEPS)
    return 0


def _cmd_report(args) -> int:
    from fewshot.report import build_report

    path = build_report(args.run, args.out)
    print(f"report written to {path}")
    return 0


def _cmd_check_data(args) -> int:
    from fewshot.checks import check_dataset

    report = check_dataset(args.data, decode=not args.no_decode)
    print(report.text())
    return 0 if report.usable else 1


def _cmd_world(args) -> int:
    from fewshot.world import cli as world_cli

    return world_cli.run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fewshot", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("splits", help="write nested k-shot manifests (one JSON per shots x seed)")
    s.add_argument("--data", required=True, help="dataset root (train/, val/, classnames.txt)")
    s.add_argument("--out", required=True, help="folder for the manifests")
    s.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4, 5, 8, 16])
    s.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    s.set_defaults(func=_cmd_splits)

    r = sub.add_parser("run", help="the whole pipeline on a config; prints a summary table")
    r.add_argument("--config", default="miniworld", help="shipped config name or JSON file")
    r.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override config fields")
    r.add_argument("--steps", nargs="*", help="subset of steps (default: all, in order)")
    r.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", help="build report/ (Markdown, PNG, PDF) from a run's results")
    rep.add_argument("--run", default="runs/miniworld", help="the run's output folder")
    rep.add_argument("--out", default="report", help="where to write the report")
    rep.set_defaults(func=_cmd_report)

    c = sub.add_parser("check-data", help="validate a dataset folder; non-zero exit if unusable")
    c.add_argument("data")
    c.add_argument("--no-decode", action="store_true", help="skip decoding every image")
    c.set_defaults(func=_cmd_check_data)

    w = sub.add_parser("world", help="the mini-world: generate data, train the tiny CLIP")
    from fewshot.world.cli import add_arguments

    add_arguments(w)
    w.set_defaults(func=_cmd_world)
    return p


def main(argv=None) -> int:
    from fewshot.config import ConfigError
    from fewshot.datasets import DatasetError
    from fewshot.images import ImageError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ConfigError, DatasetError, ImageError) as err:  # bad input: say what, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from fewshot.backbones import BackboneError

        if not isinstance(err, BackboneError):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
