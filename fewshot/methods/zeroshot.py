"""Zero-shot CLIP: the text head alone, ``logit_scale · f·Wᵀ`` (Radford et al., 2021)."""
from __future__ import annotations

from fewshot.protocol.method import Head, Method, Source, register
from fewshot.models.text_head import zeroshot_logits


def fit(shots, ctx) -> Head:
    """No fitting: the head is the prompt ensemble of ``ctx.cfg.templates``."""
    W, scale = ctx.text_weights, ctx.logit_scale
    return Head(lambda f: zeroshot_logits(f, W, scale), "none", {"templates": ctx.cfg.templates})


register(Method("zero-shot", fit, step="zeroshot", source=Source("Radford et al., ICML 2021", "openai/CLIP"), shot_free=True, report=("baseline",),
                summary="CLIP's text head from prompt templates; no training image used"))
