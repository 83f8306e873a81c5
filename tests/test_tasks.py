"""The task world of the merge study (fewshot.world.tasks): eight tasks, an unlabeled split per
task, the settings in the marker, and the first five tasks' bytes as they were."""
import hashlib
import json
import math
import re

import pytest
from PIL import Image, ImageStat

from fewshot import cli
from fewshot.base.errors import ConfigError
from fewshot.data.checks import check_dataset
from fewshot.data.datasets import load_dataset, unlabeled_images
from fewshot.world.generate import tree_digest
from fewshot.world.tasks import TASKS, make_tasks, val_for_standard_error

FIVE = ("shape", "colour", "count", "position", "style")
TINY = dict(train=2, val=2, unlabeled=3)
# SHA-256 over the five tasks' train/, val/, classnames.txt and label2class.json of
# make_tasks(train=2, val=2), computed with the generator as it was before the unlabeled split and
# the last three tasks existed (commit 10922c1): those files must stay byte for byte.
FIVE_DIGEST = "3a9625c0ee2d1775331362d8dead77c97c07644378e84d56929ef9c3a165def0"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_tasks(tmp_path_factory.mktemp("tasks") / "tasks", **TINY)


def _labelled_digest(root, tasks) -> str:
    h = hashlib.sha256()
    for t in tasks:
        for p in sorted(q for q in (root / t).rglob("*") if q.is_file()):
            rel = p.relative_to(root).as_posix()
            if rel.split("/")[1] in ("train", "val", "classnames.txt", "label2class.json"):
                h.update(rel.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def test_the_first_five_tasks_keep_their_bytes(world):
    assert _labelled_digest(world, FIVE) == FIVE_DIGEST


def test_eight_tasks_in_order_and_the_marker_records_the_settings(world):
    assert list(TASKS)[:5] == list(FIVE) and len(TASKS) == 8
    marker = json.loads((world / ".fewshot-tasks").read_text())
    assert marker == {"version": 2, "train": 2, "val": 2, "unlabeled": 3, "seed": 0, "tasks": list(TASKS),
                      "soup": "count", "no_flip": ["position"]}
    assert sorted(p.name for p in world.iterdir() if p.is_dir()) == sorted(TASKS)


@pytest.mark.parametrize("task,classes", [("size", ["small", "medium", "large"]),
                                          ("background", ["dark", "grey", "light"]),
                                          ("outline", ["filled", "outline"])])
def test_the_new_tasks_have_their_classes_and_load(world, task, classes):
    assert TASKS[task] == classes
    ds = load_dataset(world / task)
    assert ds.classnames == classes and ds.num_classes == len(classes)
    assert len(ds.train) == 2 * len(classes) and len(ds.val) == 2 * len(classes)
    assert not any("unlabeled" in p for p in ds.train.paths + ds.val.paths)


def test_the_background_task_is_what_its_class_says(tmp_path):
    root = make_tasks(tmp_path / "t", train=8, val=1, unlabeled=0, tasks=("background",))
    ds = load_dataset(root / "background")
    brightness = [sum(ImageStat.Stat(Image.open(ds.root / p).convert("L")).mean) for p in ds.train.paths]
    by_class = [[b for b, y in zip(brightness, ds.train.labels) if y == c] for c in range(3)]
    assert max(by_class[0]) < min(by_class[1]) and max(by_class[1]) < min(by_class[2])  # dark < grey < light


def test_the_unlabeled_split_is_flat_counted_and_names_no_label(world):
    for task, names in TASKS.items():
        files = unlabeled_images(world / task)
        assert [f.name for f in files] == [f"unl_{i:05d}.jpg" for i in range(3)]
        assert all(f.parent == world / task / "unlabeled" for f in files)
        wnids = (world / task / "classnames.txt").read_text().split()[::2]
        assert not any(n in f.name for f in files for n in names + wnids)
        labelled = {p.read_bytes() for split in ("train", "val") for p in (world / task / split).rglob("*.JPEG")}
        assert not labelled & {f.read_bytes() for f in files}  # drawn from their own seeds
        assert all(Image.open(f).size == (96, 96) for f in files)


def test_unlabeled_images_of_a_dataset_without_them_is_empty(world, tmp_path):
    assert unlabeled_images(tmp_path) == []
    assert len(unlabeled_images(make_tasks(tmp_path / "t", train=1, val=1, unlabeled=0, tasks=("size",)) / "size")) == 0
    assert not (tmp_path / "t" / "size" / "unlabeled").exists()


def test_two_builds_are_byte_identical_and_other_settings_rebuild(world, tmp_path):
    again = make_tasks(tmp_path / "again", **TINY)
    assert tree_digest(again) == tree_digest(world)
    make_tasks(again, **{**TINY, "unlabeled": 4})
    assert len(unlabeled_images(again / "size")) == 4
    assert json.loads((again / ".fewshot-tasks").read_text())["unlabeled"] == 4
    make_tasks(again, **{**TINY, "val": 3})
    assert len(load_dataset(again / "outline").val) == 6


def test_no_flip_lists_only_the_built_tasks_that_a_flip_changes(tmp_path):
    root = make_tasks(tmp_path / "t", train=1, val=1, unlabeled=1, tasks=("outline", "size"))
    marker = json.loads((root / ".fewshot-tasks").read_text())
    assert marker["tasks"] == ["outline", "size"] and marker["no_flip"] == [] and marker["soup"] == "outline"


def test_check_data_accepts_a_task_folder_and_decodes_its_unlabeled_images(world, tmp_path):
    report = check_dataset(world / "size", progress=False)
    assert report.usable, report.text()
    assert report.counts == {"train": (3, 6), "val": (3, 6)} and report.unlabeled == 3
    assert "unlabeled: 3 images (no labels)" in report.text()
    broken = make_tasks(tmp_path / "b", train=1, val=1, unlabeled=2, tasks=("size",)) / "size"
    (broken / "unlabeled" / "unl_00001.jpg").write_bytes(b"")
    assert dict(check_dataset(broken, progress=False).bad) == {
        str(broken / "unlabeled" / "unl_00001.jpg"): "empty file (0 bytes)"}
    for f in unlabeled_images(broken):
        f.unlink()
    problems = check_dataset(broken, progress=False).problems
    assert len(problems) == 1 and "unlabeled holds no images" in problems[0]


def test_val_for_standard_error_is_the_smallest_that_reaches_it():
    def se(val, tasks):  # the mean top-1's standard error in points, every task at 50 %
        return 100 * math.sqrt(sum(0.25 / (len(TASKS[t]) * val) for t in tasks)) / len(tasks)

    for tasks in (FIVE, tuple(TASKS)):
        v = val_for_standard_error(0.5, tasks)
        assert se(v, tasks) <= 0.5 < se(v - 1, tasks)
    assert val_for_standard_error() == 480


def test_make_tasks_command_takes_val_unlabeled_and_tasks(tmp_path, capsys):
    out = tmp_path / "t"
    assert cli.main(["world", "make-tasks", "--out", str(out), "--val", "1", "--unlabeled", "2",
                     "--tasks", "position", "background"]) == 0
    marker = json.loads((out / ".fewshot-tasks").read_text())
    assert (marker["val"], marker["unlabeled"], marker["tasks"]) == (1, 2, ["position", "background"])
    assert marker["no_flip"] == ["position"] and len(unlabeled_images(out / "background")) == 2
    assert cli.main(["world", "make-tasks", "--out", str(out), "--tasks", "size", "sise"]) == 2
    assert re.search(r"error: tasks \['size', 'sise'\]: .*\(unknown: sise\)", capsys.readouterr().err)
    with pytest.raises(ConfigError, match=r"unlabeled=-1: expected a whole number >= 0"):
        make_tasks(out, unlabeled=-1)
