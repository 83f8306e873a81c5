# %% [markdown]
# # 07 · Report
#
# The report is built from the results files alone (`results/*.jsonl`, `grids.json`, `predictions.json`), so `python -m fewshot report` produces the same thing without Jupyter. It writes Markdown with PNG and PDF figures to `report/`.
#
# Part of the few-shot CLIP suite: run the notebooks in order (01 → 07). Each one reads what the
# previous ones wrote (split manifests, feature caches, results) and can be restarted on its own.

# %% tags=["parameters"]
config = "miniworld"  # "miniworld" (offline demo, CPU) or "imagenet-rn50" (ImageNet-1K-16shot + CLIP RN50)
overrides = {}  # any RunConfig field, e.g. {"data": "/content/drive/MyDrive/ImageNet-1K-16shot",
#                                          "cache_dir": "/content/drive/MyDrive/fewshot-cache"}
repo = "https://github.com/YOUR-ACCOUNT/fewshot-clip"  # your copy of this repository (Colab/ModelArts)

# %% [markdown]
# **Setup.** On Colab or ModelArts this installs the suite from `repo`; on your own machine it does
# nothing (use `make demo`). Then the run starts: Drive is mounted when a path points there.

# %%
import os, subprocess, sys  # noqa: E401

if ("COLAB_RELEASE_TAG" in os.environ or os.path.isdir("/home/ma-user")) and not os.path.isfile("fewshot/__init__.py"):
    subprocess.run(f"test -d fewshot-suite || git clone --depth=1 {repo} fewshot-suite", shell=True, check=True)
    os.chdir("fewshot-suite")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "."], check=True)

# %%
from IPython.display import Markdown, display

from fewshot.hosted import start

run = start(config, overrides)

# %%
from fewshot.report import build_report

from IPython.display import Image

path = build_report(run.out, run.cfg.report_dir)
print(f"written: {path} (open it in any Markdown viewer; PDFs beside it for print)")
text = path.read_text()
display(Markdown("\n".join(line for line in text.splitlines() if not line.startswith("!["))))
for png in sorted(path.parent.glob("*.png")):
    display(Markdown(f"**{png.stem}**"), Image(str(png)))
