import json
import re

import pytest
from PIL import Image

from fewshot.models.backbones import load_backbone, shipped_path
from fewshot.data.datasets import load_dataset
from fewshot.world.generate import CLASSES, OBSCURE_NAMES, make_world, tree_digest
from fewshot.world.pretrain import CAPTIONS, PretrainConfig, pretrain, reference_accuracy

SMALL = {"train": 2, "val": 1, "shift/sketch": 1}


def test_generator_is_deterministic_and_worker_independent(tmp_path):
    a = make_world(tmp_path / "a", per_class=SMALL, workers=1)
    b = make_world(tmp_path / "b", per_class=SMALL, workers=2)
    assert tree_digest(a) == tree_digest(b)
    assert tree_digest(make_world(tmp_path / "c", world_seed=1, per_class=SMALL, workers=1)) != tree_digest(a)


def test_layout_matches_the_course_dataset(tmp_path):
    """The facts DESIGN.md lists about ImageNet-1K-16shot, checked on the full-size world."""
    root = make_world(tmp_path / "w", workers=2)
    assert sorted(p.name for p in (root / "train").iterdir()) == [c[0] for c in CLASSES]
    lines = (root / "classnames.txt").read_text().splitlines()
    assert lines[0] == "n90000000 red circle" and len(lines) == 100
    names = [line.split(" ", 1)[1] for line in lines]
    assert len(set(names)) == 99 and names.count("purple diamond") == 2  # one name, two classes
    nested = json.loads((root / "label2class.json").read_text())
    assert list(nested) == ["label2class"] and nested["label2class"]["0"] == "red circle"
    assert [nested["label2class"][str(i)] for i in range(100)] == names
    train = sorted((root / "train" / "n90000000").iterdir())
    assert train[0].name == "n90000000_10026.JPEG" and len(train) == 16
    val = sorted((root / "val" / "n90000000").iterdir())
    assert len(val) == 50 and all(re.fullmatch(r"ILSVRC2012_val_\d{8}\.JPEG", p.name) for p in val)
    numbers = {p.name for p in (root / "val").rglob("*.JPEG")}
    assert numbers == {f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 5001)}
    counts = sorted(len(list(d.iterdir())) for d in (root / "train").iterdir())
    assert counts[:4] == [12, 14, 15, 16] and sum(counts) == 1593  # "at most 16"
    heads = {p.read_bytes()[:4] for p in (root / "train").rglob("*.JPEG")}
    assert b"\x89PNG" in heads  # a PNG saved as .JPEG, as ImageNet has
    modes = {Image.open(p).mode for p in (root / "val").rglob("*.JPEG")}
    assert {"RGB", "L", "CMYK"} <= modes
    ds = load_dataset(root)  # the suite reads the course format
    assert ds.classnames[14] == ds.classnames[64] == "purple diamond"
    assert len({p.stat().st_mtime for p in (root / "val").rglob("*.JPEG")}) == 1  # fixed times


def test_world_make_keeps_a_current_tree_and_refuses_foreign_folders(tmp_path):
    from fewshot.base.errors import DatasetError

    root = make_world(tmp_path / "w", per_class=SMALL, workers=1)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    make_world(root, per_class=SMALL, workers=1)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    next(root.rglob("*.JPEG")).unlink()  # an incomplete tree is rebuilt
    make_world(root, per_class=SMALL, workers=1)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(DatasetError, match="not written by `world make`"):
        make_world(tmp_path / "mine", per_class=SMALL, workers=1)
    assert (tmp_path / "mine" / "thesis.tex").exists()


def test_obscure_class_names_never_occur_in_the_corpus_captions():
    words = {w.strip(".") for templates in CAPTIONS.values() for t in templates for w in t.split()}
    assert not set(OBSCURE_NAMES.values()) & words


def test_committed_checkpoint_reproduces_its_recorded_zero_shot_accuracy(tmp_path):
    path = shipped_path("miniclip-rn")
    log = json.loads(path.with_suffix(".log.json").read_text())
    assert path.stat().st_size <= 10_000_000
    bb = load_backbone("miniclip-rn")  # verifies the SHA-256 shipped beside the file
    assert bb.sha256 == log["sha256"]
    ref = log["reference"]
    assert reference_accuracy(bb, tmp_path) == ref["top1"]  # exact: same images, same model
    assert ref["top1"] > 0.10  # ten times chance (1 %): a trained model, not random weights


def test_trainer_smoke_lowers_its_loss(tmp_path):
    cfg = PretrainConfig(corpus_size=1024, epochs=4, batch_size=128, warmup_steps=4, lr=3e-3,
                         image_resolution=32, workers=1)
    log = pretrain(cfg, tmp_path / "m.pt", progress=False, reference=False)
    losses = [h["loss"] for h in log["history"]]
    assert losses[-1] < losses[0]
    assert load_backbone(str(tmp_path / "m.pt")).input_resolution == 32
