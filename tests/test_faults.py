"""Fault injection: every promise of RELIABILITY.md, each case a test.

Caches that cannot run code or lie, data changes that cannot reuse stale features, results that
are never lost or mixed, NaN that never passes silently, and bad configs refused in one line.
"""
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fewshot import cli
from fewshot.models.backbones import load_backbone
from fewshot.features.cache import tensors_digest
from fewshot.data.datasets import load_dataset
from fewshot.base.errors import MissingStepError, NonFiniteError, RunLockedError
from fewshot.protocol.evaluation import evaluate
from fewshot.features.encode import image_features
from fewshot.protocol.method import EvalSet
from fewshot.run.rundir import RunDir


# ----------------------------------------------------------------------------- caches
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what a planted pickle does when it is unpickled
        return (os.system, (f"touch {self.marker}",))


def _tamper(path: Path, fault: str, other: Path, marker: Path) -> None:
    payload = torch.load(path, weights_only=True)
    data = payload["data"]
    if fault == "planted-pickle":
        path.write_bytes(pickle.dumps({"data": _Payload(marker)}))
    elif fault == "bit-flips":
        raw = data["feats"].view(torch.int16)
        raw[::3, ::5] ^= 0x4000  # an exponent bit of every 15th value
        torch.save(payload, path)
    elif fault == "nan-rows":
        data["feats"][:3] = float("nan")
        torch.save(payload, path)
    elif fault == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif fault == "random-bytes":
        path.write_bytes(os.urandom(4096))
    elif fault == "another-key":
        shutil.copyfile(other, path)
    elif fault in ("fewer-rows", "reordered-rows"):  # a forger who also rewrites the checksum
        if fault == "fewer-rows":
            data["feats"], data["paths"] = data["feats"][:-40], data["paths"][:-40]
        else:
            data["paths"] = data["paths"][::-1]
        payload["checksum"] = tensors_digest(data)
        torch.save(payload, path)
    else:
        raise ValueError(fault)


CACHE_FAULTS = ["planted-pickle", "bit-flips", "nan-rows", "truncated", "random-bytes",
                "another-key", "fewer-rows", "reordered-rows"]


@pytest.mark.parametrize("fault", CACHE_FAULTS)
def test_a_damaged_cache_file_is_never_used_and_is_recomputed(fault, small_world, tiny_clip_path, tmp_path):
    bb, ds = load_backbone(str(tiny_clip_path)), load_dataset(small_world)
    clean = image_features(bb, ds.val, tmp_path, progress=False)
    image_features(bb, ds.train, tmp_path, progress=False)
    val_file = next(p for p in tmp_path.rglob("val-0v-*.pt"))
    train_file = next(p for p in tmp_path.rglob("train-0v-*.pt"))
    marker = tmp_path / "PWNED"
    _tamper(val_file, fault, train_file, marker)
    with pytest.warns(UserWarning, match=f"{val_file.name} failed verification"):
        again = image_features(bb, ds.val, tmp_path, progress=False)
    assert not marker.exists()  # the planted pickle never ran
    assert torch.equal(again.feats, clean.feats) and again.paths == clean.paths
    assert torch.equal(again.labels, torch.tensor(ds.val.labels))  # labels: from the dataset
    assert len(list(tmp_path.rglob("val-0v-*.pt.bad-*"))) == 1  # kept aside for inspection
    image_features(bb, ds.val, tmp_path, progress=False)  # and the new file verifies


def _pad_to(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes() + b"\0" * (size - path.stat().st_size))  # after JPEG's end


def test_same_size_files_swapped_under_the_same_paths_give_new_features(small_world, tiny_clip_path, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_world, root)
    bb = load_backbone(str(tiny_clip_path))
    before = image_features(bb, load_dataset(root).val, tmp_path / "cache", progress=False)
    a, b = sorted((root / "val").rglob("*.JPEG"))[0], sorted((root / "val").rglob("*.JPEG"))[-1]
    size = max(a.stat().st_size, b.stat().st_size)
    _pad_to(a, size), _pad_to(b, size)
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b), b.write_bytes(data_a)  # same paths, same sizes, other pictures
    after = image_features(bb, load_dataset(root).val, tmp_path / "cache", progress=False)
    fresh = image_features(bb, load_dataset(root).val, tmp_path / "fresh", progress=False)
    assert torch.equal(after.feats, fresh.feats) and not torch.equal(after.feats, before.feats)


