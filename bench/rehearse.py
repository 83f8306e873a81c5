"""Run every notebook once on a config, each in its own process, recording wall time, peak host
memory (max RSS of the notebook's processes, kernel included) and peak GPU memory (nvidia-smi,
sampled every 100 ms: the whole device, CUDA context and allocator cache included).

    python bench/rehearse.py --config imagenet-rn50 --overrides JSON --out DIR [--notebooks 08_finetune ...]
    python bench/rehearse.py ... --steps peers finetune prompt --deadline 560 --step-timeout 300

``--deadline`` (seconds for the whole call) and ``--step-timeout`` stop a step that would outrun a
device call; its row says ``timed_out`` and the next step still runs. Each row keeps the estimate
lines the step printed before its work (``fewshot.protocol.budget``) and each step's log is DIR/logs/NAME.log.

With ``--notebooks``, only those run and their rows are added to DIR/rehearsal.json (a rehearsal
split over two device calls, each under its time limit).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fewshot.notebooks.runner import list_notebooks  # noqa: E402

_MEASURE = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
            "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


class GpuPeak:
    def __init__(self):
        self.peak, self.stop = 0, threading.Event()
        self.ok = shutil.which("nvidia-smi") is not None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout.split()
            if out:
                self.peak = max(self.peak, int(out[0]))
            time.sleep(0.1)

    def __enter__(self):
        if self.ok:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()


_TIMED_OUT = -9


def _run(cmd: list, timeout):
    """``cmd``'s completed process; killed (with its children) after ``timeout`` seconds, when its
    return code is :data:`_TIMED_OUT` and its output what it had written."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return subprocess.CompletedProcess(cmd, _TIMED_OUT, out, err)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="imagenet-rn50")
    p.add_argument("--overrides", default="{}")
    p.add_argument("--out", required=True)
    p.add_argument("--notebooks", nargs="*", help="a subset, in run order (default: all)")
    p.add_argument("--steps", nargs="*", help="instead of notebooks, these CLI steps, one process "
                   "each (`python -m fewshot run --steps S`: what each notebook runs, without Jupyter)")
    p.add_argument("--deadline", type=float, default=0, help="seconds for all steps (0: none)")
    p.add_argument("--step-timeout", type=float, default=0, help="seconds per step (0: none)")
    args = p.parse_args()
    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.steps or args.notebooks or list_notebooks()
    if args.steps:  # one config file for every step: the named config with the overrides
        from fewshot.run.config import load_config, save_config

        out.mkdir(parents=True, exist_ok=True)
        save_config(load_config(args.config, **json.loads(args.overrides)), out / "rehearsal-config.json")
    done = out / "rehearsal.json"
    rows = [r for r in json.loads(done.read_text()) if r["notebook"] not in names] \
        if (args.notebooks or args.steps) and done.exists() else []
    for name in names:
        cmd = [sys.executable, "-m", "fewshot.notebooks.runner", "--out", str(out / "executed"), "--config",
               args.config, "--overrides", args.overrides, name] if not args.steps else \
            [sys.executable, "-m", "fewshot", "run", "--config", str(out / "rehearsal-config.json"), "--steps", name]
        limits = [t for t in (args.step_timeout, args.deadline and args.deadline - (time.time() - start)) if t]
        if limits and min(limits) < 5:
            print(f"rehearsal: no time left for {name}", flush=True)
            break
        with GpuPeak() as gpu:
            t0 = time.time()
            res = _run([sys.executable, "-c", _MEASURE, *cmd], min(limits) if limits else None)
            wall = time.time() - t0
        (out / "logs").mkdir(exist_ok=True)
        (out / "logs" / f"{name}.log").write_text(res.stdout + "\n--- stderr ---\n" + res.stderr)
        rss = [int(l.split()[1]) for l in res.stdout.splitlines() if l.startswith("MAXRSS_KB")]
        row = {"notebook": name, "ok": res.returncode == 0, "wall_s": round(wall, 1),
               "peak_host_gib": round(rss[0] / 2**20, 2) if rss else None,
               "peak_gpu_gib": round(gpu.peak / 1024, 2) if gpu.ok else None,
               "estimates": [l.strip() for l in (res.stdout + res.stderr).splitlines() if "estimated" in l][:8]}
        if res.returncode == _TIMED_OUT:
            row["timed_out"] = True
        rows.append(row)
        print(json.dumps(row), flush=True)
        (out / "rehearsal.json").write_text(json.dumps(rows, indent=1) + "\n")  # partial results survive
        if res.returncode == _TIMED_OUT:
            continue
        if res.returncode:
            print(res.stdout[-3000:], res.stderr[-6000:], sep="\n", file=sys.stderr)
            break
    (out / "rehearsal.json").write_text(json.dumps(rows, indent=1) + "\n")
    total = sum(r["wall_s"] for r in rows)
    print(f"rehearsal: {sum(r['ok'] for r in rows)}/{len(list_notebooks())} notebooks ran, {total:.0f} s")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
