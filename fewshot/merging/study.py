"""Merge study: one image encoder from several fine-tuned ones, evaluated on every task.

For each task (a dataset in the course layout, e.g. the multi-task world of
:mod:`fewshot.world.tasks`) an expert encoder is fine-tuned on its k shots with that task's
zero-shot head frozen (FusionBench's setting: task vectors live in the encoder), without the
held-out fold of its shots (fold 0 of shot rank mod ``cv_folds``). The experts are merged by every
rule of :mod:`fewshot.merging.rules`; scaling factors are chosen on the held-out shots of every task
(their mean accuracy), never on the tasks' test sets; an oracle choice on test is recorded beside.
References: the pre-trained encoder, each expert on its own task, and one encoder trained on all
tasks at once. A "soup" merges the experts of several seeds of one task and is compared with
WiSE-FT of one of them.

Records (role ``merge``): method ``merge:<rule>`` (or ``soup:<...>``), eval_set the task,
hyperparameters (strategy, λ), tuned_on. ``ties`` aggregates by the paper's disjoint mean,
``ties-sum`` by FusionBench's default sum (its λ on that scale); ``fisher`` is FusionBench's
normalised Fisher merge, ``fisher-unnormalised`` the plain one (:func:`fewshot.merging.rules.fisher_merge`).
Diagnostics: the task vectors' cosine matrix and the λ curves of task arithmetic and both TIES.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from fewshot.merging import adamerging
from fewshot.merging import rules as merging
from fewshot.protocol import selection
from fewshot.protocol.metrics import top1
from fewshot.data.datasets import load_dataset
from fewshot.base.errors import DatasetError, NonFiniteError
from fewshot.features.encode import text_classifier
from fewshot.training.encoder import Recipe, build_classifier, encode, train, train_multitask
from fewshot.models.lora import merge as merge_lora
from fewshot.merging.stats import expert_fishers, input_grams
from fewshot.features.pixels import centre_pixels_of, features_of
from fewshot.features.pixels import pixel_cache, train_size
from fewshot.features.preprocess import normalize_pixels
from fewshot.data.splits import make_manifest, shot_ranks

__all__ = ["Task", "load_tasks", "run_study", "check_tasks", "task_order", "soup_task", "LAMBDAS"]

LAMBDAS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
TIES_KEEP, REGMEAN_REDUCE = 0.2, 0.95


@dataclass
class Task:
    """One task's data: zero-shot head, stored training crops and test crops."""

    name: str
    head: torch.Tensor  # [C, D] = s·W_text (frozen)
    train_px: object  # PixelSet of the k shots (train_size)
    labels: torch.Tensor  # [M]
    held: torch.Tensor  # [M] bool: the held-out fold of the shots
    val_px: object  # PixelSet of the test images (input resolution)
    val_labels: torch.Tensor  # [N]


def load_tasks(root, names, backbone, cfg, shots: int, seed: int, device) -> list[Task]:
    """The tasks under ``root`` (sub-folders ``names``) with ``shots`` shots of split ``seed``."""
    from fewshot.data.datasets import ImageSet

    out = []
    res = backbone.input_resolution
    for name in names:
        ds = load_dataset(root / name)
        head = backbone.logit_scale * text_classifier(backbone, ds.classnames, cfg.templates, cfg.cache_dir,
                                                      device, False).float()
        items = [tuple(it) for it in make_manifest(ds, shots, seed)["items"]]
        train_set = ImageSet(f"{name}-train-{shots}shot-seed{seed}", ds.root, items, ds.train.class_indices)
        ranks = torch.tensor(shot_ranks(items))
        out.append(Task(name, head, pixel_cache(train_set, train_size(res), cfg.cache_dir, progress=False),
                        torch.tensor([y for _, y in items]), selection.fold_masks(ranks, cfg.cv_folds)[0],
                        pixel_cache(ImageSet(f"{name}-val", ds.root, ds.val.items, ds.val.class_indices), res,
                                    cfg.cache_dir, progress=False), torch.tensor(ds.val.labels)))
    return out


