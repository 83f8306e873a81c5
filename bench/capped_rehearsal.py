"""Every step of the suite on ImageNet-shaped data, each in its own process as the notebooks run
them, under a per-process GPU memory cap; records wall time, the allocator's peak, the device's
peak (nvidia-smi: CUDA context included) and the process's peak host memory per step.

    python bench/capped_rehearsal.py --work /tmp/ins --cap-gib 8 --set shots=[1,16] seeds=[1] ...
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rehearse import GpuPeak  # noqa: E402

_STEP = r"""
import json, os, resource, sys, time, torch
import fewshot
cap, cfg, step = float(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
if cap:
    torch.cuda.set_per_process_memory_fraction(cap * 2**30 / torch.cuda.get_device_properties(0).total_memory, 0)
from fewshot.run.config import RunConfig
from fewshot.run.launch import run_all
t = time.time()
run_all(RunConfig(**cfg), [step], stream=open(os.devnull, "w"))
print("STEP", json.dumps({"wall_s": round(time.time() - t, 1),
      "gpu_alloc_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
      "gpu_reserved_peak_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
      "host_peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}))
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", required=True, help="folder with data/ (make-imagenet-shaped) and for the run")
    p.add_argument("--cap-gib", type=float, default=8.0)
    p.add_argument("--steps", nargs="+", default=None)
    p.add_argument("--set", nargs="*", default=[], help="config overrides KEY=JSON")
    p.add_argument("--out", default=None)
    p.add_argument("--dump-config", help="write the run's config to this JSON file and stop")
    args = p.parse_args()
    from fewshot.run.pipeline import list_steps

    work = Path(args.work)
    cfg = json.loads((Path(__file__).parent.parent / "fewshot" / "configs" / "imagenet-rn50.json").read_text())
    cfg.update(data=str(work / "data" / "ImageNet-1K-16shot"), backbone=str(work / "data" / "rn50-random.pt"),
               out=str(work / "run"), cache_dir=str(work / "cache"), report_dir=str(work / "report"), progress=False)
    for kv in args.set:
        k, v = kv.split("=", 1)
        cfg[k] = json.loads(v)
    if args.dump_config:  # the same run for `python -m fewshot run --config FILE` (torchrun)
        Path(args.dump_config).write_text(json.dumps(cfg, indent=1))
        return
    rows = []
    for step in args.steps or list_steps():
        with GpuPeak() as gpu:
            t = time.time()
            res = subprocess.run([sys.executable, "-c", _STEP, str(args.cap_gib), json.dumps(cfg), step],
                                 capture_output=True, text=True)
        line = next((l for l in res.stdout.splitlines() if l.startswith("STEP ")), None)
        row = {"step": step, "ok": res.returncode == 0, "cap_gib": args.cap_gib,
               "device_peak_gib": round(gpu.peak / 1024, 2), **(json.loads(line[5:]) if line else {})}
        if res.returncode:
            row["error"] = res.stderr.strip().splitlines()[-1:] if res.stderr.strip() else ["?"]
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:  # after every step: a call cut short still returns what it measured
            Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
