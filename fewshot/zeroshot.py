"""Zero-shot head: class embeddings from prompt templates, and CLIP's logits against them."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fewshot import _clip_compat
from fewshot.templates import get_templates

__all__ = ["build_text_classifier", "zeroshot_logits"]


@torch.no_grad()
def build_text_classifier(model, classnames: list[str], templates, device, batch_size: int = 1024,
                          progress: bool = True, ensemble: str = "clip") -> torch.Tensor:
    """Class embeddings ``[C, D]`` (fp32) on ``device``: normalised (``ensemble="clip"``), or, with
    ``ensemble="raw"``, the plain mean of the prompts' unnormalised embeddings (the base head of
    TaskRes's and CLAP's official code, ``_get_base_text_features``).

    ``templates`` is a set name from :func:`fewshot.templates.list_templates` or a list of strings
    with one ``{}``. Per class: encode every prompt, L2-normalise each, average, normalise again
    (CLIP's ensemble). Prompts are tokenised with the model's own context length and encoded in
    batches of ``batch_size`` across classes, so 1000 classes × 80 templates is one pass.
    """
    if isinstance(templates, str):
        templates = get_templates(templates)
    prompts = [t.format(c) for c in classnames for t in templates]  # class-major: [C*T]
    tokens = _clip_compat.import_clip().tokenize(prompts, context_length=model.context_length, truncate=True)
    out = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="text encoder", disable=not progress,
                      leave=False):
        emb = model.encode_text(tokens[start:start + batch_size].to(device)).float()
        out.append(F.normalize(emb, dim=-1) if ensemble == "clip" else emb)
    emb = torch.cat(out).view(len(classnames), len(templates), -1)  # [C, T, D]
    return F.normalize(emb.mean(dim=1), dim=-1) if ensemble == "clip" else emb.mean(dim=1)


def zeroshot_logits(feats: torch.Tensor, text_weights: torch.Tensor,
                    logit_scale: float = 100.0) -> torch.Tensor:
    """CLIP logits ``logit_scale · f · Wᵀ``: feats [N, D] and text_weights [C, D], both L2-normalised,
    give [N, C] in the dtype of ``text_weights``. Classes with identical embeddings (two classes of
    one name, as ImageNet's two "crane"s) get bit-identical logits, so that their tie goes to the
    lower index: a BLAS need not round two equal columns of a product alike (MKL on AVX-512 does
    not), so the product is taken over the distinct rows and spread back."""
    feats = feats.to(text_weights.dtype)
    rows, inverse = torch.unique(text_weights, dim=0, return_inverse=True)
    if rows.shape[0] == text_weights.shape[0]:
        return logit_scale * feats @ text_weights.T
    return (logit_scale * feats @ rows.T)[:, inverse]
