"""The merge step on a GPU with CLIP towers of real shapes: RN50's and ViT-B/32's (random weights:
compute and memory do not depend on the values), on the task world, timed and with peak memory.

    python bench/merge_gpu.py --models rn50 vitb32 --out bench/merge-gpu.jsonl \
        --set merge_steps=100 adamerging_steps=50 merge_robustness=false

One JSON row per model: wall seconds of the whole merge study, peak GPU memory (GiB), the number
of records, and the settings. The task world is written at its default sizes unless it exists.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from fewshot.merging.study import run_study  # noqa: E402
from fewshot.models.backbones import build_clip, load_backbone, save_checkpoint  # noqa: E402
from fewshot.run.config import RunConfig  # noqa: E402
from fewshot.run.overrides import parse_overrides  # noqa: E402
from fewshot.world.tasks import make_tasks  # noqa: E402

SHAPES = {"rn50": lambda: build_clip(),  # OpenAI's RN50: 1024-d, 224 px, (3, 4, 6, 3) x 64
          "vitb32": lambda: build_clip(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                                       vision_patch_size=32)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--tasks", default="/tmp/tasks-gpu")
    ap.add_argument("--work", default="/tmp/merge-gpu")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="bench/merge-gpu.jsonl")
    args = ap.parse_args(argv)
    root = make_tasks(args.tasks)
    for name in args.models:
        torch.manual_seed(0)
        path = Path(args.work) / f"{name}-random.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(SHAPES[name](), path)
        bb = load_backbone(str(path), "cuda")
        cfg = RunConfig(**{"merge_tasks": str(root), "cache_dir": f"{args.work}/cache", "templates": "single",
                           "seeds": (1, 2), "progress": False, "device": "cuda", **parse_overrides(args.set)})
        torch.cuda.reset_peak_memory_stats()
        t0 = time.time()
        records, _ = run_study(type("R", (), {"backbone": bb})(), cfg, bb.device,
                               lambda *a: {"method": a[0]}, progress=False)
        row = {"model": name, "seconds": round(time.time() - t0, 1),
               "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2), "records": len(records),
               "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
               "settings": {k: getattr(cfg, k) for k in ("merge_steps", "adamerging_steps", "merge_shots",
                                                          "merge_robustness")}}
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
