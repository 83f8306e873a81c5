# %% [markdown]
# Part of the few-shot CLIP suite: run the notebooks in order (01 → 12). Each one reads what the
# previous ones wrote (split manifests, feature caches, results) and can be restarted on its own.
# Settings are fixed once per run, by notebook 01: later notebooks read the run folder's
# `config.json` and stop if their own `overrides` contradict it.

# %% tags=["parameters"]
config = "miniworld"  # "miniworld" (offline demo, CPU), "imagenet-rn50" or "coursework" (ImageNet-1K-16shot + CLIP RN50)
overrides = {}  # any RunConfig field, e.g. {"data": "/content/data/ImageNet-1K-16shot",
#                 "out": "/content/drive/MyDrive/fewshot/runs/rn50", "cache_dir": "/content/drive/MyDrive/fewshot/cache",
#                 "report_dir": "/content/drive/MyDrive/fewshot/report"}
repo = "https://github.com/YOUR-ACCOUNT/fewshot-clip"  # your copy of this repository (Colab/ModelArts)

# %% [markdown]
# **Setup.** Paths in the configs are relative to the repository root, so a notebook opened from
# `notebooks/` moves there first. On Colab or ModelArts this fetches the suite from `repo` and
# sets it up with `fewshot/bootstrap.py`, which checks Python and torch (an unsupported
# environment gets the exact steps that work), installs CLIP as the course does (from GitHub, or
# from PyPI where GitHub is unreachable) and never replaces the platform's torch.

# %%
import os, subprocess, sys  # noqa: E401
from pathlib import Path

if Path.cwd().name == "notebooks" and (Path.cwd().parent / "fewshot" / "__init__.py").is_file():
    os.chdir(Path.cwd().parent)  # Jupyter starts in notebooks/
if not Path("fewshot/__init__.py").is_file():  # a hosted notebook: fetch and set up the suite once
    if not Path("fewshot-suite").is_dir():
        subprocess.run(["git", "clone", "--depth=1", repo, "fewshot-suite"], check=True)
    os.chdir("fewshot-suite")
    subprocess.run([sys.executable, "fewshot/bootstrap.py"], check=True)

from IPython.display import Markdown, display  # noqa: E402

from fewshot.hosted import start  # noqa: E402

run = start(config, overrides, first=FIRST_NOTEBOOK)