def test_a_copy_of_the_dataset_elsewhere_is_a_new_key(small_world, tiny_clip_path, tmp_path):
    bb = load_backbone(str(tiny_clip_path))
    image_features(bb, load_dataset(small_world).val, tmp_path / "cache", progress=False)
    shutil.copytree(small_world, tmp_path / "copy")  # copy2 keeps sizes and times
    image_features(bb, load_dataset(tmp_path / "copy").val, tmp_path / "cache", progress=False)
    assert len(list((tmp_path / "cache").rglob("val-0v-*.pt"))) == 2


# ----------------------------------------------------------------------------- runs (subprocess)
def _run_cmd(world, ckpt, out, cache, *extra):
    return [sys.executable, "-m", "fewshot", "run", "--config", "miniworld-quick", "--set",
            f"data={world}", f"backbone={ckpt}", f"out={out}", f"cache_dir={cache}", "shots=[1,2]",
            "seeds=[1]", "progress=false", "merge_tasks=", *extra]


def _signature(out: Path) -> dict:
    return {(r["method"], r["eval_set"], r["shots"], r["seed"], r["role"], json.dumps(r["hyperparameters"], sort_keys=True)):
            (r["metrics"], r["tuned_on"]) for r in RunDir(out).read_records()}


@pytest.fixture(scope="module")
def clean_run(small_world, tiny_clip_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clean")
    res = subprocess.run(_run_cmd(small_world, tiny_clip_path, tmp / "run", tmp / "cache"),
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return tmp


STEPS = ["zeroshot", "splits", "features", "tip_adapter", "tip_adapter_f", "wise"]


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.4])
@pytest.mark.parametrize("step", STEPS)
def test_sigkill_during_a_step_then_rerun_gives_identical_records(step, delay, clean_run, small_world,
                                                                  tiny_clip_path, tmp_path):
    cmd = _run_cmd(small_world, tiny_clip_path, tmp_path / "run", clean_run / "cache")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:  # kill as the step starts, or a little into it
        if line.startswith(f"[fewshot] {step} "):
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode in (-signal.SIGKILL, 0)  # 0: the whole run ended within the delay
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert _signature(tmp_path / "run") == _signature(clean_run / "run")
    assert not list((tmp_path / "run").rglob("*.tmp")) and not list((clean_run / "cache").rglob("*.tmp"))


