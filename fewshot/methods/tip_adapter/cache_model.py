"""Tip-Adapter (training-free cache model) and Tip-Adapter-F (cache keys fine-tuned), on tensors.

Shapes: N queries, M cache entries, C classes, D feature dim, V views; features are L2-normalised unless "raw".

    logits = logit_scale · f·Wᵀ + α · exp(−β(1 − f·Kᵀ)) · L        (Zhang et al., ECCV 2022)

The formula lives in :func:`cache_affinity` and :func:`tip_logits`; everything else calls them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm import tqdm

from fewshot.models.text_head import zeroshot_logits

__all__ = ["official_grid", "build_cache", "cache_affinity", "tip_logits", "search", "best_point",
           "train_tip_adapter_f", "adapter_fisher", "DEFAULT_ALPHA", "DEFAULT_BETA", "RECIPES"]

DEFAULT_ALPHA, DEFAULT_BETA = 1.17, 1.0  # the official ImageNet config's initial values


def official_grid(beta_max: float = 7.0, beta_steps: int = 200, alpha_max: float = 3.0,
                  alpha_steps: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ImageNet search grid: (alphas [20], betas [200]), both starting at 0.1."""
    alphas = torch.tensor([0.1 + i * (alpha_max - 0.1) / alpha_steps for i in range(alpha_steps)])
    betas = torch.tensor([0.1 + i * (beta_max - 0.1) / beta_steps for i in range(beta_steps)])
    return alphas, betas


