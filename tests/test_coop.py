"""CoOp's prompt encoder: the text tower cut at the longest prompt's end-of-text token gives the
features of the full context length, and of CLIP's own ``encode_text``."""
import torch
import torch.nn.functional as F

from fewshot._clip_compat import import_clip
from fewshot.models.backbones import load_backbone
from fewshot.methods.coop import encode_prompts, prompt_parts

NAMES = ["cat", "great white shark", "a", "toilet paper roll holder"]


def test_truncated_prompts_give_the_full_length_features():
    model = load_backbone("miniclip-rn").model  # the mini-world CLIP (context length 16)
    full = prompt_parts(model, NAMES, truncate=False)
    cut = prompt_parts(model, NAMES)
    assert full.prefix.shape[1] + full.suffix.shape[1] + len(full.ctx) == model.context_length
    length = cut.prefix.shape[1] + cut.suffix.shape[1] + len(cut.ctx)
    assert length == int(cut.eot.max()) + 1 < model.context_length  # something was cut
    torch.manual_seed(0)
    for ctx in (cut.ctx, cut.ctx + 0.3 * torch.randn_like(cut.ctx)):  # the init and a learned one
        with torch.no_grad():
            a, b = encode_prompts(cut, ctx), encode_prompts(full, ctx)
        assert torch.allclose(a, b, atol=1e-6, rtol=0), (a - b).abs().max()
    # the reference: CLIP's own text encoder on the hand-written prompts (the initial context)
    tokens = import_clip().tokenize([f"a photo of a {n}." for n in NAMES], context_length=model.context_length)
    with torch.no_grad():
        ref = F.normalize(model.encode_text(tokens).float(), dim=-1)
        assert torch.allclose(encode_prompts(cut, cut.ctx), ref, atol=1e-5, rtol=0)


def test_gradients_through_the_truncated_encoder_match():
    model = load_backbone("miniclip-rn").model
    grads = []
    for truncate in (True, False):
        parts = prompt_parts(model, NAMES, truncate=truncate)
        ctx = torch.nn.Parameter(parts.ctx.clone())
        encode_prompts(parts, ctx).sum().backward()
        grads.append(ctx.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-5)  # |grad| up to ~7
