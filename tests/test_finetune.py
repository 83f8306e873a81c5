"""Encoder fine-tuning: LoRA against the merged weights, WiSE-FT against a hand-computed merge, the
Fisher against per-sample autograd, pixel caches against direct decoding, DDP against one process."""
import copy
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from fewshot.models.backbones import build_clip, load_backbone
from fewshot.training.encoder import Recipe, build_classifier, trainable_state
from fewshot.training.encoder_loop import train
from fewshot.training.fisher import diagonal_fisher
from fewshot.models.lora import add_lora, lora_targets, merge, set_mix
from fewshot.methods.finetune import set_alpha
from tests.conftest import TINY


def _tiny_visual(seed=0):
    torch.manual_seed(seed)
    return build_clip(**TINY).visual.eval()


@pytest.mark.parametrize("what", ["attention", "conv", "both"])
def test_lora_forward_equals_the_merged_weights_and_w_plus_scaled_ba(what):
    visual = _tiny_visual()
    original = copy.deepcopy(visual)
    params = add_lora(visual, rank=2, alpha=4.0, what=what, seed=1)
    for p in params:  # give B (zero at the start) some values
        p.data.normal_(0, 0.05)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        adapted = visual(x)
        for (module, name), (orig_module, _) in zip(lora_targets(visual, what), lora_targets(original, what)):
            lr = module.parametrizations[name][0]
            expected = getattr(orig_module, name) + (4.0 / 2) * (lr.B @ lr.A).view_as(getattr(orig_module, name))
            assert torch.allclose(getattr(module, name), expected, atol=1e-6)
        assert not torch.allclose(adapted, original(x), atol=1e-4)  # the attention pool sees it
        set_mix(visual, 0.0)
        assert torch.allclose(visual(x), original(x), atol=1e-6)  # mix 0: the original model
        set_mix(visual, 1.0)
        merged = copy.deepcopy(visual)
        merge(merged)
        assert not any(hasattr(m, "parametrizations") for m in merged.modules())
        assert torch.allclose(merged(x), adapted, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_bb(tiny_clip_path):
    return load_backbone(str(tiny_clip_path))


class _Pool:
    def __init__(self, pixels):
        self.pixels = pixels

    def __len__(self):
        return len(self.pixels)

    def batch(self, rows):
        return self.pixels[torch.as_tensor(rows)]


def _task(n=24, c=4, size=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    return _Pool((torch.rand(n, 3, size, size, generator=g) * 255).to(torch.uint8)), torch.arange(n) % c


@pytest.mark.parametrize("strategy", ["partial", "full", "lora"])
def test_wise_ft_of_a_trained_classifier_equals_the_hand_merge(strategy, tiny_bb):
    text = F.normalize(torch.randn(4, 64), dim=-1)
    recipe = Recipe(epochs=2, lr=1e-3, batch_size=8)
    clf, groups = build_classifier(tiny_bb.model, text, 10.0, strategy, "cpu", recipe, seed=0)
    bn_before = {n: b.clone() for n, b in clf.named_buffers()}
    pool, labels = _task()
    theta0 = trainable_state(clf)
    history = train(clf, groups, pool, torch.arange(24), labels, recipe, "cpu", progress=False)
    theta1 = trainable_state(clf)
    assert len(history) == 2 and any(not torch.equal(theta0[k], theta1[k]) for k in theta0)
    assert all(torch.equal(bn_before[n], b) for n, b in clf.named_buffers())  # statistics frozen
    assert all(p.dtype == torch.float16 or not p.requires_grad for p in tiny_bb.model.parameters()) \
        or not any(p.requires_grad for p in tiny_bb.model.parameters())  # the backbone untouched
    set_alpha(clf, strategy, theta0, theta1, 0.3)
    params = dict(clf.named_parameters())
    if strategy == "lora":
        for module, name in lora_targets(clf.visual):
            lr = module.parametrizations[name][0]
            base = module.parametrizations[name].original
            assert torch.allclose(getattr(module, name), base + 0.3 * lr.scale * (lr.B @ lr.A).view_as(base), atol=1e-6)
        assert torch.allclose(params["head"], 0.7 * theta0["head"] + 0.3 * theta1["head"], atol=1e-6)
    else:
        for name in theta0:
            assert torch.allclose(params[name], 0.7 * theta0[name] + 0.3 * theta1[name], atol=1e-6)


def test_encoder_fisher_equals_per_sample_autograd(tiny_bb):
    text = F.normalize(torch.randn(4, 64), dim=-1)
    clf, _ = build_classifier(tiny_bb.model, text, 10.0, "partial", "cpu", Recipe(), seed=0)
    pool, labels = _task(n=6, size=32)
    x = pool.pixels.float()
    got = diagonal_fisher(clf, x, labels, "cpu", "empirical", chunk=4)
    ref = {n: torch.zeros_like(p) for n, p in clf.named_parameters() if p.requires_grad}
    from fewshot.features.preprocess import normalize_pixels

    for i in range(6):
        clf.zero_grad()
        logp = clf(normalize_pixels(x[i:i + 1])).log_softmax(-1)[0, labels[i]]
        logp.backward()
        for n, p in clf.named_parameters():
            if p.requires_grad:
                ref[n] += p.grad ** 2 / 6
    for n in ref:
        assert torch.allclose(got[n], ref[n], rtol=1e-3, atol=1e-9), n


def test_pixel_cache_equals_direct_decoding_and_heals(small_world, tmp_path):
    from fewshot.data.datasets import load_dataset
    from fewshot.data.images import load_rgb
    from fewshot.features.pixels import pixel_cache
    from fewshot.features.preprocess import center_pixels

    ds = load_dataset(small_world)
    px = pixel_cache(ds.val, 32, tmp_path, progress=False)
    assert len(px) == len(ds.val) and px.size == 32
    for i in (0, 7, len(ds.val) - 1):
        assert torch.equal(px.batch([i])[0], center_pixels(load_rgb(ds.root / ds.val.paths[i]), 32))
    npy = next(tmp_path.rglob("*.npy"))
    data = bytearray(npy.read_bytes())
    data[-5] ^= 0xFF
    npy.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="failed verification"):
        again = pixel_cache(ds.val, 32, tmp_path, progress=False)
    last = len(ds.val) - 1
    assert torch.equal(again.batch([last])[0], center_pixels(load_rgb(ds.root / ds.val.paths[last]), 32))


def test_augment_is_a_crop_of_the_image_and_deterministic():
    from fewshot.features.pixels import augment

    x = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8).expand(2, 3, 8, 8).to(torch.uint8)
    full = augment(x, 8, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(full[0], x[0].float()) or torch.allclose(full[0], x[0].float().flip(-1))
    a = augment(x, 4, torch.Generator().manual_seed(3))
    b = augment(x, 4, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (2, 3, 4, 4) and a.min() >= 0 and a.max() <= 63


_DDP_SCRIPT = r"""
import sys, torch, torch.nn.functional as F
from fewshot.training import distributed as dist
from fewshot.models.backbones import load_backbone
from fewshot.training.encoder import Recipe, build_classifier, trainable_state
from fewshot.training.encoder_loop import train
dist.init()
bb = load_backbone(sys.argv[1])
torch.manual_seed(0)
text = F.normalize(torch.randn(4, 64), dim=-1)
clf, groups = build_classifier(bb.model, text, 10.0, "full", "cpu", Recipe(epochs=2, lr=1e-3, batch_size=8), 0)
g = torch.Generator().manual_seed(0)
pixels = (torch.rand(24, 3, 37, 37, generator=g) * 255).to(torch.uint8)
class P:
    def batch(self, rows): return pixels[torch.as_tensor(rows)]
train(clf, groups, P(), torch.arange(24), torch.arange(24) % 4, Recipe(epochs=2, lr=1e-3, batch_size=8), "cpu", progress=False)
if dist.is_main():
    torch.save(trainable_state(clf), sys.argv[2])
"""


@pytest.mark.slow
def test_two_processes_train_the_same_weights_as_one(tiny_clip_path, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), str(tiny_clip_path), str(tmp_path / "one.pt")],
                         capture_output=True, text=True, env=env)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29517", str(script), str(tiny_clip_path), str(tmp_path / "two.pt")],
                         capture_output=True, text=True, env=env)
    assert two.returncode == 0, two.stderr
    a, b = torch.load(tmp_path / "one.pt", weights_only=True), torch.load(tmp_path / "two.pt", weights_only=True)
    worst = max(float((a[k] - b[k]).abs().max() / (a[k].abs().max() + 1e-12)) for k in a)
    assert worst < 1e-3  # the same updates up to the order of float sums (measured here: 2.4e-4)


