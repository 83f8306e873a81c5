"""Hosted notebooks (Colab, ModelArts): detection, storage, and the start of every notebook."""
from __future__ import annotations

import os

__all__ = ["on_colab", "on_modelarts", "start"]


def on_colab() -> bool:
    """True inside Google Colab."""
    return "COLAB_RELEASE_TAG" in os.environ


def on_modelarts() -> bool:
    """True inside a Huawei ModelArts notebook (its user is ma-user)."""
    return os.path.isdir("/home/ma-user")


def start(config: str, overrides: dict):
    """What every notebook does first: mount Google Drive on Colab when a path points there,
    build the :class:`fewshot.pipeline.Run`, and print the banner. Returns the run."""
    from fewshot.pipeline import Run

    if on_colab() and any(str(v).startswith("/content/drive") for v in overrides.values()):
        from google.colab import drive  # only importable on Colab

        drive.mount("/content/drive")
    run = Run.from_config(config, **overrides)
    run.banner()
    return run
