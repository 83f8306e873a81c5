"""The peer methods against independent transcriptions: loops over samples and pairs, numpy's
covariance, pseudo-inverse and eigenvalues, scipy's L-BFGS."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fewshot.methods.tip_adapter import cache_model as tip
from fewshot.methods import ape, clip_adapter, gda, lp_plus_plus
from fewshot.methods.linear_probe import fit_logistic


def _data(c=5, per_class=(3, 3, 2, 3, 1), d=12, v=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([k for k, n in enumerate(per_class) for _ in range(n)])
    views = F.normalize(torch.randn(v, len(labels), d, generator=g), dim=-1)
    text = F.normalize(torch.randn(c, d, generator=g), dim=-1)
    feats = F.normalize(torch.randn(7, d, generator=g), dim=-1)
    return views, labels, text, feats


def test_clip_adapter_logits_equal_a_per_sample_loop_and_ignore_the_feature_norm():
    _, _, text, feats = _data()
    g = torch.Generator().manual_seed(1)
    w1, w2 = torch.randn(3, 12, generator=g), torch.randn(12, 3, generator=g)
    got = clip_adapter.adapter_logits(feats, w1, w2, text, 0.2, 50.0)
    for i in range(len(feats)):
        hidden = [max(0.0, float(sum(w1[h, d] * feats[i, d] for d in range(12)))) for h in range(3)]
        out = [max(0.0, sum(float(w2[d, h]) * hidden[h] for h in range(3))) for d in range(12)]
        mixed = torch.tensor([0.2 * out[d] + 0.8 * float(feats[i, d]) for d in range(12)])
        ref = 50.0 * (mixed / mixed.norm()) @ text.T
        assert torch.allclose(got[i], ref, atol=1e-4)
    raw = clip_adapter.adapter_logits(3.7 * feats, w1, w2, text, 0.2, 50.0)  # the official code's raw input
    assert torch.allclose(raw, got, atol=1e-4)


def test_gda_equals_its_equations_with_numpy():
    views, labels, text, feats = _data(per_class=(3, 3, 3, 3, 3))
    w, b = gda.gda_head(views, labels, 5)
    x = views.reshape(-1, 12).double().numpy()
    y = labels.repeat(views.shape[0]).numpy()
    mu = np.stack([x[y == c].mean(0) for c in range(5)])
    z = x - mu[y]
    cov = np.cov(z.T)  # unbiased, N - 1
    prec = 12 * np.linalg.pinv((len(x) - 1) * cov + np.trace(cov) * np.eye(12))
    ref_w = mu @ prec
    ref_b = np.array([math.log(1 / 5) - 0.5 * mu[c] @ prec @ mu[c] for c in range(5)])
    assert np.allclose(w.numpy(), ref_w, rtol=1e-4, atol=1e-6) and np.allclose(b.numpy(), ref_b, rtol=1e-4)
    logits = gda.gda_logits(feats, text, w, b, 0.3, 20.0)
    assert torch.allclose(logits, 20.0 * feats @ text.T + 0.3 * (feats @ w.T + b), atol=1e-5)


def test_ape_channel_scores_equal_the_official_pairwise_loop_on_ragged_classes():
    views, labels, text, _ = _data()
    keys = F.normalize(views.mean(0), dim=-1)
    got = ape.channel_scores(text, keys, labels, 0.7)
    vectors = [[text[c]] + [keys[i] for i in range(len(labels)) if labels[i] == c] for c in range(5)]
    sim = torch.zeros(12)
    pairs = 0
    for i in range(5):
        for j in range(5):
            if i != j:
                for a in vectors[i]:
                    for b in vectors[j]:
                        sim += a * b
                        pairs += 1
    var = torch.tensor([float(np.var(text[:, d].numpy(), ddof=1)) for d in range(12)])
    assert torch.allclose(got, -0.7 * sim / pairs + 0.3 * var, atol=1e-6)
    idx = ape.select_channels(text, keys, labels, 0.7)
    assert len(idx) == round(12 * 500 / 1024) and set(idx.tolist()) == set(got.topk(len(idx)).indices.tolist())


def test_ape_logits_and_values_equal_a_loop():
    views, labels, text, feats = _data()
    keys, values = tip.build_cache(views, labels, 5)
    idx = torch.tensor([0, 3, 4, 9, 11])
    ks, ts = F.normalize(keys[:, idx], dim=-1), F.normalize(text[:, idx], dim=-1)
    vw = ape.ape_values(ks, ts, values, 0.3)
    got = ape.ape_logits(feats, text, ks, vw, idx, 1.5, 4.0, 30.0)
    for n in range(len(feats)):
        fs = feats[n, idx] / feats[n, idx].norm()
        for c in range(5):
            cache = 0.0
            for m in range(len(labels)):
                p = torch.softmax(ks[m] @ ts.T, 0)[labels[m]]
                prior = math.exp(0.3 * math.log2((1 + 1e-6) / (float(p) + 1e-6)))
                cache += math.exp(-4.0 * (1 - float(fs @ ks[m]))) * float(values[m, c]) * prior
            assert float(got[n, c]) == pytest.approx(30.0 * float(feats[n] @ text[c]) + 1.5 * cache, rel=1e-4)


def test_search_with_separate_cache_features_equals_brute_force():
    views, labels, text, _ = _data(per_class=(3, 3, 3, 3, 3))
    keys, values = tip.build_cache(views, labels, 5)
    idx = torch.tensor([1, 2, 5, 7])
    ks = F.normalize(keys[:, idx], dim=-1)
    q = F.normalize(views[1], dim=-1)
    alphas, betas = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([0.5, 5.0])
    grid = tip.search(q, labels, text, ks, values, alphas, betas, 20.0, exclude=torch.arange(15),
                      cache_feats=F.normalize(q[:, idx], dim=-1))
    for bi, b in enumerate(betas):
        for ai, a in enumerate(alphas):
            hits = 0
            for i in range(15):
                keep = [j for j in range(15) if j != i]
                logit = ape.ape_logits(q[i:i + 1], text, ks[keep], values[keep], idx, a, b, 20.0)
                hits += int(logit.argmax() == labels[i])
            assert grid[bi, ai].item() == pytest.approx(hits / 15)


def test_ape_t_logits_equal_the_explicit_construction():
    views, labels, text, feats = _data()
    keys, values = tip.build_cache(views, labels, 5)
    idx = torch.tensor([2, 6, 8])
    g = torch.Generator().manual_seed(2)
    res, weights = torch.randn(5, 3, generator=g) * 0.1, torch.rand(len(labels), generator=g) + 0.5
    got = ape.ape_t_logits(feats, text, keys, values, labels, res, weights, idx, 2.0, 1.0, 10.0)
    text_new, keys_new = text.clone(), keys.clone()
    for c in range(5):
        text_new[c, idx] += res[c]
    for m in range(len(labels)):
        keys_new[m, idx] += res[labels[m]]
    ref = 10.0 * feats @ text_new.T + 2.0 * torch.exp(-1.0 * (1 - feats @ keys_new.T)) @ (values * weights[:, None])
    assert torch.allclose(got, ref, atol=1e-5)


def test_lp_plus_plus_initial_alpha_is_the_official_own_class_similarity():
    """The official calculate_init_alpha, transcribed as loops: one-hot ⊙ (features @ text), the
    mean over each class's shots, × shots × 250 / shots, the mean over classes."""
    torch.manual_seed(0)
    C, D, shots = 4, 6, 3
    labels = torch.arange(C).repeat_interleave(shots)
    feats = torch.nn.functional.normalize(torch.randn(C * shots, D), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(C, D), dim=-1)
    sims = feats @ text.T
    alpha_tilde = []
    for c in range(C):
        rows = [i for i in range(len(labels)) if labels[i] == c]
        alpha_tilde.append(sum(float(sims[i, c]) for i in rows) / len(rows) * shots)
    expected = sum(250 / shots * a for a in alpha_tilde) / C
    got = lp_plus_plus.init_alpha(feats, labels, text, C)
    assert abs(got - expected) < 1e-3
    assert abs(got - 250 * float(sims.mean())) > 1.0  # not the whole-matrix mean of the old code


