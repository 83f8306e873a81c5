# %% [markdown]
# # 11 · Merging several fine-tuned encoders into one
#
# WiSE-FT merged two points of one line. Here one expert encoder is fine-tuned per *task*
# (shape, colour, count, position, style in the mini-world), and the experts are merged. With
# $\theta_0$ the pre-trained weights and $\tau_i = \theta_i - \theta_0$ the **task vectors**:
#
# | rule | merged weights |
# |---|---|
# | simple average | $\tfrac1n \sum_i \theta_i$ |
# | task arithmetic | $\theta_0 + \lambda \sum_i \tau_i$ |
# | TIES | trim each $\tau_i$ to its top 20 % entries, elect each entry's sign by $\operatorname{sign}\sum_i \hat\tau_i$, average the agreeing entries, $\theta_0 + \lambda\,\tau$ |
# | TIES-sum | the same with the agreeing entries summed (FusionBench's default), so its λ is on another scale |
# | Fisher | $\sum_i c_i F_i \theta_i / \sum_i c_i F_i$, diagonal Fishers on each task's shots, $c_i \propto 1/\lVert F_i \rVert$ (FusionBench's normalisation; `fisher-unnormalised`: $c_i = 1/n$) |
# | RegMean | per linear map: $W = (\sum_i G_i)^{-1} \sum_i G_i W_i^\top$, $G_i = X_i^\top X_i$ its inputs' Gram matrix (the attention's q/k/v and output projections included) |
# | AdaMerging | $\theta_0 + \sum_i \lambda_i \tau_i$ (task-wise; layer-wise: one $\lambda_{i,l}$ per tensor), $\lambda$ from 0.3 by Adam on $\sum_t H(\mathrm{softmax}(\text{logits}_t))$ over unlabeled images |
# | Concrete TA / AdaMerging | $\theta_0 + \sum_i \lambda_i (m \odot \tau_i)$, one mask $m$ shared by the experts, a Concrete (relaxed Bernoulli) draw of learned logits at temperature 0.5, rescaled to mean 1 per tensor, learned by the same entropy; AdaMerging's λ on top |
# | WEMoE | task arithmetic everywhere but the ViT's MLPs, whose weights are $\theta_0 + \sum_i w_i(x)\,\tau_i$ per image, $w(x)$ from a small router on the block's tokens (E-WEMoE: one router, the MLPs' $\tau_i$ pruned to their top 10 %) |
#
# Experts are trained fully, with LoRA, and with **L-LoRA**: LoRA linearised around its start,
# $f(x;\phi_0) + J_\phi f(x;\phi_0)(\phi-\phi_0)$, whose task vector is exactly the low-rank update
# $s\,B A_0$ and so merges with less interference.
#
# λ is chosen on held-out shots of every task, never on their test sets (oracle rows beside).
# AdaMerging adapts on unlabeled images: the tasks' training images with labels unused
# (`tuned_on: unlabeled-train`), or, as FusionBench does, the test images themselves (rows marked
# `(test-unlabeled)`, shown beside the honest ones).

# %%
# fewshot: shared header

# %% [markdown]
# ## Each rule on a real weight tensor
# The attention pool's output projection of the zero-shot encoder, and two task vectors that
# disagree on half of their entries:

# %%
import torch

from fewshot.merging import rules as merging

name = next(n for n, p in run.backbone.model.visual.named_parameters() if p.dim() == 2)
w0 = dict(run.backbone.model.visual.named_parameters())[name].detach().float()
g = torch.Generator().manual_seed(0)
t1 = 0.01 * torch.randn(w0.shape, generator=g)
t2 = torch.where(torch.rand(w0.shape, generator=g) < 0.5, -t1, 0.01 * torch.randn(w0.shape, generator=g))
base, experts = {name: w0}, [{name: w0 + t1}, {name: w0 + t2}]
print(f"{name}: {tuple(w0.shape)}; cosine(τ1, τ2) = {float(merging.cosine_matrix(merging.task_vectors(base, experts))[0, 1]):.3f}")
for label, merged in (("average", merging.simple_average(experts)),
                      ("task arithmetic, λ=0.5", merging.task_arithmetic(base, experts, 0.5)),
                      ("TIES, λ=1", merging.ties(base, experts, 1.0, 0.2))):
    tau = merged[name] - w0
    print(f"{label:22}: |τ| = {float(tau.norm()):.4f}, entries changed: {float((tau != 0).float().mean()):.2f}")

# %% [markdown]
# AdaMerging on the same tensor: a toy "task head" per expert reads the merged weights, and Adam
# moves λ to make each head's predictions on unlabeled inputs more confident (lower entropy).
# At zero steps it is task arithmetic at λ = 0.3, bit for bit.

# %%
from fewshot.merging import adamerging