@pytest.mark.parametrize("strategy", ["partial", "full", "lora"])
def test_vit_towers_fine_tune_too(strategy):
    """CLIP's other image tower: partial trains the last blocks, LoRA adapts every block's
    attention (in_proj and out_proj), checkpointing gives the same loss as the plain forward."""
    import clip

    torch.manual_seed(0)
    model = clip.model.CLIP(64, 32, 4, 64, 8, 16, 49408, 64, 1, 1).eval()  # ViT: 4 blocks, patch 8
    text = F.normalize(torch.randn(4, 64), dim=-1)
    recipe = Recipe(epochs=1, lr=1e-3, batch_size=8)
    clf, groups = build_classifier(model, text, 10.0, strategy, "cpu", recipe, seed=0)
    trained = {n for n, p in clf.named_parameters() if p.requires_grad}
    if strategy == "partial":
        assert any(".resblocks.3." in n for n in trained) and not any(".resblocks.0." in n for n in trained)
    if strategy == "lora":
        assert sum("in_proj_weight" in n for n in trained) == 8 and sum("out_proj" in n for n in trained) == 8
    pool, labels = _task(n=16)
    theta0 = trainable_state(clf)
    train(clf, groups, pool, torch.arange(16), labels, recipe, "cpu", progress=False)
    theta1 = trainable_state(clf)
    set_alpha(clf, strategy, theta0, theta1, 0.0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        zero = clf.features(x)
        ref = F.normalize(model.float().visual(x), dim=-1)
    assert torch.allclose(zero, ref, atol=1e-5)  # α = 0 is the zero-shot tower
    clf.checkpointing = True
    clf.train()
    assert torch.allclose(clf.features(x), clf.eval().features(x), atol=1e-5)


def test_checkpointing_is_on_for_small_gpus(monkeypatch):
    """A 16 GB card (T4, P100) recomputes activations whatever the config says; larger cards and
    the CPU follow the config."""
    from types import SimpleNamespace

    from fewshot.training.encoder import checkpointing_for

    assert checkpointing_for(False, "cpu") is False and checkpointing_for(True, "cpu") is True
    for gib, expected in ((15.0, True), (16.0, True), (79.2, False)):
        monkeypatch.setattr(torch.cuda, "get_device_properties",
                            lambda d, gib=gib: SimpleNamespace(total_memory=int(gib * 2**30)))
        assert checkpointing_for(False, "cuda:0") is expected
        assert checkpointing_for(True, "cuda:0") is True


def _pixel_pool(n: int, g):
    """Random uint8 crops [n, 3, 37, 37] and a pool class whose batch(rows) reads them."""
    pixels = (torch.rand(n, 3, 37, 37, generator=g) * 255).to(torch.uint8)

    class Pool:
        def batch(self, rows):
            return pixels[torch.as_tensor(rows)]
    return pixels, Pool


def test_multitask_training_is_the_experts_recipe_written_out(tiny_clip_path):
    """The merge study's multi-task reference: each step one batch per task drawn with replacement,
    the summed cross-entropies through each task's head, AdamW with the recipe's decay, warm-up
    and cosine, and clipping at grad_clip, checked against that loop written out here."""
    import math

    from fewshot.features.pixels import augment
    from fewshot.features.preprocess import normalize_pixels
    from fewshot.models.backbones import load_backbone
    from fewshot.training.encoder_loop import train_multitask

    bb = load_backbone(str(tiny_clip_path))
    g = torch.Generator().manual_seed(0)
    pixels, P = _pixel_pool(12, g)
    heads = [F.normalize(torch.randn(3, 64, generator=g), dim=-1) * 10, F.normalize(torch.randn(2, 64, generator=g), dim=-1) * 10]
    rows, labels = [torch.arange(8), torch.arange(4, 12)], [torch.arange(12) % 3, torch.arange(12) % 2]
    recipe = Recipe(epochs=2, lr=1e-3, batch_size=4, grad_clip=0.05, warmup=0.25)
    clf, groups = build_classifier(bb.model, heads[0], 1.0, "full", "cpu", recipe, 0, train_head=False)
    ref, ref_groups = build_classifier(bb.model, heads[0], 1.0, "full", "cpu", recipe, 0, train_head=False)
    train_multitask(clf, groups, [(P(), r, y, h) for r, y, h in zip(rows, labels, heads)], recipe, "cpu", 0, False)

    params = [p for grp in ref_groups for p in grp["params"]]
    opt = torch.optim.AdamW([dict(grp) for grp in ref_groups], weight_decay=recipe.weight_decay)
    steps = 8 // 4 + 1
    total, warm = recipe.epochs * steps, round(recipe.epochs * steps * 0.25)
    gen, aug = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    ref.train()
    ref.visual.apply(lambda m: m.eval() if isinstance(m, torch.nn.BatchNorm2d) else None)
    for t in range(total):
        for grp, base in zip(opt.param_groups, [grp["lr"] for grp in ref_groups]):
            grp["lr"] = base * ((t + 1) / warm if t < warm else 0.5 * (1 + math.cos(math.pi * (t - warm) / (total - warm))))
        loss = 0.0
        for r, y, h in zip(rows, labels, heads):
            idx = r[torch.randint(len(r), (4,), generator=gen)]
            x = augment(pixels[idx], ref.visual.input_resolution, aug, recipe.crop_scale, flip=recipe.flip)
            loss = loss + F.cross_entropy(ref.features(normalize_pixels(x)) @ h.T, y[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        opt.step()
    got, want = dict(clf.visual.named_parameters()), dict(ref.visual.named_parameters())
    moved = max(float((want[k] - p0).detach().abs().max()) for k, p0 in bb.model.visual.named_parameters())
    assert moved > 1e-4  # it trained
    assert max(float((got[k] - want[k]).abs().max()) for k in want) < 1e-6


def test_an_expert_trains_as_fusionbench_fine_tunes(tiny_clip_path):
    """The merge study's experts: a fixed budget of steps (the last pass cut short), Adam without
    weight decay, a cosine over all steps (CosineAnnealingLR), centre views only, no clipping:
    against torch's own Adam and CosineAnnealingLR in a loop written out here."""
    import dataclasses

    from fewshot.features.pixels import centre_pixels_of
    from fewshot.features.preprocess import normalize_pixels
    from fewshot.models.backbones import load_backbone
    from fewshot.training.encoder import FUSIONBENCH_EXPERT

    bb = load_backbone(str(tiny_clip_path))
    g = torch.Generator().manual_seed(0)
    pixels, P = _pixel_pool(10, g)
    head = F.normalize(torch.randn(3, 64, generator=g), dim=-1) * 10
    rows, labels = torch.arange(10), torch.arange(10) % 3
    recipe = dataclasses.replace(Recipe(lr=1e-3, batch_size=4), steps=7, **FUSIONBENCH_EXPERT)
    clf, groups = build_classifier(bb.model, head, 1.0, "full", "cpu", recipe, 0, train_head=False)
    ref, ref_groups = build_classifier(bb.model, head, 1.0, "full", "cpu", recipe, 0, train_head=False)
    history = train(clf, groups, P(), rows, labels, recipe, "cpu", 0, False)
    assert len(history) == 3  # 3 batches a pass: 3 + 3 + 1 steps

    opt = torch.optim.Adam([dict(grp) for grp in ref_groups], weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7)
    gen = torch.Generator().manual_seed(0)
    ref.train()
    ref.visual.apply(lambda m: m.eval() if isinstance(m, torch.nn.BatchNorm2d) else None)
    done = 0
    while done < 7:
        order = torch.randperm(10, generator=gen)
        for i in range(3):
            if done == 7:
                break
            idx = order[i * 4:(i + 1) * 4]
            x = centre_pixels_of(P(), idx.tolist(), ref.visual.input_resolution, "cpu")
            loss = F.cross_entropy(ref(normalize_pixels(x)), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            done += 1
    got, want = dict(clf.visual.named_parameters()), dict(ref.visual.named_parameters())
    assert max(float((got[k] - want[k]).detach().abs().max()) for k in want) < 1e-6
    assert any(float((want[k] - p).detach().abs().max()) > 1e-4 for k, p in bb.model.visual.named_parameters())
