"""CLIP-LoRA (fewshot.models.lora_attention, fewshot.methods.clip_lora.loop) against CLIP's own forward and hand
computations: at zero the adapted model is the frozen one; random updates equal CLIP run with
W + (alpha/√rank)·B·A written into its weights by hand; one training step is AdamW's first step
computed by hand from the gradient."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from fewshot import _clip_compat
from fewshot.models.backbones import build_clip
from fewshot.methods.clip_lora.loop import LoraClip, LoraRecipe, total_iterations, train_lora
from fewshot.models.lora_attention import (LoRAAttentionPool, LoRAMultiheadAttention, LoRAProjection, add_clip_lora,
                                    lora_modules, merge)
from fewshot.features.pixels import augment
from fewshot.features.preprocess import normalize_pixels

from tests.conftest import TINY

CLASSES = ("red circle", "blue square", "green_triangle")


def _vit():
    clip = _clip_compat.import_clip()
    torch.manual_seed(0)
    return clip.model.CLIP(64, 32, 2, 64, 16, 16, 49408, 64, 1, 2).eval()


def _rn():
    torch.manual_seed(0)
    return build_clip(**TINY).eval()


def _reference(model, pixels, tokens):
    """CLIP's own encoders, normalised: image [B, D], text [C, D]."""
    with torch.no_grad():
        return (F.normalize(model.encode_image(pixels).float(), dim=-1),
                F.normalize(model.encode_text(tokens).float(), dim=-1))


def _tokens(classes=CLASSES, length=16):
    clip = _clip_compat.import_clip()
    return clip.tokenize([f"a photo of a {c.replace('_', ' ')}." for c in classes], context_length=length)


