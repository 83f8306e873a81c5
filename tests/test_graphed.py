"""fewshot.training.graphed: the graph-safe optimiser updates equal torch's SGD / Adam / AdamW step by step,
and train_head's graphed path (run eagerly on the CPU) trains to the same weights as the eager loop.
The capture itself needs CUDA (bench/graphed_step.py compares graph replay with the eager loop)."""
import pytest
import torch
import torch.nn.functional as F

from fewshot.training import graphed
from fewshot.training.optim import AdamWFp16State
from fewshot.training.heads import train_head
from fewshot.training.schedules import cosine_per_step, warmup_cosine_per_epoch

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4),
    "sgd-plain": lambda p: torch.optim.SGD(p, lr=0.05),
    "adam": lambda p: torch.optim.Adam(p, lr=2e-3),
    "adam-wd": lambda p: torch.optim.Adam(p, lr=2e-3, weight_decay=5e-4),
    "adamw": lambda p: torch.optim.AdamW(p, lr=2e-3, eps=1e-4, weight_decay=1e-2),
    "adamw-fp16": lambda p: AdamWFp16State(p, lr=2e-3, eps=1e-4, weight_decay=1e-2),
}


def _problem(seed=0, n=50, d=8, c=5):
    gen = torch.Generator().manual_seed(seed)
    views = F.normalize(torch.randn(3, n, d, generator=gen), dim=-1)
    labels = torch.randint(0, c, (n,), generator=gen)
    w = torch.randn(c, d, generator=gen) * 0.1
    return views, labels, w


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_manual_updates_equal_torch_optimizers_step_by_step(name):
    torch.manual_seed(1)
    a = [torch.randn(4, 3), torch.randn(3)]
    b = [t.clone() for t in a]
    opt = OPTIMIZERS[name](a)
    twin = graphed.manual_optimizer(OPTIMIZERS[name](b))
    assert twin is not None
    for step in range(25):
        grads = [torch.randn_like(t) for t in a]
        lr = 0.05 * (0.5 + 0.5 * step / 25)
        for g in opt.param_groups:
            g["lr"] = lr
        for p, g in zip(a, grads):
            p.grad = g.clone()
        opt.step()
        twin.lr.fill_(lr)
        twin.step([g.clone() for g in grads])
        for p, q in zip(a, b):
            assert torch.allclose(p, q, rtol=1e-5, atol=1e-6), (name, step)


def test_uncovered_optimizers_fall_back_to_the_eager_loop():
    p = [torch.zeros(2, requires_grad=True)]
    assert graphed.manual_optimizer(torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)) is None
    assert graphed.manual_optimizer(torch.optim.Adam(p, lr=0.1, amsgrad=True)) is None
    assert graphed.manual_optimizer(torch.optim.LBFGS(p)) is None


@pytest.mark.parametrize("name, batch, drop_last", [("sgd", 16, True), ("adam", 16, False), ("adamw", 7, False)])
def test_graphed_path_trains_like_the_eager_loop(monkeypatch, name, batch, drop_last):
    views, labels, w0 = _problem()
    results = []
    for manual in (False, True):
        monkeypatch.setattr(graphed, "ON_CPU", manual)
        w = torch.nn.Parameter(w0.clone())
        opt = OPTIMIZERS[name]([w])
        steps = max(1, labels.numel() // batch)
        sched = warmup_cosine_per_epoch(6, steps, 0.05) if name == "sgd" else cosine_per_step(6 * steps)
        out = train_head([w], lambda x: 10 * x @ w.T, views, labels, optimizer=opt, schedule=sched,
                         epochs=6, batch_size=batch, seed=3, progress=False, drop_last=drop_last, graph=True)
        results.append((w.detach().clone(), out["history"]))
    (w_eager, h_eager), (w_manual, h_manual) = results
    assert not torch.equal(w_eager, w0)  # it trained
    assert torch.allclose(w_eager, w_manual, rtol=1e-4, atol=1e-6)
    for a, b in zip(h_eager, h_manual):
        assert abs(a["loss"] - b["loss"]) < 1e-5 and a["train_acc"] == b["train_acc"]


@pytest.mark.parametrize("recipe", ["fp32", "official"])
def test_tip_adapter_f_graphed_path_trains_like_the_eager_loop(monkeypatch, recipe):
    """Tip-Adapter-F's keys (both recipes) through the graph-safe update, run eagerly on the CPU,
    equal the eager loop's: the path a GPU replays changes no number beyond float rounding."""
    from fewshot.methods.tip_adapter import cache_model as tip

    gen = torch.Generator().manual_seed(5)
    views = torch.randn(2, 40, 16, generator=gen)
    labels = torch.arange(40) % 4
    text = F.normalize(torch.randn(4, 16, generator=gen), dim=-1)
    keys, values = tip.build_cache(views, labels, 4)
    out = []
    for manual in (False, True):
        monkeypatch.setattr(graphed, "ON_CPU", manual)
        out.append(tip.train_tip_adapter_f(views, labels, text, keys, values, 1.0, 5.5, epochs=4,
                                           lr=1e-2, batch_size=16, progress=False, recipe=recipe)["keys"])
    assert not torch.allclose(out[0], keys)  # it trained
    # measured here: fp32 6e-8 apart, the fp16-state recipe bit-equal
    assert torch.allclose(out[0], out[1], rtol=1e-6, atol=1e-6), (out[0] - out[1]).abs().max()
