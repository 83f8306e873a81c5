"""Peers as their authors published them (issue 26): each check transcribes the official code's
formula or training loop as an independent loop (TaskRes, CLIP-Adapter, CLAP) and compares it with
the suite's method on the same tensors."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from fewshot import _clip_compat
from fewshot.methods import clap, clip_adapter, taskres
from fewshot.templates import get_templates


def _data(c=4, per_class=(3, 3, 2, 4), d=10, v=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([k for k, n in enumerate(per_class) for _ in range(n)])
    views = torch.randn(v, len(labels), d, generator=g) * 3  # raw features, as the cache holds
    shots = SimpleNamespace(views=views, labels=labels, shots=2, seed=seed, num_classes=c)
    raw = torch.randn(c, d, generator=g) * 4  # an unnormalised base, ‖t‖ ≈ 12
    return shots, raw


def _ctx(heads: dict, scale=20.0):
    """A context whose text_head serves ``heads`` {(templates, ensemble): [C, D]}."""
    some = next(iter(heads.values()))
    return SimpleNamespace(text_weights=F.normalize(some, dim=-1), logit_scale=scale, progress=False,
                           text_head=lambda t, e: heads[(t, e)])


def test_raw_ensemble_is_the_official_unnormalised_mean_and_tip7_single_is_taskres_base():
    """TaskRes's ``_get_base_text_features``: encode each of the 8 prompts, average, no norm."""
    from fewshot.backbones import build_clip
    from fewshot.zeroshot import build_text_classifier

    torch.manual_seed(0)
    model = build_clip(embed_dim=16, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
                       context_length=16, transformer_width=64, transformer_layers=1).eval()
    names = ["tench", "great white shark"]
    official = ["itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
                "a {} in a video game.", "art of the {}.", "a photo of the small {}.", "a photo of a {}."]
    assert sorted(get_templates("tip7+single")) == sorted(official)
    clip = _clip_compat.import_clip()
    with torch.no_grad():
        loop = []
        for name in names:
            emb = [model.encode_text(clip.tokenize([t.format(name)], context_length=16))[0] for t in official]
            loop.append(sum(emb) / len(emb))
        loop = torch.stack(loop)
    raw = build_text_classifier(model, names, "tip7+single", "cpu", progress=False, ensemble="raw")
    assert torch.allclose(raw, loop, atol=1e-5)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(2))  # really unnormalised
    clip_head = build_text_classifier(model, names, "tip7+single", "cpu", progress=False)
    assert torch.allclose(clip_head.norm(dim=-1), torch.ones(2), atol=1e-5)  # the suite's ensemble unchanged


def _taskres_loop(shots, raw, epochs, wd, lr0=2e-4, b1=0.9, b2=0.999, eps=1e-8):
    """Dassl's Adam (coupled weight decay, bias-corrected moments) and schedule (one epoch at
    1e-5, then cosine per epoch) on TaskRes's logits, full batch, written out."""
    x = torch.zeros_like(raw, dtype=torch.float64)
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    views, labels = F.normalize(shots.views.double(), dim=-1), shots.labels
    for e in range(epochs):
        r = x.clone().requires_grad_(True)
        w = (raw.double() + 0.5 * r) / (raw.double() + 0.5 * r).norm(dim=-1, keepdim=True)
        F.cross_entropy(20.0 * views[e % len(views)] @ w.T, labels).backward()
        g = r.grad + wd * x
        lr = 1e-5 if e == 0 else lr0 * 0.5 * (1 + math.cos(math.pi * (e - 1) / (epochs - 1)))
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        x = x - lr * (m / (1 - b1 ** (e + 1))) / ((v / (1 - b2 ** (e + 1))).sqrt() + eps)
    return x


def test_taskres_trains_on_the_raw_base_with_adam_weight_decay_as_a_written_out_loop(monkeypatch):
    """The whole fit (full batch: 12 images < 256) against the loop above; the decay is raised
    so that leaving it out, or decoupling it, would show."""
    shots, raw = _data()
    ctx = _ctx({("tip7+single", "raw"): raw})
    assert taskres.WEIGHT_DECAY == 5e-4 and taskres.fit(shots, ctx).hyperparameters["weight_decay"] == 5e-4
    monkeypatch.setattr(taskres, "epochs_for", lambda k: 30)
    monkeypatch.setattr(taskres, "LR", 0.05)
    monkeypatch.setattr(taskres, "WEIGHT_DECAY", 2.0)
    head = taskres.fit(shots, ctx)
    assert head.hyperparameters["head"] == "tip7+single (raw mean)" and torch.allclose(head.state["base"], raw)
    got = head.state["residual"].double()
    assert torch.allclose(got, _taskres_loop(shots, raw, 30, 2.0, lr0=0.05), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got, _taskres_loop(shots, raw, 30, 0.0, lr0=0.05), atol=1e-3)


