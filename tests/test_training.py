"""Tip-Adapter-F's training recipes, epoch selection, NaN stops, and the two Fishers."""

import pytest
import torch
import torch.nn.functional as F

from fewshot.methods.tip_adapter import cache_model as tip
from fewshot.base.errors import NonFiniteError
from fewshot.training.optim import AdamWFp16State


def _problem(n=48, c=6, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    text = F.normalize(torch.randn(c, d, generator=g), dim=-1)
    labels = torch.arange(n) % c
    views = torch.stack([feats + 0.05 * torch.randn(n, d, generator=g) for _ in range(3)]).half()
    keys, values = tip.build_cache(views, labels, c)
    return views, labels, text, keys, values


def _torch_has_cpu_fp16_adamw() -> bool:
    try:
        p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float16))
        p.grad = torch.ones(2, dtype=torch.float16)
        torch.optim.AdamW([p], foreach=False).step()
        return True
    except RuntimeError:  # torch < 2.1: no fp16 addcmul on the CPU
        return False


@pytest.mark.skipif(not _torch_has_cpu_fp16_adamw(), reason="this torch has no fp16 AdamW on the CPU")
def test_fp16_state_adamw_steps_exactly_as_torch_adamw_on_an_fp16_parameter():
    torch.manual_seed(0)
    p0 = torch.randn(64, 16) * 0.1
    grads = [torch.randn(64, 16) * s for s in (1e-2, 3e-3, 1e-3, 5e-4, 2e-2)] * 4
    ref = torch.nn.Parameter(p0.clone().half())
    ref_opt = torch.optim.AdamW([ref], lr=1e-3, eps=1e-4, weight_decay=0.01, foreach=False)
    mine = torch.nn.Parameter(p0.clone())
    opt = AdamWFp16State([mine], lr=1e-3, eps=1e-4, weight_decay=0.01)
    for g in grads:
        ref.grad, mine.grad = g.half(), g.clone()
        ref_opt.step()
        opt.step()
        assert torch.equal(mine.detach(), ref.detach().float())  # bit for bit
        v_ref, v = ref_opt.state[ref]["exp_avg_sq"].float(), opt.state[mine]["v"]
        assert torch.equal(v, v_ref)
        assert torch.allclose(opt.state[mine]["m"], ref_opt.state[ref]["exp_avg"].float(), atol=6e-8, rtol=0)
    flushed = (opt.state[mine]["v"] == 0).float().mean()
    assert flushed > 0.05  # the point of the recipe: small squared gradients vanish in fp16


def test_official_recipe_takes_larger_steps_than_fp32():
    views, labels, text, keys, values = _problem()
    moved = {}
    for recipe in ("fp32", "official"):
        out = tip.train_tip_adapter_f(views, labels, text, keys, values, 1.17, 1.0, 100.0, epochs=3,
                                      lr=1e-3, batch_size=16, progress=False, recipe=recipe)
        moved[recipe] = float((out["keys"] - keys).norm())
        again = tip.train_tip_adapter_f(views, labels, text, keys, values, 1.17, 1.0, 100.0, epochs=3,
                                        lr=1e-3, batch_size=16, progress=False, recipe=recipe)
        assert torch.equal(out["keys"], again["keys"])  # deterministic, on the CPU too
    assert moved["official"] > 5 * moved["fp32"]


def test_select_epoch_keeps_the_best_epochs_keys():
    views, labels, text, keys, values = _problem()
    seen = []

    def score(k):
        seen.append(k.clone())
        return -abs(len(seen) - 3)  # epoch 3 is best

    out = tip.train_tip_adapter_f(views, labels, text, keys, values, 1.0, 2.0, 10.0, epochs=5,
                                  lr=1e-2, batch_size=16, progress=False, select_epoch=score)
    assert len(seen) == 5 and out["best_epoch"] == 3 and torch.equal(out["keys"], seen[2])
    assert len(out["history"]) == 5


def test_a_non_finite_loss_stops_training_and_names_where():
    views, labels, text, keys, values = _problem()
    views = views.clone()
    views[0, 20] = float("nan")  # one image's first view: batch containing it at epoch 1
    with pytest.raises(NonFiniteError, match=r"Tip-Adapter-F \(4-shot, seed 2\).*epoch 1, step \d.*lr=0.001"):
        tip.train_tip_adapter_f(views, labels, text, keys, values, 1.0, 2.0, 10.0, epochs=2,
                                batch_size=16, progress=False, what="Tip-Adapter-F (4-shot, seed 2)")


@pytest.mark.parametrize("kind", ["empirical", "model"])
def test_adapter_fisher_equals_per_sample_autograd(kind):
    views, labels, text, keys, values = _problem(n=10)
    feats = F.normalize(views[0].float(), dim=-1)
    got = tip.adapter_fisher(feats, labels, text, keys, values, 1.3, 2.5, 20.0, kind)
    ref = torch.zeros_like(keys)
    for i in range(10):
        k = keys.clone().requires_grad_(True)
        logp = tip.tip_logits(feats[i:i + 1], text, k, values, 1.3, 2.5, 20.0).log_softmax(1)[0]
        probs = logp.detach().exp()
        targets = [(labels[i], 1.0)] if kind == "empirical" else list(enumerate(probs))
        for y, weight in targets:  # the model's Fisher: every label, weighted by its probability
            (g,) = torch.autograd.grad(logp[y], k, retain_graph=True)
            ref += float(weight) * g ** 2 / 10
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-10)
    other = tip.adapter_fisher(feats, labels, text, keys, values, 1.3, 2.5, 20.0,
                               "model" if kind == "empirical" else "empirical")
    assert not torch.allclose(got, other, rtol=1e-2)  # the two Fishers are different quantities


def test_schedules_match_their_closed_forms_step_by_step():
    import math

    from fewshot.training.schedules import warmup_cosine_per_step, warmup_times_cosine

    total, warm = 50, 8
    f = warmup_times_cosine(total, warm)
    for t in range(total + 3):  # the world's pretraining schedule as miniclip-rn was trained with it
        ramp = (t + 1) / warm if t + 1 < warm else 1.0
        assert f(t) == ramp * 0.5 * (1 + math.cos(math.pi * min(t, total) / total))
    g = warmup_cosine_per_step(40, 0.25)  # 10 warm-up steps, then a cosine over the other 30
    assert [g(t) for t in range(10)] == [(t + 1) / 10 for t in range(10)]
    assert g(10) == 1.0 and abs(g(25) - 0.5) < 1e-12 and g(40) == 0.0
