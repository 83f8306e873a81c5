# %% [markdown]
# # 01 · Zero-shot CLIP baseline
#
# CLIP classifies by comparing an image embedding with the embeddings of prompts such as *a photo of a tench.* Here we build that text head from the configured templates (`single`, `tip7` or CLIP's 80-template ensemble `clip80`) and measure top-1/top-5 on the val set and every shifted test set that is present. No training image is used.
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

run = start(config, overrides, first=True)

# %%
from fewshot.results import records_table

records = run.zeroshot()
display(Markdown(records_table(records)))

# %% [markdown]
# Accuracy varies a lot between classes: names the model rarely saw during pretraining get
# little help from the text head. These are the classes the few shots should rescue.

# %%
from fewshot.figures import plot_class_accuracy

plot_class_accuracy(run.class_accuracy(), run.dataset.classnames)
