"""AdaMerging against its definition: zero steps are task arithmetic at λ = 0.3 bit for bit, the
gradient of the entropy loss matches finite differences, and the learned λ lowers the entropy."""
import torch

from fewshot.merging import adamerging
from fewshot.merging import rules as merging


def _toy(seed=0, n=3, d=6, c=4):
    g = torch.Generator().manual_seed(seed)
    base = {"w": torch.randn(d, d, generator=g), "b": torch.randn(d, generator=g), "steps": torch.tensor(7)}
    experts = [{"w": base["w"] + 0.3 * torch.randn(d, d, generator=g), "b": base["b"] + 0.3 * torch.randn(d, generator=g),
                "steps": torch.tensor(7)} for _ in range(n)]
    heads = [torch.randn(c, d, generator=g) * 3 for _ in range(n)]
    xs = [torch.randn(32, d, generator=g) for _ in range(n)]
    return base, experts, heads, xs


def _logits(heads):
    return lambda state, t, x: torch.tanh(x @ state["w"].T + state["b"]) @ heads[t].T


def test_zero_steps_are_task_arithmetic_at_the_initial_lambda_bit_for_bit():
    base, experts, _, _ = _toy()
    fl = {k: v for k, v in base.items() if v.is_floating_point()}
    taus = merging.task_vectors(fl, [{k: e[k] for k in fl} for e in experts])
    names = adamerging.names_of(fl, taus)
    ta = merging.task_arithmetic(fl, [{k: e[k] for k in fl} for e in experts], adamerging.INIT)
    for shape in ((3,), (3, len(names))):
        got = adamerging.merge(fl, taus, torch.full(shape, adamerging.INIT), names)
        assert all(torch.equal(got[k], ta[k]) for k in fl)


def test_entropy_by_hand_and_gradient_against_finite_differences():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]], dtype=torch.float64)
    ln2 = torch.log(torch.tensor(2.0, dtype=torch.float64))
    assert torch.isclose(adamerging.entropy(logits, eps=0.0), ln2 / 2, atol=1e-8)  # (ln 2 + ≈0) / 2
    base, experts, heads, xs = _toy()
    fl = {k: base[k].double() for k in ("w", "b")}
    taus = merging.task_vectors(fl, [{k: e[k].double() for k in fl} for e in experts])
    names, f = adamerging.names_of(fl, taus), _logits([h.double() for h in heads])

    def loss(lam):
        st = adamerging.merge(fl, taus, lam, names)
        return sum(adamerging.entropy(f(st, t, xs[t].double())) for t in range(3))
    lam = torch.full((3, 2), 0.3, dtype=torch.float64, requires_grad=True)
    loss(lam).backward()
    for i, j in [(0, 0), (1, 1), (2, 0)]:
        e = torch.zeros(3, 2, dtype=torch.float64)
        e[i, j] = 1e-6
        fd = (loss(lam.detach() + e) - loss(lam.detach() - e)) / 2e-6
        assert torch.isclose(lam.grad[i, j], fd, rtol=1e-5)


def test_adamerging_lowers_the_summed_entropy_and_leaves_other_tensors():
    base, experts, heads, xs = _toy(1)
    fl = {k: v for k, v in base.items() if v.is_floating_point()}
    taus = merging.task_vectors(fl, [{k: e[k] for k in fl} for e in experts])
    for layer_wise in (False, True):
        lam, hist = adamerging.adamerge(_logits(heads), fl, taus, [lambda s, x=x: x for x in xs], 200,
                                        layer_wise=layer_wise, lr=1e-2)
        assert lam.shape == ((3, 2) if layer_wise else (3,))
        assert hist[-1] < hist[0] - 1e-3 and not torch.allclose(lam, torch.full_like(lam, 0.3))