taus = merging.task_vectors(base, experts)
x = torch.randn(64, w0.shape[1], generator=g)
heads = [torch.randn(5, w0.shape[0], generator=g) for _ in experts]
logits_of = lambda state, t, batch: 10 * torch.tanh(batch @ state[name].T) @ heads[t].T  # noqa: E731
lam, hist = adamerging.adamerge(logits_of, base, taus, [lambda step: x] * 2, steps=200, layer_wise=False, lr=1e-2)
zero = adamerging.merge(base, taus, torch.full((2,), adamerging.INIT), [name])
print(f"λ after 200 steps: {[round(v, 3) for v in lam.tolist()]}; summed entropy {hist[0]:.3f} → {hist[-1]:.3f}")
print("zero steps == task arithmetic at 0.3:", torch.equal(zero[name], merging.task_arithmetic(base, experts, 0.3)[name]))

# %% [markdown]
# Concrete task arithmetic on the same tensor: a mask over the task vectors' entries, learned by
# the same entropy. A mask of ones is task arithmetic; the learned one drops the entries on which
# the experts' task vectors fight.

# %%
from fewshot.merging import concrete

ones = concrete.masked_merge(base, taus, {name: torch.ones_like(w0)}, torch.full((2,), concrete.SCALE), [name])
print("all-ones mask == task arithmetic at 0.3:", torch.equal(ones[name], merging.task_arithmetic(base, experts, 0.3)[name]))
learned = concrete.concrete_task_arithmetic(logits_of, base, taus, [lambda step: x] * 2, steps=100, lr=5e-2, seed=0)
keep = torch.sigmoid(learned.logits[name])
agree = torch.sign(t1) == torch.sign(t2)
print(f"keep probability where the two task vectors agree in sign {float(keep[agree].mean()):.3f}, "
      f"where they disagree {float(keep[~agree].mean()):.3f}; entropy {learned.history[0]:.3f} → {learned.history[-1]:.3f}")

# %% [markdown]
# ## The study: experts, merges, every merged model on every task

# %%
from fewshot.report.merge_tables import merge_table, soup_table

records = run.step("merging")
diag = run.dir.read_json(run.dir.diagnostics_path("merging"))
display(Markdown(merge_table(records, diag["tasks"]) if records else "no `merge_tasks` in this run's config"))

# %%
from fewshot.report.merge_tables import plot_cosine, plot_lambda_curves

if records:
    rows = {(r["method"], r["hyperparameters"].get("strategy")): r for r in records if r["eval_set"] == diag["tasks"][0]}
    avg = lambda m, s: sum(r["metrics"]["top1"] for r in records if r["method"] == m and r["hyperparameters"].get("strategy") == s) / len(diag["tasks"])  # noqa: E731
    best = max(("average", "task-arithmetic", "ties", "fisher", "regmean"), key=lambda m: avg(f"merge:{m}", "full"))
    display(Markdown(f"**What you should see.** Averaged over the {len(diag['tasks'])} tasks, the pre-trained encoder scores "
                     f"{avg('merge:pre-trained', None):.1f} %, the merged full fine-tunes up to {avg(f'merge:{best}', 'full'):.1f} % "
                     f"({best}), one encoder trained on all tasks {avg('merge:multi-task', 'full'):.1f} %."))
    display(plot_cosine(diag))
    display(plot_lambda_curves(diag))
    display(Markdown(soup_table(records)))

# %% [markdown]
# **Each expert on every task** (FusionBench's cross-task matrix): the diagonal is what
# fine-tuning on a task gains there; the rest is what that expert costs on the other tasks, which
# is what a merge has to reconcile. Then **generalisation**: the experts of three tasks merged, and
# evaluated on the two tasks none of them saw.

# %%
from fewshot.report.merge_tables import cross_table, generalisation_table, plot_cross

if records and diag.get("cross"):
    pre = {r["eval_set"]: r["metrics"]["top1"] for r in records if r["method"] == "merge:pre-trained"}
    display(Markdown(cross_table(diag, "full")))
    display(plot_cross(diag, pre))
    display(Markdown(generalisation_table(records, diag["tasks"])))

# %% [markdown]
# **What the adaptive rules learned** on the tasks' unlabeled images (never their labels), and
# **robustness**: the merged encoders on every task's test images under seven corruptions
# (FusionBench's: gaussian and impulse noise, motion blur, contrast, pixelate, JPEG, spatter).
# WEMoE's routing appears when the run's backbone has a ViT tower (`miniclip-vit`).

# %%
from fewshot.report.merge_adaptive import plot_adaptive, plot_routing, robustness_table

if records and diag.get("adaptive"):
    display(plot_adaptive(diag))
if records and diag.get("routing"):
    display(plot_routing(diag))
if records:
    display(Markdown(robustness_table(records) or "no robustness rows (`merge_robustness` is off)"))
