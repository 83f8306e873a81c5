"""WiSE-FT as its authors ran it (mlfoundations/wise-ft at 58b7a4b): the ``ft_recipe="wise-ft"``
option against the values and formulas transcribed from that code, and the α = 0.5 records."""
import math

import pytest
import torch

from fewshot.models.backbones import build_clip
from fewshot.run.config import load_config
from fewshot.training.encoder import build_classifier, recipe_for
from fewshot.training.encoder_loop import schedule
from fewshot.methods.finetune import linear_head, set_alpha
from fewshot.features.pixels import augment
from fewshot.methods import get_method
from fewshot.merging.interpolate import interpolate

from tests.conftest import TINY


def _official_cosine_lr(base, warmup, steps, step):
    """src/models/utils.py: cosine_lr, transcribed."""
    if step < warmup:
        return base * (step + 1) / warmup
    e, es = step - warmup, steps - warmup
    return 0.5 * (1 + math.cos(math.pi * e / es)) * base


def test_the_wise_ft_recipe_is_the_official_one():
    r = recipe_for(load_config("miniworld", ft_recipe="wise-ft"))
    # clip/clip.py _transform(is_train=True): RandomResizedCrop(scale=(0.9, 1.0)), no flip;
    # src/args.py: --warmup_length 500, --wd 0.1; modeling.py ClassificationHead: bias zeros
    assert (r.crop_scale, r.flip, r.warmup_steps, r.head_bias, r.weight_decay, r.grad_clip) == \
        ((0.9, 1.0), False, 500, True, 0.1, 1.0)
    suite = recipe_for(load_config("miniworld"))
    assert (suite.crop_scale, suite.flip, suite.warmup_steps, suite.head_bias, suite.name) == \
        ((0.5, 1.0), True, 0, False, "suite")
    for total in (35, 800):  # few steps: the rate never leaves the warm-up, as in the official code
        f = schedule(r, total)
        assert all(abs(3e-5 * f(t) - _official_cosine_lr(3e-5, 500, total, t)) < 1e-15 for t in range(total))


def test_no_flip_keeps_the_same_crops_unflipped():
    x = torch.randint(0, 256, (16, 3, 24, 24), dtype=torch.uint8)
    a = augment(x, 16, torch.Generator().manual_seed(0), (0.9, 1.0), flip=False)
    b = augment(x, 16, torch.Generator().manual_seed(0), (0.9, 1.0))
    same = [torch.equal(a[i], b[i]) for i in range(16)]
    assert all(s or torch.equal(a[i], b[i].flip(-1)) for i, s in enumerate(same))
    assert not all(same)  # some were flipped in the default, none here


def test_head_bias_trains_and_interpolates_from_zero():
    torch.manual_seed(0)
    model = build_clip(**TINY).eval()
    text = torch.nn.functional.normalize(torch.randn(3, 64), dim=-1)
    r = recipe_for(load_config("miniworld", ft_recipe="wise-ft"))
    clf, groups = build_classifier(model, text, 10.0, "lora", "cpu", r)
    assert any(p is clf.head_bias for g in groups for p in g["params"])
    t0 = {k: p.detach().clone() for k, p in clf.named_parameters() if p.requires_grad}
    t1 = {k: v + 0.1 * torch.randn_like(v) for k, v in t0.items()}
    set_alpha(clf, "lora", t0, t1, 0.5)
    assert torch.allclose(clf.head_bias, 0.5 * t1["head_bias"])  # (1 − α)·0 + α·b
    f = torch.randn(5, 64)
    merged = interpolate(t0, t1, 0.5)
    assert torch.allclose(linear_head(merged)(f), f @ merged["head"].T + merged["head_bias"])
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(clf(x), clf.features(x) @ clf.head.T + clf.head_bias)


def test_every_encoder_and_head_wise_records_the_authors_default():
    for method, default in (("ft-partial", "wise-ft-partial-default"), ("ft-full", "wise-ft-full-default"),
                            ("ft-lora", "wise-ft-lora-default"), ("clip-lora", "wise-clip-lora-default"),
                            ("wise-linear", "wise-linear-default"), ("wise-tip-adapter", "wise-tip-adapter-default"),
                            ("coop", "wise-coop-default")):
        assert default in get_method(method).companions


def test_the_world_check_reads_wise_ft_at_one_half():
    from fewshot.world.phenomena import _finetuning_checks

    def rec(method, eval_set, top1, shots=16):
        return {"method": method, "role": "final", "eval_set": eval_set, "shots": shots, "metrics": {"top1": top1}}

    records = [rec("ft-full", "val", 46.0), rec("ft-full", "sketch", 50.0),
               rec("wise-ft-full-default", "val", 45.0), rec("wise-ft-full-default", "sketch", 52.0)]
    row = _finetuning_checks(records, "sketch", 41.0, 51.0, 1)[1]
    # by hand: 52 − 51 = +1 on sketch; (45 + 52)/2 − (46 + 50)/2 = +0.5
    assert (row["value"], row["ok"]) == ("+1.00; +0.50", True)
    records[-1]["metrics"]["top1"] = 50.5  # below zero-shot's 51 on sketch
    assert not _finetuning_checks(records, "sketch", 41.0, 51.0, 1)[1]["ok"]
