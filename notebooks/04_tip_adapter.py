# %% [markdown]
# # 04 · Tip-Adapter: a training-free cache model
#
# Tip-Adapter adds a cache to zero-shot CLIP: keys are the few-shot training features, values their one-hot labels, and `logits = s·f·Wᵀ + α·exp(−β(1 − f·Kᵀ))·L`. α weighs the cache and β sharpens it. **We never pick α, β on test images**: they are chosen by leave-one-out on the shots themselves (each training image scored against the cache without its own entry), with the published defaults (α = 1.17, β = 1) at 1 shot. The test-set grid is computed only to show where the test optimum lies.
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
records = run.step("tip_adapter")
display(Markdown(run.summary("val")))

# %%
from fewshot.figures import plot_grid

grids = run.dir.diagnostics("tip-adapter")
plot_grid(max(grids, key=lambda g: g["shots"]))
