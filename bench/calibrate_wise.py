"""Calibrating the mini-world's encoder fine-tuning for WiSE-FT's effect (issue 26): one fit of a
strategy per seed at 16 shots (no held-out refit, no Fisher), top-1 on val and sketch at α = 0.5
and 1, and zero-shot beside them. The suite's own trainer and encoder (fewshot.training.encoder).

    python -m fewshot run --config miniworld --set out=runs/calibrate merge_tasks= \\
        methods=[zero-shot,ft-full] ft_seeds=[1,2,3] --steps zeroshot splits features
    python bench/calibrate_wise.py --epochs 5 --lr 3e-3 --seeds 1 2 3 [--images 2000] [--strategy full]

``--images N`` scores the first N images of each set only (faster; the full sets by default).
``--run``/``--set`` must name the folder and settings of the first command.
"""
from __future__ import annotations

import argparse
import time

import torch

from fewshot.run.config import load_config
from fewshot.training.encoder import Recipe, build_classifier, encode, trainable_state
from fewshot.training.encoder_loop import train
from fewshot.methods.finetune import HEADS, linear_head, set_alpha
from fewshot.run.pipeline import Run
from fewshot.methods import get_method
from fewshot.merging.interpolate import interpolate


class _First:
    """The first ``n`` images of a PixelSet."""

    def __init__(self, pixels, n: int):
        self.pixels, self.n = pixels, n

    def __len__(self) -> int:
        return self.n

    def batch(self, rows):
        return self.pixels.batch(rows)


def _top1(logits, labels) -> float:
    return 100 * float((logits.argmax(1).cpu() == labels.cpu()).float().mean())


def calibrate(run, strategy: str, epochs: int, lr: float, seed: int, images: int) -> dict:
    """{(α, set): top-1} for α in (0, 0.5, 1) and the run's val and sketch; ``train_s``, ``train_acc``."""
    shots = run.shots_data(16, seed)
    ctx = run._context(get_method(f"ft-{strategy}"), 16, seed)
    enc = ctx.encoder
    pool, pool_rows = enc.pool()
    rows = torch.tensor([pool_rows[p] for p in shots.paths])
    recipe = Recipe(epochs, lr, run.cfg.ft_batch_size)
    clf, groups = build_classifier(enc.model, ctx.text_weights, ctx.logit_scale, strategy, ctx.device, recipe, seed)
    theta0 = trainable_state(clf)
    start = time.perf_counter()
    history = train(clf, groups, pool, rows, shots.labels.cpu(), recipe, ctx.device, seed, False)
    out = {"train_s": time.perf_counter() - start, "train_acc": history[-1]["train_acc"]}
    theta1 = trainable_state(clf)
    for name in ("val", "sketch"):
        es = run.eval_sets[name]
        n = min(images or len(es.labels), len(es.labels))
        out[(0.0, name)] = _top1(es.feats[:n] @ ctx.text_weights.T, es.labels[:n])
    for a in (0.5, 1.0):
        set_alpha(clf, strategy, theta0, theta1, a)
        merged = interpolate(theta0, theta1, a)
        head = linear_head({k: merged[k] for k in HEADS if k in merged})
        for name in ("val", "sketch"):
            es, px = run.eval_sets[name], enc.eval_pixels(name)
            n = min(images or len(es.labels), len(es.labels))
            out[(a, name)] = _top1(head(encode(clf, _First(px, n), ctx.device, 256)), es.labels[:n])
    return out


def main(argv=None) -> None:
    """Print one line per seed and the mean over seeds."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--images", type=int, default=0)
    p.add_argument("--strategy", default="full")
    p.add_argument("--run", default="runs/calibrate")
    args = p.parse_args(argv)
    cfg = load_config("miniworld", out=args.run, merge_tasks="", progress=False,
                      methods=("zero-shot", f"ft-{args.strategy}"), ft_seeds=(1, 2, 3))
    run, rows = Run(cfg, resume={}), []
    for seed in args.seeds:
        r = calibrate(run, args.strategy, args.epochs, args.lr, seed, args.images)
        rows.append(r)
        print(f"seed {seed}: train {r['train_s']:.0f} s, train acc {r['train_acc']:.3f} | " + " | ".join(
            f"α={a}: {r[(a, 'val')]:.2f} / {r[(a, 'sketch')]:.2f}" for a in (0.0, 0.5, 1.0)), flush=True)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if isinstance(k, tuple)}
    print("mean: " + " | ".join(f"α={a}: {mean[(a, 'val')]:.2f} / {mean[(a, 'sketch')]:.2f}" for a in (0.0, 0.5, 1.0)))


if __name__ == "__main__":
    main()
