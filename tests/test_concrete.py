"""Concrete subspace merging against its definition: an all-ones mask is task arithmetic bit for bit,
the Concrete sample is its formula (and torch's RelaxedBernoulli, FusionBench's sampler), zero steps
merge the first draw, and the first steps of each method equal a hand-written autograd computation."""
import math

import pytest
import torch

from fewshot.base.errors import NonFiniteError
from fewshot.merging import concrete
from fewshot.merging import rules as merging

T, SCALE = 0.5, 0.3


def _toy(seed=0, n=3, d=5, c=4, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    base = {"w": torch.randn(d, d, generator=g, dtype=dtype), "b": torch.randn(d, generator=g, dtype=dtype)}
    experts = [{k: v + 0.5 * torch.randn(v.shape, generator=g, dtype=dtype) for k, v in base.items()}
               for _ in range(n)]
    heads = [3 * torch.randn(c, d, generator=g, dtype=dtype) for _ in range(n)]
    xs = [torch.randn(64, d, generator=g, dtype=dtype) for _ in range(n)]
    return base, merging.task_vectors(base, experts), experts, heads, xs


def _logits(heads):  # a linear "encoder" x ↦ W x + b, then task t's head
    return lambda state, t, x: (x @ state["w"].T + state["b"]) @ heads[t].T


def _chunks(xs, size=8):  # batches[t](i) is the i-th block of task t's rows
    return [lambda i, x=x: x[i * size:(i + 1) * size] for x in xs]


def _entropy(logits):
    p = torch.softmax(logits, -1)
    return -(p * torch.log(p + 1e-8)).sum(-1).mean()


class _Adam:  # Adam written out (β = 0.9, 0.999; ε = 1e-8), its moments kept between steps
    def __init__(self, lr):
        self.lr, self.m, self.v, self.t = lr, 0.0, 0.0, 0

    def step(self, x, g):
        self.t += 1
        self.m, self.v = 0.9 * self.m + 0.1 * g, 0.999 * self.v + 0.001 * g * g
        return x - self.lr * (self.m / (1 - 0.9 ** self.t)) / ((self.v / (1 - 0.999 ** self.t)).sqrt() + 1e-8)


def _draw(gen, logits):  # the rescaled Concrete mask from the formula, uniforms in sorted-name order
    out = {}
    for k in sorted(logits):
        u = torch.rand(logits[k].shape, generator=gen, dtype=logits[k].dtype)
        m = 1 / (1 + torch.exp(-(logits[k] + torch.log(u / (1 - u))) / T))
        out[k] = m / m.mean()
    return out


def _merge(base, taus, mask, lam):  # θ₀ + Σᵢ λᵢ (m ⊙ τᵢ), λ [n] or [n, 2] over ("b", "w")
    out = {}
    for j, k in enumerate(sorted(base)):
        out[k] = base[k] + sum((lam[i] if lam.dim() == 1 else lam[i, j]) * mask[k] * t[k] for i, t in enumerate(taus))
    return out


def test_an_all_ones_mask_is_task_arithmetic_bit_for_bit():
    base, taus, experts, _, _ = _toy(dtype=torch.float32)
    base["steps"] = torch.tensor(7)
    taus = [{**t, "steps": torch.tensor(0)} for t in taus]
    experts = [{**e, "steps": torch.tensor(7)} for e in experts]
    ones = {k: torch.ones_like(base[k]) for k in ("b", "w")}
    names = sorted(ones)
    ta = merging.task_arithmetic(base, experts, SCALE)
    for lam in (torch.full((3,), SCALE), torch.full((3, 2), SCALE)):
        got = concrete.masked_merge(base, taus, ones, lam, names)
        assert all(torch.equal(got[k], ta[k]) for k in base)
    huge = {k: torch.full_like(base[k], 1e4) for k in names}  # σ saturates: every draw is 1 − ε, rescaled to 1
    assert all(torch.allclose(m, torch.ones_like(m), rtol=0, atol=1e-6) for m in concrete.sample_mask(huge).values())


def test_the_concrete_sample_is_its_formula_and_torchs_relaxed_bernoulli():
    x = torch.tensor([[-2.0, 0.0, 0.5], [1.0, 3.0, -0.7]])
    u = torch.tensor([[0.1, 0.5, 0.9], [0.3, 0.02, 0.75]])
    want = [[1 / (1 + math.exp(-(xi + math.log(ui / (1 - ui))) / T)) for xi, ui in zip(xr, ur)]
            for xr, ur in zip(x.tolist(), u.tolist())]
    assert torch.allclose(concrete.concrete(x, u, T), torch.tensor(want), atol=1e-6, rtol=0)
    assert concrete.concrete(x, u, T)[0, 1] == 0.5  # x = 0, u = ½: exactly σ(0)
    torch.manual_seed(11)
    ref = torch.distributions.RelaxedBernoulli(torch.tensor(T), logits=x).rsample()
    torch.manual_seed(11)
    assert torch.allclose(concrete.concrete(x, torch.rand(x.shape), T), ref, atol=1e-6, rtol=0)
    logits = {"b": torch.randn(4, dtype=torch.float64), "w": torch.randn(3, 4, dtype=torch.float64)}
    got = concrete.sample_mask(logits, T, torch.Generator().manual_seed(2))
    want = _draw(torch.Generator().manual_seed(2), logits)
    assert all(torch.allclose(got[k], want[k], rtol=1e-12, atol=0) for k in logits)


def test_zero_steps_merge_the_first_draw_of_the_initial_logits_by_hand():
    base, taus, _, heads, xs = _toy()
    want = _merge(base, taus, _draw(torch.Generator().manual_seed(5), {k: torch.zeros_like(v) for k, v in base.items()}),
                  torch.full((3,), SCALE))
    ta = concrete.concrete_task_arithmetic(_logits(heads), base, taus, _chunks(xs), steps=0, seed=5)
    am = concrete.concrete_adamerge(_logits(heads), base, taus, _chunks(xs), steps=0, adamerging_steps=0, seed=5)
    assert torch.equal(am.lam, torch.full((3, 2), SCALE)) and ta.history == am.history == am.lam_history == []
    for r in (ta, am):
        assert all(torch.equal(r.logits[k], torch.zeros_like(base[k])) for k in base)
        got = concrete.masked_merge(base, taus, r.mask, r.lam, r.names)
        assert all(torch.allclose(got[k], want[k], rtol=1e-12, atol=1e-12) for k in base)


def test_mask_shapes_match_the_task_vectors_and_each_tensor_has_mean_one():
    base, taus, _, heads, xs = _toy()
    base["frozen"], taus = torch.ones(2, 2, dtype=torch.float64), [{**t, "frozen": torch.zeros(2, 2)} for t in taus]
    r = concrete.concrete_adamerge(_logits(heads), base, taus, _chunks(xs, 4), steps=2, adamerging_steps=2)
    assert r.names == ["b", "w"] and set(r.logits) == set(r.mask) == {"b", "w"}  # unchanged tensors unmasked
    for k in r.names:
        assert r.logits[k].shape == r.mask[k].shape == taus[0][k].shape
        assert torch.isclose(r.mask[k].mean(), torch.tensor(1.0, dtype=torch.float64))
    assert r.lam.shape == (3, 2) and len(r.history) == len(r.lam_history) == 2


def test_one_step_of_concrete_task_arithmetic_equals_hand_written_autograd():
    base, taus, _, heads, xs = _toy(1)
    x = {k: torch.zeros_like(v, requires_grad=True) for k, v in base.items()}
    gen = torch.Generator().manual_seed(3)
    state = _merge(base, taus, _draw(gen, x), torch.full((3,), SCALE))
    loss = sum(_entropy((xs[t][:8] @ state["w"].T + state["b"]) @ heads[t].T) for t in range(3))
    loss.backward()
    stepped = {k: _Adam(1e-3).step(x[k].detach(), x[k].grad) for k in x}
    final = _draw(gen, stepped)
    r = concrete.concrete_task_arithmetic(_logits(heads), base, taus, _chunks(xs), steps=1, seed=3)
    assert math.isclose(r.history[0], float(loss.detach()), rel_tol=1e-12)
    assert all(torch.allclose(r.logits[k], stepped[k], rtol=1e-9, atol=1e-15) for k in x)
    assert all(torch.allclose(r.mask[k], final[k], rtol=1e-9) for k in x)
    assert all(bool((stepped[k] != 0).all()) for k in x)  # the step moved every logit


def test_two_meta_steps_of_concrete_adamerging_equal_hand_written_autograd():
    """FusionBench's order: the inner loss at the λ left by the previous inner step (0.3 at first),
    then λ reset to 0.3 and one inner Adam step (lr 1, moments kept); the outer loss at that λ'."""
    base, taus, _, heads, xs = _toy(2)
    f = _logits(heads)
    x = {k: torch.zeros_like(v) for k, v in base.items()}
    gen = torch.Generator().manual_seed(4)
    lam, inner, outer = torch.full((3, 2), SCALE), _Adam(1.0), {k: _Adam(1e-3) for k in x}
    history = []
    for s in range(2):
        x = {k: v.detach().requires_grad_() for k, v in x.items()}
        mask = _draw(gen, x)
        lam = lam.detach().requires_grad_()
        state = _merge(base, taus, {k: m.detach() for k, m in mask.items()}, lam)
        sum(_entropy(f(state, t, xs[t][16 * s:16 * s + 8])) for t in range(3)).backward()  # block 2s
        lam = inner.step(torch.full((3, 2), SCALE), lam.grad)
        loss = sum(_entropy(f(_merge(base, taus, mask, lam), t, xs[t][16 * s + 8:16 * s + 16])) for t in range(3))
        loss.backward()  # outer: block 2s + 1
        history.append(float(loss.detach()))
        x = {k: outer[k].step(v.detach(), v.grad) for k, v in x.items()}
    final = _draw(gen, x)
    r = concrete.concrete_adamerge(f, base, taus, _chunks(xs), steps=2, adamerging_steps=0, seed=4)
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(r.history, history))
    assert all(torch.allclose(r.logits[k], x[k], rtol=1e-5, atol=1e-10) for k in x)
    assert all(torch.allclose(r.mask[k], final[k], rtol=1e-5) for k in x)
    assert torch.equal(r.lam, torch.full((3, 2), SCALE))


