"""Try tiny-CLIP variants quickly (on a GPU): pretrain each, run the mini-world pipeline, check.

    python bench/world_probe.py '{"embed_dim": 256}' '{"embed_dim": 64}' --device cuda

Each argument is a JSON object of PretrainConfig overrides. Prints the phenomena table per
variant. A trial tool: the committed checkpoint is trained on the CPU by
``python -m fewshot world train-clip``.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fewshot.run.config import load_config  # noqa: E402
from fewshot.run.launch import run_all  # noqa: E402
from fewshot.report.build import load_run  # noqa: E402
from fewshot.world.generate import make_world  # noqa: E402
from fewshot.world.phenomena import check_phenomena, format_checks  # noqa: E402
from fewshot.world.pretrain import PretrainConfig, pretrain  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--work", default="/tmp/probe")
    ap.add_argument("--run-set", default="{}", help="JSON RunConfig overrides")
    args = ap.parse_args()
    work = Path(args.work)
    data = work / "miniworld"
    if not (data / "classnames.txt").exists():
        make_world(data, workers=8)
    for i, v in enumerate(args.variants):
        over = json.loads(v)
        t0 = time.time()
        ckpt = work / f"v{i}.pt"
        log = pretrain(PretrainConfig(**{"device": args.device, "workers": 8, "threads": 8, **over}),
                       ckpt, progress=False, reference=False)
        t1 = time.time()
        cfg = load_config("miniworld", data=str(data), backbone=str(ckpt), out=str(work / f"run{i}"),
                          cache_dir=str(work / f"cache{i}"), device=args.device, progress=False,
                          num_workers=8, **json.loads(args.run_set))
        run_all(cfg, stream=io.StringIO())  # the table below is what matters
        rows = check_phenomena(load_run(cfg.out)["records"])
        print(f"\n## variant {i}: {over}  size {log['size_bytes'] / 1e6:.1f} MB, loss "
              f"{log['history'][-1]['loss']:.3f}, pretrain {t1 - t0:.0f} s, pipeline {time.time() - t1:.0f} s")
        print(format_checks(rows), flush=True)


if __name__ == "__main__":
    main()
