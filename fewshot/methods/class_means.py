"""Class means: each class is the normalised mean of its shots' features, scored like CLIP's text
head, ``logits = s·f·Pᵀ`` with ``P_c = normalise(mean of class c's shots)`` (nearest class mean;
Snell et al., 2017). No hyperparameter: the smallest method of the protocol, and the README's
example of adding one."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.protocol.method import Head, Method, register


def fit(shots, ctx) -> Head:
    """Prototypes [C, D] from the shots' centre crops [M, D]."""
    sums = torch.zeros(shots.num_classes, shots.center.shape[1], device=shots.center.device)
    protos = F.normalize(sums.index_add_(0, shots.labels, shots.center), dim=-1)
    return Head(_logits(protos, ctx.logit_scale), state={"prototypes": protos})


def _logits(protos, scale: float):
    """feats [n, D] -> [n, C]: ``s·f·Pᵀ`` with prototypes P [C, D]."""
    return lambda f: scale * f.float() @ protos.T


def rebuild(fitted, shots, ctx) -> Head:
    """The saved prototypes [C, D]."""
    return fitted.head(_logits(fitted.state["prototypes"], ctx.logit_scale))


register(Method("class-means", fit, step="class_means", rebuild=rebuild,
                summary="nearest class mean of the shots' features, no text (Snell et al., 2017)"))
