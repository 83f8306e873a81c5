"""Shared fixtures: a tiny random CLIP saved in OpenAI's format, and a small mini-world tree."""
import os

import pytest
import torch

from fewshot.models.backbones import build_clip, save_checkpoint
from fewshot.world.generate import make_world

TINY = dict(embed_dim=64, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
            context_length=16, transformer_width=64, transformer_layers=1)
TINY_VIT = dict(TINY, vision_layers=1, vision_width=64, vision_patch_size=8)  # 16 patches + the class token


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


@pytest.fixture(scope="session", autouse=True)
def _run_pointer_outside_the_checkout(tmp_path_factory):
    """Notebook 01 records the run it starts (fewshot.notebooks.lastrun); the tests' runs must not replace
    the user's notebooks/.fewshot-run.json. Notebook kernels inherit the variable."""
    old = os.environ.get("FEWSHOT_RUN_POINTER")
    os.environ["FEWSHOT_RUN_POINTER"] = str(tmp_path_factory.mktemp("pointer") / "current_run.json")
    yield
    if old is None:
        os.environ.pop("FEWSHOT_RUN_POINTER", None)
    else:
        os.environ["FEWSHOT_RUN_POINTER"] = old
