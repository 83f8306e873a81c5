"""Linearisation and L-LoRA: the jvp expansion against an explicit Jacobian and finite differences,
the LoRA unit against its first-order term written by hand, gradients, and the merged task vector."""
import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from fewshot.models.backbones import build_clip
from fewshot.models.linearized import Linearized, linear_lora_delta, linearize_lora_, unlinearize_
from fewshot.models.lora import LowRank, add_lora, lora_parameters, merge, set_mix
from fewshot.models.lora_attention import LoRAProjection
from tests.conftest import TINY


def _mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(dtype)


def _perturb(module, scale=0.1, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def test_at_phi0_the_linearised_output_is_the_plain_output():
    net = _mlp()
    lin = Linearized(net)
    x = torch.randn(4, 5, dtype=torch.float64)
    assert torch.equal(lin(x), net(x))


def test_linearised_output_is_f0_plus_explicit_jacobian_times_dphi():
    net = _mlp()
    plain = copy.deepcopy(net)
    lin = Linearized(net)
    _perturb(net)
    x = torch.randn(4, 5, dtype=torch.float64)
    names = [n for n, _ in plain.named_parameters()]
    phi0 = tuple(p.detach() for p in plain.parameters())
    dphi = tuple(p.detach() - p0 for p, p0 in zip(net.parameters(), phi0))

    def f(*phi):
        return torch.func.functional_call(plain, dict(zip(names, phi)), (x,))

    jac = torch.autograd.functional.jacobian(f, phi0)  # per parameter: [4, 3, *param.shape]
    first = sum((j.reshape(12, -1) @ d.reshape(-1)).reshape(4, 3) for j, d in zip(jac, dphi))
    expected = plain(x) + first
    assert torch.allclose(lin(x), expected, atol=1e-12)
    # and a central finite difference of t ↦ f(φ₀ + t·dφ) at t = 0 gives the same directional term
    h = 1e-5
    fd = (f(*(p + h * d for p, d in zip(phi0, dphi))) - f(*(p - h * d for p, d in zip(phi0, dphi)))) / (2 * h)
    assert torch.allclose(lin(x) - plain(x), fd, atol=1e-8)
    assert not torch.allclose(lin(x), net(x), atol=1e-4)  # the network is not linear in φ


def test_only_the_named_parameters_are_linearised_the_others_act_as_they_are():
    net = _mlp()
    lin = Linearized(net, ["0.weight"])
    with torch.no_grad():
        net[2].bias.add_(1.0)  # not linearised: enters f as it is, at its new value
    x = torch.randn(4, 5, dtype=torch.float64)
    assert torch.allclose(lin(x), net(x), atol=1e-12)  # 0.weight is still φ₀, so f_lin = f
    with pytest.raises(ValueError, match="no parameters"):
        Linearized(net, ["nope"])


def _low_rank(b0_zero: bool, seed=0):
    gen = torch.Generator().manual_seed(seed)
    unit = LowRank((6, 5), rank=2, alpha=3.0, gen=gen).double()
    if not b0_zero:
        with torch.no_grad():
            unit.B.normal_(0, 0.5, generator=gen)
    return unit, gen


@pytest.mark.parametrize("b0_zero", [True, False])
def test_lora_unit_linearised_is_the_hand_written_first_order_term(b0_zero):
    unit, gen = _low_rank(b0_zero)
    A0, B0 = unit.A.detach().clone(), unit.B.detach().clone()
    lin = Linearized(unit, ["A", "B"])
    with torch.no_grad():
        unit.A.add_(0.3 * torch.randn(unit.A.shape, generator=gen, dtype=unit.A.dtype))
        unit.B.add_(0.3 * torch.randn(unit.B.shape, generator=gen, dtype=unit.B.dtype))
    W = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    s = 3.0 / 2
    A, B = unit.A.detach(), unit.B.detach()
    by_hand = s * (B0 @ A + B @ A0 - B0 @ A0)  # bilinear: (B0 + dB)(A0 + dA) without dB·dA
    assert torch.allclose(lin(W), W + by_hand, atol=1e-12)
    assert torch.allclose(lin.delta(), by_hand, atol=1e-12)
    assert torch.allclose(linear_lora_delta(A, B, A0, B0, s), by_hand)
    nonlinear = s * B @ A
    assert torch.allclose(by_hand, nonlinear - s * (B - B0) @ (A - A0), atol=1e-12)  # the dropped 2nd-order term
    if b0_zero:
        assert torch.allclose(by_hand, s * B @ A0, atol=1e-12)  # B₀ = 0: A does not enter


def test_lora_unit_gradients_with_b0_zero_reach_b_only_and_equal_the_closed_form():
    unit, gen = _low_rank(True)
    A0 = unit.A.detach().clone()
    lin = Linearized(unit, ["A", "B"])
    with torch.no_grad():
        unit.B.normal_(0, 0.3, generator=gen)
    W = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    G = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    (lin(W) * G).sum().backward()
    s = 1.5
    assert torch.allclose(unit.A.grad, torch.zeros_like(unit.A))
    assert torch.allclose(unit.B.grad, s * G @ A0.T, atol=1e-12)  # d/dB <G, s·B·A₀>
    assert all(b.grad is None for b in lin.buffers())


def _tiny_visual():
    torch.manual_seed(0)
    return build_clip(**TINY).visual.eval()


def test_l_lora_on_clip_gradients_only_to_lora_and_merge_gives_the_linear_task_vector():
    visual = _tiny_visual()
    original = copy.deepcopy(visual)
    visual.requires_grad_(False)  # as training.encoder.build_classifier does before add_lora
    params = add_lora(visual, rank=2, alpha=4.0, seed=3)
    A0 = [u.A.detach().clone() for u in lora_parameters(visual)]
    assert linearize_lora_(visual) == 4  # the attention pool's q, k, v, c projections
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(visual(x), original(x), atol=1e-6)  # B = 0: the frozen model
    visual(x).square().sum().backward()
    trainable = {id(p) for p in params}
    for name, p in visual.named_parameters():
        if id(p) in trainable:
            assert p.requires_grad
        else:
            assert p.grad is None, name  # frozen weights and φ₀ buffers get no gradient
    units = lora_parameters(visual)
    assert all(u.B.grad.abs().sum() > 0 for u in units)
    assert all(torch.count_nonzero(u.A.grad) == 0 for u in units)  # B₀ = 0
    with torch.no_grad():  # a "trained" expert: move A and B
        for p in params:
            p.add_(0.05 * torch.randn_like(p))
        adapted = visual(x)
        set_mix(visual, 0.0)
        assert torch.allclose(visual(x), original(x), atol=1e-6)
        set_mix(visual, 1.0)
        back = unlinearize_(copy.deepcopy(visual))
        assert not any(isinstance(m, Linearized) for m in back.modules())
        assert not torch.allclose(back(x), adapted, atol=1e-6)  # back to s·B·A, with the moved A
        B = {name: getattr(visual.attnpool, name).parametrizations.weight[0].module.B.clone() for name, _ in
             _q_k_v_c(original)}
        a0 = {name: A0[[id(u) for u in units].index(id(getattr(visual.attnpool, name).parametrizations.weight[0].module))]
              for name in B}
        # (merged in place: removing the parametrization of a deepcopy also strips the original's
        # weight property, which torch's parametrize keeps on a class both copies share)
        merge(visual)  # the L-LoRA task vector folded in: W + s·B·A₀
        assert torch.allclose(visual(x), adapted, atol=1e-5)
        for (name, w), (_, w0) in zip(_q_k_v_c(visual), _q_k_v_c(original)):
            assert torch.allclose(w, w0 + 2.0 * B[name] @ a0[name], atol=1e-6), name  # s = 4/2


def _q_k_v_c(visual):
    return [(n, getattr(visual.attnpool, n).weight) for n in ("q_proj", "k_proj", "v_proj", "c_proj")]


def test_whole_model_linearisation_in_the_lora_parameters_of_a_parametrized_clip():
    visual = _tiny_visual().requires_grad_(False)
    add_lora(visual, rank=2, alpha=4.0, seed=3)
    visual.double()  # A, B too (they are made in float32)
    phi = [p for p in visual.parameters() if p.requires_grad]
    names = [n for n, p in visual.named_parameters() if p.requires_grad]
    assert names and all(n.endswith((".A", ".B")) for n in names)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():  # expand about a point with B₀ ≠ 0, so that A enters too
        for p in phi:
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    phi0 = [p.detach().clone() for p in phi]
    dphi = [0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in phi]
    lin = Linearized(visual)  # the network linearised as a whole, in φ = (A, B) of every unit
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)

    def at(t):
        with torch.no_grad():
            for p, p0, d in zip(phi, phi0, dphi):
                p.copy_(p0 + t * d)
            return visual(x)

    h = 1e-4
    f0, fd = at(0.0), (at(h) - at(-h)) / (2 * h)
    with torch.no_grad():
        at(0.0)
        assert torch.allclose(lin(x), f0, atol=1e-12)
        at(1.0)
        assert (lin(x) - (f0 + fd)).abs().max() < 1e-7, (lin(x) - (f0 + fd)).abs().max()
        assert not torch.allclose(lin(x), visual(x), atol=1e-6)