def test_a_cut_results_line_is_named(clean_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(clean_run / "run", run)
    path = run / "results" / "tip-adapter.jsonl"
    path.write_text(path.read_text()[:-40])
    with pytest.raises(MissingStepError, match=r"tip-adapter.jsonl:\d+ is not a complete record"):
        RunDir(run).read_records()
    assert cli.main(["report", "--run", str(run), "--out", str(tmp_path / "rep")]) == 2


def test_records_of_two_configs_are_never_mixed_in_a_report(clean_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(clean_run / "run", run)
    path = run / "results" / "tip-adapter-f.jsonl"
    path.write_text("".join(json.dumps({**r, "config_digest": "0123456789ab"}) + "\n"
                            for r in RunDir(run).read_records("tip-adapter-f")))
    with pytest.raises(MissingStepError, match="records of different configs.*0123456789ab: tip-adapter-f"):
        from fewshot.report.build import load_run

        load_run(run)


def test_another_config_in_the_same_run_folder_is_refused(clean_run, small_world, tiny_clip_path, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(clean_run / "run", run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    res = subprocess.run(_run_cmd(small_world, tiny_clip_path, run, clean_run / "cache", "epochs=3"),
                         capture_output=True, text=True)
    assert res.returncode == 2 and "holds a run with other settings (epochs: 4 there, 3 here)" in res.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_second_writer_is_refused_while_the_folder_is_locked(tmp_path):
    rd = RunDir(tmp_path / "run")
    with rd.lock("first"):
        with pytest.raises(RunLockedError, match="being written by another process"):
            code = ("from fewshot.run.rundir import RunDir\n"
                    f"with RunDir({str(tmp_path / 'run')!r}).lock('second'): pass\n")
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            assert res.returncode != 0
            raise RunLockedError(res.stderr.strip().splitlines()[-1])
    with rd.lock("again"):  # released afterwards
        pass


def test_a_killed_writers_temporary_files_are_swept_and_a_live_ones_kept(tmp_path):
    """A kill between mkstemp and rename leaves ``.<name>.pid<PID>.<random>.tmp``; the next
    writer of the folder deletes those of dead processes and never a live writer's; a name
    without a pid is not provably the suite's and is kept (it may be a user's file)."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / "run" / "results" / f".zero-shot.jsonl.pid{pid}.abc123.tmp"
    old_style = tmp_path / "run" / "fitted" / ".shots1_seed1.pt.xyz.tmp"
    live = tmp_path / "run" / "predictions" / f".index.json.pid{os.getpid()}.def456.tmp"
    for f in (stale, old_style, live):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("cut")
    with RunDir(tmp_path / "run").lock("a step"):
        pass
    assert not stale.exists() and old_style.exists() and live.exists()


def test_a_diverging_training_stops_the_run_with_one_line(small_world, tiny_clip_path, tmp_path):
    res = subprocess.run(_run_cmd(small_world, tiny_clip_path, tmp_path / "run", tmp_path / "cache",
                                  "lr=10", "tip_f_recipe=fp32"), capture_output=True, text=True)
    lines = [line for line in res.stderr.splitlines() if not line.startswith("warning: ")]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("error: Tip-Adapter-F (1-shot, seed 1): the training loss became nan")
    assert "warning: " in res.stderr and "matches no known CLIP checkpoint" in res.stderr
    assert not (tmp_path / "run" / "results" / "tip-adapter-f.jsonl").exists()  # nothing half-written


def test_non_finite_logits_are_refused():
    s = EvalSet("val", torch.eye(3), torch.tensor([0, 1, 2]), (0, 1, 2))
    with pytest.raises(NonFiniteError, match="logits of wise-ft \\(2-shot, seed 1\\) on val"):
        evaluate(lambda f: f * float("nan"), {"val": s}, "wise-ft (2-shot, seed 1)")


# ----------------------------------------------------------------------------- bad config input
BAD_SETS = [
    "shots=5", "shots=[0]", "shots=[]", "shots=[1.5]", 'shots="1"', "shots=[1,1]", "seeds=[]",
    "seeds=[-1]", "epochs=-1", "epochs=0", "views=0", "views=2.0", "cv_folds=1", "templates=nope",
    "batch_size=0", "train_batch_size=-4", "num_workers=-1", "beta_steps=0", "alpha_steps=0",
    "beta_max=0", "alpha_max=nan", "alpha_max=inf", "lr=1e300", "lr=100", "lr=0", 'lr="0.1"',
    "lambdas=[nan]", "lambdas=[2]", "lambdas=[-0.1]", "lambdas=[]", "oracle=no", 'oracle="false"',
    "oracle=1", "progress=maybe", "skip_bad_images=1", "fisher=no", "device=gpu", "decode=fast",
    "tip_f_recipe=fast", "methods=[nope]", 'methods=["wise-ft"]', "aug_seed=-1", "data=",
    'shift_sets={"x": ["p", "bogus"]}', 'shift_sets=["p"]', "shots=[100]", "novalue",
]


@pytest.mark.parametrize("override", BAD_SETS)
def test_every_bad_config_value_is_one_clean_error_line_before_any_work(override, small_world, tiny_clip_path,
                                                                        tmp_path, capsys):
    args = ["run", "--config", "miniworld-quick", "--set", f"data={small_world}", f"backbone={tiny_clip_path}",
            f"out={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}", "merge_tasks=", override]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()  # no work done


@pytest.mark.parametrize("text", ["{", "[1, 2]", '{"shots": [1], "bogus": 1}', "\xff"])
def test_a_broken_config_file_is_one_clean_error_line(text, tmp_path, capsys):
    path = tmp_path / "cfg.json"
    path.write_bytes(text.encode("latin-1"))
    assert cli.main(["run", "--config", str(path), "--set", f"out={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and err.count("\n") == 1


def test_repeated_set_groups_accumulate():
    args = cli.build_parser().parse_args(["run", "--set", "shots=[1]", "--set", "seeds=[2]", "lr=0.01"])
    from fewshot.run.overrides import parse_overrides

    assert parse_overrides(args.set) == {"shots": [1], "seeds": [2], "lr": 0.01}


def test_unknown_steps_and_configs_are_one_clean_line(capsys):
    assert cli.main(["run", "--steps", "train"]) == 2
    assert cli.main(["run", "--config", "nope"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("error: unknown steps train") and lines[1].startswith("error: no config file 'nope'")