def test_lp_plus_plus_step_sizes_and_logits():
    views, labels, text, feats = _data()
    x = views[0]
    lr_w, lr_a = lp_plus_plus.step_sizes(x, text)
    n = len(x)
    assert lr_w == pytest.approx(4 * n / np.linalg.eigvalsh((x.T @ x).double().numpy())[-1], rel=1e-6)
    assert lr_a == pytest.approx(n / (4 * max(sum(float(x[i] @ text[k]) ** 2 for i in range(n)) for k in range(5))), rel=1e-5)
    wv, b, alpha = torch.randn(5, 12), torch.randn(5), torch.rand(5)
    ref = torch.stack([torch.stack([feats[i] @ wv[c] + b[c] + alpha[c] * feats[i] @ text[c] for c in range(5)])
                       for i in range(len(feats))])
    assert torch.allclose(lp_plus_plus.lp_logits(feats, wv, b, alpha, text), ref, atol=1e-5)


@pytest.mark.parametrize("zero_shot_init", [False, True])
def test_logistic_probe_equals_scipy_lbfgs(zero_shot_init):
    from scipy.optimize import minimize

    views, labels, text, _ = _data(per_class=(3, 3, 3, 3, 3))
    x, y = views.reshape(-1, 12), labels.repeat(4)
    w0 = 5.0 * text if zero_shot_init else torch.zeros(5, 12)
    reg = 1e-2
    w, b = fit_logistic(x, y, 5, reg, w0 if zero_shot_init else None, max_iter=500)
    xd, yd, w0d = x.double().numpy(), y.numpy(), w0.double().numpy()

    def objective(theta):
        W, B = theta[:60].reshape(5, 12), theta[60:]
        z = xd @ W.T + B
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return -logp[np.arange(len(yd)), yd].mean() + reg * ((W - w0d) ** 2).sum()

    ref = minimize(objective, np.concatenate([w0d.ravel(), np.zeros(5)]), method="L-BFGS-B",
                   options={"maxiter": 5000, "gtol": 1e-10, "ftol": 1e-15}).x
    ours = np.concatenate([w.double().numpy().ravel(), b.double().numpy()])
    assert objective(ours) == pytest.approx(objective(ref), abs=1e-6)
    assert np.allclose(ours, ref, atol=2e-3)


