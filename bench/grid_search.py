"""Tip-Adapter grid search: batched tensors vs the coursework notebook's loop over (β, α).

    python bench/grid_search.py                 # 50,000 × 16,000 cache, 1000 classes (GPU sizes)
    python bench/grid_search.py --small         # 5,000 × 1,600 × 100 (CPU sizes)
"""
import argparse

import torch

from common import random_problem, report, timed
from fewshot.methods.tip_adapter import cache_model as tip


def notebook_loop(feats, labels, text, keys, values, alphas, betas, points, batch=1000):
    """The coursework's way: for each (β, α), logits of the whole test set batch by batch."""
    done = 0
    for b in betas:
        for a in alphas:
            correct = 0
            for s in range(0, feats.shape[0], batch):
                logits = tip.tip_logits(feats[s:s + batch].float(), text, keys, values, float(a), float(b))
                correct += (logits.argmax(1) == labels[s:s + batch]).sum().item()  # one sync per batch
            done += 1
            if done == points:
                return


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--small", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    n, m, c = (5000, 1600, 100) if args.small else (50000, 16000, 1000)
    dev = torch.device(args.device)
    feats, labels, text, keys, values, _ = random_problem(n, m, c, 1024, dev)
    rows = {"sizes": f"{n} test x {m} cache x {c} classes"}
    for name, (bmax, bsteps, amax, asteps) in {"4000": (7, 200, 3, 20), "17400": (7, 870, 3, 20)}.items():
        alphas, betas = tip.official_grid(bmax, bsteps, amax, asteps)
        torch.cuda.reset_peak_memory_stats(dev) if dev.type == "cuda" else None
        grid, sec = timed(lambda: tip.search(feats, labels, text, keys, values, alphas, betas), dev, repeat=2)
        rows[f"batched_{name}_points_s"] = round(sec, 3)
        if dev.type == "cuda":
            rows[f"batched_{name}_peak_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    alphas, betas = tip.official_grid()
    probe = 4
    _, sec = timed(lambda: notebook_loop(feats, labels, text, keys, values, alphas, betas, probe), dev)
    rows["notebook_loop_4000_points_s_extrapolated"] = round(sec / probe * 4000, 1)
    rows["speedup_4000"] = round(rows["notebook_loop_4000_points_s_extrapolated"] / rows["batched_4000_points_s"], 1)
    # agreement with an fp32 reference on a slice (the GPU path multiplies in reduced precision)
    ref = tip.search(feats[:2000].float().cpu(), labels[:2000].cpu(), text.cpu(), keys.cpu(), values.cpu(),
                     alphas[:5], betas[::40])
    got = tip.search(feats[:2000], labels[:2000], text, keys, values, alphas[:5], betas[::40]).cpu()
    rows["max_abs_diff_vs_fp32_cpu"] = float((ref - got).abs().max())
    report("grid_search", rows, dev)


if __name__ == "__main__":
    main()