def test_clip_adapter_uses_the_published_single_prompt_head():
    shots, raw = _data()
    single = F.normalize(raw + 1.0, dim=-1)
    ctx = _ctx({("single", "clip"): single})
    ctx.text_weights = F.normalize(raw, dim=-1)  # the run's head differs from the published one
    head = clip_adapter.fit(shots, ctx)
    assert head.hyperparameters["head"] == "single"
    f = F.normalize(shots.views[0], dim=-1)
    w1, w2 = head.state["w1"], head.state["w2"]
    ref = torch.stack([20.0 * F.normalize(0.2 * F.relu(w2 @ F.relu(w1 @ fi)) + 0.8 * fi, dim=0) @ single.T
                       for fi in f])
    assert torch.allclose(head.logits(f), ref, atol=1e-5)


def test_clap_multipliers_and_penalty_equal_the_papers_sums():
    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(9, 3, generator=g) * 4, torch.tensor([0, 0, 1, 1, 1, 2, 0, 2, 2])
    lam = clap.class_multipliers(logits, labels, 3)
    for c in range(3):
        rows = [i for i in range(9) if labels[i] == c]
        p = [math.exp(logits[i, c]) / sum(math.exp(z) for z in logits[i].tolist()) for i in rows]
        assert abs(float(lam[c]) - sum(p) / len(p)) < 1e-6
    P, t = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    loop = sum(float(lam[c]) * sum((float(P[c, d]) - float(t[c, d])) ** 2 for d in range(5)) for c in range(3)) / 3
    assert abs(float(clap.clap_penalty(P, t, lam)) - loop) < 1e-5
    assert [clap.batches_per_epoch(n) for n in (12, 255, 256, 1000)] == [1, 1, 1, 3]


def test_clap_fit_equals_the_official_loop_written_out(monkeypatch):
    """``run_epoch`` of jusiro/CLAP with the pool smaller than one batch (every epoch is one step
    on the whole pool): CE + (1/C)Σλ_c‖P_c − t_c‖², SGD momentum 0.9 by hand, Dassl's schedule
    (40 of the 300 epochs, to keep the test fast)."""
    assert clap.EPOCHS == 300 and clap.LR == 0.1
    monkeypatch.setattr(clap, "EPOCHS", 40)
    shots, raw = _data()
    head = clap.fit(shots, _ctx({("tip7+single", "raw"): raw}))
    assert head.tuned_on == "none" and head.hyperparameters["head"] == "tip7+single (raw mean)"
    pool = F.normalize(shots.views.double(), dim=-1).reshape(-1, 10)
    labels = shots.labels.repeat(4)
    zs = 20.0 * pool @ F.normalize(raw.double(), dim=-1).T
    lam = torch.stack([zs.softmax(-1)[labels == c, c].mean() for c in range(4)])
    assert torch.allclose(head.state["multipliers"].double(), lam, atol=1e-6)
    P, buf, t = raw.double().clone(), None, raw.double()
    for e in range(40):
        q = P.clone().requires_grad_(True)
        loss = F.cross_entropy(20.0 * pool @ (q / q.norm(dim=-1, keepdim=True)).T, labels)
        (loss + (lam * ((q - t) ** 2).sum(-1)).mean()).backward()
        buf = q.grad if buf is None else 0.9 * buf + q.grad
        lr = 1e-5 if e == 0 else 0.1 * 0.5 * (1 + math.cos(math.pi * (e - 1) / 39))
        P = P - lr * buf
    assert torch.allclose(head.state["prototypes"].double(), P, atol=1e-4)
    assert not torch.allclose(P, raw.double(), atol=1e-3)  # it did move


def test_recipe_is_a_validated_config_field():
    from fewshot.config import RunConfig
    from fewshot.errors import ConfigError

    assert RunConfig().recipe == "default" and RunConfig(recipe="official").recipe == "official"
    with pytest.raises(ConfigError, match="recipe"):
        RunConfig(recipe="authors")
