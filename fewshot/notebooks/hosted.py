"""Hosted notebooks (Colab, ModelArts): detection, storage, and the start of every notebook."""
from __future__ import annotations

import os

__all__ = ["on_colab", "start", "show_figures_inline"]


def on_colab() -> bool:
    """True inside Google Colab."""
    return "COLAB_RELEASE_TAG" in os.environ


def _figure_png(fig) -> bytes:
    """PNG bytes of a matplotlib Figure (cropped to its artists), for IPython's display."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def show_figures_inline() -> bool:
    """Make a bare ``matplotlib.figure.Figure`` (the suite's figures are built without pyplot)
    display as a PNG image in this IPython kernel (Jupyter, papermill, Colab); without it a plain
    kernel shows only ``<Figure size ... with 1 Axes>``. Registers an ``image/png`` formatter for
    the Figure type; pyplot's global state is not touched. Returns False outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    from matplotlib.figure import Figure

    shell.display_formatter.formatters["image/png"].for_type(Figure, _figure_png)
    return True


def _mount_drive_for(*values) -> None:
    """Mount Google Drive on Colab when one of ``values`` is a path on it (and it is not mounted)."""
    if on_colab() and any(str(v).startswith("/content/drive") for v in values) and \
            not os.path.isdir("/content/drive/MyDrive"):
        from google.colab import drive  # only importable on Colab

        drive.mount("/content/drive")


def start(config: str, overrides: dict, first: bool = False):
    """What every notebook does first: mount Google Drive on Colab when a path points there,
    open the run (:class:`fewshot.run.pipeline.Run`) and print the banner. Returns the run.

    The first notebook (``first=True``) creates the run folder and its config.json and records it
    as the last run started (:mod:`fewshot.notebooks.lastrun`). Later ones with ``config = "last"`` continue
    that run; with a config name they open that config's folder. Either way they use the folder's
    config.json, and stop if one of their ``overrides`` contradicts it.
    """
    from fewshot.run.config import load_config
    from fewshot.notebooks.lastrun import DRIVE_POINTER, LAST, LOCAL_POINTER, record_run, resolve
    from fewshot.run.pipeline import Run

    after_reset = config == LAST and not LOCAL_POINTER.exists()  # Colab: the pointer's copy on Drive
    _mount_drive_for(*overrides.values(), *([DRIVE_POINTER] if after_reset else []))
    config, overrides = resolve(config, overrides, first)
    _mount_drive_for(*overrides.values())
    show_figures_inline()
    run = Run(load_config(config, **overrides), resume=None if first else dict(overrides))
    if first:
        record_run(run.out, config)
        run.preflight()
    run.banner()
    return run
