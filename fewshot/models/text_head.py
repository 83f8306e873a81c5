"""Zero-shot head: class embeddings from prompt templates, and CLIP's logits against them."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm import tqdm

from fewshot import _clip_compat
from fewshot.models.templates import class_prompts

__all__ = ["build_text_classifier", "zeroshot_logits"]


@torch.no_grad()
def build_text_classifier(model, classnames: list[str], templates, device, batch_size: int = 1024,
                          progress: bool = True, ensemble: str = "clip") -> torch.Tensor:
    """Class embeddings ``[C, D]`` (fp32) on ``device``: normalised (``ensemble="clip"``), or, with
    ``ensemble="raw"``, the plain mean of the prompts' unnormalised embeddings (the base head of
    TaskRes's and CLAP's official code, ``_get_base_text_features``).

    ``templates`` is a set name from :func:`fewshot.models.templates.list_templates` or a list of strings
    with one ``{}``. Per class: encode every prompt, L2-normalise each, average, normalise again
    (CLIP's ensemble). Prompts are tokenised with the model's own context length and encoded in
    batches of ``batch_size`` across classes, so 1000 classes × 80 templates is one pass.
    """
    per_class = class_prompts(templates, classnames) if isinstance(templates, str) else \
        [[t.format(c) for t in templates] for c in classnames]  # [C][T_c]
    prompts = [t for texts in per_class for t in texts]  # class-major
    tokens = _clip_compat.import_clip().tokenize(prompts, context_length=model.context_length, truncate=True)
    out = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="text encoder", disable=not progress,
                      leave=False):
        emb = model.encode_text(tokens[start:start + batch_size].to(device)).float()
        out.append(F.normalize(emb, dim=-1) if ensemble == "clip" else emb)
    emb, counts = torch.cat(out), [len(t) for t in per_class]
    if len(set(counts)) == 1:  # as many prompts per class: the mean over [C, T, D]
        mean = emb.view(len(classnames), counts[0], -1).mean(dim=1)
    else:  # per-class prompts (cupl+tip7): each class's own mean
        mean = torch.stack([part.mean(dim=0) for part in emb.split(counts)])
    return F.normalize(mean, dim=-1) if ensemble == "clip" else mean


def zeroshot_logits(feats: torch.Tensor, text_weights: torch.Tensor,
                    logit_scale: float = 100.0) -> torch.Tensor:
    """CLIP logits ``logit_scale · f · Wᵀ``: feats [N, D] (or [..., N, D]) and text_weights [C, D],
    both L2-normalised, give [N, C] (or [..., N, C]) in the dtype of ``text_weights``. Classes with identical embeddings (two classes of
    one name, as ImageNet's two "crane"s) get bit-identical logits, so that their tie goes to the
    lower index: a BLAS need not round two equal columns of a product alike (MKL on AVX-512 does
    not), so the product is taken over the distinct rows and spread back. Inside a CUDA graph's
    capture (the graphed training steps, :mod:`fewshot.training.graphed`), where ``torch.unique`` cannot
    synchronise, the plain product is taken: training losses see the rounding-level difference only,
    and predictions are never made inside a graph."""
    feats = feats.to(text_weights.dtype)
    if text_weights.is_cuda and torch.cuda.is_current_stream_capturing():
        return logit_scale * feats @ text_weights.T
    rows, inverse = torch.unique(text_weights, dim=0, return_inverse=True)
    if rows.shape[0] == text_weights.shape[0]:
        return logit_scale * feats @ text_weights.T
    return (logit_scale * feats @ rows.T)[..., inverse]
