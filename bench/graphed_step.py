"""CUDA-graph steps against the eager loop on ImageNet's shapes: CLIP-Adapter's published recipe
(SGD, batch 32, 50 epochs) and TaskRes's (Adam, batch 256, 200 epochs) at 16 shots, one seed.

    python bench/graphed_step.py [--epochs 50]
"""
import argparse
import time

import torch
import torch.nn.functional as F

from fewshot.methods.clip_adapter import adapter_logits
from fewshot.methods.taskres import taskres_logits
from fewshot.training.heads import train_head, warmup_cosine_per_epoch


def run(kind, graph, views, labels, text, epochs):
    gen = torch.Generator().manual_seed(0)
    d = views.shape[-1]
    if kind == "clip-adapter":
        w1 = torch.nn.Parameter(((torch.rand(d // 4, d, generator=gen) * 2 - 1) / d ** 0.5).cuda())
        w2 = torch.nn.Parameter(((torch.rand(d, d // 4, generator=gen) * 2 - 1) / (d // 4) ** 0.5).cuda())
        params, bs = [w1, w2], 32
        opt = torch.optim.SGD(params, lr=2e-3, momentum=0.9, weight_decay=5e-4)
        fn = lambda x: adapter_logits(x, w1, w2, text)  # noqa: E731
    else:
        r = torch.nn.Parameter(torch.zeros_like(text))
        params, bs = [r], 256
        opt = torch.optim.Adam(params, lr=2e-4)
        fn = lambda x: taskres_logits(x, text, r)  # noqa: E731
    steps = labels.numel() // bs
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = train_head(params, fn, views, labels, optimizer=opt, schedule=warmup_cosine_per_epoch(epochs, steps, opt.param_groups[0]["lr"]),
                     epochs=epochs, batch_size=bs, seed=1, progress=False, drop_last=True, graph=graph)
    torch.cuda.synchronize()
    return time.perf_counter() - t0, [p.detach() for p in params], out["history"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=50)
    args = ap.parse_args()
    torch.manual_seed(0)
    views = F.normalize(torch.randn(10, 16000, 1024, device="cuda"), dim=-1)
    labels = torch.arange(1000, device="cuda").repeat_interleave(16)
    text = F.normalize(torch.randn(1000, 1024, device="cuda"), dim=-1)
    for kind, epochs in (("clip-adapter", args.epochs), ("taskres", 4 * args.epochs)):
        (te, pe, he), (tg, pg, hg) = (run(kind, g, views, labels, text, epochs) for g in (False, True))
        diff = max(float((a - b).abs().max()) for a, b in zip(pe, pg))
        scale = max(float(a.abs().max()) for a in pe)
        print({"method": kind, "epochs": epochs, "steps": epochs * (16000 // (32 if kind == "clip-adapter" else 256)),
               "eager_s": round(te, 2), "graph_s": round(tg, 2), "speedup": round(te / tg, 1),
               "max_abs_weight_diff": diff, "max_abs_weight": scale,
               "final_loss_eager": he[-1]["loss"], "final_loss_graph": hg[-1]["loss"]}, flush=True)


if __name__ == "__main__":
    main()
