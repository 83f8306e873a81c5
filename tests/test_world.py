import dataclasses
import json
import re

import clip
import pytest
from PIL import Image

from fewshot.base.errors import ConfigError
from fewshot.models.backbones import build_clip, load_backbone, shipped_path
from fewshot.data.datasets import load_dataset
from fewshot.world.generate import CLASSES, OBSCURE_NAMES, make_world, tree_digest
from fewshot.world.pretrain import CAPTIONS, TOWERS, PretrainConfig, make_config, pretrain, reference_accuracy

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


@pytest.mark.parametrize("tower", list(TOWERS))
def test_committed_checkpoint_reproduces_its_recorded_zero_shot_accuracy(tmp_path, tower):
    path = shipped_path(f"miniclip-{tower}")
    if tower != "rn" and not path.exists():
        pytest.skip(f"{path.name} is not made yet: python -m fewshot world train-clip --tower {tower}")
    log = json.loads(path.with_suffix(".log.json").read_text())
    assert path.stat().st_size <= 10_000_000
    made_with = make_config(tower, log["config"])  # the preset, up to where it ran
    assert dataclasses.replace(made_with, device="cpu", workers=2, threads=2) == make_config(tower)
    bb = load_backbone(f"miniclip-{tower}")  # verifies the SHA-256 shipped beside the file
    assert bb.sha256 == log["sha256"]
    tower_class = clip.model.VisionTransformer if tower == "vit" else clip.model.ModifiedResNet
    assert isinstance(bb.model.visual, tower_class)
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


def test_the_towers_presets_build_their_towers_and_leave_the_rn_defaults_alone():
    assert make_config("rn") == PretrainConfig()  # miniclip-rn's command is unchanged
    cfg = make_config("vit")
    model = build_clip(cfg.embed_dim, cfg.image_resolution, cfg.vision_layers, cfg.vision_width,
                       cfg.context_length, cfg.transformer_width, cfg.transformer_layers,
                       vision_patch_size=cfg.vision_patch_size)
    assert isinstance(model.visual, clip.model.VisionTransformer)
    assert model.visual.positional_embedding.shape == (64 + 1, cfg.vision_width)  # 8x8 patches + class
    assert model.visual.transformer.resblocks[0].attn.num_heads == cfg.vision_width // 64  # as build_model reloads
    assert sum(p.numel() for p in model.parameters()) < 5_000_000  # about miniclip-rn's 4.6 M


def test_a_wrong_tower_setting_fails_before_any_work():
    with pytest.raises(ConfigError, match="unknown tower 'vt'; use one of: rn, vit"):
        make_config("vt")
    with pytest.raises(ConfigError, match="unknown PretrainConfig field.*patch.*known: seed"):
        make_config("vit", {"patch": 16})
    with pytest.raises(ConfigError, match="vision_width must be a multiple of 64"):
        make_config("vit", {"vision_width": 96})
    with pytest.raises(ConfigError, match="multiple of 8"):
        make_config("vit", {"image_resolution": 60})
    with pytest.raises(ConfigError, match="needs a vision_patch_size"):
        make_config("vit", {"vision_patch_size": None})
    with pytest.raises(ConfigError, match="is for a ViT tower"):
        make_config("rn", {"vision_patch_size": 8})
    assert make_config("rn", {"vision_layers": [2, 1, 1, 1]}).vision_layers == (2, 1, 1, 1)  # --set's list


def test_vit_trainer_smoke_saves_a_checkpoint_that_reloads_as_a_vit(tmp_path):
    cfg = make_config("vit", dict(corpus_size=256, epochs=1, batch_size=64, warmup_steps=1,
                                  image_resolution=32, vision_layers=1, vision_width=64,
                                  transformer_layers=1, workers=1))
    out = tmp_path / "miniclip-vit.pt"
    log = pretrain(cfg, out, progress=False, reference=False)
    assert out.with_suffix(".sha256").read_text() == f"{log['sha256']}  miniclip-vit.pt\n"
    assert json.loads(out.with_suffix(".log.json").read_text())["config"]["vision_patch_size"] == 8
    assert log["steps"] == 4 and len(log["history"]) == 1
    bb = load_backbone(str(out), sha256=log["sha256"])
    assert isinstance(bb.model.visual, clip.model.VisionTransformer) and bb.input_resolution == 32


def test_train_clip_command_takes_a_tower_and_writes_beside_miniclip_rn(tmp_path, monkeypatch):
    import fewshot.world.pretrain as pretrain_module
    from fewshot.cli import build_parser

    seen = {}

    def fake_pretrain(cfg, out):
        seen.update(cfg=cfg, out=str(out))
        return {"size_bytes": 1, "sha256": "0" * 64, "steps": 1, "history": [{"loss": 1.0}]}

    monkeypatch.setattr(pretrain_module, "pretrain", fake_pretrain)
    monkeypatch.chdir(tmp_path)  # the default --out is relative to the checkout
    args = build_parser().parse_args(["world", "train-clip", "--tower", "vit", "--set", "device=cuda"])
    assert args.func(args) == 0
    assert seen["out"] == "fewshot/world/assets/miniclip-vit.pt"
    assert seen["cfg"] == make_config("vit", {"device": "cuda"})
