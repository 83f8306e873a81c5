"""Merging rules against hand-computed merges and a least-squares solver."""
import numpy as np
import pytest
import torch

from fewshot.merging import rules as merging
from fewshot.merging.interpolate import interpolate


def _m(**tensors):
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in tensors.items()}


def test_average_and_task_arithmetic_by_hand():
    base = _m(w=[0.0, 0.0], b=[1.0])
    a, b = _m(w=[2.0, 0.0], b=[3.0]), _m(w=[0.0, 4.0], b=[1.0])
    assert merging.simple_average([a, b])["w"].tolist() == [1.0, 2.0]
    ta = merging.task_arithmetic(base, [a, b], 0.5)  # 0 + 0.5·((2,0) + (0,4)); 1 + 0.5·(2 + 0)
    assert ta["w"].tolist() == [1.0, 2.0] and ta["b"].tolist() == [2.0]


def test_ties_trims_elects_and_averages_disjointly_by_hand():
    base = _m(w=[0.0, 0.0, 0.0, 0.0])
    # keep = 0.5 of d = 4: the reference code keeps |τ| ≥ its (4 − 2) = 2nd smallest magnitude
    t1 = _m(w=[3.0, -1.0, 0.2, 2.0])   # 2nd smallest |τ| = 1: keeps 3, -1, 2
    t2 = _m(w=[-1.0, -2.0, 0.1, 4.0])  # keeps -1, -2, 4
    t3 = _m(w=[2.0, 0.5, -3.0, -1.0])  # keeps 2, -3, -1
    merged = merging.ties(base, [t1, t2, t3], lam=1.0, keep=0.5)["w"]
    # trimmed: (3, -1, 0, 2), (-1, -2, 0, 4), (2, 0, -3, -1); mass: +4, -3, -3, +5
    # disjoint means of the agreeing entries: (3+2)/2, (-1-2)/2, -3, (2+4)/2
    assert merged.tolist() == [2.5, -1.5, -3.0, 3.0]
    half = merging.ties(base, [t1, t2, t3], lam=0.5, keep=0.5)["w"]
    assert half.tolist() == [1.25, -0.75, -1.5, 1.5]
    summed = merging.ties(base, [t1, t2, t3], lam=1.0, keep=0.5, merge_func="sum")["w"]
    assert summed.tolist() == [5.0, -3.0, -3.0, 6.0]  # FusionBench's default: the agreeing entries' sum
    with pytest.raises(ValueError, match="merge_func"):
        merging.ties(base, [t1, t2, t3], merge_func="max")


def _fisher_case(seed=0, n=3):
    g = torch.Generator().manual_seed(seed)
    models = [{"w": torch.randn(3, 4, generator=g, dtype=torch.float64), "b": torch.randn(4, generator=g, dtype=torch.float64)}
              for _ in range(n)]
    fishers = [{"w": torch.rand(3, 4, generator=g, dtype=torch.float64) * 10.0 ** (3 * i),  # norms 3 decades apart
                "b": torch.rand(4, generator=g, dtype=torch.float64) * 10.0 ** (3 * i)} for i in range(n)]
    return models, fishers


def test_normalised_fisher_merge_is_fusionbenchs_formula_entry_by_entry():
    models, fishers = _fisher_case()
    eps, c = 1e-6, [0.5, 0.3, 0.2]
    got = merging.fisher_merge(models, fishers, coefficients=c, floor=eps, normalize=True)
    # by hand, one entry at a time: ‖F_i‖ over every entry of model i; c_i ← c_i·(1/(‖F_i‖+ε)) / Σ_j 1/(‖F_j‖+ε)
    norms = [np.sqrt(sum(float(v) ** 2 for k in f for v in f[k].reshape(-1))) for f in fishers]
    inv = [1 / (x + eps) for x in norms]
    cs = [ci * v / sum(inv) for ci, v in zip(c, inv)]
    for k in ("w", "b"):
        for idx in np.ndindex(*models[0][k].shape):
            num = sum(ci * (float(f[k][idx]) + eps) * float(m[k][idx]) for ci, f, m in zip(cs, fishers, models))
            den = sum(ci * (float(f[k][idx]) + eps) for ci, f in zip(cs, fishers))
            assert float(got[k][idx]) == pytest.approx(num / den, rel=1e-12)


def test_normalisation_makes_the_merge_blind_to_each_experts_fisher_scale():
    """The point of FusionBench's normalisation: an expert whose Fisher is 1,000× larger overall
    (a more peaked softmax) no longer rules the merge; without it, it does."""
    models, fishers = _fisher_case()
    flat = [{k: v / 10.0 ** (3 * i) for k, v in f.items()} for i, f in enumerate(fishers)]  # same shapes, one scale
    a = merging.fisher_merge(models, fishers, normalize=True, floor=0.0)
    b = merging.fisher_merge(models, flat, normalize=True, floor=0.0)
    assert all(torch.allclose(a[k], b[k], rtol=1e-10, atol=0) for k in a)
    plain = merging.fisher_merge(models, fishers, floor=0.0)
    ruled = {k: (plain[k] - models[2][k]).abs().max() for k in plain}  # the 10⁶-scale expert
    assert max(ruled.values()) < 0.05 and (a["w"] - models[2]["w"]).abs().max() > 0.1