def test_taskres_logits_and_one_adam_step_equal_the_equations():
    """logits = s·f̂·normalise(W + αX)ᵀ in a loop; at X = 0 they are zero-shot's; one Adam step of
    the training equals the step computed from finite-difference gradients of that loop."""
    from types import SimpleNamespace

    from fewshot.methods import taskres

    views, labels, text, _ = _data()
    feats = views[0]  # [12, 12]: one feature per labelled image
    g = torch.Generator().manual_seed(2)
    x = torch.randn(*text.shape, generator=g, dtype=torch.float64)

    def loop_loss(res):  # cross-entropy of the paper's logits, written out
        heads = []
        for c in range(len(text)):
            v = [float(text[c, d]) + 0.5 * float(res[c, d]) for d in range(text.shape[1])]
            n = math.sqrt(sum(t * t for t in v))
            heads.append([t / n for t in v])
        total = 0.0
        for i in range(len(feats)):
            fn = math.sqrt(sum(float(t) ** 2 for t in feats[i]))
            z = [20.0 * sum(float(feats[i, d]) / fn * h[d] for d in range(len(h))) for h in heads]
            m = max(z)
            total += m + math.log(sum(math.exp(t - m) for t in z)) - z[int(labels[i])]
        return total / len(feats), z

    got = taskres.taskres_logits(feats.double(), text.double(), x, 0.5, 20.0)
    assert abs(float(got[-1].sum()) - sum(loop_loss(x)[1])) < 1e-9
    assert torch.allclose(taskres.taskres_logits(feats, text, torch.zeros_like(text), 0.5, 20.0),
                          20.0 * F.normalize(feats, dim=-1) @ text.T)  # X = 0: zero-shot CLIP
    eps, grad = 1e-6, torch.zeros_like(x)
    for c in range(x.shape[0]):
        for d in range(x.shape[1]):
            e = torch.zeros_like(x)
            e[c, d] = eps
            grad[c, d] = (loop_loss(x + e)[0] - loop_loss(x - e)[0]) / (2 * eps)
    res = torch.nn.Parameter(x.clone())
    opt = torch.optim.Adam([res], lr=1e-2)
    F.cross_entropy(taskres.taskres_logits(feats.double(), text.double(), res, 0.5, 20.0), labels).backward()
    opt.step()
    adam = x - 1e-2 * grad / (grad.abs() + 1e-8)  # Adam's first step: lr·g/(|g| + eps)
    assert torch.allclose(res.detach(), adam, atol=1e-6)
    # the method trains the residual from zero and says what it used
    shots = SimpleNamespace(views=F.normalize(feats, dim=-1)[None].repeat(2, 1, 1), labels=labels,
                            shots=2, seed=0)
    head = taskres.fit(shots, SimpleNamespace(text_weights=text, logit_scale=20.0, progress=False))
    assert head.hyperparameters == {"alpha": 0.5, "epochs": 100, "lr": 2e-4, "batch_size": 256,
                                    "weight_decay": 5e-4, "head": "run", "recipe": "default"}
    assert head.tuned_on == "default" and head.state["residual"].abs().max() > 0
    before = F.cross_entropy(20.0 * F.normalize(feats, dim=-1) @ text.T, labels)
    assert F.cross_entropy(head.logits(feats), labels) < before  # training lowered the loss
