"""Peers as their authors published them (issue 26): each check transcribes the official code's
formula or training loop as an independent loop (TaskRes, CLIP-Adapter, CLAP) and compares it with
the suite's method on the same tensors."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from fewshot import _clip_compat
from fewshot.base.errors import ConfigError
from fewshot.methods import clap, clip_adapter, taskres
from fewshot.protocol.method_config import setting
from fewshot.models.templates import get_templates


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
    from fewshot.models.backbones import build_clip
    from fewshot.models.text_head import build_text_classifier

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
    monkeypatch.setattr(taskres, "epochs_for", lambda k: 30)
    assert taskres.WEIGHT_DECAY == 5e-4 and taskres.fit(shots, ctx).hyperparameters["weight_decay"] == 5e-4
    monkeypatch.setattr(taskres, "WEIGHT_DECAY", 2.0)
    ctx.cfg = SimpleNamespace(taskres_lr=0.05)  # the rate is read from the config
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


def test_clap_fit_equals_the_official_loop_written_out():
    """``run_epoch`` of jusiro/CLAP with the pool smaller than one batch (every epoch is one step
    on the whole pool): CE + (1/C)Σλ_c‖P_c − t_c‖², SGD momentum 0.9 by hand, Dassl's schedule
    (40 of the 300 epochs, to keep the test fast)."""
    shots, raw = _data()
    ctx = _ctx({("tip7+single", "raw"): raw})
    assert setting(ctx, "clap_epochs") == 300 and setting(ctx, "clap_lr") == 0.1  # the published recipe
    ctx.cfg = SimpleNamespace(clap_epochs=40)  # read through the config: 40 epochs instead
    head = clap.fit(shots, ctx)
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
    from fewshot.run.config import RunConfig
    from fewshot.base.errors import ConfigError

    assert RunConfig().recipe == "default" and RunConfig(recipe="official").recipe == "official"
    with pytest.raises(ConfigError, match="recipe"):
        RunConfig(recipe="authors")


def _lp_loop_fp16(shots, text, epochs):
    """methods/linear_probe_p2.py of the official LP++, everything fp16: centroid init, nn.Linear's
    bias init (the suite's generator draw), SGD momentum 0.9 by hand, α every 10 epochs."""
    from fewshot.methods import lp_plus_plus as lp

    x = F.normalize(shots.views[0].float(), dim=-1).half()
    y, C, W = shots.labels, shots.num_classes, text.half()
    wv = torch.zeros(C, x.shape[1], dtype=torch.float16).index_add_(0, y, x)
    gen = torch.Generator().manual_seed(shots.seed)
    b = ((torch.rand(C, generator=gen) * 2 - 1) / math.sqrt(x.shape[1])).half()
    alpha = torch.full((C,), lp.init_alpha(x, y, W, C), dtype=torch.float16)
    lr_w, lr_a = lp.step_sizes(x.float(), W.float())
    bw, bb, ga = None, None, torch.zeros_like(alpha)
    for e in range(epochs):
        p = [t.clone().requires_grad_(True) for t in (wv, b, alpha)]
        F.cross_entropy(x @ p[0].T + p[1] + p[2] * (x @ W.T), y).backward()
        bw = p[0].grad if bw is None else 0.9 * bw + p[0].grad
        bb = p[1].grad if bb is None else 0.9 * bb + p[1].grad
        wv, b, ga = wv - lr_w * bw, b - lr_w * bb, ga + p[2].grad
        if (e + 1) % 10 == 0:
            alpha = alpha - lr_a * ga
    return wv, b, alpha


def test_lp_plus_plus_official_recipe_trains_in_fp16_as_the_official_loop():
    from fewshot.methods import lp_plus_plus as lp

    shots, raw = _data()
    text = F.normalize(raw, dim=-1)
    ctx = SimpleNamespace(text_weights=text, logit_scale=20.0, progress=False,
                          cfg=SimpleNamespace(recipe="official", lp_pp_epochs=30))
    if not lp._half_matmul("cpu"):  # torch 2.0 (.ci/oldest.txt): no fp16 matmul on a CPU
        with pytest.raises(ConfigError, match="recipe=official trains LP\\+\\+ in fp16.*recipe=default"):
            lp.fit(shots, ctx)
        pytest.skip(f"torch {torch.__version__} has no fp16 matmul on the CPU: the refusal was checked")
    head = lp.fit(shots, ctx)
    assert head.hyperparameters["recipe"] == "official" and head.hyperparameters["dtype"] == "float16"
    assert head.state["wv"].dtype == torch.float16
    wv, b, alpha = _lp_loop_fp16(shots, text, 30)
    assert torch.allclose(head.state["wv"].float(), wv.float(), atol=2e-2)
    assert torch.allclose(head.state["alpha"].float(), alpha.float(), atol=2e-2)
    default = lp.fit(shots, SimpleNamespace(text_weights=text, logit_scale=20.0, progress=False))
    assert default.hyperparameters["recipe"] == "default" and default.state["wv"].dtype == torch.float32


def test_ape_t_official_recipe_keeps_its_parameters_at_fp16_precision():
    from fewshot.run.config import RunConfig
    from fewshot.methods import ape
    from fewshot.training.optim import to_fp16_precision

    g = torch.Generator().manual_seed(3)
    labels = torch.arange(4).repeat_interleave(3)
    shots = SimpleNamespace(views=torch.randn(2, 12, 16, generator=g), labels=labels, shots=3, seed=1, num_classes=4,
                            center=F.normalize(torch.randn(12, 16, generator=g), dim=-1))
    text = F.normalize(torch.randn(4, 16, generator=g), dim=-1)
    heads = {}
    for recipe in ("default", "official"):
        ctx = SimpleNamespace(text_weights=text, logit_scale=100.0, progress=False, oracle=None,
                              cfg=RunConfig(recipe=recipe))
        heads[recipe] = ape.fit_ape_t(shots, ctx)
        assert heads[recipe].hyperparameters["recipe"] == recipe
    off, dflt = heads["official"].state["res"], heads["default"].state["res"]
    assert torch.equal(to_fp16_precision(off), off) and off.abs().max() > 0
    assert not torch.equal(to_fp16_precision(dflt), dflt)


def test_coop_16_has_sixteen_random_context_tokens_where_the_context_allows():
    from fewshot.models.backbones import build_clip
    from fewshot.methods import coop

    torch.manual_seed(0)
    long = build_clip(embed_dim=16, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
                      context_length=77, transformer_width=64, transformer_layers=1)
    names = ["tench", "great white shark"]
    assert coop.random_init(long, names) == " ".join(["X"] * 16)
    parts = coop.prompt_parts(long, names, coop.random_init(long, names), truncate=False)
    assert parts.ctx.shape[0] == 16
    clip = _clip_compat.import_clip()
    tok = clip.tokenize([f"{n}." for n in names])  # the suffix starts with the class name's tokens
    assert torch.equal(parts.suffix[1, 0], long.token_embedding.weight[tok[1, 1]].detach().float())
    short = build_clip(embed_dim=16, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
                       context_length=16, transformer_width=64, transformer_layers=1)
    n = len(coop.random_init(short, names).split())
    assert n == 16 - 2 - (len(tok[1].nonzero()) - 2)  # SOS, "great white shark." and EOS fit beside it
    from fewshot.methods import get_method
    assert get_method("coop-16").companions == () and get_method("coop").companions == ("wise-coop", "wise-coop-default")


def test_an_official_lp_plus_plus_run_this_torch_cannot_do_stops_before_work(tmp_path, monkeypatch):
    """A torch without fp16 matmul on the run's device: the preflight names LP++'s official recipe
    and the fix; without lp++ among the methods, or under the default recipe, nothing is refused."""
    from fewshot.run.config import RunConfig
    from fewshot.methods import lp_plus_plus as lp
    from fewshot.run.preflight import check_run

    monkeypatch.setattr(lp, "_half_matmul", lambda device: False)
    cfg = dict(out=str(tmp_path / "r"), cache_dir=str(tmp_path / "c"), recipe="official")
    with pytest.raises(ConfigError, match="recipe=official trains LP\\+\\+ in fp16.*recipe=default"):
        check_run(RunConfig(**cfg, methods=["zero-shot", "lp++"]), device=torch.device("cpu"))
    check_run(RunConfig(**cfg, methods=["zero-shot", "gda"]), device=torch.device("cpu"))
    check_run(RunConfig(**{**cfg, "recipe": "default"}), device=torch.device("cpu"))
    assert not (tmp_path / "r").exists()
