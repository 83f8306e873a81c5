"""Weight-Ensembling MoE (Tang et al., ICML 2024) and its efficient variant E-WEMoE (Shen, Tang,
Yang et al., 2024): task arithmetic everywhere but in the MLPs, whose weights are mixed per image.

With θ₀ the pre-trained ViT image tower, τᵢ = θᵢ − θ₀ the task vectors (:mod:`fewshot.merging.rules`):

    every tensor outside the MoE MLPs:  θ₀ + λ · Σᵢ τᵢ                  (task arithmetic, λ = init_lambda)
    MoE MLP of block l, for image s:    θ₀ˡ + Σᵢ wᵢ(s) · τᵢˡ            (its own weights per image)
    routing weights:                    w(s) = mean over the tokens of r(h_t(s))   [n]
    loss                                = Σ_t H(softmax(logits of task t's unlabeled batch))

h the MLP's input (the block's tokens after ``ln_2``, all of them, the class token included), r the
router (:class:`fewshot.merging.wemoe_router.Router`), H :func:`fewshot.merging.adamerging.entropy`.
The MLP's base is the *pre-trained* MLP θ₀ˡ, not the merged one, so with every wᵢ = λ the model is
task arithmetic at λ; the routers start there (output bias λ, weights ~N(0, 0.01²)).

FusionBench at 54c9e8c (``fusion_bench/method/we_moe/clip_we_moe.py``: 70-103,
``fusion_bench/models/we_moe.py``: 148-195, ``config/method/wemoe/weight_ensembling_moe.yaml``):
every block's MLP (``layers=None`` here; an int keeps only the last ones), routers of depth 2,
``init_lambda`` 0.3 (both the task-arithmetic λ and the routers' bias), Adam at lr 1e-4 over the
router parameters only, 1000 steps of one batch of 16 per task, the per-task gradients summed.
While training, the routing weights are also averaged over the batch (``batch_reduce: true``: one
merge per batch); afterwards each image gets its own (``we_moe.py``: 244 sets ``batch_reduce =
False``); :func:`train_routers` does the same.

E-WEMoE (``config/method/wemoe/sparse_weight_ensembling_moe.yaml``,
``fusion_bench/method/sparse_we_moe/sparse_clip_we_moe.py``: 90-192): one router shared by every
MoE layer (``shared_gate: true``, no layer position encoding), and the MLPs' task vectors pruned
tensor by tensor to the entries above their 0.9-quantile of magnitude (``tv_prune_ratio: 0.9``;
:func:`fewshot.merging.wemoe_router.prune_magnitude`); the rest of the tower is task arithmetic of
the unpruned vectors; the router is not pruned (``post_sparse_gate: False``).

OpenAI's ViT runs its transformer sequence-first: an MoE MLP sees [L, N, D].
"""
from __future__ import annotations

import copy
from typing import Callable, Iterable

import torch
from torch import nn
from torch.func import functional_call

from fewshot.merging.adamerging import entropy_backward
from fewshot.merging.rules import task_arithmetic, task_vectors
from fewshot.merging.wemoe_router import Router, prune_magnitude

__all__ = ["WEMoEMLP", "build_wemoe", "build_ewemoe", "train_routers", "moe_layers", "routing_weights",
           "mean_routing_weights", "INIT_LAMBDA", "LR", "STEPS", "BATCH", "DEPTH", "PRUNE_RATIO"]

INIT_LAMBDA, LR, STEPS, BATCH, DEPTH, PRUNE_RATIO = 0.3, 1e-4, 1000, 16, 2, 0.9


