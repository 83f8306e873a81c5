"""fewshot: few-shot image classification with CLIP on cached features.

Subpackages in the order data flows, each importing only those before it (README, "Layout"):
``base`` (errors, atomic writes, paths), ``data`` (images, datasets, shifts, checks, splits),
``models`` (backbones, text head, templates, LoRA), ``features`` (preprocessing, loaders, caches),
``protocol`` (the method contract, selection, metrics, records), ``training`` (the trainers),
``merging`` (weight-space rules and the merge study), ``methods`` (one home per method), ``run``
(config, run folder, pipeline), ``report``, ``notebooks`` (running them, hosted platforms), and
``world`` (the mini-world and the ImageNet-shaped rehearsal data). Importing the package is cheap:
it imports no torch until a submodule needs it.
"""
import os

# Before any CUDA context exists: 32 hardware work queues instead of CUDA's default 8, so that
# work on independent streams does not queue up behind each other's kernels (nvjpeg's per-image
# kernels behind the image encoder's: 0.13 s instead of 0.02 s per 256 images, bench/RESULTS.md).
os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "32")

from fewshot import _clip_compat  # noqa: E402

_clip_compat.install()


def _warn_if_stale_install() -> None:
    import sys

    from fewshot._origin import stale_install

    message = stale_install(os.path.dirname(os.path.abspath(__file__)))
    if message:
        print(f"warning: {message}", file=sys.stderr)


_warn_if_stale_install()

__version__ = "0.1.0"

# The public face: what a notebook or a script needs, importable as ``from fewshot import start``.
# Each name is resolved on first use, so ``import fewshot`` stays cheap (no torch, no clip).
_PUBLIC = {
    "start": "fewshot.notebooks.hosted",  # open (or continue) a run as a notebook does; returns the Run
    "load_config": "fewshot.run.config",  # a shipped config (or JSON file) with --set style overrides
    "Run": "fewshot.run.pipeline",  # one run of the suite: run.step(name), run.records(), run.summary()
    "run_all": "fewshot.run.launch",  # every step (or some) in order, as `python -m fewshot run`
    "list_steps": "fewshot.run.pipeline",  # the steps, in order
    "list_methods": "fewshot.methods",  # the registry: method names, dependencies first
    "get_method": "fewshot.methods",  # one registered Method (its fit, step, source, recipes)
    "load_run": "fewshot.report.build",  # a finished run folder's config and records, for the report
    "build_report": "fewshot.report.build",  # report.md, report.html and figures from a run folder
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fewshot' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
