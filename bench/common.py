"""Shared helpers for the benchmarks: device timing and synthetic inputs of ImageNet's shapes."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeat: int = 1):
    """(result, best seconds over ``repeat`` runs), with device synchronisation."""
    best, out = float("inf"), None
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return out, best


def forward_rate(forward, x: torch.Tensor, calls: int = 10) -> float:
    """Images per second of ``forward(x)`` (an image tower or ``encode_image``) on a batch ``x``:
    3 warm-up calls, then the best of 3 timings of ``calls`` calls, without gradients."""
    with torch.no_grad():
        for _ in range(3):
            forward(x)
        _, sec = timed(lambda: [forward(x) for _ in range(calls)], x.device, repeat=3)
    return calls * len(x) / sec


def random_problem(n_test, n_cache, classes, dim, device, seed=0):
    """Normalised fp16 test features [N, D], keys [M, D], text weights [C, D], one-hot values."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    norm = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    feats = norm(torch.randn(n_test, dim, generator=g)).half().to(device)
    labels = torch.randint(0, classes, (n_test,), generator=g).to(device)
    keys = norm(torch.randn(n_cache, dim, generator=g)).to(device)
    key_labels = (torch.arange(n_cache) % classes).to(device)
    values = torch.nn.functional.one_hot(key_labels, classes).float()
    text = norm(torch.randn(classes, dim, generator=g)).to(device)
    return feats, labels, text, keys, values, key_labels


def report(name: str, rows: dict, device) -> None:
    """Print the rows and append them to bench/results.jsonl with device and commit."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).parent).stdout.strip()
    rec = {"bench": name, "device": device_name(torch.device(device)), "commit": rev,
           "command": " ".join(["python"] + sys.argv), **rows}
    print(json.dumps(rec, indent=1))
    out = Path(os.environ.get("BENCH_OUT", Path(__file__).parent / "results.jsonl"))
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")
