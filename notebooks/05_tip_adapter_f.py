# %% [markdown]
# # 05 · Tip-Adapter-F: fine-tuning the cache keys
#
# Tip-Adapter-F makes the cache keys a trainable parameter, initialised from the training-free cache, and trains them with AdamW and a cosine schedule for a fixed number of epochs on the cached augmented views (one view per image per epoch), using the α, β chosen in notebook 04. No epoch is picked on test data: the last epoch is the model.

# %%
# fewshot: shared header

# %%
records = run.step("tip_adapter_f")
display(Markdown(run.summary("val")))

# %%
from fewshot.figures import plot_training_curves

plot_training_curves(records)
