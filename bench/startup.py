"""The fixed cost of a step in a fresh process: each step's wall time as the notebooks and the CLI
run it (``python -m fewshot run --steps STEP``, a new interpreter each), against the same step's own
work in one warm process (resources already loaded). Run it on a run folder whose zeroshot, splits
and features steps are done (a copy: the steps rewrite their results).

    python bench/startup.py --config imagenet-rn50 --set out=runs/imagenet-rn50
    python bench/startup.py --config miniworld --set out=/tmp/run cache_dir=cache --steps class_means
"""
import argparse
import subprocess
import sys
import time

from common import report, sync
from fewshot.run.overrides import parse_overrides
from fewshot.run.config import load_config
from fewshot.run.pipeline import Run

STEPS = ["class_means", "tip_adapter", "tip_adapter_f", "wise", "linear_probe", "peers"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="miniworld")
    p.add_argument("--set", nargs="*", default=[])
    p.add_argument("--steps", nargs="*", default=STEPS)
    args = p.parse_args()
    sets = args.set + ["progress=false"]
    fresh = {}
    for step in args.steps:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fewshot", "run", "--config", args.config, "--steps", step,
                        "--set", *sets], check=True, stdout=subprocess.DEVNULL)
        fresh[step] = round(time.perf_counter() - t0, 2)
        print(f"{step}: fresh process {fresh[step]} s", flush=True)
    run = Run(load_config(args.config, **parse_overrides(sets)))
    _ = run.text_weights, run.eval_sets, run.pool, run.context  # loaded once, as a notebook holds them
    own = {}
    for step in args.steps:
        sync(run.device)
        t0 = time.perf_counter()
        run.step(step)
        sync(run.device)
        own[step] = round(time.perf_counter() - t0, 2)
    rows = {"steps": {s: {"fresh_process_s": fresh[s], "own_work_s": own[s],
                          "fixed_cost_s": round(fresh[s] - own[s], 2)} for s in args.steps},
            "total_fresh_s": round(sum(fresh.values()), 1), "config": args.config}
    report("step_startup", rows, run.device)


if __name__ == "__main__":
    main()
