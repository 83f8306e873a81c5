# %% [markdown]
# # 06 · WiSE-FT: interpolating training-free and fine-tuned keys
#
# WiSE-FT ensembles models in weight space: `K(λ) = (1−λ)·K₀ + λ·K_ft`, where λ = 0 is Tip-Adapter and λ = 1 is Tip-Adapter-F. Fine-tuning usually gains in distribution and can lose under distribution shift; an intermediate λ often keeps most of both. λ is chosen by cross-validation over the shots (default 0.5 at 1 shot); the curve over all λ is evaluated on every test set only to draw it. The Fisher-weighted merge of the WiSE-FT paper is reported too.
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
records = run.step("wise")
for name in run.eval_sets:
    display(Markdown(f"**{name}**\n\n" + run.summary(name)))

# %%
from fewshot.figures import plot_id_vs_ood, plot_wise_curve

plot_wise_curve(records)

# %%
plot_id_vs_ood(run.records()) if len(run.eval_sets) > 1 else None
