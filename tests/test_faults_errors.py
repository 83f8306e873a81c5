"""Fault injection, part B of issue #27: every failure a user can cause is one ``error:`` line.

Each case asserts the exit code, a single ``error:`` line (warnings aside), no traceback, and that
every file present before the command is still there, unchanged: loader-worker errors, empty
shifted sets, out-of-range seeds and shots, caches of the wrong width, file-system faults, hand-
edited run folders, devices the machine lacks, and check-data's escaped names and linked folders.
"""
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fewshot import cli
from fewshot.models.backbones import load_backbone
from fewshot.features.cache import tensors_digest
from fewshot.data.checks import check_dataset
from fewshot.run.config import RunConfig, config_digest, save_config
from fewshot.data.datasets import load_dataset
from fewshot.base.errors import DiskFullError, ImageError
from fewshot.features.encode import image_features, text_classifier
from fewshot.features.loaders import encode_images_gpu
from fewshot.features.preprocess import augment_views
from fewshot.protocol.results import dumps_records, make_record


def _files(*roots) -> dict:
    """Every file under ``roots`` (links as their target) -> its bytes: the state to keep."""
    out = {}
    for root in map(Path, roots):
        for p in sorted(root.rglob("*")) if root.is_dir() else [root] if root.exists() else []:
            out[p] = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None
    return out


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _run(capsys, world, ckpt, out, cache, *sets, steps=("zeroshot",)):
    args = ["run", "--config", "miniworld-quick", "--set", f"data={world}", f"backbone={ckpt}",
            f"out={out}", f"cache_dir={cache}", "shots=[1]", "seeds=[1]", "merge_tasks=", *sets]
    code = cli.main(args + ["--steps", *steps])
    return code, capsys.readouterr().err


@pytest.fixture()
def world(small_world, tmp_path):
    root = tmp_path / "world"
    shutil.copytree(small_world, root, symlinks=True)
    return root


# ----------------------------------------------------------------------------- 8: loader workers
def test_a_bad_image_in_a_loader_worker_is_one_line_naming_the_file(world, tiny_clip_path, tmp_path, capsys):
    bad = sorted((world / "val").rglob("*.JPEG"))[0]
    bad.write_bytes(b"not an image")
    before = _files(world)
    code, err = _run(capsys, world, tiny_clip_path, tmp_path / "run", tmp_path / "cache", "num_workers=1")
    line = _one_error(err)
    assert code == 2 and str(bad) in line and "cannot decode image" in line and "DataLoader" not in err
    assert _files(world) == before


def test_an_unreadable_file_in_a_byte_reading_worker_is_named(small_world, tiny_clip_path):
    bb, ds = load_backbone(str(tiny_clip_path)), load_dataset(small_world)
    paths = ds.val.paths[:3] + ["val/n90000000/gone.JPEG"]
    with pytest.raises(ImageError) as info:
        encode_images_gpu(bb.model, ds.root, paths, 32, "cpu", batch_size=2, num_workers=1, progress=False)
    assert str(info.value).startswith(f"{ds.root / paths[-1]}: cannot be read (No such file")
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- 9: empty shifted set
def test_an_empty_shift_folder_is_refused_before_work_and_named_by_check_data(world, tiny_clip_path, tmp_path, capsys):
    (world / "shift" / "empty").mkdir()
    before = _files(world)
    code, err = _run(capsys, world, tiny_clip_path, tmp_path / "run", tmp_path / "cache")
    assert code == 2 and "shift/empty: shifted test set 'empty' holds no images" in _one_error(err)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()  # no work done
    report = check_dataset(world, progress=False)
    assert not report.usable and any("shift/empty" in p for p in report.problems)
    assert report.shifted == {"sketch": (100, 100)}
    assert _files(world) == before


# ----------------------------------------------------------------------------- 10: seeds and shots
@pytest.mark.parametrize("override", ["aug_seed=9223372036854775808", "seeds=[18446744073709551616]",
                                      "ft_seeds=[9223372036854775808]", "seeds=[-1]"])