def _visual_state(clf) -> dict:
    return {k: v.detach().clone() for k, v in clf.visual.state_dict().items() if v.is_floating_point()}


def _expert(model, task, strategy, recipe, device, seed, progress) -> dict:
    clf, groups = build_classifier(model, task.head, 1.0, strategy, device, recipe, seed, train_head=False)
    rows = torch.nonzero(~task.held).squeeze(1)
    train(clf, groups, task.train_px, rows, task.labels[rows], recipe, device, seed, progress,
          f"expert {task.name} ({strategy}, seed {seed})")
    if strategy == "lora":
        merge_lora(clf.visual)
    return _visual_state(clf)


class _Scorer:
    """Top-1 of an encoder state on every task's test images or held-out shots."""

    def __init__(self, model, tasks, device, batch_size):
        clf, _ = build_classifier(model, tasks[0].head, 1.0, "full", device, Recipe())
        self.clf, self.tasks, self.device, self.batch = clf, tasks, device, batch_size

    @torch.no_grad()
    def __call__(self, state: dict, on: str = "test", only=None) -> dict:
        self.clf.visual.load_state_dict(state, strict=False)
        scores = {}
        for t in self.tasks:
            if only and t.name not in only:
                continue
            if on == "test":
                feats = encode(self.clf, t.val_px, self.device, self.batch)
                labels = t.val_labels
            else:
                feats = features_of(self.clf, t.train_px, torch.nonzero(t.held).squeeze(1).tolist(), self.device)
                labels = t.labels[t.held]
            logits = feats @ t.head.to(self.device).T
            if not bool(torch.isfinite(logits).all()):
                raise NonFiniteError(f"merged encoder gives non-finite logits on {t.name}")
            scores[t.name] = 100 * top1(logits.cpu(), labels)
        return scores


def _multitask(model, tasks, recipe, device, seed, progress) -> dict:
    """One encoder trained on every task at once under the experts' recipe
    (:func:`fewshot.training.encoder.train_multitask`: one batch per task per step, summed losses)."""
    clf, groups = build_classifier(model, tasks[0].head, 1.0, "full", device, recipe, seed, train_head=False)
    rows = [torch.nonzero(~t.held).squeeze(1) for t in tasks]
    train_multitask(clf, groups, [(t.train_px, r, t.labels, t.head) for t, r in zip(tasks, rows)], recipe,
                    device, seed, progress)
    return _visual_state(clf)


def _adamerging(score, base, experts, tasks, steps, device, seed) -> list:
    """[(rule, state, hp, tuned_on)] of task- and layer-wise AdaMerging (:mod:`fewshot.merging.adamerging`),
    adapted on each task's training images with labels unused, and transductively on its test images."""
    clf = score.clf.eval()
    floats = {k: v.to(device) for k, v in base.items()}
    taus = merging.task_vectors(floats, [{k: e[k].to(device) for k in floats} for e in experts])
    res = clf.visual.input_resolution
    pools = {"unlabeled-train": [centre_pixels_of(t.train_px, list(range(len(t.labels))), res, device) for t in tasks],
             "test-unlabeled": [t.val_px.batch(list(range(len(t.val_labels)))) for t in tasks]}

    def logits_of(state, t, x):
        f = F.normalize(torch.func.functional_call(clf.visual, state, (normalize_pixels(x.to(device)),)).float(), dim=-1)
        return f @ tasks[t].head.to(device).T
    out = []
    for tuned_on, pool in pools.items():
        gen = torch.Generator().manual_seed(seed)
        draws = [torch.randint(len(x), (steps, min(adamerging.BATCH, len(x))), generator=gen) for x in pool]
        batches = [lambda step, x=x, d=d: x[d[step]] for x, d in zip(pool, draws)]
        for wise in ("task", "layer"):
            lam, hist = adamerging.adamerge(logits_of, floats, taus, batches, steps, layer_wise=wise == "layer")
            state = adamerging.merge(floats, taus, lam, adamerging.names_of(floats, taus))
            rule = f"adamerging-{wise}-wise" + (" (test-unlabeled)" if tuned_on == "test-unlabeled" else "")
            hp = {"steps": steps, "lr": adamerging.LR, "init": adamerging.INIT, "lambda_mean": round(float(lam.mean()), 4),
                  "entropy_first_last": [round(hist[0], 4), round(hist[-1], 4)] if hist else []}
            out.append((rule, {k: v.detach() for k, v in state.items()}, hp, tuned_on))
    return out


