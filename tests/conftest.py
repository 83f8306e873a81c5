"""Shared fixtures: a tiny random CLIP saved in OpenAI's format, and a small mini-world tree."""
import pytest
import torch

from fewshot.backbones import build_clip, save_checkpoint
from fewshot.world.generate import make_world

TINY = dict(embed_dim=64, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
            context_length=16, transformer_width=64, transformer_layers=1)


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(build_clip(**TINY), path)
    return path


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world") / "miniworld"
    return make_world(root, per_class={"train": 5, "val": 2, "shift/sketch": 1}, workers=1)