def test_seeds_out_of_range_are_refused_before_work(override, world, tiny_clip_path, tmp_path, capsys):
    code, err = _run(capsys, world, tiny_clip_path, tmp_path / "run", tmp_path / "cache", override)
    assert code == 2 and "must be an integer >= 0 and <= 9223372036854775807" in _one_error(err)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_any_seed_torch_accepts_gives_views_and_small_seeds_keep_their_old_views():
    from PIL import Image

    img = Image.new("RGB", (40, 30), (200, 10, 10))
    img.paste((0, 0, 255), (0, 0, 20, 15))
    big = [augment_views(img, 16, 2, seed, 3) for seed in (20240601, 2**63 - 1)]
    assert big[0].shape == (2, 3, 16, 16) and not torch.equal(big[0], big[1])
    g = torch.Generator().manual_seed((1 * 1_000_003 + 1) * 10_000_019 + 3)  # the formula before #27
    assert torch.rand(32, generator=g).tolist() == torch.rand(
        32, generator=torch.Generator().manual_seed(((1 * 1_000_003 + 1) * 10_000_019 + 3) % 2**64)).tolist()


@pytest.mark.parametrize("args", [["--shots", "0"], ["--shots", "-1"], ["--seeds", str(2**64)]])
def test_splits_shots_and_seeds_out_of_range_are_one_line(args, small_world, tmp_path, capsys):
    assert cli.main(["splits", "--data", str(small_world), "--out", str(tmp_path / "s"), *args]) == 2
    assert args[0] in _one_error(capsys.readouterr().err) and not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- 11: cache width
@pytest.mark.parametrize("forge", ["narrow", "float32"])
def test_a_forged_cache_of_the_wrong_width_or_dtype_is_recomputed(forge, small_world, tiny_clip_path, tmp_path):
    bb, ds = load_backbone(str(tiny_clip_path)), load_dataset(small_world)
    clean = image_features(bb, ds.val, tmp_path, progress=False)
    path = next(tmp_path.rglob("val-0v-*.pt"))
    payload = torch.load(path, weights_only=True)
    feats = payload["data"]["feats"]
    payload["data"]["feats"] = feats[:, :32].contiguous() if forge == "narrow" else feats.float()
    payload["checksum"] = tensors_digest(payload["data"])  # a forger who rewrites the checksum
    torch.save(payload, path)
    with pytest.warns(UserWarning, match="failed verification.*not the backbone's float16 x 64"):
        again = image_features(bb, ds.val, tmp_path, progress=False)
    assert torch.equal(again.feats, clean.feats) and again.feats.dtype == torch.float16
    assert torch.equal(image_features(bb, ds.val, tmp_path, progress=False).feats, clean.feats)  # healed


def test_a_forged_text_head_of_the_wrong_width_is_recomputed(tiny_clip_path, tmp_path):
    bb = load_backbone(str(tiny_clip_path))
    clean = text_classifier(bb, ["cat", "dog"], "single", tmp_path, progress=False)
    path = next(tmp_path.rglob("text-*.pt"))
    payload = torch.load(path, weights_only=True)
    payload["data"]["weights"] = payload["data"]["weights"][:, :16].contiguous()
    payload["checksum"] = tensors_digest(payload["data"])
    torch.save(payload, path)
    with pytest.warns(UserWarning, match=r"not a float32 \[2, 64\] text head"):
        assert torch.equal(text_classifier(bb, ["cat", "dog"], "single", tmp_path, progress=False), clean)


# ----------------------------------------------------------------------------- 12: file systems
@pytest.mark.parametrize("where", ["out-is-a-file", "cache-is-a-file", "out-under-a-file", "out-in-proc",
                                   "lock-is-a-folder"])