class WEMoEMLP(nn.Module):
    """Stands in for a ``ResidualAttentionBlock.mlp``: tokens [L, N, D] -> [L, N, D], its weights
    θ₀ + Σᵢ wᵢ·τᵢ with w the router's per-image weights (module docstring). ``base`` is the
    pre-trained MLP (frozen); ``taus[i]`` holds task vector i for each of its parameters by name."""

    def __init__(self, base: nn.Module, taus: list[dict], router: Router):
        super().__init__()
        self.base, self.router = base.requires_grad_(False), router
        self.names = [k for k, _ in base.named_parameters()]
        for k in self.names:  # [n, *shape] per parameter; buffers, so .to(device) moves them
            self.register_buffer(self._buffer(k), torch.stack([t[k] for t in taus]))
        self.batch_reduce = False  # True: one weight vector per batch (FusionBench while training)

    @staticmethod
    def _buffer(name: str) -> str:
        return "tau_" + name.replace(".", "_")

    def routing_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image routing weights: the router's outputs on tokens [L, N, D] averaged over L: [N, n]."""
        dtype = next(self.router.parameters()).dtype
        return self.router(x.to(dtype)).mean(0)

    def merged(self, w: torch.Tensor) -> dict:
        """{parameter name: θ₀ + Σᵢ wᵢ·τᵢ} for routing weights w [n]; differentiable in w."""
        base = dict(self.base.named_parameters())
        out = {}
        for k in self.names:
            tau = getattr(self, self._buffer(k))
            out[k] = base[k] + sum(w[i].to(tau.dtype) * tau[i] for i in range(len(tau)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [L, N, D] -> [L, N, D]: one merge per image, or one for the batch (``batch_reduce``, or a
        depth-0 router, whose weights do not depend on the input)."""
        w = self.routing_weights(x)  # [N, n]
        if self.batch_reduce or self.router.depth == 0:
            return functional_call(self.base, self.merged(w.mean(0)), (x,))
        return torch.cat([functional_call(self.base, self.merged(w[s]), (x[:, s:s + 1],))
                          for s in range(x.shape[1])], dim=1)


def build_wemoe(visual: nn.Module, base: dict, experts: list[dict], lam: float = INIT_LAMBDA,
                layers: int | None = None, depth: int = DEPTH, shared_router: bool = False,
                prune_ratio: float | None = None) -> nn.Module:
    """A copy of the ViT image tower ``visual`` (``clip.model.VisionTransformer``; pixels [N, 3, R, R]
    -> features [N, E]) holding task arithmetic at ``lam`` of ``base`` θ₀ and ``experts`` θᵢ (state
    dicts of ``visual``'s floating-point tensors), the MLPs of its last ``layers`` blocks (None: all,
    as FusionBench) replaced by :class:`WEMoEMLP` s with routers of ``depth`` starting at ``lam``;
    one router for all of them with ``shared_router``; the MLPs' task vectors pruned by
    :func:`~fewshot.merging.wemoe_router.prune_magnitude` at ``prune_ratio`` unless None. Only the
    routers train; the tensors live on ``base``'s device, the routers in fp32."""
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None or not hasattr(visual, "conv1"):
        raise ValueError(f"WEMoE needs a ViT image tower (clip.model.VisionTransformer), not {type(visual).__name__}")
    layers = len(blocks) if layers is None else layers
    if not experts or not 1 <= layers <= len(blocks):
        raise ValueError(f"WEMoE needs at least one expert and 1 <= layers <= {len(blocks)}; got "
                         f"{len(experts)} experts, layers={layers}")
    model = copy.deepcopy(visual).requires_grad_(False)
    model.load_state_dict(task_arithmetic(base, experts, lam), strict=False)
    taus = task_vectors(base, experts)
    device = next(iter(base.values())).device
    width = model.transformer.width
    shared = Router(width, len(experts), depth, lam, device=device) if shared_router else None
    for i in range(len(blocks) - layers, len(blocks)):
        prefix = f"transformer.resblocks.{i}.mlp."
        mlp = model.transformer.resblocks[i].mlp
        mlp.load_state_dict({k[len(prefix):]: v for k, v in base.items() if k.startswith(prefix)})  # θ₀
        prune = (lambda t: t) if prune_ratio is None else (lambda t: prune_magnitude(t, prune_ratio))
        mlp_taus = [{k[len(prefix):]: prune(v) for k, v in t.items() if k.startswith(prefix)} for t in taus]
        router = shared or Router(width, len(experts), depth, lam, device=device)
        model.transformer.resblocks[i].mlp = WEMoEMLP(mlp, mlp_taus, router)
    return model


def build_ewemoe(visual: nn.Module, base: dict, experts: list[dict], lam: float = INIT_LAMBDA,
                 layers: int | None = None, depth: int = DEPTH, prune_ratio: float = PRUNE_RATIO) -> nn.Module:
    """E-WEMoE (module docstring): :func:`build_wemoe` with one shared router and the MLPs' task
    vectors pruned to their top 10 % by magnitude, tensor by tensor."""
    return build_wemoe(visual, base, experts, lam, layers, depth, shared_router=True, prune_ratio=prune_ratio)


def moe_layers(model: nn.Module) -> list[WEMoEMLP]:
    """The model's MoE MLPs in block order."""
    return [m for m in model.modules() if isinstance(m, WEMoEMLP)]


def _routers(model: nn.Module) -> list[Router]:
    return list({id(m.router): m.router for m in moe_layers(model)}.values())  # a shared one once


def train_routers(logits_of: Callable[[nn.Module, int, torch.Tensor], torch.Tensor], model: nn.Module,
                  batches: list[Callable[[int], torch.Tensor]], steps: int = STEPS, lr: float = LR) -> list[float]:
    """Train the routers of ``model`` (:func:`build_wemoe`) in place by entropy minimisation (module
    docstring). As :func:`fewshot.merging.adamerging.adamerge`'s, but ``logits_of(model, t, x)``
    takes the WEMoE tower itself: task ``t``'s logits [B, C] of pixels ``x``; ``batches[t](step)``
    gives task t's unlabeled batch at that step. Returns the summed entropy before each step."""
    params = [p.requires_grad_(True) for r in _routers(model) for p in r.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    layers, history = moe_layers(model), []
    for m in layers:
        m.batch_reduce = True
    try:
        for step in range(steps):  # the tasks' graphs share no tensor: each is freed at once
            total = entropy_backward(logits_of, model, batches, step, "WEMoE", retain=False)
            opt.step()
            opt.zero_grad(set_to_none=True)
            history.append(total)
    finally:
        for m in layers:
            m.batch_reduce = False
    return history


@torch.no_grad()
def routing_weights(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-image routing weights of every MoE layer for pixels x [N, 3, R, R]: [K, N, n], K the MoE
    layers in block order, n the experts."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.append(mod.routing_weights(args[0])))
             for m in moe_layers(model)]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(seen)


def mean_routing_weights(model: nn.Module, batches: list[Iterable[torch.Tensor]]) -> torch.Tensor:
    """Per task t, the mean over all of its images (``batches[t]``: pixel batches [N, 3, R, R]) of
    the routing weight of each expert in each MoE layer: [T, K, n]."""
    out = []
    for task in batches:
        total, count = 0.0, 0
        for x in task:
            total = total + routing_weights(model, x).sum(1)  # [K, n]
            count += x.shape[0]
        out.append(total / count)
    return torch.stack(out)
