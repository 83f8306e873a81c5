# %% [markdown]
# # 08 · Fine-tuning CLIP's image encoder, and WiSE-FT where it was born
#
# The classifier is $\text{logits}(x) = \operatorname{normalise}(\phi_\theta(x))\,H^\top$ with the
# image encoder $\phi_\theta$ and a head $H$ that starts at the zero-shot head $s\,W_{\text{text}}$:
# before any step it *is* zero-shot CLIP. Three strategies differ in what trains:
# **partial** (the last stage and $H$), **full** (all of $\theta$ and $H$), **LoRA** (low-rank
# updates $W + \tfrac{a}{r} BA$ of the attention weights, and $H$). One recipe (WiSE-FT's: AdamW,
# warm-up and cosine, mixed precision on a GPU), on stored crops (`fewshot.features.pixels`).
#
# WiSE-FT interpolates the weights: $\theta(\alpha) = (1-\alpha)\,\theta_{\text{zero-shot}} + \alpha\,\theta_{\text{fine-tuned}}$
# (for LoRA, α scales the low-rank update), plain and Fisher-weighted. α is chosen on held-out
# shots (the encoder fine-tuned once more without one fold), 0.5 at 1 shot; `wise-*-default` records
# α = 0.5 at every shot count beside it, the WiSE-FT authors' advice when no shifted data is at hand.
# Every α needs the test images through the encoder again: they are decoded once into a pixel cache.
#
# **CLIP-LoRA** (`clip-lora`, Zanella & Ben Ayed 2024) has no head: LoRA (rank 2) on q, k, v of every
# block of *both* encoders, the LoRA text encoder re-encoding "a photo of a {}." at every step; on a
# ResNet the image side's LoRA sits in the attention pool (the suite's stated variant).
# `wise-clip-lora` scales both towers' updates by α.

# %%
# fewshot: shared header

# %% [markdown]
# ## What each strategy trains, on the real model

# %%
from fewshot.training.encoder import Recipe, build_classifier
from fewshot.models.lora import lora_targets

total = sum(p.numel() for p in run.backbone.model.visual.parameters())
for strategy in ("partial", "full", "lora"):
    clf, groups = build_classifier(run.backbone.model, run.text_weights, run.logit_scale, strategy, run.device, Recipe())
    n = sum(p.numel() for g in groups for p in g["params"])
    print(f"{strategy:8}: {n:>10,} trainable parameters ({100 * n / total:.1f} % of the image encoder's {total:,}, plus the head)")
print("LoRA adapts:", [f"{type(m).__name__}.{name}" for m, name in lora_targets(clf.visual)])
print("fine-tuned at shots:", run.shots_of(__import__("fewshot.methods", fromlist=["get_method"]).get_method("ft-full")))

# %% [markdown]
# ## The full run

# %%
from fewshot.report.narrative import method_sentence, sweet_spots

records = run.step("finetune")
for name in run.eval_sets:
    display(Markdown(f"**{name}**\n\n" + run.summary(name)))
shifted = [s for s in run.eval_sets if s != "val"]
lines = [method_sentence(run.records(), m) for m in ("ft-partial", "ft-full", "ft-lora", "wise-ft-full",
                                                     "wise-ft-full-default", "clip-lora", "wise-clip-lora")]
for m, k, best, acc, lo, hi in sweet_spots(run.records(), shifted):
    if m.startswith("wise-ft-"):
        lines.append(f"{m}: α = {best} gives the best mean of val and {', '.join(shifted)} at {k} shots ({acc:.2f} %; ends {lo:.2f} and {hi:.2f} %).")
display(Markdown("**What you should see.** " + " ".join(lines)))

# %%
from fewshot.report.shift_figures import plot_id_vs_ood, plot_strategies, plot_wise_curve

plot_wise_curve(run.records(), "wise-ft-full")

# %%
plot_id_vs_ood(run.records()) if shifted else None

# %%
plot_strategies(run.records())
