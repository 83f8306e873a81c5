"""The whole post-feature pipeline (zero-shot, Tip-Adapter with leave-one-out and test grids,
Tip-Adapter-F, WiSE-FT sweep with cross-validated λ and the Fisher merge) for 3 seeds × shots
{1, 5, 16}, on ImageNet-shaped cached features: the real `fewshot.run.pipeline.Run`, with synthetic
tensors in place of the feature cache (`Run.from_tensors`).

    python bench/pipeline.py            # 1000 classes, 50,000 val, 16 train/class, 1024-d (CUDA)
    python bench/pipeline.py --small    # 100 classes, 5,000 val (CPU)
"""
import argparse
import tempfile
import time

import torch

from common import random_problem, report, sync
from fewshot.run.config import RunConfig
from fewshot.data.datasets import Dataset, ImageSet
from fewshot.run.pipeline import Run, TrainPool
from fewshot.protocol.method import EvalSet


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--small", action="store_true")
    p.add_argument("--val", type=int, default=0, help="number of val images (scaling checks)")
    args = p.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    c, n_val, per_class = (100, 5000, 16) if args.small else (1000, 50000, 16)
    n_val = args.val or n_val
    feats, labels, text, _, _, _ = random_problem(n_val, 1, c, 1024, dev)
    wnids = [f"n{i:08d}" for i in range(c)]
    train = ImageSet("train", "/nonexistent", [(f"train/{w}/{j}.JPEG", i) for i, w in enumerate(wnids)
                                                for j in range(per_class)], list(range(c)))
    val = ImageSet("val", "/nonexistent", [(f"val/{i}.JPEG", int(y)) for i, y in enumerate(labels)], list(range(c)))
    out = tempfile.mkdtemp()
    cfg = RunConfig(data="/nonexistent", out=out, shots=(1, 5, 16), seeds=(1, 2, 3), device=str(dev), progress=False)
    m = len(train)
    pool_feats = torch.nn.functional.normalize(torch.randn(m, 1024, device=dev), dim=-1)
    pool = TrainPool({p: i for i, (p, _) in enumerate(train.items)}, pool_feats.half(),
                     (pool_feats[None] + 0.1 * torch.randn(10, m, 1024, device=dev)).half(),
                     torch.tensor(train.labels, device=dev))
    sets = {"val": EvalSet("val", feats.float(), labels, tuple(range(c)), tuple(val.paths))}
    run = Run.from_tensors(cfg, Dataset("/nonexistent", wnids, wnids, train, val), text.float(), 100.0, sets, pool)
    run.splits()
    times = {}
    for step in ("zeroshot", "tip_adapter", "tip_adapter_f", "wise"):
        sync(dev)
        t0 = time.perf_counter()
        run.step(step)
        sync(dev)
        times[f"{step}_s"] = round(time.perf_counter() - t0, 2)
    rows = {"classes": c, "val_images": n_val, "shots": [1, 5, 16], "seeds": [1, 2, 3], **times,
            "total_s": round(sum(times.values()), 2)}
    if dev.type == "cuda":
        rows["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    report("post_feature_pipeline", rows, dev)


if __name__ == "__main__":
    main()
