"""The qualitative analysis's computations against loops, brute force and closed forms."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fewshot.methods.tip_adapter.explain import cache_explanation, cache_snapshot, key_movement
from fewshot.protocol.analysis import (class_gain, confused_pairs, failures, pick_explained, project_2d,
                                       top_predictions, variance_share)
from fewshot.protocol.method import Context, EvalSet, Shots


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_top_predictions_equal_a_sorted_softmax():
    g = torch.Generator().manual_seed(0)
    feats, W = torch.randn(37, 8, generator=g), torch.randn(11, 8, generator=g)
    classes, probs = top_predictions(lambda f: f @ W.T, feats, k=3, chunk=5)
    assert classes.dtype == torch.int16 and probs.dtype == torch.float16
    for i in range(37):
        z = [float(feats[i] @ W[c]) for c in range(11)]
        e = [math.exp(v - max(z)) for v in z]
        p = [v / sum(e) for v in e]
        order = sorted(range(11), key=lambda c: -p[c])[:3]
        assert classes[i].tolist() == order
        assert np.allclose(probs[i].float().numpy(), [p[c] for c in order], atol=1e-3)


def test_confused_pairs_equal_a_count_over_every_pair():
    r = _rng(1)
    labels = r.integers(0, 6, 300)
    preds = np.where(r.random(300) < 0.5, labels, r.integers(0, 6, 300))
    expected = []
    for a in range(6):
        for b in range(a + 1, 6):
            ab = sum(1 for t, p in zip(labels, preds) if t == a and p == b)
            ba = sum(1 for t, p in zip(labels, preds) if t == b and p == a)
            if ab + ba:
                expected.append({"a": a, "b": b, "a_to_b": ab, "b_to_a": ba, "total": ab + ba})
    expected.sort(key=lambda d: (-d["total"], d["a"], d["b"]))
    assert confused_pairs(labels, preds, top=4) == expected[:4]
    assert confused_pairs(labels, labels) == []


def test_class_gain_equals_per_class_loops():
    r = _rng(2)
    labels = np.repeat(np.arange(5), 7)  # class 5 has no image
    preds, base = r.integers(0, 6, 35), r.integers(0, 6, 35)
    acc, base_acc, gain = class_gain(labels, preds, base, 6)
    for c in range(5):
        rows = [i for i in range(35) if labels[i] == c]
        a = 100 * sum(preds[i] == c for i in rows) / len(rows)
        b = 100 * sum(base[i] == c for i in rows) / len(rows)
        assert acc[c] == pytest.approx(a) and base_acc[c] == pytest.approx(b) and gain[c] == pytest.approx(a - b)
    assert np.isnan(acc[5]) and np.isnan(gain[5])


def test_failures_are_the_most_confident_wrong_rows():
    labels = np.array([0, 1, 2, 3, 4, 5])
    classes = np.array([[0, 1, 2], [2, 1, 0], [1, 2, 0], [3, 0, 1], [0, 4, 1], [1, 5, 0]])
    probs = np.array([[.9, .05, .05], [.5, .3, .2], [.8, .1, .1], [.99, 0, 0], [.5, .4, .1], [.7, .2, .1]])
    assert failures(labels, classes, probs, top=3) == [2, 5, 1]  # wrong: 1 (.5), 2 (.8), 4 (.5), 5 (.7)
    assert failures(labels, classes, probs, top=10) == [2, 5, 1, 4]  # .5 tie: lower index first


def test_pick_explained_takes_each_kind_and_passes_on_missing_places():
    labels = np.array([0, 0, 0, 0, 0, 0])
    zs = np.array([1, 1, 0, 0, 1, 0])
    ad = np.array([0, 0, 0, 2, 2, 0])
    conf = np.array([.6, .9, .5, .7, .8, .4])
    # fixed: 0, 1 (by confidence 1 then 0); broken: 3; both wrong: 4
    assert pick_explained(labels, zs, ad, conf) == [(1, "fixed"), (0, "fixed"), (3, "broken"), (4, "both wrong")]
    none_broken = np.array([0, 0, 0, 0, 2, 0])
    assert pick_explained(labels, zs, none_broken, conf) == [(1, "fixed"), (0, "fixed"), (4, "both wrong"), (3, "both right")]  # .7 > .5 > .4


def test_cache_explanation_equals_explicit_loops():
    g = torch.Generator().manual_seed(3)
    feats = F.normalize(torch.randn(4, 6, generator=g), dim=1)
    keys = F.normalize(torch.randn(9, 6, generator=g), dim=1)
    keys0 = F.normalize(torch.randn(9, 6, generator=g), dim=1)
    key_labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    alpha, beta = 1.7, 5.5
    out = cache_explanation(feats, keys, key_labels, alpha, beta, 3, nearest=3, keys0=keys0)
    for i in range(4):
        aff = [math.exp(-beta * (1 - sum(float(feats[i, d] * keys[m, d]) for d in range(6)))) for m in range(9)]
        aff0 = [math.exp(-beta * (1 - sum(float(feats[i, d] * keys0[m, d]) for d in range(6)))) for m in range(9)]
        near = sorted(range(9), key=lambda m: -aff[m])[:3]
        assert out["nearest"][i].tolist() == near
        assert np.allclose(out["affinity"][i].numpy(), [aff[m] for m in near], rtol=1e-5)
        assert np.allclose(out["affinity0"][i].numpy(), [aff0[m] for m in near], rtol=1e-5)
        for c in range(3):
            votes = alpha * sum(aff[m] for m in range(9) if key_labels[m] == c)
            assert float(out["cache_logits"][i, c]) == pytest.approx(votes, rel=1e-5)


def test_pca_equals_the_covariance_eigenvectors():
    r = _rng(4)
    x = r.normal(size=(60, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])
    other = r.normal(size=(7, 5))
    xy, (oxy,) = project_2d(torch.tensor(x), [torch.tensor(other)])
    mean = x.mean(0)
    vals, vecs = np.linalg.eigh(np.cov((x - mean).T))
    axes = vecs[:, ::-1][:, :2].T
    axes *= np.sign(axes[np.arange(2), np.abs(axes).argmax(1)])[:, None]
    assert np.allclose(xy, (x - mean) @ axes.T, atol=1e-4)
    assert np.allclose(oxy, (other - mean) @ axes.T, atol=1e-4)
    assert variance_share(torch.tensor(x)) == pytest.approx(vals[::-1][:2].sum() / vals.sum(), rel=1e-5)
    with pytest.raises(ValueError, match="pca"):
        project_2d(torch.tensor(x), method="umap")


def test_key_movement_equals_loops():
    g = torch.Generator().manual_seed(5)
    feats = F.normalize(torch.randn(12, 4, generator=g), dim=1)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    keys0 = F.normalize(torch.randn(6, 4, generator=g), dim=1)
    keys = 1.5 * F.normalize(keys0 + 0.3 * torch.randn(6, 4, generator=g), dim=1)  # not unit norm
    key_labels = torch.tensor([0, 0, 1, 1, 2, 2])
    out = key_movement(keys0, keys, key_labels, feats, labels)
    cent = [F.normalize(feats[labels == c].sum(0), dim=0) for c in range(3)]
    for m in range(6):
        y = int(key_labels[m])
        assert out["shift"][m] == pytest.approx(1 - float(keys0[m] @ keys[m]) / 1.5, abs=1e-6)
        assert out["norm"][m] == pytest.approx(math.sqrt(sum(float(v) ** 2 for v in keys[m])), abs=1e-6)
        for tag, k in (("0", keys0), ("", keys)):
            unit = k[m] / k[m].norm()
            assert out["own" + tag][m] == pytest.approx(float(unit @ cent[y]), abs=1e-6)
            assert out["other" + tag][m] == pytest.approx(max(float(unit @ cent[c]) for c in range(3) if c != y), abs=1e-6)


def test_cache_snapshot_keeps_consistent_tensors():
    g = torch.Generator().manual_seed(6)
    C, D, V, k = 5, 8, 3, 2
    text = F.normalize(torch.randn(C, D, generator=g), dim=1)
    labels = torch.arange(C).repeat_interleave(k)
    views = text[labels][None] + 0.8 * torch.randn(V, C * k, D, generator=g)
    shots = Shots(k, 1, F.normalize(views.mean(0), dim=1), views, labels, torch.arange(C * k) % k, C,
                  tuple(f"train/{i}.JPEG" for i in range(C * k)))
    val_labels = torch.arange(C).repeat_interleave(6)
    val_feats = F.normalize(text[val_labels] + 1.2 * torch.randn(len(val_labels), D, generator=g), dim=1)
    val = EvalSet("val", val_feats, val_labels, tuple(range(C)))
    ctx = Context(text, 10.0, None, torch.device("cpu"))
    keys = F.normalize(torch.randn(C * k, D, generator=g), dim=1)
    alpha, beta = 2.0, 3.0

    def head(f):
        return 10.0 * f @ text.T + alpha * torch.exp(-beta * (1 - f @ keys.T)) @ F.one_hot(labels, C).float()
    snap = cache_snapshot(shots, ctx, keys, alpha, beta, head, val, max_classes=4, per_class=3)
    keys0 = F.normalize(views.mean(0), dim=1)
    assert torch.allclose(snap["keys0"].float(), keys0[snap["key_index"]], atol=1e-3)
    assert torch.allclose(snap["keys"].float(), keys[snap["key_index"]], atol=1e-3)
    assert torch.allclose(snap["val_feats"].float(), val_feats[snap["val_index"]], atol=1e-3)
    assert set(val_labels[snap["val_index"]].tolist()) == set(snap["classes"].tolist())
    assert all((val_labels[snap["val_index"]] == c).sum() == 3 for c in snap["classes"].tolist())
    pred = head(val_feats).argmax(1)
    pairs = confused_pairs(val_labels, pred, top=4)
    assert snap["classes"].tolist() == list(dict.fromkeys(c for p in pairs for c in (p["a"], p["b"])))[:4]
    for row, i in enumerate(snap["explained"].tolist()):
        f = val_feats[i]
        aff = torch.exp(-beta * (1 - keys @ f))
        j = snap["explain_nearest"][row, 0]
        assert float(snap["explain_affinity"][row, 0]) == pytest.approx(float(aff.max()), rel=1e-5)
        assert float(snap["explain_affinity0"][row, 0]) == pytest.approx(float(torch.exp(-beta * (1 - keys0[j] @ f))), rel=1e-5)
        top = snap["explain_ad"][row].long()
        assert top[0] == pred[i]
        logits = head(f[None])[0]
        assert torch.allclose(snap["explain_zs_logits"][row] + snap["explain_cache_logits"][row], logits[top], atol=1e-4)
