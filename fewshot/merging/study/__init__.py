"""Merge study: one image encoder from several fine-tuned ones, evaluated on every task.

For each task (a dataset in the course layout, e.g. the task world of :mod:`fewshot.world.tasks`)
an expert encoder is fine-tuned on its k shots with that task's zero-shot head frozen (FusionBench's
setting and recipe, :mod:`~fewshot.merging.study.experts`), fully, with LoRA and with L-LoRA,
without the held-out fold of its shots (fold 0 of shot rank mod ``cv_folds``). The experts are
merged by every rule of :mod:`fewshot.merging.rules`; scaling factors are chosen on the held-out
shots of every task, never on the tasks' test sets (an oracle choice on test is recorded beside);
the adaptive rules (:mod:`~fewshot.merging.study.adaptive`) learn on unlabeled images. References:
the pre-trained encoder, each expert on every task (the cross-task matrix), one encoder trained on
all tasks at once. FusionBench's experiments: generalisation to unseen tasks, robustness to
corruptions (:mod:`~fewshot.merging.study.robustness`), a seed soup of one task.

Records (role ``merge``): method ``merge:<rule>`` (``generalisation:<exp>:<rule>``,
``robustness:<rule>``, ``soup:<...>``), eval_set the task, hyperparameters (strategy, λ, ...),
tuned_on. Diagnostics: the task vectors' cosine matrix, the cross-task matrix, the λ curves, WEMoE's
routing.
"""
from __future__ import annotations

from pathlib import Path

from fewshot.merging import rules as merging
from fewshot.merging.study.adaptive import adaptive_rows, pools, wemoe_rows
from fewshot.merging.study.experiments import (LAMBDAS, generalisation_rows, soup_rows, static_rows,
                                               statistic_rows)
from fewshot.merging.study.experts import (STRATEGIES, Scorer, expert_recipe, train_expert,
                                           train_multitask_reference, visual_state)
from fewshot.merging.study.robustness import corrupted_sets, robustness_rows
from fewshot.merging.study.task_data import Task, check_tasks, load_tasks, soup_task, task_order

__all__ = ["Task", "load_tasks", "run_study", "check_tasks", "task_order", "soup_task", "LAMBDAS", "ROBUST_RULES"]

# the rules whose encoders the robustness experiment corrupts the test images for (FusionBench's rows)
ROBUST_RULES = ("pre-trained", "average", "task-arithmetic", "ties", "fisher", "regmean", "adamerging-layer-wise")


def _strategy(ctx, strategy, experts, rows_out, robust) -> None:
    """The rows of one expert strategy: the cross-task matrix, the fixed and statistic rules,
    generalisation and the adaptive rules (the last three for fully fine-tuned experts)."""
    score, base, tasks, names, cfg = ctx["score"], ctx["base"], ctx["tasks"], ctx["names"], ctx["cfg"]
    diag, add = ctx["diag"], ctx["add"]
    cross = [score(e) for e in experts]  # each expert on every task (FusionBench's cross-task matrix)
    diag["cross"][strategy] = [[row[n] for n in names] for row in cross]
    for t, row in zip(tasks, cross):
        add("individual", {t.name: row[t.name]}, {"strategy": strategy})
    diag["cosine"][strategy] = merging.cosine_matrix(merging.task_vectors(base, experts)).tolist()
    rows = static_rows(score, base, experts, strategy, diag["curves"])
    both = pools(tasks, score.clf.visual.input_resolution, ctx["device"]) if strategy == "full" and cfg.adamerging_steps else {}
    if strategy == "full":
        rows += statistic_rows(ctx["model"], tasks, experts, ctx["recipe"], ctx["device"], ctx["seed"])
        if cfg.adamerging_steps:
            adaptive, diag["adaptive"] = adaptive_rows(score.clf, tasks, base, experts, cfg.adamerging_steps,
                                                       ctx["device"], ctx["seed"], both)
            rows += [(*r, None) for r in adaptive]
    for rule, state, hp, tuned_on, scores in rows:
        add(rule, scores or score(state), {"strategy": strategy, **hp}, tuned_on)
        if strategy == "full" and rule in ROBUST_RULES:
            robust[rule] = (state, tuned_on)
    if strategy == "full":
        for exp, rule, scores, hp, tuned_on in generalisation_rows(score, base, experts, names):
            rows_out.extend(ctx["record"](f"generalisation:{exp}:{rule}", t, {"top1": v}, ctx["k"], ctx["seed"], hp, tuned_on)
                            for t, v in scores.items())
        for rule, scores, hp, tuned_on, routing in (wemoe_rows(score.clf, tasks, base, experts, cfg.adamerging_steps,
                                                               ctx["device"], ctx["seed"], both) if both else []):
            add(rule, scores, {"strategy": strategy, **hp}, tuned_on)
            diag["routing"][rule] = routing


def run_study(resources, cfg, device, record, progress: bool = True) -> tuple[list, dict]:
    """(records, diagnostics) of the merge study configured by ``cfg.merge_tasks``."""
    root = Path(cfg.merge_tasks)
    names = task_order(root)
    model, seed, k = resources.backbone.model, cfg.seeds[0], cfg.merge_shots
    recipe = expert_recipe(cfg)
    tasks = load_tasks(root, names, resources.backbone, cfg, k, seed, device)
    score = Scorer(model, tasks, device, 256)
    base = visual_state(score.clf)
    records, diag = [], {"tasks": names, "cosine": {}, "curves": {}, "cross": {}, "routing": {}}

    def add(method, scores, hp, tuned_on="none"):
        records.extend(record(f"merge:{method}", t, {"top1": v}, k, seed, hp, tuned_on) for t, v in scores.items())

    ctx = {"score": score, "base": base, "tasks": tasks, "names": names, "cfg": cfg, "diag": diag, "add": add,
           "model": model, "recipe": recipe, "device": device, "seed": seed, "k": k, "record": record}
    add("pre-trained", score(base), {})
    robust = {"pre-trained": (base, "none")}
    for strategy in STRATEGIES:
        experts = [train_expert(model, t, strategy, recipe, device, seed, progress) for t in tasks]
        _strategy(ctx, strategy, experts, records, robust)
    add("multi-task", score(train_multitask_reference(model, tasks, recipe, device, seed, progress)), {"strategy": "full"})
    if cfg.merge_robustness:
        states = {rule: state for rule, (state, _) in robust.items()}
        for rule, task, v, hp in robustness_rows(score, states, corrupted_sets(tasks)):
            records.append(record(f"robustness:{rule}", task, {"top1": v}, k, seed, hp, robust[rule][1]))
    for name, scores, hp, tuned_on in soup_rows(model, tasks[names.index(soup_task(root, names))], base, score,
                                                recipe, device, cfg.seeds, progress):
        records.extend(record(name, t, {"top1": v}, k, seed, hp, tuned_on) for t, v in scores.items())
    return records, diag
