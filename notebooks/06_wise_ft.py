# %% [markdown]
# # 06 · WiSE-FT: interpolating training-free and fine-tuned keys
#
# WiSE-FT ensembles models in weight space: `K(λ) = (1−λ)·K₀ + λ·K_ft`, where λ = 0 is Tip-Adapter and λ = 1 is Tip-Adapter-F. Fine-tuning usually gains in distribution and can lose under distribution shift; an intermediate λ often keeps most of both. λ is chosen by cross-validation over the shots (default 0.5 at 1 shot); the curve over all λ is evaluated on every test set only to draw it. The Fisher-weighted merge of the WiSE-FT paper is reported too.

# %%
# fewshot: shared header

# %%
records = run.step("wise")
for name in run.eval_sets:
    display(Markdown(f"**{name}**\n\n" + run.summary(name)))

# %%
from fewshot.figures import plot_id_vs_ood, plot_wise_curve

plot_wise_curve(records)

# %%
plot_id_vs_ood(run.records()) if len(run.eval_sets) > 1 else None
