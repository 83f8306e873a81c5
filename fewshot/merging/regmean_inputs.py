"""The inputs that an encoder's attention actually feeds to its projections, for RegMean's Grams.

CLIP's attention reads its projection weights directly (``F.multi_head_attention_forward``), so a
forward hook on ``q_proj``/``k_proj``/``v_proj``/``c_proj`` (the ResNet attention pool) or on
``out_proj`` (``nn.MultiheadAttention`` in a ViT) never fires. These hooks sit on the attention
module and rebuild what each projection multiplies:

- ResNet attention pool (``AttentionPool2d``): the sequence x [HW+1, N, C] (the mean token, then the
  pixels, plus the positional embedding). Its output is token 0's only, so ``q_proj`` reads x[0]
  [N, C], ``k_proj`` and ``v_proj`` all of x, and ``c_proj`` token 0's attention output before the
  projection [N, C] (the heads concatenated);
- ``nn.MultiheadAttention`` (self-attention, q = k = v): ``in_proj_weight`` [3D, D] reads x
  [L, N, D] for all three, ``out_proj`` every token's attention output before the projection.

Each hook calls ``add(key, rows)`` with rows [M, in] for the weight named ``key``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["attention_hooks"]


def _pool_sequence(pool, x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> the pool's sequence [HW+1, N, C], as ``AttentionPool2d.forward`` builds it."""
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(2, 0, 1)
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
    return x + pool.positional_embedding[:, None, :].to(x.dtype)


def _heads_before_projection(query, key, heads: int, weights: dict, mask=None) -> torch.Tensor:
    """Multi-head attention [Lq, N, D] with the output projection left out (identity, no bias):
    what the output projection multiplies."""
    d = query.shape[-1]
    eye = torch.eye(d, dtype=query.dtype, device=query.device)
    out, _ = F.multi_head_attention_forward(
        query, key, key, d, heads, None, weights["in_bias"], None, None, False, 0.0, eye,
        torch.zeros(d, dtype=query.dtype, device=query.device), training=False, need_weights=False,
        attn_mask=mask, use_separate_proj_weight=True, q_proj_weight=weights["q"], k_proj_weight=weights["k"],
        v_proj_weight=weights["v"])
    return out


def _pool_hook(name: str, add):
    def hook(pool, inputs, _out):
        seq = _pool_sequence(pool, inputs[0].detach())
        w = {"q": pool.q_proj.weight, "k": pool.k_proj.weight, "v": pool.v_proj.weight,
             "in_bias": torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias])}
        add(f"{name}q_proj.weight", seq[0])
        add(f"{name}k_proj.weight", seq.reshape(-1, seq.shape[-1]))
        add(f"{name}v_proj.weight", seq.reshape(-1, seq.shape[-1]))
        add(f"{name}c_proj.weight", _heads_before_projection(seq[:1], seq, pool.num_heads, w)[0])
    return hook


def _mha_hook(name: str, add):
    def hook(attn, args, kwargs, _out):
        query, key = args[0].detach(), (args[1] if len(args) > 1 else kwargs["key"]).detach()
        if query is not key and not torch.equal(query, key):
            return  # cross-attention: no one input to hook
        if attn.batch_first:
            query = query.transpose(0, 1)
        d = query.shape[-1]
        q, k, v = attn.in_proj_weight.split(d)
        w = {"q": q, "k": k, "v": v, "in_bias": attn.in_proj_bias}
        add(f"{name}in_proj_weight", query.reshape(-1, d))
        out = _heads_before_projection(query, query, attn.num_heads, w, kwargs.get("attn_mask"))
        add(f"{name}out_proj.weight", out.reshape(-1, d))
    return hook


def attention_hooks(encoder: torch.nn.Module, add) -> list:
    """Forward hooks on every attention of ``encoder`` (module docstring); returns their handles."""
    handles = []
    for name, m in encoder.named_modules():
        name = f"{name}." if name else ""
        if all(hasattr(m, a) for a in ("q_proj", "k_proj", "v_proj", "c_proj", "positional_embedding")):
            handles.append(m.register_forward_hook(_pool_hook(name, add)))
        elif isinstance(m, torch.nn.MultiheadAttention) and m.in_proj_weight is not None:
            handles.append(m.register_forward_hook(_mha_hook(name, add), with_kwargs=True))
    return handles
