"""RegMean's attention inputs against an attention written out head by head: the hooks must see
exactly what each projection multiplies, and the merge must then solve those projections."""
import math

import pytest
import torch
from clip.model import AttentionPool2d, ResidualAttentionBlock

from fewshot.merging import rules as merging
from fewshot.merging.regmean_inputs import attention_hooks


def _attend(q, k, v, heads, mask=None):
    """[Lq, D], [L, D], [L, D] -> [Lq, D]: softmax(q·kᵀ/√d + mask)·v per head, heads concatenated."""
    d = q.shape[-1] // heads
    out = []
    for h in range(heads):
        s = slice(h * d, (h + 1) * d)
        a = q[:, s] @ k[:, s].T / math.sqrt(d)
        out.append(torch.softmax(a + (0 if mask is None else mask), dim=-1) @ v[:, s])
    return torch.cat(out, dim=-1)


def _collect(module, *args):
    seen = {}
    handles = attention_hooks(module, lambda key, x: seen.setdefault(key, []).append(x.detach().clone()))
    with torch.no_grad():
        module(*args)
    for h in handles:
        h.remove()
    return {k: torch.cat(v) for k, v in seen.items()}


def test_pool_hooks_see_the_mean_token_query_all_keys_and_the_pre_projection_output():
    torch.manual_seed(0)
    pool = AttentionPool2d(4, 8, 2, 6).double()  # spacial 4×4, width 8, 2 heads, output 6
    x = torch.randn(3, 8, 4, 4, dtype=torch.float64)
    seen = _collect(pool, x)
    for n in range(3):  # by hand, image by image
        seq = x[n].reshape(8, 16).T  # [HW, C]
        seq = torch.cat([seq.mean(0, keepdim=True), seq]) + pool.positional_embedding
        q, k, v = (seq @ m.weight.T + m.bias for m in (pool.q_proj, pool.k_proj, pool.v_proj))
        before = _attend(q[:1], k, v, 2)[0]
        assert torch.allclose(seen["q_proj.weight"][n], seq[0])
        assert torch.allclose(seen["k_proj.weight"].view(17, 3, 8)[:, n], seq)
        assert torch.allclose(seen["v_proj.weight"].view(17, 3, 8)[:, n], seq)
        assert torch.allclose(seen["c_proj.weight"][n], before, atol=1e-12)
        assert torch.allclose(pool(x)[n], pool.c_proj(before), atol=1e-12)  # what c_proj multiplies


def test_mha_hooks_see_every_token_and_the_masked_pre_projection_output():
    torch.manual_seed(1)
    mask = torch.full((5, 5), float("-inf")).triu(1)
    block = ResidualAttentionBlock(8, 2, attn_mask=mask)  # float32: CLIP's LayerNorm computes in it
    x = torch.randn(5, 2, 8)  # [L, N, D]
    seen = _collect(block, x)
    attn = block.attn
    for n in range(2):
        h = block.ln_1(x[:, n])
        q, k, v = (h @ w.T + b for w, b in zip(attn.in_proj_weight.split(8), attn.in_proj_bias.split(8)))
        before = _attend(q, k, v, 2, mask)
        assert torch.allclose(seen["attn.in_proj_weight"].view(5, 2, 8)[:, n], h)
        assert torch.allclose(seen["attn.out_proj.weight"].view(5, 2, 8)[:, n], before, atol=1e-5)
        assert not torch.allclose(before, _attend(q, k, v, 2), atol=1e-3)  # the causal mask is applied


def test_regmean_solves_the_attention_pools_projections():
    """With the hooked Grams, RegMean's q/k/v/c weights are the least-squares fit to every expert's
    outputs on its own inputs (the shrinkage at 1: no off-diagonal reduction)."""
    torch.manual_seed(2)
    experts = [AttentionPool2d(2, 8, 2, 6).double() for _ in range(2)]
    xs = [torch.randn(40, 8, 2, 2, dtype=torch.float64) for _ in experts]
    grams, rows = [], []
    for e, x in zip(experts, xs):
        seen = _collect(e, x)
        rows.append(seen)
        grams.append({k: v.T @ v / len(v) for k, v in seen.items()})
    states = [{k: v.detach() for k, v in e.state_dict().items()} for e in experts]
    merged = merging.regmean(states, grams, reduce=1.0)
    for key in ("q_proj.weight", "k_proj.weight", "c_proj.weight"):
        X = torch.cat([r[key] / math.sqrt(len(r[key])) for r in rows])  # each expert weighted by its mean
        Y = torch.cat([r[key] @ s[key].T / math.sqrt(len(r[key])) for r, s in zip(rows, states)])
        ref = torch.linalg.lstsq(X, Y).solution.T
        assert torch.allclose(merged[key], ref, atol=1e-8), key
    assert not torch.allclose(merged["q_proj.weight"], (states[0]["q_proj.weight"] + states[1]["q_proj.weight"]) / 2)
