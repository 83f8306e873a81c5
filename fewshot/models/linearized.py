"""Linearisation: a module evaluated as its first-order Taylor expansion in chosen parameters, and L-LoRA.

For a module f with parameters φ (the chosen ones; the others stay as they are) and the values φ₀
they had when it was wrapped,

    f_lin(x; φ) = f(x; φ₀) + J_φ f(x; φ₀)·(φ − φ₀)

computed in one forward pass by ``torch.func.jvp`` of ``torch.func.functional_call`` at φ₀ with
tangent φ − φ₀ (FusionBench's ``LinearizedModelWraper``, ``fusion_bench/models/linearized/
linearized_model_utils.py``, does the same over all of a module's parameters). Gradients reach φ
through the tangent; φ₀ is a buffer and gets none.

L-LoRA (Tang et al., "Parameter-Efficient Multi-Task Model Fusion with Partial Linearization",
ICLR 2024) linearises each LoRA unit on its own, not the whole network: FusionBench's
``linearize_lora_model_`` (``fusion_bench/models/linearized/vision_model.py``) wraps every PEFT
``LoraLayer``. :func:`linearize_lora_` does that for the suite's two LoRA units. A unit's update
s·B·A is bilinear, so its linearisation in (A, B) about (A₀, B₀) is the weight update

    s·(B₀·A + B·A₀ − B₀·A₀)          (= s·B·A₀ when B₀ = 0, LoRA's initialisation)

exactly: the L-LoRA network is the frozen network with that update added, so its task vector is
that update (``lora.merge`` folds it in) and the existing merging rules take it as they take any
other. With B₀ = 0 the update does not depend on A: A gets no gradient, and an L-LoRA expert is a
rank-r update B·A₀ on the fixed random A₀ of its seed (experts trained with one seed share A₀).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.func import functional_call, jvp
from torch.nn.utils import parametrize

from fewshot.models.lora import LowRank
from fewshot.models.lora_attention import LoRAProjection

__all__ = ["Linearized", "linearize_lora_", "unlinearize_", "linear_lora_delta"]


class _Method(nn.Module):
    """Calls one method of ``inner``, so that ``functional_call`` can evaluate methods other than forward."""

    def __init__(self, inner: nn.Module, method: str):
        super().__init__()
        self.inner, self.method = inner, method

    def forward(self, *args, **kwargs):
        return getattr(self.inner, self.method)(*args, **kwargs)


def _add(a, b):
    """a + b over matching nests of tensors (tuples, lists, dicts)."""
    if isinstance(a, torch.Tensor):
        return a + b
    if isinstance(a, dict):
        return {k: _add(a[k], b[k]) for k in a}
    return type(a)(_add(x, y) for x, y in zip(a, b))


def _forward_ad_attention():
    """Attention by the math kernel: the fused ones (flash, memory-efficient) have no forward-mode AD."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3 picks the kernel itself
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


class Linearized(nn.Module):
    """``module`` evaluated as f(·; φ₀) + J_φ f(·; φ₀)·(φ − φ₀) in the parameters ``names`` (default:
    those that require grad when wrapped); φ₀ is a copy of their values at wrapping time.

    Called like ``module`` (same inputs and output shapes). :meth:`delta` linearises the wrapped
    module's own ``delta()`` (a LoRA unit's weight update [out, in]) in the same way. The wrapped
    module's parameters are the same tensors as before wrapping (an optimiser built on them still
    trains them); attributes such as ``mix`` are read from it on every call.
    """

    def __init__(self, module: nn.Module, names=None):
        super().__init__()
        params = dict(module.named_parameters())
        names = [n for n, p in params.items() if p.requires_grad] if names is None else list(names)
        unknown = [n for n in names if n not in params]
        if unknown or not names:
            raise ValueError(f"no parameters {unknown or names} to linearise in {type(module).__name__}; "
                             f"it has {sorted(params)}")
        self.module, self.names = module, tuple(names)
        for i, n in enumerate(self.names):
            self.register_buffer(f"phi0_{i}", params[n].detach().clone())

    def phi0(self) -> tuple[torch.Tensor, ...]:
        """The expansion point φ₀, one tensor per name (each shaped as its parameter)."""
        return tuple(getattr(self, f"phi0_{i}") for i in range(len(self.names)))

    def _expand(self, method: str, args, kwargs):
        call = _Method(self.module, method)
        params = dict(self.module.named_parameters())
        tangent = tuple(params[n] - p0 for n, p0 in zip(self.names, self.phi0()))
        keys = [f"inner.{n}" for n in self.names]

        def at(*phi):
            return functional_call(call, dict(zip(keys, phi)), args, kwargs)

        with _forward_ad_attention():
            out, directional = jvp(at, self.phi0(), tangent)
        return _add(out, directional)

    def forward(self, *args, **kwargs):
        return self._expand("forward", args, kwargs)

    def delta(self) -> torch.Tensor:
        """The linearised ``module.delta()``: for a LoRA unit, s·(B₀A + BA₀ − B₀A₀) [out, in]."""
        return self._expand("delta", (), {})


def linear_lora_delta(A: torch.Tensor, B: torch.Tensor, A0: torch.Tensor, B0: torch.Tensor,
                      scale: float = 1.0) -> torch.Tensor:
    """The first-order expansion of scale·B·A about (A₀, B₀): A, A₀ [r, in], B, B₀ [out, r] ->
    scale·(B₀·A + B·A₀ − B₀·A₀) [out, in] (the closed form :class:`Linearized` computes by jvp)."""
    return scale * (B0 @ A + B @ A0 - B0 @ A0)


def linearize_lora_(model: nn.Module) -> int:
    """L-LoRA in place: wrap every LoRA unit of ``model`` (the :class:`~fewshot.models.lora.LowRank`
    parametrizations of :func:`~fewshot.models.lora.add_lora` and the
    :class:`~fewshot.models.lora_attention.LoRAProjection` branches of ``add_clip_lora``) in
    :class:`Linearized` over its A and B, about their current values. Call it right after adding
    LoRA (B = 0), before training. Returns how many units were wrapped."""
    count = 0
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for plist in module.parametrizations.values():
                for i, p in enumerate(plist):
                    if isinstance(p, LowRank):
                        plist[i] = Linearized(p, ["A", "B"])
                        count += 1
        for name, child in list(module.named_children()):
            if isinstance(child, LoRAProjection):
                setattr(module, name, Linearized(child, ["A", "B"]))
                count += 1
    if not count:
        raise ValueError(f"no LoRA units in {type(model).__name__}: add LoRA first (fewshot.models.lora.add_lora)")
    return count


def unlinearize_(model: nn.Module) -> nn.Module:
    """Undo :func:`linearize_lora_`: put every unit back, with its trained A, B (now evaluated
    non-linearly). For the L-LoRA task vector fold the linearised units in instead
    (``lora.merge``), or read :meth:`Linearized.delta`."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for plist in module.parametrizations.values():
                for i, p in enumerate(plist):
                    if isinstance(p, Linearized):
                        plist[i] = p.module
        for name, child in list(module.named_children()):
            if isinstance(child, Linearized):
                setattr(module, name, child.module)
    return model