def test_wise_ft_fisher_interpolation_is_the_weighted_mean_entry_by_entry():
    g = torch.Generator().manual_seed(0)
    t0 = {"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g)}
    t1 = {"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g)}
    f0, f1 = {"w": torch.rand(3, 4, generator=g)}, {"w": torch.rand(3, 4, generator=g)}
    f0["w"][0, 0] = 0.0  # below the floor
    got = interpolate(t0, t1, 0.3, fishers=(f0, f1), fisher_floor=1e-8)
    for i in range(3):
        for j in range(4):
            a, b = 0.7 * max(float(f0["w"][i, j]), 1e-8), 0.3 * max(float(f1["w"][i, j]), 1e-8)
            ref = (a * float(t0["w"][i, j]) + b * float(t1["w"][i, j])) / (a + b)
            assert abs(float(got["w"][i, j]) - ref) < 1e-6
    assert torch.allclose(got["b"], 0.7 * t0["b"] + 0.3 * t1["b"])  # no Fisher: plain interpolation
    with pytest.raises(KeyError, match="only one"):
        interpolate(t0, t1, 0.3, fishers=({"w": f0["w"], "b": torch.ones(4)}, f1))


def test_regmean_equals_least_squares_on_the_stacked_inputs():
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(50, 6)), rng.normal(size=(40, 6)) + 1.0]
    ws = [rng.normal(size=(3, 6)), rng.normal(size=(3, 6))]
    models = [{"lin.weight": torch.tensor(w, dtype=torch.float32), "lin.bias": torch.tensor([float(i)] * 3)}
              for i, w in enumerate(ws)]
    grams = [{"lin.weight": torch.tensor(x.T @ x, dtype=torch.float32)} for x in xs]
    got = merging.regmean(models, grams, reduce=1.0)
    x_all = np.vstack(xs)
    y_all = np.vstack([x @ w.T for x, w in zip(xs, ws)])
    ref = np.linalg.lstsq(x_all, y_all, rcond=None)[0].T  # the W minimising Σ‖X_i W^T − X_i W_i^T‖²
    assert np.allclose(got["lin.weight"].numpy(), ref, atol=1e-4)
    assert got["lin.bias"].tolist() == [0.5, 0.5, 0.5]  # everything else: averaged
    shrunk = merging.regmean(models, grams, reduce=0.0)  # diagonal Grams only
    d = [np.diag(np.diag(x.T @ x)) for x in xs]
    ref0 = np.linalg.solve(d[0] + d[1], d[0] @ ws[0].T + d[1] @ ws[1].T).T
    assert np.allclose(shrunk["lin.weight"].numpy(), ref0, atol=1e-4)


def test_regmean_with_a_channel_never_active_is_the_minimum_norm_solution():
    """Post-ReLU inputs leave channels at zero: the Gram is singular (CUDA's full-rank solver gave
    NaN for RN50 there). The merge must be the minimum-norm least-squares W (numpy's pinv)."""
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(30, 5)), rng.normal(size=(20, 5))]
    for x in xs:
        x[:, 2] = 0.0  # channel 2 never fires in either task
    ws = [rng.normal(size=(4, 5)), rng.normal(size=(4, 5))]
    models = [{"c.weight": torch.tensor(w, dtype=torch.float32).reshape(4, 5, 1, 1)} for w in ws]
    grams = [{"c.weight": torch.tensor(x.T @ x, dtype=torch.float32)} for x in xs]
    got = merging.regmean(models, grams, reduce=0.9)["c.weight"].reshape(4, 5).numpy()
    g = [0.9 * x.T @ x + 0.1 * np.diag(np.diag(x.T @ x)) for x in xs]
    ref = (np.linalg.pinv(g[0] + g[1]) @ (g[0] @ ws[0].T + g[1] @ ws[1].T)).T
    assert np.isfinite(got).all() and np.allclose(got, ref, atol=1e-4)
    assert np.allclose(got[:, 2], 0.0, atol=1e-6)  # nothing to fit: the minimum norm leaves it at 0


def test_cosine_matrix_and_key_checks():
    taus = [_m(w=[1.0, 0.0]), _m(w=[1.0, 1.0]), _m(w=[-1.0, 0.0])]
    cos = merging.cosine_matrix(taus)
    assert torch.allclose(cos, torch.tensor([[1, 2 ** -0.5, -1], [2 ** -0.5, 1, -(2 ** -0.5)], [-1, -(2 ** -0.5), 1]]), atol=1e-6)
    with pytest.raises(KeyError):
        merging.simple_average([_m(w=[1.0]), _m(v=[1.0])])


def test_the_study_takes_the_task_order_its_folder_lists_else_sorted(tmp_path):
    import json

    from fewshot.merging.study import task_order

    for name in ("b", "a", "c"):
        (tmp_path / name).mkdir()
    assert task_order(tmp_path) == ["a", "b", "c"]
    (tmp_path / ".fewshot-tasks").write_text(json.dumps({"tasks": ["c", "a", "gone", "b"]}))
    assert task_order(tmp_path) == ["c", "a", "b"]


def test_the_souped_task_is_the_one_the_folder_names_else_the_first(tmp_path):
    import json

    from fewshot.merging.study import soup_task
    from fewshot.world.tasks import make_tasks

    names = ["shape", "count", "style"]
    assert soup_task(tmp_path, names) == "shape"  # no marker
    (tmp_path / ".fewshot-tasks").write_text(json.dumps({"tasks": names, "soup": "style"}))
    assert soup_task(tmp_path, names) == "style"
    (tmp_path / ".fewshot-tasks").write_text(json.dumps({"tasks": names, "soup": "gone"}))
    assert soup_task(tmp_path, names) == "shape"
    (tmp_path / ".fewshot-tasks").write_text("not json")
    assert soup_task(tmp_path, names) == "shape"
    world = make_tasks(tmp_path / "world", train=2, val=1, tasks=("shape", "count"))
    assert soup_task(world, ["shape", "count"]) == "count"  # the task world names the four-class task