def build_cache(view_feats: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """Cache keys and values from raw augmented-view features.

    view_feats: [V, M, D] raw (unnormalised) features of V augmented views of M images;
    labels: [M]. Returns keys [M, D] = normalise(mean over views) in fp32 and one-hot values
    [M, C] in fp32, as the official implementation builds them.
    """
    keys = F.normalize(view_feats.float().mean(dim=0), dim=-1)
    values = F.one_hot(labels.long(), num_classes).float()
    return keys, values


def cache_affinity(feats: torch.Tensor, keys: torch.Tensor, beta) -> torch.Tensor:
    """``exp(−β(1 − f·Kᵀ))``: feats [N, D], keys [M, D] -> [N, M] (or a stack: [F, N, D] and
    [F, M, D] -> [F, N, M]). ``beta`` may be a tensor that broadcasts against [N, M] (e.g.
    [B, 1, 1] for a batch of betas)."""
    return torch.exp(-beta * (1.0 - feats @ keys.mT))


def tip_logits(feats, text_weights, keys, values, alpha, beta, logit_scale: float = 100.0,
               cache_dtype: torch.dtype | None = None):
    """Tip-Adapter logits [N, C] = ``logit_scale·f·Wᵀ + α·exp(−β(1 − f·Kᵀ))·L``.

    feats [N, D], text_weights [C, D], keys [M, D] (normalised rows), values [M, C]; or F stacked
    caches at once: feats [F, N, D], keys [F, M, D], values [F, M, C] -> [F, N, C].
    ``alpha = 0`` gives exactly the zero-shot logits. ``cache_dtype=torch.float16`` multiplies
    the affinities by the values in fp16 (tensor cores; evaluation on a GPU, as the official code
    does); by default everything stays in the keys' dtype.
    """
    feats = feats.to(keys.dtype)
    aff = cache_affinity(feats, keys, beta)
    cache = aff @ values.to(keys.dtype) if cache_dtype is None else \
        (aff.to(cache_dtype) @ values.to(cache_dtype)).to(keys.dtype)
    return zeroshot_logits(feats, text_weights.to(keys.dtype), logit_scale) + alpha * cache


def _chunks(n_rows: int, per_row: int, budget: int) -> int:
    return max(1, min(n_rows, budget // max(per_row, 1)))


def _class_groups(values: torch.Tensor) -> torch.Tensor | None:
    """For one-hot ``values`` [M, C] with the same number K of entries per class: [K, C], entry
    (k, c) the index of class c's k-th cache entry (so, with the keys in this order, a class's
    cache logit sums a strided column, a fast reduction); else None."""
    if not bool(((values == 0) | (values == 1)).all()) or not bool((values.sum(1) == 1).all()):
        return None
    counts = values.sum(0)
    if counts.numel() == 0 or not bool((counts == counts[0]).all()) or int(counts[0]) == 0:
        return None
    return torch.argsort(values.argmax(1), stable=True).view(values.shape[1], int(counts[0])).T


def _in_class_order(keys, exclude, groups):
    """``keys`` [M, D] in ``groups``' (rank, class) order, and ``exclude`` [N] pointing at each
    excluded entry's new position (-1 stays -1)."""
    order = groups.flatten()
    if exclude is not None:
        where = torch.empty_like(order)
        where[order] = torch.arange(order.numel(), device=order.device)
        exclude = exclude.to(order.device)
        exclude = torch.where(exclude >= 0, where[exclude.clamp(min=0)], -1)
    return keys[order], exclude


def _affinities(sim, betas: list, elu: bool, left_out=None) -> torch.Tensor:
    """Cache affinities [b, n, M] of ``sim`` = f·k − 1 [n, M] at each β: ``exp(β·sim)``, or with
    ``elu`` the same minus one (``ELU(x; input scale β) = exp(βx) − 1`` for x ≤ 0: one pass);
    ``left_out`` (query rows, entries) get affinity 0 (−1 in the ELU form)."""
    aff = torch.empty(len(betas), *sim.shape, dtype=sim.dtype, device=sim.device)
    for j, beta in enumerate(betas):
        if elu:
            torch.ops.aten.elu.out(sim, 1.0, 1.0, beta, out=aff[j])
        else:
            torch.exp(sim * beta, out=aff[j])
    if left_out is not None:
        aff[:, left_out[0], left_out[1]] = -1.0 if elu else 0.0
    return aff


def _wins(a, cache, y, lower, alphas) -> torch.Tensor:
    """Per β and α, how many queries the true class wins: zero-shot margins ``a`` [n, C], cache
    logits [b, n, C], labels ``y`` [n, 1], ``lower`` [n, C] (classes that win a tie against y),
    alphas [A] -> [b, A] (see :func:`search` for the intervals)."""
    inf = torch.tensor(torch.inf, device=a.device)
    slope = cache.gather(2, y.expand(cache.shape[0], -1, 1)) - cache  # b_c: [b, n, C]
    cross = -a / slope  # [b, n, C] the α where class c's logit meets y's; ±inf/nan at slope 0
    # against a lower class an exact tie loses: the bound moves one float inwards
    cross = torch.where(lower, torch.nextafter(cross, torch.where(slope > 0, inf, -inf)), cross)
    lo = torch.where(slope > 0, cross, -inf).amax(-1)  # [b, n]
    hi = torch.where(slope < 0, cross, inf).amin(-1)
    never = ((slope == 0) & ((a < 0) | ((a == 0) & lower))).any(-1)
    wins = (alphas[:, None] >= lo[:, None]) & (alphas[:, None] <= hi[:, None])  # [b, A, n]
    return (wins & ~never[:, None]).sum(-1)


@torch.no_grad()
def search(feats, labels, text_weights, keys, values, alphas, betas, logit_scale: float = 100.0,
           exclude: torch.Tensor | None = None, budget_bytes: int = 1 << 30,
           precision: str = "auto", progress: bool = False,
           cache_feats: torch.Tensor | None = None) -> torch.Tensor:
    """Top-1 accuracy of :func:`tip_logits` on a whole (β, α) grid: returns [len(betas), len(alphas)];
    with ``values`` a list of G value matrices (APE's γ grid), [G, len(betas), len(alphas)], the
    affinities computed once for all of them (each grid equals its own call's, bit for bit, when
    none is one-hot).

    feats [N, D], labels [N], text_weights [C, D], keys [M, D], values [M, C]. ``exclude`` [N]
    optionally names, per query, one cache entry to leave out (leave-one-out on the training
    shots; -1 leaves nothing out). ``cache_feats`` [N, D'] optionally gives the features the cache
    term compares with the keys [M, D'] (APE: selected channels); by default ``feats``. Runs on
    the device of ``feats``, queries and betas in chunks within ``budget_bytes``.

    No logits are formed per α. For one query and one β, with ``a_c = zs_y − zs_c`` and
    ``b_c = cache_y − cache_c``, the true class y wins at α iff ``a_c + α·b_c > 0`` for every
    c < y and ``≥ 0`` for every c > y (an exact tie goes to the lower class index, as ``argmax``
    and :func:`fewshot.protocol.metrics.topk_correct` decide it): an interval of α between the crossing
    points ``−a_c/b_c``, open at the ends set by a lower class. So each (β, query) costs O(C)
    whatever the number of alphas.
    When the values are one-hot with K entries per class (every k-shot cache), a class's cache
    logit is a sum over its K affinities, computed as ``ELU(f·k − 1)`` with input scale β, that
    is ``A − 1`` in one pass over [n, M] (the −K it adds to every class leaves the margins
    unchanged); otherwise ``exp`` and a matmul with the values. ``precision="auto"`` keeps the
    affinities in fp16 on CUDA (sums and margins in fp32); fp32 elsewhere.
    """
    dev, f32 = feats.device, torch.float32
    mm = torch.float16 if precision == "auto" and dev.type == "cuda" else f32
    feats, keys = feats.to(f32), keys.to(dev, f32)
    cache_feats = feats if cache_feats is None else cache_feats.to(dev, f32)
    many = isinstance(values, (list, tuple))
    vals = [v.to(dev, f32) for v in (values if many else [values])]
    text_weights, values = text_weights.to(dev, f32), vals[0]
    alphas = torch.as_tensor(alphas, dtype=f32, device=dev)
    betas = torch.as_tensor(betas, dtype=f32, device=dev)
    beta_list = betas.tolist()
    labels = labels.to(dev)
    groups = None if many else _class_groups(values)
    if groups is not None:  # keys in (rank, class) order: class c's cache logit sums column c
        keys, exclude = _in_class_order(keys, exclude, groups)
    vals = [v.to(mm) for v in vals]
    (N, C), A, M = (feats.shape[0], text_weights.shape[0]), alphas.numel(), keys.shape[0]
    per_query = torch.finfo(mm).bits // 8 * M + 16 * C  # bytes per (β, query): affinities, [C] temporaries
    n_chunk = _chunks(N, 4 * M + 8 * C, budget_bytes)
    b_chunk = _chunks(betas.numel(), n_chunk * per_query, budget_bytes)
    correct = torch.zeros(len(vals), betas.numel(), A, dtype=torch.long, device=dev)
    for s in tqdm(range(0, N, n_chunk), desc="grid search", disable=not progress, leave=False):
        ex = None if exclude is None else exclude[s:s + n_chunk].to(dev)
        correct += _count_wins(feats[s:s + n_chunk], labels[s:s + n_chunk, None], cache_feats[s:s + n_chunk],
                               keys, text_weights, logit_scale, ex, beta_list, b_chunk, groups is not None,
                               vals, alphas, mm)
    grid = correct.to(f32) / N
    return grid if many else grid[0]


def _count_wins(f, y, cf, keys, text_weights, logit_scale, ex, beta_list, b_chunk, grouped, vals, alphas, mm):
    """Correct counts [G, B, A] of one chunk of n queries (features f [n, D], labels y [n, 1],
    cache-side features cf [n, D']) over every value matrix, β and α: :func:`search`'s inner loop."""
    f32, C = torch.float32, text_weights.shape[0]
    zs = zeroshot_logits(f, text_weights, logit_scale)  # [n, C]
    a = zs.gather(1, y) - zs  # [n, C]: the true class's zero-shot margin over each class
    lower = torch.arange(C, device=f.device) < y  # [n, C]: classes that win a tie against y
    sim = (cf @ keys.T - 1.0).to(mm)  # [n, M] = −(1 − f·k), cast once
    rows = None if ex is None else torch.nonzero(ex >= 0).squeeze(1)
    out = torch.zeros(len(vals), len(beta_list), alphas.numel(), dtype=torch.long, device=f.device)
    for b in range(0, len(beta_list), b_chunk):
        aff = _affinities(sim, beta_list[b:b + b_chunk], grouped, None if ex is None else (rows, ex[rows]))
        for g, v in enumerate(vals):
            if grouped:  # Σ_k (A − 1) = class sum − K: the same shift for every class
                cache = aff.view(*aff.shape[:2], -1, C).sum(2, dtype=f32)  # [b, n, C]
            else:
                cache = (aff @ v).to(f32)
            out[g, b:b + b_chunk] += _wins(a, cache, y, lower, alphas)
    return out


def best_point(grid: torch.Tensor, alphas, betas) -> tuple[float, float, float]:
    """(alpha, beta, accuracy) at the grid's maximum; ties go to the first in (β, α) order."""
    flat = int(torch.argmax(grid.flatten()))
    bi, ai = divmod(flat, grid.shape[1])
    return float(alphas[ai]), float(betas[bi]), float(grid[bi, ai])


RECIPES = ("fp32", "official")


def train_tip_adapter_f(view_feats, labels, text_weights, keys, values, alpha: float, beta: float,
                        logit_scale: float = 100.0, epochs: int = 20, lr: float = 1e-3,
                        eps: float = 1e-4, batch_size: int = 256, seed: int = 1, device=None,
                        progress: bool = True, recipe: str = "fp32", select_epoch=None,
                        what: str = "Tip-Adapter-F") -> dict:
    """Fine-tune the cache keys (Tip-Adapter-F) on cached augmented views.

    view_feats: [V, N, D] raw features of V augmented views of the N training images (epoch e
    uses view e mod V: one view per image per epoch, where the official script re-encodes a new
    augmentation each epoch); labels [N]; keys [M, D] initial keys; values [M, C]. F caches of
    equal size (cross-validation folds) train at once, each as it would alone: view_feats
    [V, N, F, D], labels [N, F], keys [F, M, D], values [F, M, C]; the keys come back [F, M, D]. The official
    recipe's loss, schedule and settings: cross-entropy on :func:`tip_logits` with fixed (α, β),
    AdamW (eps 1e-4, weight decay 0.01), a per-step cosine schedule, shuffled batches.

    ``recipe="fp32"``: the keys and AdamW's state in fp32. ``recipe="official"``: the keys and
    AdamW's state at fp16 precision (:class:`fewshot.training.optim.AdamWFp16State`), the dynamics of the
    official fp16 ``nn.Linear``; the forward and backward pass stay fp32 (the official code runs
    them in fp16).

    On a GPU each step is replayed as a CUDA graph (:mod:`fewshot.training.graphed`; the same update up to
    float rounding); on a CPU the eager loop runs.

    ``select_epoch(keys) -> score``, if given, is called after every epoch and the keys of the
    best-scoring epoch are returned (the official script scores on test: oracle runs only).
    A non-finite loss stops training with :class:`~fewshot.base.errors.NonFiniteError` naming
    ``what``, the epoch and step. Returns ``{"keys": [M, D] fp32, "history": [{"epoch", "loss",
    "train_acc"}, ...], "best_epoch": int}``.
    """
    from fewshot.training.heads import train_head
    from fewshot.training.optim import AdamWFp16State
    from fewshot.training.schedules import cosine_per_step

    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    device = torch.device(device) if device is not None else keys.device
    views = F.normalize(view_feats.to(device, torch.float32), dim=-1)  # [V, N, D]
    W, L = text_weights.to(device, torch.float32), values.to(device, torch.float32)
    K = torch.nn.Parameter(keys.detach().to(device, torch.float32).clone())
    opt = (AdamWFp16State if recipe == "official" else torch.optim.AdamW)([K], lr=lr, eps=eps,
                                                                          weight_decay=0.01)
    steps = math.ceil(views.shape[1] / batch_size)

    def logits_fn(x):  # [b, D] -> [b, C]; stacked caches: [b, F, D] -> [b, C, F]
        if K.dim() == 2:
            return tip_logits(x, W, K, L, alpha, beta, logit_scale)
        return tip_logits(x.transpose(0, 1), W, K, L, alpha, beta, logit_scale).permute(1, 2, 0)

    out = train_head([K], logits_fn,
                     views, labels.to(device), optimizer=opt,
                     schedule=cosine_per_step(epochs * steps), epochs=epochs,
                     batch_size=batch_size, seed=seed, progress=progress,
                     what=what, hint=f"lower the learning rate (lr={lr}) or check the features",
                     select_epoch=None if select_epoch is None else lambda: select_epoch(K.detach()),
                     graph=True)
    return {"keys": K.detach(), **out}


@torch.no_grad()
def adapter_fisher(feats, labels, text_weights, keys, values, alpha: float, beta: float,
                   logit_scale: float = 100.0, kind: str = "empirical") -> torch.Tensor:
    """Diagonal Fisher of the cache keys on the images ``feats`` [N, D]: [M, D].

    ``kind="empirical"``: ``mean_n (∂ log p(y_n|f_n) / ∂K)²`` with the true labels ``y_n``.
    ``kind="model"``: ``mean_n E_{y~p(·|f_n)} (∂ log p(y|f_n) / ∂K)²``, labels drawn from the
    model's own prediction, the Fisher the WiSE-FT code estimates by sampling (here the
    expectation is exact).

    For row m the per-sample gradient is ``s_nm · f_n`` with ``s_nm = αβ·A_nm·(L_m·(e_y − p_n))``
    (A the affinity), so the Fisher is ``(S∘S)ᵀ (F∘F) / N``: one matmul instead of N backward
    passes. Under the model, ``E_y (L_m·(e_y − p))² = p·(L_m∘L_m) − (p·L_m)²``.
    """
    if kind not in ("empirical", "model"):
        raise ValueError(f"kind must be 'empirical' or 'model', got {kind!r}")
    f32 = torch.float32
    feats, keys, values = feats.to(f32), keys.to(f32), values.to(keys.device, f32)
    logits = tip_logits(feats, text_weights.to(f32), keys, values, alpha, beta, logit_scale)
    p = logits.softmax(dim=1)  # [N, C]
    scale = alpha * beta * cache_affinity(feats, keys, beta)  # [N, M]
    if kind == "empirical":
        resid = F.one_hot(labels.long(), values.shape[1]).to(f32) - p  # [N, C]
        weight = (scale * (resid @ values.T)) ** 2
    else:
        weight = scale ** 2 * (p @ (values * values).T - (p @ values.T) ** 2)
    return weight.T @ (feats * feats) / feats.shape[0]
