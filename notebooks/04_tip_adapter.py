# %% [markdown]
# # 04 · Tip-Adapter: a training-free cache model
#
# Tip-Adapter (Zhang et al., ECCV 2022) adds a *cache* to zero-shot CLIP. Its keys
# $K \in \mathbb{R}^{M \times D}$ are the normalised features of the $M$ training shots (each the
# mean of 10 augmented views), its values $L \in \{0,1\}^{M \times C}$ their one-hot labels. For a
# test feature $f$:
#
# $$A = \exp\big(-\beta\,(1 - f K^\top)\big) \in \mathbb{R}^{M}, \qquad
# \text{logits} = s\, f W^\top + \alpha\, A L \in \mathbb{R}^{C}$$
#
# $\beta$ sharpens the affinities $A$, $\alpha$ weighs the cache against the text head $W$.
# **$\alpha$ and $\beta$ are never chosen on test images here**: by leave-one-out on the shots
# (each training image scored against the cache without its own entry); the official initial
# values ($\alpha = 1.17$, $\beta = 1$) at 1 shot, where nothing can be left out.

# %%
# fewshot: shared header

# %% [markdown]
# ## The formula on real tensors
# Five val images against the 16-shot cache of seed 1: affinities, cache logits, blend, prediction.

# %%
import torch

from fewshot.methods.tip_adapter import cache_model as tip
from fewshot.report.figures import subplots
from fewshot.models.text_head import zeroshot_logits

k, seed = max(run.cfg.shots), run.cfg.seeds[0]
shots = run.shots_data(k, seed)
keys, values = tip.build_cache(shots.views, shots.labels, shots.num_classes)
print(f"cache: keys {tuple(keys.shape)} (normalised means of {shots.views.shape[0]} views), values {tuple(values.shape)}")
val = run.eval_sets["val"]
f, y = val.feats[:5], val.labels[:5]
A = tip.cache_affinity(f, keys, 1.0)  # [5, M]
blend = tip.tip_logits(f, run.text_weights, keys, values, 1.17, 1.0, run.logit_scale)  # [5, C]
zs = zeroshot_logits(f, run.text_weights, run.logit_scale)
names = run.dataset.classnames
for i in range(5):
    print(f"image {i}: true {names[y[i]]!r:18} zero-shot {names[zs[i].argmax()]!r:18} "
          f"Tip-Adapter {names[blend[i].argmax()]!r:18} largest affinity {A[i].max():.3f} (to a {names[shots.labels[A[i].argmax()]]!r})")
fig, ax = subplots(figsize=(9, 2.2))
im = ax.imshow(A[:, :80].cpu(), aspect="auto", cmap="viridis")
fig.colorbar(im, ax=ax)
ax.set(xlabel="cache entry (first 80)", ylabel="val image", title="affinities exp(−β(1 − f·k)), β = 1")
fig.tight_layout()
fig

# %% [markdown]
# ## The full run
# Every (shots, seed): the cache, (α, β) from the shots, the scores on every test set.

# %%
from fewshot.report.narrative import method_sentence
from fewshot.protocol.results import records_table

records = run.step("tip_adapter")
display(Markdown(run.summary("val")))
display(Markdown("Chosen hyperparameters (val rows):\n\n" + records_table([r for r in records if r["eval_set"] == "val"])))

# %% [markdown]
# Where the choice made on the shots lies in the test grid (computed only for this figure):

# %%
from fewshot.report.figures import plot_grid

grids = run.dir.diagnostics("tip-adapter")
display(Markdown("**What you should see.** " + method_sentence(run.records(), "tip-adapter")))
plot_grid(max(grids, key=lambda g: g["shots"]))
