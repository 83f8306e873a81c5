"""Cross-validation folds trained as one stacked fit (Tip-Adapter-F's recipe choice, WiSE-FT's λ)
give each fold the keys it gets when trained alone, and the same choices."""
import pytest
import torch
import torch.nn.functional as F

from fewshot.training import graphed
from fewshot.protocol import selection
from fewshot.methods.tip_adapter import cache_model as tip


def _folds(seed=0, n=24, d=16, c=4, views=2, folds=3):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(views, n, d, generator=gen) + 2 * F.one_hot(torch.arange(n) % c, d)
    labels = torch.arange(n) % c
    ranks = torch.arange(n) // c
    text = F.normalize(torch.randn(c, d, generator=gen), dim=-1)
    return feats, labels, ranks, text, selection.fold_masks(ranks, folds)


@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("recipe", tip.RECIPES)
def test_stacked_fit_equals_each_fold_trained_alone(monkeypatch, recipe, graph):
    """Both recipes, eager and through the graph-safe update (the GPU's path, run on the CPU);
    measured here: fp32 within 9e-8, the fp16-state recipe bit-equal."""
    monkeypatch.setattr(graphed, "ON_CPU", graph)
    feats, labels, _, text, masks = _folds()
    trains = [~m for m in masks]
    alone = []
    for m in trains:
        k0, v = tip.build_cache(feats[:, m], labels[m], 4)
        alone.append(tip.train_tip_adapter_f(feats[:, m], labels[m], text, k0, v, 1.0, 5.5, epochs=3,
                                             lr=1e-2, batch_size=5, progress=False, recipe=recipe)["keys"])
    caches = [tip.build_cache(feats[:, m], labels[m], 4) for m in trains]
    stacked = tip.train_tip_adapter_f(torch.stack([feats[:, m] for m in trains], dim=2),
                                      torch.stack([labels[m] for m in trains], dim=1), text,
                                      torch.stack([k for k, _ in caches]), torch.stack([v for _, v in caches]),
                                      1.0, 5.5, epochs=3, lr=1e-2, batch_size=5, progress=False,
                                      recipe=recipe)["keys"]
    assert stacked.shape == (3, 16, 16)
    for f, keys in enumerate(alone):
        assert not torch.allclose(keys, caches[f][0], atol=1e-3)  # it trained
        assert torch.allclose(stacked[f], keys, rtol=1e-5, atol=1e-6), (f, (stacked[f] - keys).abs().max())


def test_stacked_tip_logits_equal_one_cache_at_a_time():
    feats, labels, _, text, masks = _folds()
    caches = [tip.build_cache(feats[:, ~m], labels[~m], 4) for m in masks]
    x = F.normalize(torch.stack([feats[0, m][:5] for m in masks]), dim=-1)  # [F, 5, D]
    got = tip.tip_logits(x, text, torch.stack([k for k, _ in caches]), torch.stack([v for _, v in caches]), 1.5, 4.0)
    for f, (k, v) in enumerate(caches):
        want = 100.0 * x[f] @ text.T + 1.5 * torch.exp(-4.0 * (1 - x[f] @ k.T)) @ v  # the paper's formula
        assert torch.allclose(got[f], want, rtol=1e-5, atol=1e-4)


def test_cross_validate_scores_all_folds_at_once_like_one_by_one():
    ranks = torch.arange(30) // 5
    calls = []

    def score_fold(train, held):
        calls.append(int(held.sum()))
        return [float(held.float() @ torch.arange(30.0)) % 7, 3.0]

    one = selection.cross_validate(ranks, 4, ["a", "b"], score_fold)
    every = selection.cross_validate(ranks, 4, ["a", "b"],
                                     score_folds=lambda trains, helds: [score_fold(t, h) for t, h in zip(trains, helds)])
    assert one == every and len(calls) == 8
    mean_a = sum(float(m.float() @ torch.arange(30.0)) % 7 for m in selection.fold_masks(ranks, 4)) / 4
    assert one[1][0] == pytest.approx(mean_a) and one[0] == ("a" if mean_a > 3 else "b")


def test_a_list_of_value_matrices_gives_each_grid_of_its_own_search_bit_for_bit():
    """APE's γ grid shares one pass of affinities (tip_adapter.search with a list of values)."""
    from fewshot.methods.tip_adapter import cache_model as tip

    g = torch.Generator().manual_seed(3)
    f = torch.nn.functional.normalize(torch.randn(40, 16, generator=g), dim=-1)
    keys = torch.nn.functional.normalize(torch.randn(30, 16, generator=g), dim=-1)
    W = torch.nn.functional.normalize(torch.randn(5, 16, generator=g), dim=-1)
    onehot = torch.nn.functional.one_hot(torch.arange(30) % 5, 5).float()
    vals = [onehot * torch.exp(gm * torch.rand(30, 1, generator=g)) for gm in (0.1, 0.2, 0.4)]
    labels, ex = torch.randint(0, 5, (40,), generator=g), torch.randint(-1, 30, (40,), generator=g)
    alphas, betas = torch.linspace(0.1, 5, 7), torch.linspace(0.5, 6, 9)
    together = tip.search(f, labels, W, keys, vals, alphas, betas, exclude=ex)
    assert together.shape == (3, 9, 7)
    for grid, v in zip(together, vals):
        assert torch.equal(grid, tip.search(f, labels, W, keys, v, alphas, betas, exclude=ex))