def _generalisation(score, base, experts, names) -> list:
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
        for rule, merge in (("task-arithmetic", lambda lam: merging.task_arithmetic(base, chosen, lam)),
                            ("ties", lambda lam: merging.ties(base, chosen, lam, TIES_KEEP))):
            held = {lam: score(merge(lam), "held", only=seen) for lam in LAMBDAS}
            lam = LAMBDAS[selection.first_best([sum(held[x].values()) / len(held[x]) for x in LAMBDAS])]
            out.append((exp, rule, score(merge(lam)), {**hp, "lambda": lam}, "cv-train"))
    return out


def _soup(model, soup_task, base, score, recipe, device, cfg, record, progress) -> list:
    """The soup records: one task's experts of every seed, their average, WiSE-FT (α = 0.5) of one."""
    seed, k = cfg.seeds[0], cfg.merge_shots
    seeds, only = list(cfg.seeds), [soup_task.name]
    experts = [_expert(model, soup_task, "full", recipe, device, s, progress) for s in seeds]
    records = []
    for s, e in zip(seeds, experts):
        records.extend(record(f"soup:seed {s}", soup_task.name, {"top1": v}, k, seed, {"seed": s}, "none")
                       for v in score(e, only=only).values())
    records.extend(record("soup:average", soup_task.name, {"top1": v}, k, seed, {"seeds": seeds}, "none")
                   for v in score(merging.simple_average(experts), only=only).values())
    records.extend(record("soup:wise-ft", soup_task.name, {"top1": v}, k, seed, {"alpha": 0.5, "seed": seeds[0]}, "default")
                   for v in score(merging.task_arithmetic(base, experts[:1], 0.5), only=only).values())
    return records


