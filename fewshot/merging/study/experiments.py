"""The merge study's fixed rules and FusionBench's experiments built on them: simple averaging,
task arithmetic, TIES (mean and sum), Fisher merging (normalised and plain), RegMean, with λ
chosen on the held-out shots; the generalisation experiment; the seed soup of one task.
"""
from __future__ import annotations

from fewshot.merging import rules as merging
from fewshot.merging.stats import expert_fishers, input_grams
from fewshot.merging.study.experts import train_expert
from fewshot.protocol import selection

__all__ = ["LAMBDAS", "TIES_KEEP", "REGMEAN_REDUCE", "static_rows", "statistic_rows", "generalisation_rows", "soup_rows"]

LAMBDAS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
TIES_KEEP, REGMEAN_REDUCE = 0.2, 0.95


def _lambda_rules(base, experts):
    return (("task-arithmetic", lambda lam: merging.task_arithmetic(base, experts, lam)),
            ("ties", lambda lam: merging.ties(base, experts, lam, TIES_KEEP)),
            ("ties-sum", lambda lam: merging.ties(base, experts, lam, TIES_KEEP, "sum")))


def static_rows(score, base, experts, strategy, curves: dict) -> list:
    """[(rule, state, hp, tuned_on, test scores or None)] of averaging and the λ rules (λ on the
    held-out shots; the oracle λ on test beside); ``curves`` gets each λ rule's mean held-out and
    test top-1 per λ."""
    out = [("average", merging.simple_average(experts), {"strategy": strategy}, "none", None)]
    for rule, merge in _lambda_rules(base, experts):
        states = {lam: merge(lam) for lam in LAMBDAS}  # each merge once: scored twice, one kept
        curve = {lam: (score(states[lam], "held"), score(states[lam])) for lam in LAMBDAS}
        mean = {lam: (sum(h.values()) / len(h), sum(s.values()) / len(s)) for lam, (h, s) in curve.items()}
        curves[f"{rule}:{strategy}"] = {str(lam): m for lam, m in mean.items()}
        chosen = LAMBDAS[selection.first_best([mean[lam][0] for lam in LAMBDAS])]
        oracle = LAMBDAS[selection.first_best([mean[lam][1] for lam in LAMBDAS])]
        out.append((rule, states[chosen], {"strategy": strategy, "lambda": chosen}, "cv-train", curve[chosen][1]))
        out.append((f"{rule} (oracle)", states[oracle], {"strategy": strategy, "lambda": oracle}, "test-oracle",
                    curve[oracle][1]))
    return out


def statistic_rows(model, tasks, experts, recipe, device, seed) -> list:
    """[(rule, state, hp, tuned_on, None)] of the rules that read the experts' statistics on their
    shots: Fisher merging (FusionBench's normalised form, and the plain one) and RegMean."""
    fishers = expert_fishers(model, tasks, experts, recipe, device, seed)
    grams = [input_grams(model, e, t, device) for t, e in zip(tasks, experts)]
    return [("fisher", merging.fisher_merge(experts, fishers, normalize=True), {"strategy": "full", "normalize": True},
             "none", None),
            ("fisher-unnormalised", merging.fisher_merge(experts, fishers), {"strategy": "full", "normalize": False},
             "none", None),
            ("regmean", merging.regmean(experts, grams, REGMEAN_REDUCE), {"strategy": "full", "reduce": REGMEAN_REDUCE},
             "none", None)]


def generalisation_rows(score, base, experts, names) -> list:
    """[(experiment, rule, scores, hp, tuned_on)]: FusionBench's generalisation study. Merge the
    experts of some tasks and evaluate on every task, the unseen ones included: exp1 merges the
    first three tasks, exp2 the last three; λ is chosen on the seen tasks' held-out shots."""
    out = []
    for exp, seen in (("exp1", names[:3]), ("exp2", names[-3:])):
        if len(seen) == len(names):
            continue
        chosen = [e for n, e in zip(names, experts) if n in seen]
        hp = {"strategy": "full", "seen": list(seen)}
        out.append((exp, "average", score(merging.simple_average(chosen)), hp, "none"))
        for rule, merge in _lambda_rules(base, chosen)[:2]:
            held = {lam: score(merge(lam), "held", only=seen) for lam in LAMBDAS}
            lam = LAMBDAS[selection.first_best([sum(held[x].values()) / len(held[x]) for x in LAMBDAS])]
            out.append((exp, rule, score(merge(lam)), {**hp, "lambda": lam}, "cv-train"))
    return out


def soup_rows(model, task, base, score, recipe, device, seeds, progress) -> list:
    """[(name, scores, hp, tuned_on)]: one task's experts of every seed, their average, and WiSE-FT
    (α = 0.5) of the first seed's."""
    experts = [train_expert(model, task, "full", recipe, device, s, progress) for s in seeds]
    only = [task.name]
    out = [(f"soup:seed {s}", score(e, only=only), {"seed": s}, "none") for s, e in zip(seeds, experts)]
    out.append(("soup:average", score(merging.simple_average(experts), only=only), {"seeds": list(seeds)}, "none"))
    out.append(("soup:wise-ft", score(merging.task_arithmetic(base, experts[:1], 0.5), only=only),
                {"alpha": 0.5, "seed": seeds[0]}, "default"))
    return out
