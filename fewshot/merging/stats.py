"""What the merging rules need to know of each expert beyond its weights: RegMean's input Gram
matrices and Fisher merging's diagonal Fishers, both on the task's training shots (the held-out
fold left out), through a classifier built on the shared CLIP model."""
from __future__ import annotations

import torch

from fewshot.training.encoder import Recipe, build_classifier
from fewshot.training.fisher import diagonal_fisher
from fewshot.features.pixels import centre_pixels_of
from fewshot.features.preprocess import normalize_pixels
from fewshot.merging.regmean_inputs import attention_hooks

__all__ = ["input_grams", "expert_fishers"]


def input_grams(model, state, task, device) -> dict:
    """RegMean's statistics of one expert ``state``: input Gram matrices (mean of xxᵀ over rows) of every Linear and 1×1 convolution that the
    encoder calls, and of the projections its attention reads directly (q/k/v and the output
    projection, :mod:`fewshot.merging.regmean_inputs`), on the task's training shots."""
    clf, _ = build_classifier(model, task.head, 1.0, "full", device, Recipe())
    clf.visual.load_state_dict(state, strict=False)
    grams, count = {}, {}

    def add(key, x):
        x = x.reshape(-1, x.shape[-1]).double()
        grams[key] = grams.get(key, 0) + x.T @ x
        count[key] = count.get(key, 0) + x.shape[0]
    hooks = attention_hooks(clf.visual, add)
    for name, m in clf.visual.named_modules():
        if isinstance(m, torch.nn.Linear) or (isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)):
            def hook(mod, inputs, _out, key=f"{name}.weight"):
                x = inputs[0].detach()
                add(key, x.movedim(1, -1) if x.dim() == 4 else x)
            hooks.append(m.register_forward_hook(hook))
    rows = torch.nonzero(~task.held).squeeze(1).tolist()
    with torch.no_grad():
        clf.features(normalize_pixels(centre_pixels_of(task.train_px, rows, clf.visual.input_resolution, device)))
    for h in hooks:
        h.remove()
    return {k: (g / count[k]).float() for k, g in grams.items()}


def expert_fishers(model, tasks, experts, recipe, device, seed) -> list[dict]:
    """Each expert's diagonal Fisher on its task's training shots (the held-out fold left out)."""
    fishers = []
    for t, e in zip(tasks, experts):
        clf, _ = build_classifier(model, t.head, 1.0, "full", device, recipe, train_head=False)
        clf.visual.load_state_dict(e, strict=False)
        rows = torch.nonzero(~t.held).squeeze(1).tolist()
        f = diagonal_fisher(clf, centre_pixels_of(t.train_px, rows, clf.visual.input_resolution, device),
                            t.labels[~t.held], device, "model", seed=seed)
        fishers.append({n.removeprefix("visual."): v for n, v in f.items()})
    return fishers
