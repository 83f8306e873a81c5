"""Weight-Ensembling MoE against hand computations on a tiny random ViT CLIP: routing weights at λ
are task arithmetic, a per-image MoE MLP is a loop of plain MLPs with hand-merged weights, E-WEMoE's
pruning keeps the top 10 % by a sort, and one router step follows the hand-written forward, loss
and Adam update."""
import copy

import pytest
import torch
import torch.nn.functional as F

from fewshot.base.errors import NonFiniteError
from fewshot.merging import rules, wemoe
from fewshot.merging.wemoe_router import Router, prune_magnitude
from fewshot.models.backbones import build_clip

VIT = dict(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
           transformer_width=64, transformer_layers=1, context_length=16, vocab_size=100)
N_EXPERTS, MLP = 3, ("c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias")


def _pool(seed=0, n=N_EXPERTS):
    """(ViT image tower, θ₀, [θᵢ]) with experts 0.05·N(0, 1) away from θ₀ in every tensor."""
    torch.manual_seed(seed)
    visual = build_clip(**VIT).visual.eval()
    base = {k: v.detach().clone() for k, v in visual.state_dict().items()}
    g = torch.Generator().manual_seed(seed + 1)
    experts = [{k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in base.items()} for _ in range(n)]
    return visual, base, experts


def _pixels(n=4, seed=2):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _zero_router_weights(model):
    with torch.no_grad():
        for m in wemoe.moe_layers(model):
            if m.router.depth:
                m.router.layers[-1].weight.zero_()  # r(h) = b = λ exactly


def _mlp_by_hand(z, p):
    """OpenAI's MLP (c_fc, QuickGELU, c_proj) written out: [..., D] -> [..., D]."""
    u = z @ p["c_fc.weight"].T + p["c_fc.bias"]
    return (u * torch.sigmoid(1.702 * u)) @ p["c_proj.weight"].T + p["c_proj.bias"]


def _router_by_hand(router, z):
    """r(z) of a depth-2 router written out: [..., D] -> [..., n]."""
    fc1, fc2 = router.layers
    return F.relu(z @ fc1.weight.T + fc1.bias) @ fc2.weight.T + fc2.bias


def test_build_clip_builds_a_vit_tower_only_with_a_patch_size():
    visual = build_clip(**VIT).visual
    assert type(visual).__name__ == "VisionTransformer" and len(visual.transformer.resblocks) == 2
    assert visual(_pixels(2)).shape == (2, 32)
    with pytest.raises(ValueError, match="vision_patch_size"):
        build_clip(**{**VIT, "vision_patch_size": None})
    with pytest.raises(ValueError, match="multiple of 8"):
        build_clip(**{**VIT, "image_resolution": 36})


@pytest.mark.parametrize("depth,layers,shared", [(2, None, False), (1, 1, False), (0, None, False), (2, 2, True)])
def test_routing_weights_at_lambda_give_task_arithmetics_features(depth, layers, shared):
    visual, base, experts = _pool()
    model = wemoe.build_wemoe(visual, base, experts, lam=0.3, layers=layers, depth=depth, shared_router=shared)
    assert len(wemoe.moe_layers(model)) == (layers or 2)
    _zero_router_weights(model)
    x = _pixels()
    ta = copy.deepcopy(visual)
    ta.load_state_dict(rules.task_arithmetic(base, experts, 0.3))
    with torch.no_grad():
        want = ta(x)
        for reduce in (False, True):
            for m in wemoe.moe_layers(model):
                m.batch_reduce = reduce
            assert torch.allclose(model(x), want, atol=1e-5, rtol=1e-5)
    assert torch.allclose(wemoe.routing_weights(model, x), torch.full((layers or 2, 4, N_EXPERTS), 0.3))


