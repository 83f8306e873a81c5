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
# | Fisher | $\sum_i F_i \theta_i / \sum_i F_i$, diagonal Fishers on each task's shots |
# | RegMean | per linear map: $W = (\sum_i G_i)^{-1} \sum_i G_i W_i^\top$, $G_i = X_i^\top X_i$ its inputs' Gram matrix |
#
# λ is chosen on held-out shots of every task, never on their test sets (oracle rows beside).

# %%
# fewshot: shared header

# %% [markdown]
# ## Each rule on a real weight tensor
# The attention pool's output projection of the zero-shot encoder, and two task vectors that
# disagree on half of their entries:

# %%
import torch

from fewshot import merging

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
# ## The study: experts, merges, every merged model on every task

# %%
from fewshot.merge_report import merge_table, soup_table

records = run.step("merging")
diag = run.dir.read_json(run.dir.diagnostics_path("merging"))
display(Markdown(merge_table(records, diag["tasks"]) if records else "no `merge_tasks` in this run's config"))

# %%
from fewshot.merge_report import plot_cosine, plot_lambda_curves

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
