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
    return Head(lambda f: ctx.logit_scale * f.float() @ protos.T, state={"prototypes": protos})


register(Method("class-means", fit, step="class_means",
                summary="nearest class mean of the shots' features, no text (Snell et al., 2017)"))