def test_a_per_image_moe_mlp_is_a_loop_of_plain_mlps_with_hand_merged_weights():
    visual, base, experts = _pool()
    model = wemoe.build_wemoe(visual, base, experts, layers=1)
    moe = wemoe.moe_layers(model)[0]
    with torch.no_grad():
        for p in moe.router.parameters():
            p.normal_(0, 0.5)  # weights that differ by image
    prefix = "transformer.resblocks.1.mlp."
    theta0 = {k: base[prefix + k] for k in MLP}
    taus = [{k: e[prefix + k] - base[prefix + k] for k in MLP} for e in experts]
    x = torch.randn(17, 5, 64, generator=torch.Generator().manual_seed(3))  # [L, N, D], sequence-first
    with torch.no_grad():
        got = moe(x)
        ws, outs = [], []
        for s in range(x.shape[1]):
            w = _router_by_hand(moe.router, x[:, s]).mean(0)  # [n]: router per token, then the token mean
            merged = {k: theta0[k] + sum(w[i] * taus[i][k] for i in range(N_EXPERTS)) for k in MLP}
            plain = copy.deepcopy(visual.transformer.resblocks[1].mlp)
            plain.load_state_dict(merged)
            outs.append(plain(x[:, s:s + 1]))
            ws.append(w)
        assert torch.stack(ws).std(0).min() > 1e-3  # the images really are routed differently
        assert torch.allclose(got, torch.cat(outs, 1), atol=1e-5, rtol=1e-5)
        moe.batch_reduce = True  # training's form: one merge with the batch's mean weights
        w = torch.stack(ws).mean(0)
        merged = {k: theta0[k] + sum(w[i] * taus[i][k] for i in range(N_EXPERTS)) for k in MLP}
        assert torch.allclose(moe(x), _mlp_by_hand(x, merged), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(256, 64), (64,), (7, 13), (1000,)])
def test_pruning_keeps_exactly_the_top_ten_percent_by_a_sort(shape):
    tau = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    d = tau.numel()
    keep = d - 1 - int(0.9 * (d - 1))  # the entries above the interpolated 0.9-quantile
    assert abs(keep - 0.1 * d) <= 1
    ref = torch.zeros(d)
    top = tau.reshape(-1).abs().argsort(descending=True)[:keep]
    ref[top] = tau.reshape(-1)[top]
    assert torch.equal(prune_magnitude(tau, 0.9), ref.view(shape))


def test_ewemoe_prunes_only_the_moe_mlps_task_vectors_and_shares_one_router():
    visual, base, experts = _pool()
    model = wemoe.build_ewemoe(visual, base, experts)
    layers = wemoe.moe_layers(model)
    assert len(layers) == 2 and layers[0].router is layers[1].router and layers[0].router.depth == 2
    n_router = sum(p.numel() for p in layers[0].router.parameters())
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == n_router  # counted once
    for i, m in enumerate(layers):
        for k in MLP:
            key = f"transformer.resblocks.{i}.mlp.{k}"
            want = torch.stack([prune_magnitude(e[key] - base[key], 0.9) for e in experts])
            assert torch.equal(getattr(m, m._buffer(k)), want)
            assert torch.equal(dict(m.base.named_parameters())[k], base[key])
    ta = rules.task_arithmetic(base, experts, wemoe.INIT_LAMBDA)  # the rest: unpruned task arithmetic
    state = model.state_dict()
    assert all(torch.equal(state[k], ta[k]) for k in base if ".mlp." not in k)


def _hand_tower(visual, ta, base, taus, routers, x):
    """VisionTransformer.forward written out with every block's MLP weights θ₀ + Σᵢ w̄ᵢτᵢ, w̄ the
    router's outputs averaged over tokens and images (training's batch_reduce): [N, E]."""
    plain = copy.deepcopy(visual)
    plain.load_state_dict(ta)
    h = plain.conv1(x).flatten(2).permute(0, 2, 1)  # [N, G, D]
    cls = plain.class_embedding + torch.zeros(h.shape[0], 1, h.shape[-1])
    h = plain.ln_pre(torch.cat([cls, h], 1) + plain.positional_embedding).permute(1, 0, 2)  # [L, N, D]
    for i, blk in enumerate(plain.transformer.resblocks):
        z = blk.ln_1(h)
        h = h + blk.attn(z, z, z, need_weights=False)[0]
        z = blk.ln_2(h)
        w = _router_by_hand(routers[i], z).mean((0, 1))  # [n]
        p = {k: base[f"transformer.resblocks.{i}.mlp.{k}"] + sum(w[j] * t[f"transformer.resblocks.{i}.mlp.{k}"]
                                                               for j, t in enumerate(taus)) for k in MLP}
        h = h + _mlp_by_hand(z, p)
    return plain.ln_post(h.permute(1, 0, 2)[:, 0]) @ plain.proj


