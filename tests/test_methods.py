"""Every formula against an independent computation: explicit loops, brute force, hand values."""
import math

import pytest
import torch
import torch.nn.functional as F

from fewshot.methods.tip_adapter import cache_model as tip
from fewshot.protocol.metrics import topk_accuracy
from fewshot.merging.interpolate import interpolate
from fewshot.models.text_head import zeroshot_logits


def _problem(n=40, m=24, c=6, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    text = F.normalize(torch.randn(c, d, generator=g), dim=-1)
    keys = F.normalize(torch.randn(m, d, generator=g), dim=-1)
    key_labels = torch.arange(m) % c
    values = F.one_hot(key_labels, c).float()
    labels = torch.randint(0, c, (n,), generator=g)
    return feats, labels, text, keys, values


def _loop_logits(f, text, keys, values, alpha, beta, scale):
    """Tip-Adapter logits for one query, written as sums over classes and cache entries."""
    out = []
    for c in range(text.shape[0]):
        clip_part = scale * sum(float(f[d] * text[c, d]) for d in range(f.shape[0]))
        cache_part = sum(math.exp(-beta * (1 - float(f @ keys[m]))) * float(values[m, c])
                         for m in range(keys.shape[0]))
        out.append(clip_part + alpha * cache_part)
    return torch.tensor(out)


def test_tip_logits_equal_an_explicit_loop():
    feats, _, text, keys, values = _problem(n=3)
    got = tip.tip_logits(feats, text, keys, values, alpha=1.7, beta=5.5, logit_scale=50.0)
    for i in range(3):
        ref = _loop_logits(feats[i], text, keys, values, 1.7, 5.5, 50.0)
        assert torch.allclose(got[i], ref, atol=1e-4)


def test_alpha_zero_is_zero_shot():
    feats, _, text, keys, values = _problem()
    assert torch.equal(tip.tip_logits(feats, text, keys, values, 0.0, 3.0, 100.0),
                       zeroshot_logits(feats, text, 100.0))


@pytest.mark.parametrize("m, weighted", [(24, False), (25, False), (24, True)])  # 4 entries per class
@pytest.mark.parametrize("loo", [False, True])  # (summed by class), uneven, weighted entries (APE: matmul)
def test_search_equals_brute_force(loo, m, weighted):
    feats, labels, text, keys, values = _problem(n=24, m=m)
    if weighted:  # one non-zero per row, as APE's L ⊙ R
        values = values * torch.rand(m, 1, generator=torch.Generator().manual_seed(1)).add(0.5)
    alphas, betas = torch.tensor([0.0, 0.5, 2.0, 8.0]), torch.tensor([0.5, 3.0, 9.0])
    exclude = torch.arange(24) if loo else None
    grid = tip.search(feats, labels, text, keys, values, alphas, betas, 30.0, exclude=exclude,
                      budget_bytes=4096)  # tiny budget: forces many chunks
    ref = torch.zeros(3, 4)
    for bi, b in enumerate(betas):
        for ai, a in enumerate(alphas):
            hits = 0
            for i in range(24):
                keep = [j for j in range(m) if not (loo and j == i)]
                logit = tip.tip_logits(feats[i:i + 1], text, keys[keep], values[keep], a, b, 30.0)
                hits += int(logit.argmax() == labels[i])
            ref[bi, ai] = hits / 24
    assert torch.equal(grid, ref)
    assert tip.best_point(ref, alphas, betas)[2] == ref.max()


def test_official_grid_matches_the_published_definition():
    alphas, betas = tip.official_grid()
    assert len(alphas) == 20 and len(betas) == 200
    assert betas[1].item() == pytest.approx(0.1 + 6.9 / 200) and alphas[-1].item() == pytest.approx(0.1 + 19 * 2.9 / 20)


def test_build_cache_normalises_the_mean_of_raw_views():
    views = torch.tensor([[[3.0, 0.0]], [[1.0, 2.0]]])  # V=2, M=1, D=2: mean (2, 1)
    keys, values = tip.build_cache(views, torch.tensor([1]), 3)
    assert torch.allclose(keys, torch.tensor([[2.0, 1.0]]) / math.sqrt(5))
    assert values.tolist() == [[0.0, 1.0, 0.0]]


def test_tip_adapter_f_lowers_loss_and_leaves_inputs_alone():
    feats, labels, text, _, _ = _problem(n=48)
    views = torch.stack([feats + 0.05 * torch.randn_like(feats) for _ in range(3)]).half()
    keys, values = tip.build_cache(views, labels, 6)  # the training images are the cache
    keys0 = keys.clone()
    out = tip.train_tip_adapter_f(views, labels, text, keys, values, 3.0, 5.0, 2.0, epochs=15,
                                  lr=0.01, batch_size=16, progress=False)
    losses = [h["loss"] for h in out["history"]]
    assert losses[-1] < losses[0] * 0.5 and len(losses) == 15
    assert out["history"][-1]["train_acc"] == 1.0
    assert torch.equal(keys, keys0) and out["keys"].dtype == torch.float32
    again = tip.train_tip_adapter_f(views, labels, text, keys, values, 3.0, 5.0, 2.0, epochs=15,
                                    lr=0.01, batch_size=16, progress=False)
    assert torch.equal(again["keys"], out["keys"])  # seeded


def test_interpolate_endpoints_and_midpoint():
    t0 = {"w": torch.tensor([0.0, 2.0]), "b": torch.tensor([4.0])}
    t1 = {"w": torch.tensor([2.0, 6.0]), "b": torch.tensor([0.0])}
    assert torch.equal(interpolate(t0, t1, 0.0)["w"], t0["w"])
    assert torch.equal(interpolate(t0, t1, 1.0)["b"], t1["b"])
    mid = interpolate(t0, t1, 0.5)
    assert mid["w"].tolist() == [1.0, 4.0] and mid["b"].tolist() == [2.0]


def test_fisher_merge_matches_hand_computation():
    t0, t1 = {"w": torch.tensor([1.0, 1.0]), "b": torch.tensor([0.0])}, {"w": torch.tensor([3.0, 3.0]), "b": torch.tensor([1.0])}
    f0, f1 = {"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([3.0, 0.0])}
    out = interpolate(t0, t1, 0.25, fishers=(f0, f1), fisher_floor=1e-8)
    # w[0]: (0.75*1*1 + 0.25*3*3) / (0.75*1 + 0.25*3) = 3/1.5 = 2; w[1]: both floored -> plain 1.5
    assert out["w"][0].item() == pytest.approx(2.0) and out["w"][1].item() == pytest.approx(1.5)
    assert out["b"].item() == pytest.approx(0.25)  # no Fisher for b: ones = plain interpolation
    with pytest.raises(KeyError):
        interpolate(t0, {"w": t1["w"]}, 0.5)


def test_topk_on_a_hand_made_case():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    labels = torch.tensor([1, 2, 0, 2])
    # top-1 hits: row0 only; top-2 hits: row0, row1 (0.3 is 2nd), not row2 (0.2 is 3rd), not row3
    assert topk_accuracy(logits, labels, ks=(1, 2)) == {1: 0.25, 2: 0.5}
    assert topk_accuracy(logits, labels, ks=(5,)) == {5: 1.0}  # k > C counts every row


@pytest.mark.parametrize("m", [24, 25])
def test_search_and_evaluation_break_exact_ties_alike(m):
    """Classes 2 and 4 share their text embedding (ImageNet's two "crane"s) and their cache
    entries, so their logits tie exactly: the lower index wins, in the grid and in evaluation."""
    feats, labels, text, keys, values = _problem(n=30, m=m, seed=3)
    text[4] = text[2]
    key_labels = values.argmax(1)
    keys[key_labels == 4] = keys[key_labels == 2]  # entry j of class 4 = entry j of class 2
    values = F.one_hot(key_labels, 6).float()
    if m == 24:  # equal counts per class: the strided class-sum path; ties need equal multisets
        assert (values.sum(0) == 4).all()
    labels[:10] = torch.tensor([2, 4] * 5)
    alphas, betas = torch.tensor([0.0, 0.5, 2.0]), torch.tensor([1.0, 4.0])
    grid = tip.search(feats, labels, text, keys, values, alphas, betas, 30.0)
    for bi, b in enumerate(betas):
        for ai, a in enumerate(alphas):
            logits = tip.tip_logits(feats, text, keys, values, a, b, 30.0)
            assert torch.equal(logits[:, 2], logits[:, 4])  # the ties are exact
            ref = (logits.argmax(1) == labels).float().mean()
            top1 = topk_accuracy(logits, labels, ks=(1,))[1]
            assert grid[bi, ai].item() == pytest.approx(ref.item()) == pytest.approx(top1)
    zs = zeroshot_logits(feats, text, 30.0)
    assert not (zs[labels == 4].argmax(1) == 4).any()  # a tied class-4 image is never right


def test_topk_counts_a_tie_against_the_higher_index():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0], [3.0, 3.0, 3.0, 2.0]])
    assert topk_accuracy(logits, torch.tensor([1, 2]), ks=(1, 2, 3)) == {1: 0.5, 2: 0.5, 3: 1.0}


def test_top1_equals_a_loop_with_ties_to_the_lower_class_and_is_nan_on_an_empty_fold():
    import math

    from fewshot.protocol.metrics import top1

    g = torch.Generator().manual_seed(3)
    logits = torch.randint(0, 3, (200, 5), generator=g).float()  # many exact ties
    labels = torch.randint(0, 5, (200,), generator=g)
    loop = sum(max(range(5), key=lambda c: (float(row[c]), -c)) == int(y) for row, y in zip(logits, labels)) / 200
    assert abs(top1(logits, labels) - loop) < 1e-6  # a float32 mean, as every caller had it
    assert math.isnan(top1(logits[:0], labels[:0]))