def test_a_path_setting_of_the_wrong_kind_is_one_line_before_work(where, world, tiny_clip_path, tmp_path, capsys):
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes")
    out, cache = tmp_path / "run", tmp_path / "cache"
    out, cache, setting = {"out-is-a-file": (mine, cache, "out"), "cache-is-a-file": (out, mine, "cache_dir"),
                           "out-under-a-file": (mine / "run", cache, "out"),
                           "out-in-proc": (Path("/proc/fewshot-run"), cache, "out"),
                           "lock-is-a-folder": (out, cache, ".lock")}[where]
    if where == "lock-is-a-folder":
        (out / ".lock").mkdir(parents=True)
    if where == "out-in-proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    before = _files(tmp_path)
    code, err = _run(capsys, world, tiny_clip_path, out, cache)
    line = _one_error(err)
    assert code == 2 and (f"`{setting}` = " in line or setting == ".lock" and "is not a file" in line), line
    assert _files(tmp_path) == before  # nothing written, nothing removed


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only file system"), (errno.EACCES, "not writable")])
def test_a_read_only_or_forbidden_folder_is_one_line_before_work(code, words, world, tiny_clip_path, tmp_path,
                                                                  capsys, monkeypatch):
    import fewshot.run.preflight

    def refuse(prefix, dir):
        raise OSError(code, os.strerror(code), dir)

    monkeypatch.setattr(fewshot.run.preflight.tempfile, "mkdtemp", refuse)  # root ignores mode bits
    exit_code, err = _run(capsys, world, tiny_clip_path, tmp_path / "run", tmp_path / "cache")
    assert exit_code == 2 and words in _one_error(err) and not (tmp_path / "run").exists()


@pytest.mark.parametrize("code, exit_code", [(errno.EROFS, 2), (errno.EACCES, 2), (errno.ENOSPC, 1)])
def test_a_write_refused_mid_run_is_one_line_and_earlier_files_stay(code, exit_code, small_world, tmp_path,
                                                                     capsys, monkeypatch):
    import fewshot.base.atomic

    out = tmp_path / "splits"
    assert cli.main(["splits", "--data", str(small_world), "--out", str(out), "--shots", "1"]) == 0
    before = _files(out)
    monkeypatch.setattr(fewshot.base.atomic.tempfile, "mkstemp", lambda **kw: (_ for _ in ()).throw(
        OSError(code, os.strerror(code), kw["dir"])))  # the folder turned read-only, or full
    capsys.readouterr()
    assert cli.main(["splits", "--data", str(small_world), "--out", str(out), "--shots", "1", "2"]) == exit_code
    assert str(out) in _one_error(capsys.readouterr().err) and _files(out) == before


