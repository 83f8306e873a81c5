# %% [markdown]
# # 05 · Tip-Adapter-F: fine-tuning the cache keys
#
# Tip-Adapter-F makes the cache keys a trainable parameter, initialised from the training-free cache, and trains them with AdamW and a cosine schedule for a fixed number of epochs on the cached augmented views (one view per image per epoch), using the α, β chosen in notebook 04. No epoch is picked on test data: the last epoch is the model.
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
records = run.step("tip_adapter_f")
display(Markdown(run.summary("val")))

# %%
from fewshot.figures import plot_training_curves

plot_training_curves(records)
