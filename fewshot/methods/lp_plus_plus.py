"""LP++ (Huang et al., CVPR 2024, "A Surprisingly Strong Linear Probe for Few-Shot CLIP"): a linear
probe whose logits blend in the text head with a learned weight per class.

    logits = f·Wᵥᵀ + b + α ⊙ (f·Wᵀ)        Wᵥ [C, D], b [C], α [C]; no logit scale (as the code)

Initialisation: Wᵥ = the sum of each class's normalised features, b as ``nn.Linear``'s default,
every α_c = 250 · mean over classes c of (the mean over class c's shots of f·t_c): each class's
similarity to its OWN text embedding (the official ``calculate_init_alpha`` /
``compute_centroids_alpha`` of FereshteShakeri/FewShot-CLIP-Strong-Baseline multiplies the one-hot
labels elementwise with the similarities; the suite averaged the whole C×C matrix until 2026-12).
The step sizes are
data-driven (the paper's Lipschitz bounds), with N training features F:

    lr_W = 4N / λ_max(FᵀF),    lr_α = N / (4 · max_c Σ_i (f_i·t_c)²)

Full batch, 300 epochs: Wᵥ and b by SGD (momentum 0.9) every epoch, α by plain gradient descent
every 10 epochs with its gradient accumulated since the start, as the official code does. One
augmented view per training image (the official code's single view). The official code picks the
epoch on a held-out K-shot split of the training set; with only the k shots here, the last epoch is
kept, so nothing is tuned (``tuned_on: none``).

Recipes (``cfg.recipe``, :mod:`fewshot.protocol.recipes`): ``default`` trains in fp32; ``official`` in fp16
as the official code does (``methods/linear_probe_p2.py`` of FereshteShakeri/FewShot-CLIP-Strong-
Baseline at f81054f: the features, ``nn.Linear(...).to(model.dtype)``, α and SGD's momentum
buffer are fp16, the forward and backward pass too); the step sizes are computed in fp32 from
the fp16 features.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from fewshot.base.errors import ConfigError
from fewshot.protocol.evaluation import check_finite
from fewshot.protocol.method import Head, Method, Source, register
from fewshot.protocol.method_config import setting
from fewshot.protocol.recipes import OFFICIAL_CHECKS, recipe_for

__all__ = ["lp_logits", "step_sizes", "init_alpha"]

ALPHA_EVERY = 10  # the epochs: cfg.lp_pp_epochs (the official 300)
SOURCE = Source("Huang et al., CVPR 2024", "FereshteShakeri/FewShot-CLIP-Strong-Baseline",
                "f81054f995b060f8348d20e7306e15889b70c786", ("methods/linear_probe_p2.py", "main_imagenet.py"))


def lp_logits(feats, wv, b, alpha, text_weights):
    """feats [N, D] -> [N, C]: ``f·Wᵥᵀ + b + α ⊙ (f·Wᵀ)``, in the dtype of ``wv``."""
    feats = feats.to(wv.dtype)
    return feats @ wv.T + b + alpha * (feats @ text_weights.to(wv.dtype).T)


def step_sizes(feats, text_weights) -> tuple[float, float]:
    """(lr_W, lr_α) of LP++ for training features [N, D] (module docstring)."""
    n = feats.shape[0]
    gram = (feats.T @ feats).double()
    lam_max = float(torch.linalg.eigvalsh(gram)[-1])
    zs = feats @ text_weights.float().T  # [N, C]
    return 4 * n / lam_max, n / (4 * float((zs ** 2).sum(0).max()))


def init_alpha(feats, labels, text_weights, num_classes: int) -> float:
    """LP++'s initial text weight: 250 · mean_c (mean over the shots of class c of f·t_c).
    feats [M, D] (normalised), labels [M], text_weights [C, D]; a class without shots counts 0."""
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).float()
    own = (feats.float() * text_weights.float()[labels]).sum(-1)  # [M]: f_i · t_{y_i}
    per_class = torch.zeros(num_classes, device=feats.device).index_add_(0, labels, own) / counts
    return 250 * float(per_class.mean())


@functools.lru_cache(maxsize=None)
def _half_matmul(device: str) -> bool:
    """Whether this torch multiplies fp16 matrices on ``device`` (torch 2.0's CPU cannot)."""
    try:
        torch.ones(2, 2, dtype=torch.float16, device=device) @ torch.ones(2, 2, dtype=torch.float16, device=device)
    except RuntimeError:
        return False
    return True


def official_problem(device) -> str | None:
    """Why the official (fp16) recipe cannot run on ``device`` with this torch, or None."""
    if _half_matmul(str(device)):
        return None
    return (f"recipe=official trains LP++ in fp16, which torch {torch.__version__} cannot do on {device}: "
            f"run it on a GPU or with torch >= 2.1, or use recipe=default (or leave lp++ out of `methods`).")


OFFICIAL_CHECKS["lp++"] = official_problem  # checked before a run starts (fewshot.run.preflight)


def _logits(wv, b, alpha, text_weights):
    """The fitted head: feats [n, D] -> [n, C] fp32 (:func:`lp_logits` in the dtype of ``wv``)."""
    return lambda f: lp_logits(f, wv, b, alpha, text_weights).float()


def rebuild(fitted, shots, ctx) -> Head:
    """``Method.rebuild``: the saved Wᵥ [C, D], b [C], α [C] (in the recipe's dtype) on the run's
    text head in that dtype."""
    st = fitted.state
    return fitted.head(_logits(st["wv"], st["b"], st["alpha"], ctx.text_weights.float().to(st["wv"].dtype)))


def fit(shots, ctx) -> Head:
    """Full-batch LP++ on one augmented view per shot."""
    recipe = recipe_for(ctx, ("official",))
    dtype = torch.float16 if recipe == "official" else torch.float32
    problem = official_problem(shots.views.device) if recipe == "official" else None
    if problem:
        raise ConfigError(problem)
    x = F.normalize(shots.views[0].float(), dim=-1).to(dtype)  # [M, D]
    y, C, W = shots.labels, shots.num_classes, ctx.text_weights.float().to(dtype)
    gen = torch.Generator().manual_seed(shots.seed)
    wv = torch.zeros(C, x.shape[1], device=x.device, dtype=dtype).index_add_(0, y, x).requires_grad_(True)
    bound = 1 / math.sqrt(x.shape[1])
    b = ((torch.rand(C, generator=gen) * 2 - 1) * bound).to(x.device, dtype).requires_grad_(True)
    alpha = torch.full((C,), init_alpha(x, y, W, C), device=x.device, dtype=dtype, requires_grad=True)
    lr_w, lr_a = step_sizes(x.float(), W.float())
    opt = torch.optim.SGD([wv, b], lr=lr_w, momentum=0.9)
    what = f"LP++ ({shots.shots}-shot, seed {shots.seed})"
    epochs = setting(ctx, "lp_pp_epochs")
    losses = torch.zeros(epochs, device=x.device)
    for epoch in range(epochs):
        loss = F.cross_entropy(lp_logits(x, wv, b, alpha, W), y)
        opt.zero_grad(set_to_none=True)  # Wᵥ and b only: α's gradient keeps accumulating
        loss.backward()
        opt.step()
        losses[epoch] = loss.detach()
        if (epoch + 1) % ALPHA_EVERY == 0:
            with torch.no_grad():
                alpha -= lr_a * alpha.grad
    check_finite(losses, f"{what}: training loss", "LP++'s data-driven step sizes diverged on these features")
    wv, b, alpha = wv.detach(), b.detach(), alpha.detach()
    return Head(_logits(wv, b, alpha, W), "none",
                {"epochs": epochs, "lr_w": lr_w, "lr_alpha": lr_a, "recipe": recipe,
                 "dtype": str(dtype).removeprefix("torch.")},
                state={"wv": wv, "b": b, "alpha": alpha},
                extra={"history": [{"epoch": e + 1, "loss": v} for e, v in enumerate(losses.tolist())
                                   if (e + 1) % 10 == 0]})


register(Method("lp++", fit, step="peers", rebuild=rebuild, learnable=True, source=SOURCE, recipes=("official",),
                summary="linear probe blended with the text head, data-driven steps (Huang et al., 2024)"))