def _marker(root: Path) -> dict:
    """The task folder's ``.fewshot-tasks`` marker (the task world writes it), {} if none or unreadable."""
    try:
        got = json.loads((root / ".fewshot-tasks").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def task_order(root: Path) -> list[str]:
    """The task folders under ``root``, in the order its ``.fewshot-tasks`` marker lists them (the
    task world's), else sorted by name; hidden folders (a build in progress) are no tasks."""
    listed = _marker(root).get("tasks", [])
    listed = [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []
    return [n for n in listed if (root / n).is_dir()] or sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def soup_task(root: Path, names: list[str]) -> str:
    """The task whose experts of several seeds are souped: the marker's ``soup`` entry, else the first task."""
    named = _marker(root).get("soup")
    return named if named in names else names[0]


def run_study(resources, cfg, device, record, progress: bool = True) -> tuple[list, dict]:
    """(records, diagnostics) of the merge study configured by ``cfg.merge_tasks``."""
    root = Path(cfg.merge_tasks)
    names = task_order(root)
    model, seed, k = resources.backbone.model, cfg.seeds[0], cfg.merge_shots
    recipe = Recipe(cfg.merge_epochs, cfg.merge_lr, 32, cfg.grad_checkpointing)
    tasks = load_tasks(root, names, resources.backbone, cfg, k, seed, device)
    score = _Scorer(model, tasks, device, recipe.batch_size)
    base = _visual_state(score.clf)
    records, diag = [], {"tasks": names, "cosine": {}, "curves": {}}

    def add(method, scores, hp, tuned_on="none"):
        records.extend(record(f"merge:{method}", t, {"top1": v}, k, seed, hp, tuned_on) for t, v in scores.items())

    add("pre-trained", score(base), {})
    for strategy in ("full", "lora"):
        experts = [_expert(model, t, strategy, recipe, device, seed, progress) for t in tasks]
        cross = [score(e) for e in experts]  # each expert on every task (FusionBench's cross-task matrix)
        diag.setdefault("cross", {})[strategy] = [[row[n] for n in names] for row in cross]
        for t, row in zip(tasks, cross):
            add("individual", {t.name: row[t.name]}, {"strategy": strategy})
        taus = merging.task_vectors(base, experts)
        diag["cosine"][strategy] = merging.cosine_matrix(taus).tolist()
        add("average", score(merging.simple_average(experts)), {"strategy": strategy})
        for rule, merge in (("task-arithmetic", lambda lam: merging.task_arithmetic(base, experts, lam)),
                            ("ties", lambda lam: merging.ties(base, experts, lam, TIES_KEEP)),
                            ("ties-sum", lambda lam: merging.ties(base, experts, lam, TIES_KEEP, "sum"))):
            curve = {lam: (score(merge(lam), "held"), score(merge(lam))) for lam in LAMBDAS}
            mean = {lam: (sum(h.values()) / len(h), sum(s.values()) / len(s)) for lam, (h, s) in curve.items()}
            diag["curves"][f"{rule}:{strategy}"] = {str(lam): m for lam, m in mean.items()}
            chosen = LAMBDAS[selection.first_best([mean[lam][0] for lam in LAMBDAS])]
            oracle = LAMBDAS[selection.first_best([mean[lam][1] for lam in LAMBDAS])]
            add(rule, curve[chosen][1], {"strategy": strategy, "lambda": chosen}, "cv-train")
            add(f"{rule} (oracle)", curve[oracle][1], {"strategy": strategy, "lambda": oracle}, "test-oracle")
        if strategy == "full":
            fishers = expert_fishers(model, tasks, experts, recipe, device, seed)
            add("fisher", score(merging.fisher_merge(experts, fishers, normalize=True)), {"strategy": strategy, "normalize": True})
            add("fisher-unnormalised", score(merging.fisher_merge(experts, fishers)), {"strategy": strategy, "normalize": False})
            grams = [input_grams(model, e, t, device) for t, e in zip(tasks, experts)]
            add("regmean", score(merging.regmean(experts, grams, REGMEAN_REDUCE)), {"strategy": strategy, "reduce": REGMEAN_REDUCE})
            for exp, rule, scores, hp, tuned_on in _generalisation(score, base, experts, names):
                records.extend(record(f"generalisation:{exp}:{rule}", t, {"top1": v}, k, seed, hp, tuned_on)
                               for t, v in scores.items())
        for rule, state, hp, tuned_on in (_adamerging(score, base, experts, tasks, cfg.adamerging_steps, device, seed)
                                          if cfg.adamerging_steps else []):
            add(rule, score(state), {"strategy": strategy, **hp}, tuned_on)
    add("multi-task", score(_multitask(model, tasks, recipe, device, seed, progress)), {"strategy": "full"})
    records += _soup(model, tasks[names.index(soup_task(root, names))], base, score, recipe, device, cfg, record, progress)
    return records, diag


def check_tasks(root: str) -> None:
    """Stop with a DatasetError naming the fix when ``root`` (``cfg.merge_tasks``) is no folder."""
    if not Path(root).is_dir():
        raise DatasetError(f"merge_tasks: {root} is not a folder of task datasets; make the "
                           f"mini-world's with `python -m fewshot world make-tasks --out {root}`, import FusionBench's "
                           f"with `python -m fewshot world import-fusionbench --src <exports> --out {root}`, or "
                           f"set merge_tasks to \"\" to skip the merging study.")
