# %% [markdown]
# # 06 · WiSE-FT of the adapter
#
# WiSE-FT (Wortsman et al., CVPR 2022) interpolates the *weights* of a model before and after
# fine-tuning. For the adapter those are the cache keys of notebooks 04 and 05:
#
# $$K(\lambda) = (1-\lambda)\,K_0 + \lambda\,K_{\text{ft}}, \qquad \lambda \in [0, 1]$$
#
# $\lambda = 0$ is the training-free cache, $\lambda = 1$ is Tip-Adapter-F exactly. λ is chosen
# by cross-validation over the shots (Tip-Adapter-F trained again on the other folds, each λ scored
# on the held-out fold); 0.5 at 1 shot. The **Fisher-weighted** merge weights each coordinate by
# its diagonal Fisher $F$ on the shots,
# $K = \big((1-\lambda)F_0 K_0 + \lambda F_1 K_1\big) / \big((1-\lambda)F_0 + \lambda F_1\big)$:
# `wise-tip-adapter-fisher` with the empirical Fisher (true labels), `wise-tip-adapter-fisher-model` with labels
# drawn from the model's own prediction, which is what the WiSE-FT code does.

# %%
# fewshot: shared header

# %% [markdown]
# ## The merge on real tensors

# %%
import torch

from fewshot.methods.tip_adapter import cache_model as tip
from fewshot.merging.interpolate import interpolate

k, seed = max(run.cfg.shots), run.cfg.seeds[0]
shots = run.shots_data(k, seed)
keys0, values = tip.build_cache(shots.views, shots.labels, shots.num_classes)
ft = run.dir.load_fitted("tip-adapter-f", k, seed, run.digest, "tip_adapter_f", run.device)
keys1 = ft.state["keys"]
mid = interpolate({"k": keys0}, {"k": keys1}, 0.5)["k"]
print("K0", tuple(keys0.shape), "K_ft", tuple(keys1.shape), "|K_ft − K0| =", f"{float((keys1 - keys0).norm()):.3f}")
print("K(0.5) is the average:", torch.allclose(mid, (keys0 + keys1) / 2))
F0 = tip.adapter_fisher(shots.center, shots.labels, run.text_weights, keys0, values,
                        ft.hyperparameters["alpha"], ft.hyperparameters["beta"], run.logit_scale)
print("diagonal Fisher of K0:", tuple(F0.shape), f"mean {float(F0.mean()):.2e}, max {float(F0.max()):.2e}")

# %% [markdown]
# ## The full run: the λ path on every test set, and λ chosen on the shots

# %%
from fewshot.report.narrative import method_sentence, sweet_spots

records = run.step("wise")
for name in run.eval_sets:
    display(Markdown(f"**{name}**\n\n" + run.summary(name)))

# %%
from fewshot.report.shift_figures import plot_id_vs_ood, plot_wise_curve

shifted = [s for s in run.eval_sets if s != "val"]
spots = [s for s in sweet_spots(run.records(), shifted) if s[0] == "wise-tip-adapter"]
text = method_sentence(run.records(), "wise-tip-adapter")
if spots:
    m, k, best, acc, lo, hi = spots[0]
    text += (f" For illustration only (read off the test sets, so not a choice this protocol may make): along the λ path at {k} shots, "
             f"λ = {best} gives the best mean of val and {', '.join(shifted) or 'val'} ({acc:.2f} %; ends: {lo:.2f} and {hi:.2f} %); "
             f"the λ the run used was chosen by cross-validation on the shots (dotted lines below).")
display(Markdown("**What you should see.** " + text))
plot_wise_curve(run.records(), "wise-tip-adapter")

# %%
plot_id_vs_ood(run.records()) if shifted else None
