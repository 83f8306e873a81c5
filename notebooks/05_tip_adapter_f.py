# %% [markdown]
# # 05 · Tip-Adapter-F: fine-tuning the cache keys
#
# Tip-Adapter-F makes the keys $K$ of notebook 04 a parameter and trains them with cross-entropy
# on the logits $s\,fW^\top + \alpha\,\exp(-\beta(1 - fK^\top))L$, with Tip-Adapter's $(\alpha, \beta)$
# fixed: AdamW (lr $10^{-3}$, eps $10^{-4}$), 20 epochs, a cosine schedule, on cached augmented
# views (one view per epoch; the official script re-encodes fresh augmentations).
#
# **Two recipes.** The official script and the coursework train $K$ as an **fp16** layer. For an
# fp16 parameter, AdamW keeps its moments in fp16 too: the second moment
# $v \leftarrow \beta_2 v + (1-\beta_2) g^2$ flushes to zero wherever $0.001\,g^2 < 2^{-24}$, and
# there the step is $\text{lr}\cdot\hat m/\text{eps}$ instead of $\text{lr}\cdot\hat m/\sqrt{\hat v}$:
# tens of times larger. The published numbers come from these dynamics.
# `official` reproduces them deterministically on any device (`fewshot.training.optim.AdamWFp16State`,
# bit-exact against torch's fp16 AdamW); `fp32` is plain AdamW. With `tip_f_recipe = "auto"`
# (the default) each (shots, seed) picks one by cross-validation over the shots; `official` at
# 1 shot.

# %%
# fewshot: shared header

# %% [markdown]
# ## The two recipes on real tensors
# Five epochs of each on the largest shot count of seed 1, with the published (α, β):

# %%
from fewshot.methods.tip_adapter import cache_model as tip
from fewshot.protocol.evaluation import evaluate
from fewshot.report.figures import subplots

k, seed = max(run.cfg.shots), run.cfg.seeds[0]
shots = run.shots_data(k, seed)
keys, values = tip.build_cache(shots.views, shots.labels, shots.num_classes)
fig, ax = subplots(figsize=(6, 3.2))
for recipe in tip.RECIPES:
    out = tip.train_tip_adapter_f(shots.views, shots.labels, run.text_weights, keys, values, 1.17, 1.0,
                                  run.logit_scale, epochs=5, progress=False, recipe=recipe, seed=seed)
    moved = float((out["keys"] - keys).norm() / keys.norm())
    acc = evaluate(lambda f: tip.tip_logits(f, run.text_weights, out["keys"], values, 1.17, 1.0, run.logit_scale),
                   {"val": run.eval_sets["val"]})["val"]["top1"]
    print(f"{recipe:8}: keys moved {moved:.3f} (relative), val top-1 {acc:.2f} %")
    ax.plot([h["loss"] for h in out["history"]], marker="o", label=recipe)
ax.set(xlabel="epoch", ylabel="training loss", title=f"{k}-shot, seed {seed}, α = 1.17, β = 1")
ax.legend()
fig.tight_layout()
fig

# %% [markdown]
# ## The full run

# %%
from fewshot.report.narrative import method_sentence
from fewshot.protocol.results import records_table

records = run.step("tip_adapter_f")
display(Markdown(run.summary("val")))
recipes = sorted({(r["shots"], r["seed"], r["hyperparameters"]["recipe"]) for r in records if r["eval_set"] == "val"})
display(Markdown("Recipe per (shots, seed): " + ", ".join(f"{k}/{s}: {r}" for k, s, r in recipes)))

# %%
from fewshot.report.figures import plot_training_curves

display(Markdown("**What you should see.** " + method_sentence(run.records(), "tip-adapter-f")))
plot_training_curves(records)
