"""Fault injection, part A of issue 27: what users keep is never deleted, no wrong result exits 0.

Each case checks the exit code, a single ``error:`` line without a traceback, and that every file
present before the command is still there, unchanged: generators on foreign folders, look-alike
temporary files, degenerate backbones and caches, a checkpoint named like another model, ``~`` and
variables in path settings, images whose decode is huge although their file is tiny, and a
checkout that was copied or moved with its environment.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot import cli
from fewshot.models.backbones import build_clip, load_backbone, save_checkpoint, shipped_path
from fewshot.features.cache import cached, tensors_digest
from fewshot.run.config import RunConfig
from fewshot.data.datasets import ImageSet, load_dataset
from fewshot.base.errors import BackboneError, ConfigError, DatasetError, ImageError
from fewshot.features.encode import degeneracy, image_features
from fewshot.data.images import MAX_ASPECT, load_rgb, nvjpeg_decodable, size_problem
from fewshot.run.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(embed_dim=64, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
            context_length=16, transformer_width=64, transformer_layers=1)


def _snapshot(root: Path) -> dict:
    """Every file and link under ``root`` (hidden ones too): relative path -> bytes or link target."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[p.relative_to(root).as_posix()] = ("link", os.readlink(p))
        elif p.is_file():
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def _user_files(folder: Path) -> Path:
    """A folder of a user's own things: a thesis, hidden notes, a dataset copy."""
    (folder / "mydata").mkdir(parents=True)
    (folder / "mydata" / "thesis.txt").write_text("three years of work")
    (folder / ".notes.tmp").write_text("draft")
    Image.new("RGB", (8, 8), "red").save(folder / "mydata" / "photo.JPEG")
    return folder


def _one_error_line(err: str, start: str = "error: ") -> str:
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith(start), err
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------- 1. generators
@pytest.mark.parametrize("command", [["world", "make"], ["world", "make-tasks"],
                                     ["world", "make-imagenet-shaped", "--smoke"]])
