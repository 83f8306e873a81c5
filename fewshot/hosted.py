"""Hosted notebooks (Colab, ModelArts): detection, storage, and the start of every notebook."""
from __future__ import annotations

import os

__all__ = ["on_colab", "start"]


def on_colab() -> bool:
    """True inside Google Colab."""
    return "COLAB_RELEASE_TAG" in os.environ


def start(config: str, overrides: dict, first: bool = False):
    """What every notebook does first: mount Google Drive on Colab when a path points there,
    open the run (:class:`fewshot.pipeline.Run`) and print the banner. Returns the run.

    The first notebook (``first=True``) creates the run folder and its config.json; later ones
    use that config.json, and stop if one of their ``overrides`` contradicts it.
    """
    from fewshot.config import load_config
    from fewshot.pipeline import Run

    if on_colab() and any(str(v).startswith("/content/drive") for v in overrides.values()):
        from google.colab import drive  # only importable on Colab

        drive.mount("/content/drive")
    run = Run(load_config(config, **overrides), resume=None if first else dict(overrides))
    if first:
        run.preflight()
    run.banner()
    return run
