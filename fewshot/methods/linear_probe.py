"""Linear probes on cached features, and WiSE-FT of heads (Wortsman et al., CVPR 2022, the
linear-classifier case).

A probe is multinomial logistic regression ``logits = f·Wᵀ + b`` fitted on every cached view of
the shots (normalised), minimising

    mean cross-entropy + λ·‖W − W₀‖²

by full-batch L-BFGS (a convex problem: a deterministic, precise solution):

- ``linear-probe``: from scratch, W₀ = 0 (CLIP's linear-probe evaluation);
- ``linear-probe-zs``: initialised at and pulled towards the zero-shot head, W₀ = s·W_text.

λ by cross-validation over the shots on {1e-5, …, 1e-1}; at 1 shot 1e-3 (the grid's middle); an
oracle run picks it on test. ``wise-linear`` interpolates the zero-shot head and the zero-shot-
initialised probe, θ(α) = (1−α)·(s·W_text, 0) + α·(W, b), with α by cross-validation (the probe
refitted on the other folds, every α scored on the held-out one); 0.5 at 1 shot. Its companion
``wise-linear-default`` is α = 0.5 at every shot count (the WiSE-FT authors' advice; `tuned_on: default`).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from fewshot.protocol import selection
from fewshot.protocol.evaluation import check_finite
from fewshot.protocol.metrics import top1
from fewshot.protocol.method import Head, Method, Source, register
from fewshot.merging.interpolate import DEFAULT_LAMBDA, interpolate

__all__ = ["fit_logistic", "probe_data", "LAMBDAS", "DEFAULT_REG"]

LAMBDAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
DEFAULT_REG = 1e-3
MIX = tuple(round(0.1 * i, 1) for i in range(11))


def probe_data(shots, mask=None):
    """Training rows of a probe: every view of every (masked) shot, normalised: ([V·M, D], [V·M])."""
    views, labels = (shots.views, shots.labels) if mask is None else (shots.views[:, mask], shots.labels[mask])
    x = F.normalize(views.float(), dim=-1).reshape(-1, views.shape[-1])
    return x, labels.repeat(views.shape[0])


def fit_logistic(x, y, num_classes: int, reg: float, w0=None, start=None, max_iter: int = 60,
                 what: str = "probe"):
    """(W [C, D], b [C]) minimising ``mean CE(x·Wᵀ + b, y) + reg·‖W − W₀‖²`` by L-BFGS, started
    at ``start`` (a (W, b) pair, e.g. the solution for a neighbouring ``reg``) or at (W₀, 0);
    W₀ is zeros by default."""
    w0 = torch.zeros(num_classes, x.shape[1], device=x.device) if w0 is None else w0.float()
    w = (w0 if start is None else start[0]).clone().requires_grad_(True)
    b = (torch.zeros(num_classes, device=x.device) if start is None else start[1]).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, tolerance_grad=1e-6,
                            tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(x @ w.T + b, y) + reg * ((w - w0) ** 2).sum()
        loss.backward()
        return loss

    with _tf32(x.device):
        loss = opt.step(closure)
    check_finite(loss.detach(), f"{what}: training loss", "check the features")
    return w.detach(), b.detach()


@contextlib.contextmanager
def _tf32(device):
    """TF32 matrix products on a GPU while a probe fits (4x faster on tensor cores; the loss of a
    convex problem does not need fp32's last bits), the global setting restored afterwards."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def fit_path(x, y, num_classes: int, regs, w0=None, what: str = "probe") -> list:
    """Solutions for every ``reg`` (in the given order), each L-BFGS run warm-started at the
    solution for the next stronger one: [(W, b), ...]."""
    order = sorted(range(len(regs)), key=lambda i: -regs[i])
    fits, start = [None] * len(regs), None
    for i in order:
        fits[i] = start = fit_logistic(x, y, num_classes, regs[i], w0, start, what=what)
    return fits


def linear_logits(weight, bias):
    """feats [n, D] -> [n, C]: ``f·Wᵀ + b`` with W [C, D], b [C]."""
    return lambda f: f.float() @ weight.T + bias


def rebuild(fitted, shots, ctx) -> Head:
    """``Method.rebuild`` of a probe (or of WiSE-FT's merged head): its saved weight and bias."""
    return fitted.head(linear_logits(fitted.state["weight"], fitted.state["bias"]))


def _fit_probe(zero_shot_init: bool):
    def fit(shots, ctx) -> Head:
        C, what = shots.num_classes, f"linear probe ({shots.shots}-shot, seed {shots.seed})"
        w0 = ctx.logit_scale * ctx.text_weights.float() if zero_shot_init else None
        x, y = probe_data(shots)

        def score_fold(train, held):
            fits = fit_path(*probe_data(shots, train), C, LAMBDAS, w0, what)
            return [top1(shots.center[held] @ w.T + b, shots.labels[held]) for w, b in fits]

        def on_test(s):
            fits = fit_path(x, y, C, LAMBDAS, w0, what)
            scores = [top1(s.feats @ w.T + b, s.labels) for w, b in fits]
            return LAMBDAS[selection.first_best(scores)], scores

        choice = selection.choose(ctx, shots.shots, default=DEFAULT_REG, on_test=on_test,
                                  inside=lambda: selection.cross_validate(shots.ranks, ctx.cfg.cv_folds,
                                                                          LAMBDAS, score_fold))
        w, b = fit_logistic(x, y, C, choice.value, w0, what=what)
        return Head(linear_logits(w, b), choice.tuned_on, {"l2": choice.value},
                    state={"weight": w, "bias": b}, extra={"cv_curve": choice.curve})
    fit.__doc__ = f"Logistic regression, {'zero-shot' if zero_shot_init else 'zero'}-initialised."
    return fit


def fit_wise_linear(shots, ctx) -> Head:
    """WiSE-FT between the zero-shot head and the zero-shot-initialised probe."""
    probe = ctx.prior["linear-probe-zs"]
    C, scale = shots.num_classes, ctx.logit_scale
    theta0 = {"weight": scale * ctx.text_weights.float(), "bias": torch.zeros(C, device=shots.labels.device)}
    theta1 = {k: v.to(shots.labels.device) for k, v in probe.state.items()}
    reg = probe.hyperparameters["l2"]

    def head_at(lam, t0=theta0, t1=theta1):
        m = interpolate(t0, t1, lam)
        return linear_logits(m["weight"], m["bias"])

    def score_fold(train, held):
        w, b = fit_logistic(*probe_data(shots, train), C, reg, theta0["weight"], what="wise-linear, CV")
        fold = {"weight": w, "bias": b}
        return [top1(head_at(lam, theta0, fold)(shots.center[held]), shots.labels[held]) for lam in MIX]

    def on_test(s):
        scores = [top1(head_at(lam)(s.feats), s.labels) for lam in MIX]
        return MIX[selection.first_best(scores)], scores

    choice = selection.choose(ctx, shots.shots, default=DEFAULT_LAMBDA, on_test=on_test,
                              inside=lambda: selection.cross_validate(shots.ranks, ctx.cfg.cv_folds, MIX, score_fold))
    lam = choice.value
    default = Head(head_at(DEFAULT_LAMBDA), "default", {"lambda": DEFAULT_LAMBDA, "l2": reg})
    merged = interpolate(theta0, theta1, lam)  # kept, so that the head rebuilds without its prior
    return Head(linear_logits(merged["weight"], merged["bias"]), choice.tuned_on, {"lambda": lam, "l2": reg},
                state=merged, extra={"cv_curve": choice.curve}, sweep=tuple(({"lambda": x}, head_at(x)) for x in MIX),
                companions={"wise-linear-default": default})


register(Method("linear-probe", _fit_probe(False), rebuild=rebuild, step="linear_probe", learnable=True, source=Source("Radford et al., ICML 2021"),
                summary="logistic regression on the shots' features, from scratch (Radford et al., 2021)"))
register(Method("linear-probe-zs", _fit_probe(True), rebuild=rebuild, step="linear_probe", learnable=True,
                summary="logistic regression initialised at, and pulled towards, the zero-shot head"))
register(Method("wise-linear", fit_wise_linear, rebuild=rebuild, step="linear_probe", after=("linear-probe-zs",), learnable=True,
                source=Source("Wortsman et al., CVPR 2022", "mlfoundations/wise-ft"),
                companions=("wise-linear-default",),  # λ = 0.5, the WiSE-FT authors' advice
                summary="WiSE-FT of heads: zero-shot head and probe interpolated (Wortsman et al., 2022)"))