def test_a_full_disk_during_torch_save_is_disk_full_not_an_iostream_error(tmp_path, monkeypatch):
    import fewshot.base.atomic

    target = tmp_path / "state.pt"
    fewshot.base.atomic.atomic_torch_save({"w": torch.ones(3)}, target)
    before, real_open = target.read_bytes(), open

    class Full:  # the disk fills after the first bytes: ENOSPC from write(), as a real disk gives
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(fewshot.base.atomic, "open", lambda p, mode="r": Full(real_open(p, mode)), raising=False)
    with pytest.raises(DiskFullError, match=f"no space left to write {target}"):
        fewshot.base.atomic.atomic_torch_save({"w": torch.zeros(1000)}, target)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_a_file_size_limit_is_one_line_in_a_real_process(tmp_path):
    code = ("import resource, torch\nfrom fewshot.cli import main\nfrom fewshot.base.atomic import atomic_torch_save\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))\n"
            "from fewshot.base.errors import FewshotError\n"
            f"try:\n    atomic_torch_save({{'w': torch.zeros(1 << 16)}}, {str(tmp_path / 'big.pt')!r})\n"
            "except FewshotError as e:\n    print('error:', e); raise SystemExit(e.exit_code)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 2 and "(EFBIG)" in res.stdout and not list(tmp_path.iterdir()), res.stderr


@pytest.mark.parametrize("root", ["notes.txt", "/proc/fewshot-weights"])
def test_a_download_root_that_cannot_take_the_checkpoint_is_named_before_work(root, world, tmp_path, capsys,
                                                                               monkeypatch):
    if root.startswith("/proc") and not Path("/proc/self").exists():
        pytest.skip("no /proc on this machine")
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("mine")
    code, err = _run(capsys, world, "RN50", tmp_path / "run", tmp_path / "cache", f"download_root={root}")
    line = _one_error(err)
    assert code == 2 and f"`download_root` = {root}" in line and "RN50" not in line.split("download_root")[0], line
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
    assert Path("notes.txt").read_text() == "mine"


@pytest.mark.parametrize("out", ["/proc/fewshot-report", "notes.txt"])
def test_report_out_of_the_wrong_kind_is_one_line(out, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("mine")
    assert cli.main(["report", "--run", str(tmp_path / "run"), "--out", out]) == 2
    assert f"= {out}" in _one_error(capsys.readouterr().err) and Path("notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- 13: hand-edited runs
def _hand_run(root: Path) -> Path:
    cfg = RunConfig(out=str(root))
    save_config(cfg, root / "config.json")
    rec = make_record("zero-shot", "val", {"top1": 50.0, "top5": 80.0}, tuned_on="none",
                      context={"config_digest": config_digest(cfg), "backbone": "tiny.pt"})
    (root / "results").mkdir()
    (root / "results" / "zero-shot.jsonl").write_text(dumps_records([rec]))
    return root


def _edit_record(run: Path, change) -> None:
    path = run / "results" / "zero-shot.jsonl"
    rec = json.loads(path.read_text())
    change(rec)
    path.write_text(json.dumps(rec) + "\n")  # json.dumps writes NaN as NaN, as a hand edit might


EDITS = {
    "config-extra-key": lambda run: _edit_json(run / "config.json", lambda c: {**c, "notes": "mine"}),
    "config-a-list": lambda run: (run / "config.json").write_text("[1, 2]"),
    "config-wrong-type": lambda run: _edit_json(run / "config.json", lambda c: {**c, "shots": "16"}),
    "record-without-tuned_on": lambda run: _edit_record(run, lambda r: r.pop("tuned_on")),
    "record-without-top1": lambda run: _edit_record(run, lambda r: r["metrics"].pop("top1")),
    "record-nan-top1": lambda run: _edit_record(run, lambda r: r["metrics"].update(top1=float("nan"))),
    "record-top1-text": lambda run: _edit_record(run, lambda r: r["metrics"].update(top1="50")),
}


def _edit_json(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_hand_edited_run_folder_is_one_line_naming_the_file(edit, tmp_path, capsys):
    run = _hand_run(tmp_path / "run")
    EDITS[edit](run)
    before = _files(run)
    assert cli.main(["report", "--run", str(run), "--out", str(tmp_path / "report")]) == 2
    line = _one_error(capsys.readouterr().err)
    assert ("config.json" if edit.startswith("config") else "zero-shot.jsonl:1") in line, line
    assert _files(run) == before and not (tmp_path / "report").exists()


# ----------------------------------------------------------------------------- 15: devices
@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps"])
def test_a_device_the_machine_lacks_is_named_not_the_checkpoint(device, world, tiny_clip_path, tmp_path, capsys):
    if device.startswith("cuda") and torch.cuda.device_count() > int(device[5:] or 0) or \
            device == "mps" and torch.backends.mps.is_available():
        pytest.skip(f"this machine has {device}")
    code, err = _run(capsys, world, tiny_clip_path, tmp_path / "run", tmp_path / "cache", f"device={device}")
    line = _one_error(err)
    assert code == 2 and line.startswith(f"error: device={device!r}: this machine has no") and "checkpoint" not in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
