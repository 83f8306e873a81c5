# %% [markdown]
# # 02 · Few-shot splits with fixed seeds
#
# We draw k images per class for k in the configured shots (1/2/4/5/8/16 by default) and seeds (1, 2, 3). Files are listed in sorted order and permuted per class by a generator seeded with the seed and the class id, so the k-shot sets are nested (the 1-shot image is also in the 5- and 16-shot sets) and identical on every machine. Each (k, seed) is written as a JSON manifest.

# %%
# fewshot: shared header

# %%
from fewshot.data.splits import load_manifest, manifest_hash

paths = run.splits()
rows = [load_manifest(p) for p in paths]
display(Markdown("| manifest | shots | seed | images | SHA-256 |\n|---|---|---|---|---|\n" + "\n".join(
    f"| {p.name} | {m['shots']} | {m['seed']} | {len(m['items'])} | {manifest_hash(m)[:12]} |"
    for p, m in zip(paths, rows))))

# %% [markdown]
# The sets are nested: every smaller split of a seed is contained in the larger ones.

# %%
from fewshot.report.figures import plot_shots

first = run.manifest(max(run.cfg.shots), run.cfg.seeds[0])
plot_shots(first, run.dataset.root, run.dataset.classnames)