def test_batches_are_read_at_the_documented_steps():
    base, taus, _, heads, xs = _toy()
    seen = [[] for _ in xs]
    batches = [lambda i, x=x, s=s: s.append(i) or x[:8] for x, s in zip(xs, seen)]
    concrete.concrete_adamerge(_logits(heads), base, taus, batches, steps=2, adamerging_steps=2)
    assert seen == [[0, 1, 2, 3, 4, 5]] * 3  # inner 2s, outer 2s + 1, then AdaMerging 2·steps + s
    for s in seen:
        s.clear()
    concrete.concrete_task_arithmetic(_logits(heads), base, taus, batches, steps=3)
    assert seen == [[0, 1, 2]] * 3


def test_learning_the_mask_lowers_the_entropy():
    base, taus, _, heads, xs = _toy(3)
    r = concrete.concrete_task_arithmetic(_logits(heads), base, taus, [lambda s, x=x: x for x in xs], steps=150, lr=0.05)
    assert sum(r.history[-10:]) < sum(r.history[:10]) - 1e-2


def test_a_non_finite_loss_raises():
    base, taus, _, heads, xs = _toy()
    bad = lambda state, t, x: _logits(heads)(state, t, x) * float("nan")
    with pytest.raises(NonFiniteError, match="task arithmetic"):
        concrete.concrete_task_arithmetic(bad, base, taus, _chunks(xs), steps=1)
    with pytest.raises(NonFiniteError, match="inner"):
        concrete.concrete_adamerge(bad, base, taus, _chunks(xs), steps=1, adamerging_steps=1)