def _randomise(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora_modules(model):
            m.B.copy_(torch.randn(m.B.shape, generator=gen) * 0.3)


@pytest.mark.parametrize("tower", [_vit, _rn])
def test_lora_at_zero_is_the_frozen_model_and_mix_zero_too(tower):
    model = tower()
    clf = LoraClip(model, CLASSES, 100.0, "cpu", LoraRecipe()).eval()
    pixels = torch.randn(4, 3, 32, 32)
    img, txt = _reference(model, pixels, _tokens())
    with torch.no_grad():
        assert torch.allclose(clf.features(pixels), img, atol=1e-5)
        assert torch.allclose(clf.text_features(), txt, atol=1e-5)  # also: 77 → EOS+1 tokens
        _randomise(clf.model)
        assert not torch.allclose(clf.features(pixels), img, atol=1e-3)
        assert torch.allclose(clf.at(0.0), 100.0 * txt, atol=1e-3)
        assert torch.allclose(clf.features(pixels), img, atol=1e-5)


def _hand_merged(model, adapted):
    """A copy of the frozen ``model`` with W_q,k,v += s·B·A written in by hand from ``adapted``'s
    LoRA tensors, module by module (CLIP's in_proj_weight stacks q, k, v)."""
    ref = copy.deepcopy(model)
    s, seen = 1.0 / math.sqrt(2), 0
    with torch.no_grad():
        for name, wrapper in adapted.named_modules():
            if isinstance(wrapper, LoRAMultiheadAttention):
                w, d = ref.get_submodule(name).in_proj_weight, wrapper.base.embed_dim
                for i, p in enumerate("qkv"):
                    w[i * d:(i + 1) * d] += s * wrapper.lora[p].B @ wrapper.lora[p].A
                seen += 3
            elif isinstance(wrapper, LoRAAttentionPool):
                for p in "qkv":
                    getattr(ref.get_submodule(name), f"{p}_proj").weight += s * wrapper.lora[p].B @ wrapper.lora[p].A
                seen += 3
    assert seen == len(lora_modules(adapted))
    return ref


@pytest.mark.parametrize("tower", [_vit, _rn])
def test_random_updates_equal_hand_merged_weights_and_merge(tower):
    model = tower()
    clf = LoraClip(model, CLASSES, 100.0, "cpu", LoraRecipe()).eval()
    _randomise(clf.model)
    pixels = torch.randn(4, 3, 32, 32)
    img, txt = _reference(_hand_merged(model, clf.model), pixels, _tokens())
    with torch.no_grad():
        assert torch.allclose(clf.features(pixels), img, atol=1e-5)
        assert torch.allclose(clf.text_features(), txt, atol=1e-5)
        merged = copy.deepcopy(clf)
        merge(merged.model)  # CLIP's own modules again, the updates in their weights
        assert not lora_modules(merged) and not any("LoRA" in type(m).__name__ for m in merged.modules())
        assert torch.allclose(merged.features(pixels), img, atol=1e-5)
        assert torch.allclose(merged.text_features(), txt, atol=1e-5)


def test_projection_gradient_and_dropout_on_the_branch_input_only():
    gen = torch.Generator().manual_seed(0)
    p = LoRAProjection(5, 4, rank=2, alpha=1.0, dropout=0.0, gen=gen)
    with torch.no_grad():
        p.B.copy_(torch.randn(4, 2, generator=gen))
    x, t = torch.randn(3, 5, generator=gen), torch.randn(3, 4, generator=gen)
    (p(x) * t).sum().backward()
    s = 1 / math.sqrt(2)  # alpha / √rank
    assert torch.allclose(p.B.grad, s * t.T @ (x @ p.A.T).detach(), atol=1e-6)  # ∂/∂B = s·tᵀ(Ax)
    assert torch.allclose(p.A.grad, s * (t @ p.B).T.detach() @ x, atol=1e-6)  # ∂/∂A = s·(tB)ᵀx
    assert abs(p.A.abs().max() - 1 / math.sqrt(5)) < 0.2  # Kaiming-uniform(a=√5): bound 1/√in
    q = LoRAProjection(5, 4, 2, 1.0, 0.25, torch.Generator().manual_seed(0))
    q.eval()
    assert torch.equal(q(x), 0 * q(x))  # B = 0 at the start


def test_one_training_step_is_adamw_by_hand():
    model = _rn()
    recipe = LoraRecipe(iters_per_shot=1, dropout=0.0, batch_size=4)
    clf = LoraClip(model, CLASSES, 100.0, "cpu", recipe)
    start = copy.deepcopy(clf)
    pool = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)

    class Pool:
        def batch(self, rows):
            return pool[torch.as_tensor(rows)]

    rows, labels = torch.arange(6), torch.tensor([0, 1, 2, 0, 1, 2])
    assert total_iterations(recipe, 1) == 1
    train_lora(clf, Pool(), rows, labels, 1, recipe, "cpu", seed=3, progress=False)
    idx = torch.randperm(6, generator=torch.Generator().manual_seed(3))[:4]  # the same batch, by hand
    x = augment(pool[idx], 32, torch.Generator().manual_seed(4), scale=(0.08, 1.0))
    start.train()
    for m in start.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    F.cross_entropy(start(normalize_pixels(x)), labels[idx]).backward()
    lr, wd = 2e-4, 1e-2
    for a, b in zip(lora_modules(start.model), lora_modules(clf.model)):
        # AdamW's first step: θ(1 − lr·wd) − lr·g/(|g| + ε) (bias-corrected m = g, v = g²)
        for p0, p1 in ((a.A, b.A), (a.B, b.B)):
            g = p0.grad
            expect = p0.detach() * (1 - lr * wd) - lr * g / (g.abs() + 1e-8)
            assert torch.allclose(p1.detach(), expect, atol=1e-7)
    assert any(m.B.abs().max() > 1e-4 for m in lora_modules(clf.model))  # B moved by ≈ lr


def test_add_clip_lora_counts_q_k_v_of_every_block():
    vit, rn = _vit(), _rn()
    # ViT: text blocks (2) + image blocks (2), 3 projections each, A and B: 24 tensors
    assert len(add_clip_lora(vit)) == 2 * 3 * (2 + 2)
    assert len(add_clip_lora(rn)) == 2 * 3 * (1 + 1)  # one text block + the attention pool
    assert all(not p.requires_grad for n, p in rn.named_parameters() if ".lora." not in n)
