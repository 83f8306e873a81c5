"""The diagonal Fisher of a fine-tuned classifier's trainable tensors on the k shots: the weights
of WiSE-FT's Fisher-weighted merge (:func:`fewshot.merging.interpolate.interpolate`). Moved out of
:mod:`fewshot.training.encoder` (which re-exports it) unchanged."""
from __future__ import annotations

import warnings

import torch

from fewshot.features.preprocess import normalize_pixels

__all__ = ["FISHER_IMAGES", "diagonal_fisher"]

FISHER_IMAGES = 512  # at most this many shots (an even sample over classes) estimate a Fisher


def diagonal_fisher(clf: torch.nn.Module, pool_center, labels: torch.Tensor, device, kind: str = "model",
                    chunk: int = 16, seed: int = 0, max_images: int = FISHER_IMAGES) -> dict:
    """Diagonal Fisher of every trainable tensor on the shots' centre crops ``pool_center``
    (uint8 [M, 3, R, R]): ``mean_n (∂ log p(y_n|x_n)/∂θ)²`` with y_n drawn from the model's own
    prediction (``model``: the WiSE-FT code's estimator, one draw per image, seeded) or the true
    label (``empirical``), over at most ``max_images`` of them (every n-th, so classes stay
    balanced). Per-sample gradients with ``torch.func`` (vmap of grad)."""
    from torch.func import functional_call, grad, vmap

    params = {n: p.detach() for n, p in clf.named_parameters() if p.requires_grad}
    frozen = {n: p.detach() for n, p in clf.named_parameters() if not p.requires_grad}
    buffers = dict(clf.named_buffers())
    clf.eval()

    def logp(p, x, y):
        out = functional_call(clf, {**p, **frozen, **buffers}, (x[None],))
        return out.log_softmax(-1)[0].gather(0, y.view(1)).squeeze(0)

    g = vmap(grad(logp), in_dims=(None, 0, 0))  # (attention's backward runs unbatched on some CPUs)
    gen = torch.Generator().manual_seed(seed)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    keep = torch.arange(0, len(labels), max(1, -(-len(labels) // max_images)))
    x_all, labels = pool_center[keep].to(device), labels[keep.to(labels.device)]
    for s in range(0, len(labels), chunk):
        x = normalize_pixels(x_all[s:s + chunk])
        if kind == "empirical":
            y = labels[s:s + chunk].to(device)
        else:
            with torch.no_grad():
                probs = clf(x).softmax(-1).float().cpu()
            y = torch.multinomial(probs, 1, generator=gen).squeeze(1).to(device)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="There is a performance drop")
            grads = g(params, x, y)
        for n in total:
            total[n] += (grads[n] ** 2).sum(0)
    return {n: t / len(labels) for n, t in total.items()}
