"""``python -m fewshot world ...``: generate the mini-world, (re)train its tiny CLIP, import FusionBench's tasks."""
from __future__ import annotations

import argparse
import time

__all__ = ["add_arguments", "run"]

FORCE = "a non-empty --out this command did not write is moved aside (<out>.old-<time>), never deleted"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="world_command", required=True)
    m = sub.add_parser("make", help="write the mini-world dataset (deterministic)")
    m.add_argument("--out", default="data/miniworld")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--workers", type=int, default=2)
    m.add_argument("--force", action="store_true", help=FORCE)
    t = sub.add_parser("train-clip", help="pretrain the tiny CLIP (about 20 min on 2 CPU cores)")
    t.add_argument("--tower", default="rn", help="image tower: rn (miniclip-rn, the default) or vit "
                   "(miniclip-vit); fewshot.world.pretrain.TOWERS")
    t.add_argument("--out", help="default: fewshot/world/assets/miniclip-<tower>.pt")
    t.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override PretrainConfig fields")
    t.add_argument("--force", action="store_true", help="an --out this command did not write is moved aside, never deleted")
    s = sub.add_parser("make-imagenet-shaped", help="ImageNet-shaped synthetic data + RN50-shaped random CLIP")
    s.add_argument("--out", required=True, help="folder for ImageNet-1K-16shot/, imagenet-v2/, -a/, -r/, rn50-random.pt")
    s.add_argument("--smoke", action="store_true", help="100 classes, tiny images (CPU smoke)")
    s.add_argument("--force", action="store_true", help=FORCE)
    mt = sub.add_parser("make-tasks", help="write the multi-task world for the merging study (deterministic)")
    mt.add_argument("--out", default="data/tasks")
    mt.add_argument("--val", type=int, default=30,
                    help="test images per class (30: the demo's; 480: the five-task mean's standard error "
                    "<= 0.5 points, tasks.val_for_standard_error)")
    mt.add_argument("--unlabeled", type=int, default=64, help="unlabeled images per task (unlabeled/)")
    mt.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                    help="tasks to write, in this order (default: all eight: shape colour count "
                    "position style size background outline)")
    mt.add_argument("--force", action="store_true", help=FORCE)
    f = sub.add_parser("import-fusionbench", help="FusionBench task exports (Hub parquet, save_to_disk, image "
                       "folders) in the course layout, for merge_tasks=DIR")
    f.add_argument("--src", required=True, help="a task export, or a folder of them (<src>/<task>/...)")
    f.add_argument("--out", required=True, help="writes <out>/<task>/{train,val}/, classnames.txt, label2class.json")
    f.add_argument("--tasks", nargs="*", help="sub-folders of --src to import (default: every task export)")
    f.add_argument("--test-split", default="test", help="split imported as val/ (e.g. a corruption: contrast)")
    f.add_argument("--hub-config", help="the Hub config whose parquet files to read, where a task has several")
    f.add_argument("--force", action="store_true", help=FORCE)
    c = sub.add_parser("check", help="does a mini-world run show the benchmark's phenomena?")
    c.add_argument("--run", default="runs/miniworld")


def run(args) -> int:
    if args.world_command == "make":
        from fewshot.world.generate import make_world

        t0 = time.time()
        path = make_world(args.out, args.seed, args.workers, force=args.force)
        print(f"mini-world written to {path} in {time.time() - t0:.1f} s")
        return 0
    if args.world_command == "train-clip":
        from fewshot.run.overrides import parse_overrides
        from fewshot.world.guard import claim_checkpoint
        from fewshot.world.pretrain import make_config, pretrain

        cfg = make_config(args.tower, parse_overrides(args.set))
        out = args.out or f"fewshot/world/assets/miniclip-{args.tower}.pt"
        log = pretrain(cfg, claim_checkpoint(out, "world train-clip", args.force))
        print(f"saved {out} ({log['size_bytes'] / 1e6:.1f} MB, sha256 {log['sha256'][:12]}...) "
              f"after {log['steps']} steps, final loss {log['history'][-1]['loss']:.4f}")
        return 0
    if args.world_command == "make-imagenet-shaped":
        from pathlib import Path

        from fewshot.world.imagenet_shaped import FULL, SMOKE, make_imagenet_shaped, make_rn50_random

        t0 = time.time()
        root = make_imagenet_shaped(args.out, SMOKE if args.smoke else FULL, force=args.force)
        sha = make_rn50_random(Path(args.out) / "rn50-random.pt")
        print(f"wrote {root} (+ imagenet-v2/a/r) and rn50-random.pt ({sha[:12]}...) in {time.time() - t0:.1f} s")
        return 0
    if args.world_command == "make-tasks":
        from fewshot.world.tasks import TASKS, make_tasks

        t0 = time.time()
        out = make_tasks(args.out, val=args.val, tasks=tuple(args.tasks or TASKS), force=args.force,
                         unlabeled=args.unlabeled)
        print(f"tasks written to {out} in {time.time() - t0:.1f} s")
        return 0
    if args.world_command == "import-fusionbench":
        from fewshot.world.fusionbench_import import import_fusionbench

        t0 = time.time()
        done = import_fusionbench(args.src, args.out, args.tasks, args.test_split, args.hub_config, args.force)
        print(f"{len(done)} task(s) in {args.out} ({', '.join(p.name for p in done)}) in {time.time() - t0:.1f} s")
        return 0
    if args.world_command == "check":
        from fewshot.report.build import load_run
        from fewshot.world.phenomena import check_phenomena, format_checks

        rows = check_phenomena(load_run(args.run)["records"])
        print(format_checks(rows))
        return 0 if all(r["ok"] for r in rows) else 1
    raise ValueError(f"unknown world command {args.world_command}")
