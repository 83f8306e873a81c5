"""Tip-Adapter-F's cross-validation (the recipe choice and WiSE-FT's λ): the folds trained one
by one (the loop before) vs stacked into one fit (``fewshot.methods.tip_adapter.train_fold_keys``),
at ImageNet's shapes on random features; keys compared fold by fold.

    python bench/tip_f_cv.py                 # 16 shots × 1000 classes, RN50 dims, 4 folds (CUDA)
    python bench/tip_f_cv.py --small         # 4 shots × 50 classes (CPU)
"""
import argparse

import torch
import torch.nn.functional as F

from common import report, timed
from fewshot.protocol import selection
from fewshot.methods.tip_adapter import cache_model as tip


def _fold_data(views, labels, masks):
    caches = [tip.build_cache(views[:, m], labels[m], int(labels.max()) + 1) for m in masks]
    return (torch.stack([views[:, m] for m in masks], dim=2), torch.stack([labels[m] for m in masks], dim=1),
            torch.stack([k for k, _ in caches]), torch.stack([v for _, v in caches]), caches)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--small", action="store_true")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--folds", type=int, default=4)
    args = p.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shots, c, d = (4, 50, 64) if args.small else (16, 1000, 1024)
    g = torch.Generator().manual_seed(0)
    n = shots * c
    labels = (torch.arange(n) % c).to(dev)
    views = F.normalize(torch.randn(10, n, d, generator=g), dim=-1).half().to(dev)
    text = F.normalize(torch.randn(c, d, generator=g), dim=-1).to(dev)
    trains = [~m for m in selection.fold_masks(torch.arange(n) // c, args.folds)]
    trains = [m.to(dev) for m in trains]
    kw = dict(epochs=args.epochs, progress=False, device=dev)
    rows = {"shots": shots, "classes": c, "folds": len(trains), "epochs": args.epochs}
    for recipe in tip.RECIPES:
        sv, sl, sk, svals, caches = _fold_data(views, labels, trains)

        def looped():
            return [tip.train_tip_adapter_f(views[:, m], labels[m], text, k, v, 1.17, 1.0, recipe=recipe, **kw)["keys"]
                    for m, (k, v) in zip(trains, caches)]

        def stacked():
            return tip.train_tip_adapter_f(sv, sl, text, sk, svals, 1.17, 1.0, recipe=recipe, **kw)["keys"]

        tip.train_tip_adapter_f(sv, sl, text, sk, svals, 1.17, 1.0, recipe=recipe, **{**kw, "epochs": 1})  # warm-up
        one, t_loop = timed(looped, dev, repeat=2)
        many, t_stack = timed(stacked, dev, repeat=2)
        rows[recipe] = {"looped_s": round(t_loop, 3), "stacked_s": round(t_stack, 3),
                        "speedup": round(t_loop / t_stack, 2),
                        "max_abs_diff": float(max((many[f] - k).abs().max() for f, k in enumerate(one)))}
        print(recipe, rows[recipe], flush=True)
    report("tip_f_cv", rows, dev)


if __name__ == "__main__":
    main()