def test_linearize_lora_wraps_clip_lora_projections_and_their_merge():
    from fewshot.models.lora_attention import add_clip_lora, lora_modules, merge as merge_attention
    import fewshot._clip_compat as compat

    clip = compat.import_clip()
    torch.manual_seed(0)
    model = clip.model.CLIP(64, 32, 2, 64, 16, 16, 49408, 64, 1, 2).eval()
    original = copy.deepcopy(model)
    add_clip_lora(model, towers=("visual",))
    n = linearize_lora_(model)
    model.eval()  # the new branches start in training mode (dropout on)
    assert n == 3 * 2 and all(isinstance(m, LoRAProjection) for m in lora_modules(model))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for m in lora_modules(model):
            m.B.normal_(0, 0.2)
        adapted = model.encode_image(x)
        merged = merge_attention(copy.deepcopy(model))
        assert torch.allclose(merged.encode_image(x), adapted, atol=1e-5)
        assert not torch.allclose(adapted, original.encode_image(x), atol=1e-4)


def test_linearize_lora_needs_lora():
    with pytest.raises(ValueError, match="no LoRA units"):
        linearize_lora_(nn.Linear(2, 2))


def test_parametrization_still_registered_after_wrapping():
    lin = nn.Linear(5, 6).double()
    unit, _ = _low_rank(False)
    lin.weight.requires_grad_(False)
    parametrize.register_parametrization(lin, "weight", unit)
    linearize_lora_(lin)
    assert isinstance(lin.parametrizations.weight[0], Linearized)
    assert torch.allclose(lin.weight, lin.parametrizations.weight.original + unit.delta(), atol=1e-12)  # at φ₀
