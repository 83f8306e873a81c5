# %% [markdown]
# # 03 · Caching CLIP features once
#
# Every later step works on cached tensors: images are decoded and encoded once per backbone, preprocessing, image list and augmentation. We cache the centre-crop features of every test image, the centre crops of the training pool (all images of any manifest), and 10 augmented views per training image (Tip-Adapter's RandomResizedCrop + flip) for the cache keys and for Tip-Adapter-F. Files are fp16, keyed by everything that changes them, and written atomically.
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
import time

t0 = time.time()
shapes = run.features()
print(f"features ready in {time.time() - t0:.1f} s (a second run reads them from {run.cfg.cache_dir}/)")
display(Markdown("| set | features |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in shapes.items())
                 + f"\n| training pool, centre crops | {tuple(run.pool.center.shape)} |"
                 + f"\n| training pool, augmented views | {tuple(run.pool.views.shape)} |"
                 + f"\n| text head ({run.cfg.templates}) | {tuple(run.text_weights.shape)} |"))