def test_one_router_step_follows_the_hand_loss_and_adam_and_changes_nothing_else():
    visual, base, experts = _pool()
    model = wemoe.build_wemoe(visual, base, experts)
    g = torch.Generator().manual_seed(5)
    heads = [F.normalize(torch.randn(c, 32, generator=g), dim=-1) for c in (4, 6, N_EXPERTS)]
    xs = [_pixels(4, seed=10 + t) for t in range(3)]

    def logits(features, t):
        return 100.0 * F.normalize(features, dim=-1) @ heads[t].T

    routers = [m.router for m in wemoe.moe_layers(model)]
    params = [p for r in routers for p in r.parameters()]
    ta = rules.task_arithmetic(base, experts, wemoe.INIT_LAMBDA)
    taus = rules.task_vectors(base, experts)
    hand = 0.0
    for t in range(3):
        p = torch.softmax(logits(_hand_tower(visual, ta, base, taus, routers, xs[t]), t), -1)
        hand = hand - (p * torch.log(p + 1e-8)).sum(-1).mean()
    grads = torch.autograd.grad(hand, params)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = wemoe.train_routers(lambda m, t, x: logits(m(x), t), model, [lambda s, x=x: x for x in xs], steps=1)
    assert history[0] == pytest.approx(float(hand.detach()), rel=1e-5)
    for p, old, gr in zip(params, [before[k] for k in model.state_dict() if ".router." in k], grads):
        # Adam's first step: -lr·g/(|g| + 1e-8) (bias corrections cancel); where |g| is near Adam's ε
        # the step is as uncertain as g's last digits, so only its bound is checked there
        step, sure = p.detach() - old, gr.abs() > 1e-6
        assert torch.allclose(step[sure], (-wemoe.LR * gr / (gr.abs() + 1e-8))[sure], rtol=1e-3, atol=3e-8)
        assert bool((step.abs() <= wemoe.LR * 1.001).all())
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if ".router." not in k)
    assert all(not torch.equal(after[k], before[k]) for k in before if ".router." in k)
    assert not any(m.batch_reduce for m in wemoe.moe_layers(model))  # back to one merge per image


def test_training_lowers_the_entropy_and_a_nan_loss_raises():
    visual, base, experts = _pool()
    model = wemoe.build_wemoe(visual, base, experts, layers=1, depth=1)
    heads = [F.normalize(torch.randn(5, 32, generator=torch.Generator().manual_seed(6)), dim=-1)]
    f = lambda m, t, x: 100.0 * F.normalize(m(x), dim=-1) @ heads[t].T  # noqa: E731
    history = wemoe.train_routers(f, model, [lambda s: _pixels(8)], steps=30, lr=1e-2)
    assert history[-1] < history[0] - 1e-3
    with pytest.raises(NonFiniteError, match="task 0"):
        wemoe.train_routers(lambda m, t, x: m(x) * float("nan"), model, [lambda s: _pixels(2)], steps=1)


def test_mean_routing_weights_average_every_image_of_a_task():
    visual, base, experts = _pool()
    model = wemoe.build_wemoe(visual, base, experts)
    with torch.no_grad():
        for p in wemoe.moe_layers(model)[0].router.parameters():
            p.normal_(0, 0.5)
    a, b, c = _pixels(3, 7), _pixels(2, 8), _pixels(4, 9)
    got = wemoe.mean_routing_weights(model, [[a, b], [c]])
    assert got.shape == (2, 2, N_EXPERTS)
    assert torch.allclose(got[0], wemoe.routing_weights(model, torch.cat([a, b])).mean(1), atol=1e-6)
    assert torch.allclose(got[1], wemoe.routing_weights(model, c).mean(1), atol=1e-6)
    assert torch.allclose(got[:, 1], torch.full((2, N_EXPERTS), 0.3), atol=0.05)  # untouched router: ≈ λ


def test_a_resnet_tower_or_a_bad_router_is_refused():
    from tests.conftest import TINY
    torch.manual_seed(0)
    rn = build_clip(**TINY).visual
    with pytest.raises(ValueError, match="ViT"):
        wemoe.build_wemoe(rn, rn.state_dict(), [rn.state_dict()])
    with pytest.raises(ValueError, match="depth"):
        Router(8, 2, depth=3)
    visual, base, experts = _pool()
    with pytest.raises(ValueError, match="layers"):
        wemoe.build_wemoe(visual, base, experts, layers=3)
