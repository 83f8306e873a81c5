# %% [markdown]
# # 04 · Tip-Adapter: a training-free cache model
#
# Tip-Adapter adds a cache to zero-shot CLIP: keys are the few-shot training features, values their one-hot labels, and `logits = s·f·Wᵀ + α·exp(−β(1 − f·Kᵀ))·L`. α weighs the cache and β sharpens it. **We never pick α, β on test images**: they are chosen by leave-one-out on the shots themselves (each training image scored against the cache without its own entry), with the published defaults (α = 1.17, β = 1) at 1 shot. The test-set grid is computed only to show where the test optimum lies.

# %%
# fewshot: shared header

# %%
records = run.step("tip_adapter")
display(Markdown(run.summary("val")))

# %%
from fewshot.figures import plot_grid

grids = run.dir.diagnostics("tip-adapter")
plot_grid(max(grids, key=lambda g: g["shots"]))
