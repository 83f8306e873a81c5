"""``python -m fewshot run`` under torchrun: the fine-tuning step shared by two processes writes
one run folder, as one process would, with the same numbers up to the order of float sums."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from fewshot.run.config import RunConfig, save_config
from fewshot.base.errors import ConfigError
from fewshot.run.launch import run_all


def _cfg(small_world, tiny_clip_path, tmp_path, out):
    return RunConfig(data=str(small_world), backbone=str(tiny_clip_path), out=str(tmp_path / out),
                     cache_dir=str(tmp_path / "cache"), merge_tasks="", templates="single", shots=(2,),
                     seeds=(1,), views=1, cv_folds=2, ft_epochs=2, ft_batch_size=64,
                     ft_alphas=(0.0, 0.5, 1.0), methods=("zero-shot", "ft-full", "ft-lora"),
                     device="cpu", num_workers=0, progress=False)


def _finals(folder):
    out = {}
    for f in sorted((folder / "results").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            key = (r["method"], r["eval_set"], r["shots"], r["seed"], r["role"],
                   json.dumps(r["hyperparameters"], sort_keys=True))
            assert key not in out, f"{key} written twice"
            out[key] = r["metrics"]["top1"]
    return out


def test_only_the_finetune_step_runs_under_torchrun(small_world, tiny_clip_path, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = _cfg(small_world, tiny_clip_path, tmp_path, "run")
    with pytest.raises(ConfigError, match="run zeroshot first in one process"):
        run_all(cfg, ["zeroshot", "finetune"])
    with pytest.raises(ConfigError, match="--fresh"):
        run_all(cfg, ["finetune"], fresh=True)
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.slow
def test_two_processes_fine_tune_like_one(small_world, tiny_clip_path, tmp_path):
    one = _cfg(small_world, tiny_clip_path, tmp_path, "one")
    run_all(one, ["zeroshot", "splits", "features"])
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    save_config(one, tmp_path / "cfg.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "fewshot", "run", "--config", str(tmp_path / "cfg.json"), "--steps", "finetune", "--set"]
    single = subprocess.run([sys.executable, *args, f"out={tmp_path / 'one'}"],
                            capture_output=True, text=True, env=env)
    assert single.returncode == 0, single.stderr
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", "29531", *args, f"out={tmp_path / 'two'}"],
                            capture_output=True, text=True, env=env)
    assert double.returncode == 0, double.stderr
    assert double.stdout.count("Top-1 (%) on val") == 1  # rank 0 alone prints
    assert "on 2 processes" in double.stdout
    a, b = _finals(tmp_path / "one"), _finals(tmp_path / "two")
    assert set(a) == set(b)  # same records, the chosen α included (it is a hyperparameter)
    assert any(k[0] == "wise-ft-full" for k in a) and any(k[0] == "ft-lora" for k in a)
    # 200 val images: the same weights up to float-sum order may flip at most one prediction
    assert max(abs(a[k] - b[k]) for k in a) <= 0.5 + 1e-9
    assert (tmp_path / "two" / "fitted" / "ft-full" / "shots2_seed1.pt").exists()
    assert not list((tmp_path / "two").rglob("*.tmp*"))
