import json

import pytest
import torch

from fewshot.backbones import load_backbone, shipped_path
from fewshot.world.generate import CLASSES, OBSCURE_NAMES, make_world, tree_digest
from fewshot.world.pretrain import CAPTIONS, PretrainConfig, pretrain, reference_accuracy

SMALL = {"train": 2, "val": 1, "shift/sketch": 1}


def test_generator_is_deterministic_and_worker_independent(tmp_path):
    a = make_world(tmp_path / "a", per_class=SMALL, workers=1)
    b = make_world(tmp_path / "b", per_class=SMALL, workers=2)
    assert tree_digest(a) == tree_digest(b)
    assert tree_digest(make_world(tmp_path / "c", world_seed=1, per_class=SMALL, workers=1)) != tree_digest(a)


def test_layout_matches_imagenet_16shot(small_world):
    assert sorted(p.name for p in (small_world / "train").iterdir()) == [c[0] for c in CLASSES]
    assert len(CLASSES) == 100
    lines = (small_world / "classnames.txt").read_text().splitlines()
    assert lines[0] == "n90000000 red circle" and len(lines) == 100
    assert json.loads((small_world / "label2class.json").read_text())["99"] == CLASSES[99][0]
    assert len(list((small_world / "shift" / "sketch" / CLASSES[0][0]).glob("*.jpg"))) == 1


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
