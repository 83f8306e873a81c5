"""Every cached-feature method's cost at ImageNet scale: fit and evaluation on every shot count
(1, 2, 4, 8, 16) × seeds 1, 2, 3, with synthetic features of ImageNet's shapes (50,000 val,
16 × 1,000 training images with 10 augmented views, 1,024-d) through the real pipeline
(``Run.from_tensors``; the methods do not know the features are synthetic).

    python bench/methods.py                  # every cached-feature method, one row each
    python bench/methods.py --small          # 100 classes, 5,000 val (CPU)
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
from fewshot.methods import get_method, list_methods


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--small", action="store_true")
    p.add_argument("--methods", nargs="*")
    args = p.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    c, n_val, per_class, dim = (100, 5000, 16, 1024) if args.small else (1000, 50000, 16, 1024)
    feats, labels, text, _, _, _ = random_problem(n_val, 1, c, dim, dev)
    wnids = [f"n{i:08d}" for i in range(c)]
    train = ImageSet("train", "/nonexistent", [(f"train/{w}/{j}.JPEG", i) for i, w in enumerate(wnids)
                                                for j in range(per_class)], list(range(c)))
    val = ImageSet("val", "/nonexistent", [(f"val/{i}.JPEG", int(y)) for i, y in enumerate(labels)], list(range(c)))
    g = torch.Generator().manual_seed(1)
    m = len(train)
    proto = torch.nn.functional.normalize(torch.randn(c, dim, generator=g), dim=-1)
    pool_feats = torch.nn.functional.normalize(proto[torch.tensor(train.labels)] + 0.8 * torch.randn(m, dim, generator=g), dim=-1).to(dev)
    pool = TrainPool({p: i for i, (p, _) in enumerate(train.items)}, pool_feats.half(),
                     (pool_feats[None] + 0.1 * torch.randn(10, m, dim, device=dev)).half(),
                     torch.tensor(train.labels, device=dev))
    names = args.methods or [n for n in list_methods() if not get_method(n).needs_encoder and n != "zero-shot"]
    cfg = RunConfig(data="/nonexistent", out=tempfile.mkdtemp(), shots=(1, 2, 4, 8, 16), seeds=(1, 2, 3),
                    device=str(dev), progress=False, methods=tuple(["zero-shot"] + names))
    sets = {"val": EvalSet("val", feats.float(), labels, tuple(range(c)), tuple(val.paths))}
    run = Run.from_tensors(cfg, Dataset("/nonexistent", wnids, wnids, train, val), text.float(), 100.0, sets, pool)
    run.splits()
    rows = {}
    for name in names:
        sync(dev)
        t0 = time.perf_counter()
        run.run_method(name)
        sync(dev)
        rows[name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {rows[name]} s", flush=True)
    out = {"classes": c, "val_images": n_val, "shots": [1, 2, 4, 8, 16], "seeds": [1, 2, 3],
           "seconds_per_method": rows, "total_s": round(sum(rows.values()), 1)}
    if dev.type == "cuda":
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    report("methods_at_imagenet_scale", out, dev)


if __name__ == "__main__":
    main()
