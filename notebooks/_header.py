# %% [markdown]
# Part of the few-shot CLIP suite: run the notebooks in order (01 → 12). Each one reads what the
# previous ones wrote (split manifests, feature caches, results) and can be restarted on its own.
# **Settings are set once, in notebook 01's parameters cell**: later notebooks (`config = "last"`)
# continue the last run notebook 01 started (they print which) and read its `config.json`.

# %% tags=["parameters"]
config = CONFIG  # CONFIG_HELP
overrides = {}  # any RunConfig field, e.g. {"data": "/content/data/ImageNet-1K-16shot",
#                 "out": "/content/drive/MyDrive/fewshot/runs/rn50", "cache_dir": "/content/drive/MyDrive/fewshot/cache",
#                 "report_dir": "/content/drive/MyDrive/fewshot/report"}; later notebooks: runtime ones only (device, batch_size, num_workers)
repo = "https://github.com/YOUR-ACCOUNT/fewshot-clip"  # the suite's public repository: cloned on Colab/ModelArts when no archive is found
archive = ""  # the suite as a zip (`make release`); empty: fewshot-suite.zip in this folder, in /content or in MyDrive on Google Drive

# %% [markdown]
# **Setup.** Paths in the configs are relative to the repository root, so a notebook opened from
# `notebooks/` moves there first. On Colab or ModelArts the suite is found in this order: already
# here (`fewshot-suite/`), unpacked from its release archive (`archive`), cloned from `repo`. Then
# `fewshot/notebooks/bootstrap.py` checks Python and torch (an unsupported environment gets the exact steps
# that work), installs CLIP as the course does (from GitHub, else PyPI, or offline from a
# `wheelhouse-py3XX.zip` beside the suite) and never replaces the platform's torch.

# %%
import os, subprocess, sys, zipfile  # noqa: E401
from pathlib import Path

if Path.cwd().name == "notebooks" and (Path.cwd().parent / "fewshot" / "__init__.py").is_file():
    os.chdir(Path.cwd().parent)  # Jupyter starts in notebooks/
if not Path("fewshot/__init__.py").is_file():  # a hosted notebook: find the suite and set it up once
    suite = Path("fewshot-suite")
    zips = [Path(archive)] if archive else [Path(p) / "fewshot-suite.zip" for p in (".", "/content", "/content/drive/MyDrive")]
    if not (suite / "fewshot" / "__init__.py").is_file():
        if archive.startswith("/content/drive") and not Path("/content/drive/MyDrive").is_dir():
            from google.colab import drive
            drive.mount("/content/drive")
        found = next((z for z in zips if z.is_file()), None)
        if archive and found is None:
            raise SystemExit(f"error: no file {archive}: copy fewshot-suite.zip (`make release`) there, or set archive = '' to clone {repo}")
        if found is not None:
            with zipfile.ZipFile(found) as z:
                z.extractall(".")  # one folder inside: fewshot-suite/
            if not (suite / "fewshot" / "__init__.py").is_file():
                raise SystemExit(f"error: {found} holds no fewshot-suite/fewshot/: make the archive with `make release`")
            print(f"the suite was unpacked from {found}")
        elif subprocess.run(["git", "clone", "-q", "--depth=1", repo, str(suite)]).returncode != 0:
            raise SystemExit(f"error: could not clone {repo}: put fewshot-suite.zip (`make release`) in {Path.cwd()} or Drive's MyDrive, or set `repo`/`archive`")
    os.chdir(suite)
    if subprocess.run([sys.executable, "fewshot/notebooks/bootstrap.py"]).returncode != 0:
        raise SystemExit("error: the set-up above stopped: follow its steps, then rerun this cell")

# %%
from IPython.display import Markdown, display

from fewshot import start

run = start(config, overrides, first=FIRST_NOTEBOOK)
