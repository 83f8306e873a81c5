"""Zero-shot CLIP: the text head alone, ``logit_scale · f·Wᵀ`` (Radford et al., 2021)."""
from __future__ import annotations

from fewshot.protocol.method import Head, Method, Source, register
from fewshot.models.text_head import zeroshot_logits


def _logits(ctx):
    """feats [n, D] -> [n, C] of the run's text head ``ctx.text_weights`` [C, D]."""
    W, scale = ctx.text_weights, ctx.logit_scale
    return lambda f: zeroshot_logits(f, W, scale)


def fit(shots, ctx) -> Head:
    """No fitting: the head is the prompt ensemble of ``ctx.cfg.templates``."""
    return Head(_logits(ctx), "none", {"templates": ctx.cfg.templates})


def rebuild(fitted, shots, ctx) -> Head:
    """Nothing saved: the run's text head (its templates are the config's, as the record says)."""
    return fitted.head(_logits(ctx))


register(Method("zero-shot", fit, step="zeroshot", source=Source("Radford et al., ICML 2021", "openai/CLIP"), shot_free=True, report=("baseline",), rebuild=rebuild,
                summary="CLIP's text head from prompt templates; no training image used"))
