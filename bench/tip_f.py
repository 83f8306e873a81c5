"""Tip-Adapter-F: 20 epochs on cached augmented views vs the notebook's re-encoding every epoch.

    python bench/tip_f.py            # 16,000 images, 1000 classes, RN50 dims (CUDA)
    python bench/tip_f.py --small    # 1,600 images, 100 classes (CPU)
"""
import argparse

import torch

from common import random_problem, report, timed
from fewshot.methods.tip_adapter import cache_model as tip


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--small", action="store_true")
    p.add_argument("--encode-img-s", type=float, default=0.0,
                   help="measured PIL extraction throughput (bench/extract.py) for the notebook's way")
    args = p.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n, c = (1600, 100) if args.small else (16000, 1000)
    _, _, text, keys, values, labels = random_problem(10, n, c, 1024, dev)
    views = torch.nn.functional.normalize(keys[None] + 0.1 * torch.randn(10, n, 1024, device=dev), dim=-1).half()
    kw = dict(epochs=20, progress=False, device=dev)
    tip.train_tip_adapter_f(views, labels, text, keys, values, 1.17, 1.0, **{**kw, "epochs": 1})  # warm-up
    out, sec = timed(lambda: tip.train_tip_adapter_f(views, labels, text, keys, values, 1.17, 1.0, **kw), dev)
    rows = {"images": n, "classes": c, "epochs": 20, "cached_20_epochs_s": round(sec, 3),
            "cached_epoch_s": round(sec / 20, 4), "final_train_loss": round(out["history"][-1]["loss"], 4)}
    if args.encode_img_s:
        rows["notebook_epoch_s_estimated"] = round(n / args.encode_img_s + sec / 20, 2)
        rows["speedup_per_epoch"] = round(rows["notebook_epoch_s_estimated"] / rows["cached_epoch_s"], 1)
    report("tip_adapter_f", rows, dev)


if __name__ == "__main__":
    main()