def test_a_generator_refuses_a_folder_it_did_not_write_and_keeps_every_file(command, tmp_path, capsys):
    out = _user_files(tmp_path / "D")
    before = _snapshot(tmp_path)
    assert cli.main(command + ["--out", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{out} exists and was not written by `{' '.join(command[:2])}`" in line and "--force" in line
    assert _snapshot(tmp_path) == before  # nothing written beside it either


def test_a_tree_an_earlier_generator_wrote_is_still_its_own(tmp_path):
    from fewshot.world.guard import claim
    from fewshot.world.imagenet_shaped import MARKER, _earlier_tree

    (tmp_path / "old" / "ImageNet-1K-16shot").mkdir(parents=True)
    (tmp_path / "old" / "ImageNet-1K-16shot" / "classnames.txt").write_text("n10000000 synthetic class 0\n")
    assert claim(tmp_path / "old", MARKER, "world make-imagenet-shaped", ours=_earlier_tree) == tmp_path / "old"
    (tmp_path / "old" / "ImageNet-1K-16shot" / "classnames.txt").write_text("n01440764 tench\n")  # a real one
    with pytest.raises(DatasetError, match="not written by `world make-imagenet-shaped`"):
        claim(tmp_path / "old", MARKER, "world make-imagenet-shaped", ours=_earlier_tree)


def test_a_foreign_file_at_out_is_refused(tmp_path, capsys):
    (tmp_path / "D").write_text("not a folder")
    assert cli.main(["world", "make-tasks", "--out", str(tmp_path / "D")]) == 2
    assert "is a file" in _one_error_line(capsys.readouterr().err)
    assert (tmp_path / "D").read_text() == "not a folder"


@pytest.mark.parametrize("planted", ["my-model.pt", "my-model.log.json"])
def test_train_clip_refuses_an_out_file_it_did_not_write_before_training(planted, tmp_path, capsys):
    (tmp_path / planted).write_text("a user's file")
    before = _snapshot(tmp_path)
    assert cli.main(["world", "train-clip", "--out", str(tmp_path / "my-model.pt")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{tmp_path / planted} exists and is not a checkpoint `world train-clip` wrote" in line
    assert _snapshot(tmp_path) == before


def test_train_clip_may_replace_its_own_checkpoint_and_force_moves_others_aside(tmp_path, capsys):
    from fewshot.world.guard import claim_checkpoint

    ours = tmp_path / "m.pt"
    ours.write_bytes(b"weights")
    (tmp_path / "m.sha256").write_text(__import__("hashlib").sha256(b"weights").hexdigest() + "  m.pt\n")
    assert claim_checkpoint(ours, "world train-clip") == ours  # its own: replaced by the new one
    (tmp_path / "m.sha256").write_text("0" * 64 + "  m.pt\n")  # the file was changed since
    with pytest.raises(DatasetError, match="not a checkpoint"):
        claim_checkpoint(ours, "world train-clip")
    claim_checkpoint(ours, "world train-clip", force=True)
    assert not ours.exists() and sorted(p.read_bytes() for p in tmp_path.glob("m.pt.old-*")) == [b"weights"]
    assert len(list(tmp_path.glob("m.sha256.old-*"))) == 1


SMALL = {"train": 1, "val": 1, "shift/sketch": 0}


def test_force_moves_a_foreign_folder_aside_and_deletes_nothing(tmp_path, capsys):
    from fewshot.world.generate import make_world

    out = _user_files(tmp_path / "D")
    before = _snapshot(out)
    make_world(out, per_class=SMALL, workers=1, force=True)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("D.old-")]
    assert len(aside) == 1 and _snapshot(aside[0]) == before  # every byte kept, elsewhere
    assert "moved" in capsys.readouterr().err and (out / ".fewshot-world").is_file()
    assert not (out / "mydata").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["D", aside[0].name]


def test_a_file_a_user_added_to_a_generated_folder_is_never_deleted(tmp_path):
    from fewshot.world.generate import make_world

    out = make_world(tmp_path / "w", per_class=SMALL, workers=1)
    (out / "my-labels.csv").write_text("a,b\n")
    before = _snapshot(out)
    for per_class in (SMALL, {**SMALL, "val": 2}):  # the same settings (file count differs), others
        with pytest.raises(DatasetError, match=r"holds files `world make` does not write \(my-labels.csv\)"):
            make_world(out, per_class=per_class, workers=1)
        assert _snapshot(out) == before
    assert not (tmp_path / ".w.building").exists()  # the refused build is cleaned up


def test_a_foreign_folder_named_like_the_build_folder_survives(tmp_path):
    from fewshot.world.tasks import make_tasks

    _user_files(tmp_path / ".tasks.building")
    before = _snapshot(tmp_path)
    with pytest.raises(DatasetError, match=r"\.tasks\.building exists and was not made by the suite"):
        make_tasks(tmp_path / "tasks", train=1, val=1, tasks=("count",))
    assert _snapshot(tmp_path) == before


def test_a_killed_build_of_the_suite_is_cleaned_and_the_tree_is_the_uninterrupted_one(tmp_path):
    from fewshot.world.guard import BUILDING_MARK
    from fewshot.world.tasks import make_tasks

    ref = _snapshot(make_tasks(tmp_path / "ref", train=1, val=1, tasks=("count",)))
    left = tmp_path / ".tasks.building"  # what a kill during a build leaves
    (left / "count" / "train").mkdir(parents=True)
    (left / BUILDING_MARK).write_text("")
    (left / "count" / "train" / "cut.JPEG").write_bytes(b"\xff\xd8")
    assert _snapshot(make_tasks(tmp_path / "tasks", train=1, val=1, tasks=("count",))) == ref
    assert not left.exists()
    shutil.copytree(tmp_path / "ref", left)  # killed after the build, before its rename
    shutil.rmtree(tmp_path / "tasks")
    assert _snapshot(make_tasks(tmp_path / "tasks", train=1, val=1, tasks=("count",))) == ref
    assert not left.exists()


# ----------------------------------------------------------------------------- 1. the sweep
def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)


def _look_alikes(folder: Path, dead: int) -> tuple[list[Path], Path]:
    """Users' files that look like temporary files, and one a killed writer of the suite left."""
    keep = [folder / ".notes.tmp", folder / "results" / ".draft.tmp", folder / "results" / ".my.notes.tmp",
            folder / f".x.pid{dead}.tmp", folder / "fitted" / f".pid{dead}.abcdefgh.tmp",
            folder / "predictions" / f".index.json.pid{os.getpid()}.k2j4h5g6.tmp"]  # a live writer's
    for f in keep:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("mine")
    (folder / "thesis.txt").write_text("mine")
    link = folder / "results" / f".zero-shot.jsonl.pid{dead}.linkxxxx.tmp"  # a link: never followed
    link.symlink_to(folder / "thesis.txt")
    keep.append(link)
    stale = folder / "results" / f".zero-shot.jsonl.pid{dead}.q8zd_1ab.tmp"
    stale.write_text("cut")
    return keep, stale


def test_the_run_folder_sweep_removes_only_a_dead_suite_writers_temporary_files(tmp_path):
    keep, stale = _look_alikes(tmp_path / "run", _dead_pid())
    before = {p: p.read_bytes() for p in keep}
    with RunDir(tmp_path / "run").lock("a step"):
        pass
    assert not stale.exists()
    assert {p: p.read_bytes() for p in keep} == before and (tmp_path / "run" / "thesis.txt").exists()


def test_the_cache_sweep_removes_only_a_dead_suite_writers_temporary_files(tmp_path):
    from fewshot.features.cache import CacheKey, cache_path

    key = CacheKey("text", "tiny.pt", "0" * 64, "templates-single", "1" * 64)
    folder = cache_path(key, tmp_path, "text-single").parent
    keep, stale = _look_alikes(folder, _dead_pid())
    before = {p: p.read_bytes() for p in keep}
    cached(key, tmp_path, "text-single", lambda: {"weights": torch.eye(2)})
    assert not stale.exists() and {p: p.read_bytes() for p in keep} == before


# ----------------------------------------------------------------------------- 2. degenerate features
def _rank(x: torch.Tensor) -> int:
    """Numerical rank by numpy's SVD (float64): singular values above 1e-4 of the largest."""
    s = np.linalg.svd(x.double().numpy(), compute_uv=False)
    return int((s > 1e-4 * s[0]).sum()) if s[0] > 0 else 0


def test_degeneracy_agrees_with_the_rank_of_exact_matrices():
    g = torch.Generator().manual_seed(0)
    v, a = torch.randn(64, generator=g), torch.rand(40, 1, generator=g) + 0.5
    cases = {"zeros": torch.zeros(40, 64), "constant": v.repeat(40, 1), "scaled": a * v,
             "signs": a * v * torch.sign(torch.randn(40, 1, generator=g)), "random": torch.randn(40, 64, generator=g),
             "rank two": a * v + (torch.rand(40, 1, generator=g) * torch.randn(64, generator=g)),
             "views": torch.randn(3, 40, 64, generator=g)}
    for name, x in cases.items():
        rank = _rank(x.reshape(-1, 64))
        assert (degeneracy(x) is not None) == (rank <= 1), (name, rank, degeneracy(x))
        assert (degeneracy(x.half()) is not None) == (rank <= 1), name  # fp16 rounding changes nothing
    assert degeneracy(torch.zeros(40, 64)) == "all zero" and "identical" in degeneracy(v.repeat(5, 1))
    assert degeneracy(torch.randn(5, 64, generator=g)) is None and degeneracy(v[None]) is None
    assert degeneracy((a[:5] * v).half()) is None  # 5 rows: not told from rounding; kept
    outlier = torch.randn(100, 64, generator=g) * 1e-3
    outlier[0] = 10 * v  # one long row does not make the short, informative rest "rank one"
    assert degeneracy(outlier.half()) is None and _rank(outlier) > 1


@pytest.fixture(scope="module")
def zero_vision_path(tmp_path_factory):
    """The tests' tiny CLIP with every weight of its image tower set to zero."""
    torch.manual_seed(0)
    model = build_clip(**TINY)
    for p in model.visual.parameters():
        p.data.zero_()
    path = tmp_path_factory.mktemp("zero") / "zero-vision.pt"
    save_checkpoint(model, path)
    return path


def _run_args(world, ckpt, tmp_path, *extra):
    return ["run", "--config", "miniworld-quick", "--steps", "zeroshot", "--set", f"data={world}",
            f"backbone={ckpt}", f"out={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}",
            "merge_tasks=", "shots=[1]", "seeds=[1]", "templates=single", *extra]


def test_a_backbone_whose_image_features_carry_no_information_stops_the_run(small_world, zero_vision_path,
                                                                            tmp_path, capsys):
    before = _snapshot(small_world)
    assert cli.main(_run_args(small_world, zero_vision_path, tmp_path)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"the checkpoint {zero_vision_path} gives features that carry no information" in line
    assert "all zero" in line
    assert not list((tmp_path / "run").rglob("*.jsonl")) and not list((tmp_path / "cache").rglob("*.pt"))
    assert _snapshot(small_world) == before


@pytest.mark.parametrize("forgery", ["zeros", "constant", "rank-one"])
def test_a_forged_degenerate_cache_is_recomputed_not_used(forgery, small_world, tiny_clip_path, tmp_path):
    bb, ds = load_backbone(str(tiny_clip_path)), load_dataset(small_world)
    val = ImageSet("val", ds.root, ds.val.items[:40], ds.val.class_indices)  # rank one needs 32 rows
    clean = image_features(bb, val, tmp_path, progress=False)
    path = next(tmp_path.rglob("val-0v-*.pt"))
    payload = torch.load(path, weights_only=True)
    feats = payload["data"]["feats"]
    n = feats.shape[0]
    payload["data"]["feats"] = {"zeros": torch.zeros_like(feats), "constant": feats[:1].repeat(n, 1),
                                "rank-one": (torch.linspace(0.5, 2, n)[:, None] * feats[0].float()).half()}[forgery]
    payload["checksum"] = tensors_digest(payload["data"])  # the forger rewrites the checksum
    torch.save(payload, path)
    with pytest.warns(UserWarning, match="failed verification \\(features carry no information"):
        again = image_features(bb, val, tmp_path, progress=False)
    assert torch.equal(again.feats, clean.feats)


# ----------------------------------------------------------------------------- 2. checkpoint names
@pytest.mark.parametrize("name, model", [("RN50.pt", "RN50"), ("ViT-B-32.pt", "ViT-B/32"),
                                         ("miniclip-rn.pt", "miniclip-rn")])
def test_a_checkpoint_named_like_a_known_model_with_other_bytes_is_refused(name, model, small_world,
                                                                         tiny_clip_path, tmp_path, capsys):
    source = tiny_clip_path if name == "miniclip-rn.pt" else shipped_path("miniclip-rn")  # a known model's bytes
    fake = tmp_path / "weights" / name
    fake.parent.mkdir()
    shutil.copyfile(source, fake)
    with pytest.raises(BackboneError, match=f"named like CLIP {model} but its SHA-256"):
        load_backbone(str(fake))
    assert cli.main(_run_args(small_world, fake, tmp_path)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{fake} is named like CLIP {model}" in line
    assert not list((tmp_path / "run").rglob("*.jsonl"))
    assert fake.read_bytes() == Path(source).read_bytes()


def test_the_shipped_checkpoint_by_path_and_a_known_model_under_its_own_name_load(tmp_path):
    copy = tmp_path / "my-copy.pt"  # a known model's bytes under another name: fine, by hash
    shutil.copyfile(shipped_path("miniclip-rn"), copy)
    assert load_backbone(str(copy)).name == "my-copy.pt"
    assert load_backbone(str(shipped_path("miniclip-rn"))).name == "miniclip-rn.pt"


# ----------------------------------------------------------------------------- 3. ~ and variables
def test_tilde_and_variables_are_expanded_in_every_path_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FEWSHOT_T", str(tmp_path / "t"))
    cfg = RunConfig(data="~/data", out="~/runs/x", cache_dir="$FEWSHOT_T/cache", report_dir="${FEWSHOT_T}/rep",
                    backbone="~/w/tiny.pt", download_root="~/clip", merge_tasks="$FEWSHOT_T/tasks",
                    shift_sets={"s": ["~/sketch", "imagenet-r"]})
    home, t = str(tmp_path / "home"), str(tmp_path / "t")
    assert (cfg.data, cfg.out, cfg.backbone, cfg.download_root) == (f"{home}/data", f"{home}/runs/x",
                                                                    f"{home}/w/tiny.pt", f"{home}/clip")
    assert (cfg.cache_dir, cfg.report_dir, cfg.merge_tasks) == (f"{t}/cache", f"{t}/rep", f"{t}/tasks")
    assert cfg.shift_sets["s"][0] == f"{home}/sketch"
    assert RunConfig(backbone="ViT-B/32").backbone == "ViT-B/32"  # a registered name stays a name


@pytest.mark.parametrize("value", ["out=$FEWSHOT_UNSET_VARIABLE/run", "cache_dir=${FEWSHOT_UNSET_VARIABLE}",
                                   "data=~no_such_user_fewshot/data"])
def test_an_unset_variable_or_unknown_user_is_one_error_line_before_any_work(value, small_world, tiny_clip_path,
                                                                            tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FEWSHOT_UNSET_VARIABLE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(_run_args(small_world, tiny_clip_path, tmp_path, value)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"config field {value.split('=')[0]!r}" in line
    assert sorted(os.listdir(tmp_path)) == []  # no run, no cache, no literal `$...` or `~...` folder


def test_command_line_path_arguments_are_expanded_too(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FEWSHOT_UNSET_VARIABLE", raising=False)
    monkeypatch.chdir(tmp_path)
    out = _user_files(tmp_path / "home" / "D")
    before = _snapshot(tmp_path)
    assert cli.main(["world", "make-tasks", "--out=~/D"]) == 2  # `--out=~/D`: the shell leaves it
    assert f"{out} exists and was not written by" in _one_error_line(capsys.readouterr().err)
    assert cli.main(["report", "--run", "$FEWSHOT_UNSET_VARIABLE/run"]) == 2
    assert "uses $FEWSHOT_UNSET_VARIABLE, which is not set" in _one_error_line(capsys.readouterr().err)
    assert _snapshot(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["home"]


def test_a_run_with_tilde_paths_writes_where_the_shell_would(tiny_clip_path, tmp_path, monkeypatch,
                                                           capsys):
    from fewshot.world.generate import make_world

    home = tmp_path / "home"
    make_world(home / "data" / "w", per_class={"train": 1, "val": 1, "shift/sketch": 1}, workers=1)
    shutil.rmtree(home / "data" / "w" / "shift")  # no shifted set: fewer images to encode
    shutil.copyfile(tiny_clip_path, home / "tiny.pt")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "c"))
    monkeypatch.chdir(tmp_path)
    dead = _dead_pid()  # users' look-alike files in the run and cache folders survive the run
    (keep_run, stale_run), (keep_cache, stale_cache) = _look_alikes(home / "runs" / "x", dead), \
        _look_alikes(tmp_path / "c" / "tiny", dead)
    before = {p: p.read_bytes() for p in keep_run + keep_cache}
    args = ["run", "--config", "miniworld-quick", "--steps", "zeroshot", "--set", "data=~/data/w",
            "backbone=~/tiny.pt", "out=~/runs/x", "cache_dir=$FEWSHOT_CACHE", "merge_tasks=", "shots=[1]",
            "seeds=[1]", "templates=single"]
    assert cli.main(args) == 0, capsys.readouterr().err
    assert (home / "runs" / "x" / "results" / "zero-shot.jsonl").is_file()
    assert list((tmp_path / "c").rglob("*.pt"))
    assert sorted(os.listdir(tmp_path)) == ["c", "home"]  # no literal `~` or `$FEWSHOT_CACHE` folder
    assert {p: p.read_bytes() for p in keep_run + keep_cache} == before
    assert not stale_run.exists() and not stale_cache.exists()
    saved = json.loads((home / "runs" / "x" / "config.json").read_text())
    assert saved["data"] == str(home / "data" / "w") and saved["cache_dir"] == str(tmp_path / "c")


# ----------------------------------------------------------------------------- 4. decoded size
def test_size_limits_count_the_decode_not_the_file():
    assert size_problem(500, 375) is None and size_problem(MAX_ASPECT, 1) is None
    assert "above the limit of 30000" in size_problem(300_000, 1)
    assert "times the other" in size_problem(20_000, 2) and "times the other" in size_problem(3, 20_000)
    assert "M pixels" in size_problem(8000, 6000) and "without pixels" in size_problem(0, 5)


def _jpeg(width: int, height: int) -> bytes:
    """A small JPEG whose SOF header is rewritten to claim ``width`` × ``height``."""
    import io

    buf = io.BytesIO()
    Image.new("RGB", (16, 8)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 7], data[i + 7:i + 9] = height.to_bytes(2, "big"), width.to_bytes(2, "big")
    return bytes(data)


def test_the_gpu_decode_path_sends_oversized_jpegs_to_the_checked_cpu_path():
    assert nvjpeg_decodable(_jpeg(640, 480)) and not nvjpeg_decodable(_jpeg(60_000, 2))
    assert not nvjpeg_decodable(_jpeg(40_000, 1_000)) and not nvjpeg_decodable(_jpeg(8_000, 6_000))


def test_a_tiny_file_with_a_huge_decode_is_refused_by_name_at_once(tmp_path):
    for name, size in (("strip.png", (300_000, 1)), ("tall.png", (2, 20_000))):
        Image.new("L", size).save(tmp_path / name)
        assert (tmp_path / name).stat().st_size < 2_000
        t0 = time.perf_counter()
        with pytest.raises(ImageError, match=f"{name}: .*{size[0]}×{size[1]}"):
            load_rgb(tmp_path / name)
        assert time.perf_counter() - t0 < 1.0  # read from the header, nothing decoded


@pytest.fixture()
def strip_world(small_world, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_world, root)
    victim = sorted((root / "val").rglob("*.JPEG"))[3]
    Image.new("L", (300_000, 1)).save(victim, format="PNG")  # 953 bytes, 15 G pixels once resized
    return root, victim


@pytest.mark.parametrize("no_decode", [[], ["--no-decode"]])
def test_check_data_refuses_an_image_whose_decode_is_huge(no_decode, strip_world, capsys):
    root, victim = strip_world
    before = _snapshot(root)
    assert cli.main(["check-data", str(root), *no_decode]) == 1
    out = capsys.readouterr().out
    assert f"{victim}: 300000×1: a side of 300000 pixels" in out and "UNUSABLE: 1 file(s)" in out
    assert _snapshot(root) == before


def test_a_run_on_an_image_whose_decode_is_huge_is_one_error_line(strip_world, tiny_clip_path, tmp_path, capsys):
    root, victim = strip_world
    before = _snapshot(root)
    assert cli.main(_run_args(root, tiny_clip_path, tmp_path, "num_workers=0")) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{victim}: " in line and "300000×1" in line
    assert _snapshot(root) == before and not list((tmp_path / "cache").rglob("*.pt"))


# ----------------------------------------------------------------------------- 5. copied and moved checkouts
def _bare(code: str, *paths, cwd="/") -> subprocess.CompletedProcess:
    """A fresh interpreter without site-packages (-S -I), ``paths`` on sys.path."""
    head = f"import sys; sys.path[:0] = {[str(p) for p in paths]!r}\n"
    return subprocess.run([sys.executable, "-S", "-I", "-c", head + code], capture_output=True,
                          text=True, cwd=cwd)


def _shim_dir(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    shutil.copyfile(ROOT / "fewshot" / "_clip_compat.pth", site / "fewshot_clip_compat.pth")
    return site


def test_the_pth_shim_is_silent_when_the_package_is_gone_or_broken(tmp_path):
    site = _shim_dir(tmp_path)
    check = "import site; site.addsitedir(%r); print(sorted(m for m in sys.modules if 'fewshot' in m))" % str(site)
    gone = _bare(check)
    assert gone.returncode == 0 and gone.stderr == "" and gone.stdout.strip() == "[]"
    broken = tmp_path / "broken" / "fewshot"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise RuntimeError('never imported by the shim')\n")
    (broken / "_clip_compat.py").write_text("raise ImportError('a half-deleted package')\n")
    res = _bare(check, broken.parent)
    assert res.returncode == 0 and res.stderr == "", res.stderr


def test_the_pth_shim_installs_the_hook_without_importing_the_package(tmp_path):
    site = _shim_dir(tmp_path)
    res = _bare("import site; site.addsitedir(%r)\n" % str(site)
                + "print('fewshot' in sys.modules, sum(getattr(f, 'FEWSHOT_SHIM', False) for f in sys.meta_path))\n"
                + "import fewshot; print(sum(getattr(f, 'FEWSHOT_SHIM', False) for f in sys.meta_path))", ROOT)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert res.stdout.split() == ["False", "1", "1"]  # the package is imported only when asked; one hook


def _checkout(root: Path) -> Path:
    shutil.copytree(ROOT / "fewshot", root / "fewshot", ignore=shutil.ignore_patterns("assets", "__pycache__"))
    shutil.copyfile(ROOT / "pyproject.toml", root / "pyproject.toml")
    (root / "notebooks").mkdir()
    return root


def _editable_env(env: Path, target: Path) -> None:
    """A venv (no pip) whose editable install of fewshot points at ``target``, as hatch writes it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = Path(subprocess.run([str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_editable_impl_fewshot.pth").write_text(str(target))
    shutil.copyfile(ROOT / "fewshot" / "_clip_compat.pth", site / "fewshot_clip_compat.pth")
    info = site / "fewshot-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fewshot\nVersion: 0.1.0\n")
    (info / "direct_url.json").write_text(json.dumps({"dir_info": {"editable": True}, "url": f"file://{target}"}))


def test_a_moved_checkout_runs_its_own_code_or_says_what_to_rerun(tmp_path):
    old, new = _checkout(tmp_path / "old"), _checkout(tmp_path / "new")
    (new / "fewshot" / "MOVED").write_text("")
    _editable_env(new / ".venv", old)  # the .venv moved with the checkout; its install did not
    python = str(new / ".venv" / "bin" / "python")
    where = "import fewshot, os; print(os.path.dirname(fewshot.__file__))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a user's plain shell
    start = subprocess.run([python, "-c", "pass"], capture_output=True, text=True, env=env, cwd=new)
    assert start.returncode == 0 and start.stderr == ""  # nothing imported at interpreter start
    here = subprocess.run([python, "-c", where], capture_output=True, text=True, env=env, cwd=new)
    assert here.returncode == 0 and here.stdout.strip() == str(new / "fewshot") and here.stderr == ""
    away = subprocess.run([python, "-c", where], capture_output=True, text=True, env=env, cwd=new / "notebooks")
    assert away.stdout.strip() == str(old / "fewshot")
    line = _one_error_line(away.stderr.replace("warning: ", "error: ", 1))
    assert f"belongs to the checkout {new}" in line and f"pip install --no-deps -e {new}`" in line
    shutil.rmtree(old)  # the old place gone: the interpreter still starts, silently
    start = subprocess.run([python, "-c", "pass"], capture_output=True, text=True, env=env, cwd=new / "notebooks")
    assert start.returncode == 0 and start.stderr == ""
    here = subprocess.run([python, "-c", where], capture_output=True, text=True, env=env, cwd=new)
    assert here.stdout.strip() == str(new / "fewshot")


def test_code_on_pythonpath_is_never_questioned(tmp_path, monkeypatch):
    from fewshot import _origin

    home, other = _checkout(tmp_path / "main"), _checkout(tmp_path / "worktree")
    monkeypatch.setattr(_origin, "_editable_target", lambda: home.resolve())
    assert _origin.stale_install(other / "fewshot", home / ".venv") is None  # PYTHONPATH: on purpose
    assert _origin.stale_install(home / "fewshot", home / ".venv") is None  # the usual case
    monkeypatch.setattr(_origin, "_editable_target", lambda: other.resolve())
    assert "pip install --no-deps -e" in _origin.stale_install(other / "fewshot", home / ".venv")
