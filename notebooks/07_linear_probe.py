# %% [markdown]
# # 07 · Linear probes, and WiSE-FT of heads
#
# A linear probe is logistic regression on the frozen image features: with $x_i$ the normalised
# features of every augmented view of the shots and $y_i$ their labels,
#
# $$\min_{W \in \mathbb{R}^{C \times D},\, b}\ \frac{1}{N}\sum_i \mathrm{CE}\big(W x_i + b,\ y_i\big) + \lambda\,\lVert W - W_0\rVert^2$$
#
# solved by L-BFGS (a convex problem). `linear-probe` starts from and is pulled towards
# $W_0 = 0$ (CLIP's linear-probe protocol); `linear-probe-zs` from and towards the zero-shot head
# $W_0 = s\,W_{\text{text}}$. λ is chosen by cross-validation over the shots. `wise-linear` is the
# WiSE-FT paper's linear-classifier case: $\theta(\alpha) = (1-\alpha)\,(s W_{\text{text}}, 0) + \alpha\,(W, b)$,
# α by cross-validation (0.5 at 1 shot).

# %%
# fewshot: shared header

# %% [markdown]
# ## One probe on real tensors

# %%
from fewshot.methods.linear_probe import fit_logistic, probe_data

k, seed = max(run.cfg.shots), run.cfg.seeds[0]
shots = run.shots_data(k, seed)
x, y = probe_data(shots)
print(f"training rows: {tuple(x.shape)} ({shots.views.shape[0]} views of {len(shots.labels)} shots)")
val = run.eval_sets["val"]
for name, w0 in (("from scratch", None), ("zero-shot init", run.logit_scale * run.text_weights)):
    w, b = fit_logistic(x, y, shots.num_classes, 1e-3, w0)
    acc = float(((val.feats @ w.T + b).argmax(1) == val.labels).float().mean())
    print(f"{name:15}: W {tuple(w.shape)}, |W − W0| = {float((w - (0 if w0 is None else w0)).norm()):.2f}, val top-1 {100 * acc:.2f} %")

# %% [markdown]
# ## The full run

# %%
from fewshot.report.narrative import method_sentence

records = run.step("linear_probe")
display(Markdown(run.summary("val")))
display(Markdown("**What you should see.** " + " ".join(method_sentence(run.records(), m)
                                                       for m in ("linear-probe", "linear-probe-zs", "wise-linear"))))

# %%
from fewshot.report.shift_figures import plot_wise_curve

plot_wise_curve(run.records(), "wise-linear")
