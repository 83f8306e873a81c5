# %% [markdown]
# # 02 · Few-shot splits with fixed seeds
#
# We draw k images per class for k in the configured shots (1/2/4/5/8/16 by default) and seeds (1, 2, 3). Files are listed in sorted order and permuted per class by a generator seeded with the seed and the class id, so the k-shot sets are nested (the 1-shot image is also in the 5- and 16-shot sets) and identical on every machine. Each (k, seed) is written as a JSON manifest.
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
from fewshot.splits import load_manifest, manifest_hash

paths = run.splits()
rows = [load_manifest(p) for p in paths]
display(Markdown("| manifest | shots | seed | images | SHA-256 |\n|---|---|---|---|---|\n" + "\n".join(
    f"| {p.name} | {m['shots']} | {m['seed']} | {len(m['items'])} | {manifest_hash(m)[:12]} |"
    for p, m in zip(paths, rows))))

# %% [markdown]
# The sets are nested: every smaller split of a seed is contained in the larger ones.

# %%
from fewshot.figures import plot_shots

first = run.manifest(max(run.cfg.shots), run.cfg.seeds[0])
plot_shots(first, run.dataset.root, run.dataset.classnames)
