"""The report's figures against their data: every value drawn is read back from the Figure's
artists and compared with a mean computed here by a plain loop over the records; a few-shot
figure never shows a merge task; text is readable at page width; the legend sits outside the data.
"""
from collections import defaultdict

import numpy as np
import pytest

from fewshot.report.figstyle import method_style, smallest_text_pt
from fewshot.report.figures import plot_accuracy_vs_shots, plot_grid
from fewshot.methods import list_record_names
from fewshot.protocol.results import make_record
from fewshot.report.shift_figures import plot_id_vs_ood, plot_wise_curve

CTX = {"backbone": "b", "backbone_sha256": "0" * 64, "dataset": "d", "git_rev": "r", "device": "cpu"}
METHODS = ("class-means", "tip-adapter", "ape", "lp++")
SHOTS, SEEDS = (1, 2, 16), (1, 2, 3)


def _rec(method, eval_set, top1, shots=0, seed=None, role="final", hp=None):
    return make_record(method, eval_set, {"top1": float(top1), "top5": 100.0}, context=CTX,
                       shots=shots, seed=seed, hyperparameters=hp, role=role, tuned_on="none")


def world(sets=("val", "sketch")):
    """Random few-shot records on ``sets``, a WiSE-FT sweep, and merge records on two tasks."""
    rng = np.random.default_rng(0)
    recs = [_rec("zero-shot", s, 40 + 5 * i) for i, s in enumerate(sets)]
    for m in METHODS:
        for k in SHOTS:
            recs += [_rec(m, s, rng.uniform(40, 90), k, seed) for s in sets for seed in SEEDS]
    for seed in SEEDS:
        for lam in (0.0, 0.5, 1.0):
            recs += [_rec("wise-tip-adapter", s, rng.uniform(60, 80), 16, seed, "sweep", {"lambda": lam}) for s in sets]
        recs += [_rec("wise-tip-adapter", s, rng.uniform(60, 80), 16, seed, hp={"lambda": 0.5}) for s in sets]
    recs += [_rec("merge:average", t, 50.0, 16, 1, "merge", {"strategy": "full"}) for t in ("colour", "count")]
    recs += [_rec("soup:average", "count", 45.0, 16, 1, "merge")]
    return recs


def mean_of(recs, method, eval_set, shots, role="final"):
    vals = [r["metrics"]["top1"] for r in recs if r["method"] == method and r["eval_set"] == eval_set
            and r["shots"] == shots and r["role"] == role]
    return sum(vals) / len(vals)


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def assert_legend_outside(fig):
    fig.draw_without_rendering()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends
    for leg in legends:
        box = leg.get_window_extent()
        for ax in fig.axes:
            if ax.get_visible() and ax.has_data():
                assert not _overlaps(box, ax.get_window_extent()), "legend over the data"


def test_every_registered_name_has_its_own_colour_and_marker():
    names = list_record_names()
    pairs = [(tuple(method_style(m)["color"]), method_style(m)["marker"]) for m in names]
    assert len(set(pairs)) == len(names)
    assert pairs[names.index("tip-adapter")] != pairs[names.index("ape")]


@pytest.mark.parametrize("sets", [("val", "sketch"), ("val", "a", "b", "r", "sketch")])
def test_accuracy_figure_draws_the_few_shot_sets_and_the_tables_values(sets):
    recs = world(sets)
    fig = plot_accuracy_vs_shots(recs)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == list(sets)  # no merge task, no empty panel
    rows = defaultdict(int)
    for ax in shown:
        rows[round(ax.get_position().y0, 3)] += 1
        handles, labels = ax.get_legend_handles_labels()
        assert sorted(labels) == sorted(["zero-shot", "wise-tip-adapter", *METHODS])  # one line per method
        assert len(labels) == len(set(labels)) and labels[0] == "zero-shot"
        for h, m in zip(handles, labels):
            if m == "zero-shot":
                assert h.get_ydata()[0] == pytest.approx(mean_of(recs, m, ax.get_title(), 0))
                continue
            line = h.lines[0]  # the errorbar's data line
            ks = [k for k in SHOTS if any(r["method"] == m and r["shots"] == k and r["role"] == "final" for r in recs)]
            assert list(line.get_xdata()) == ks
            assert np.allclose(line.get_ydata(), [mean_of(recs, m, ax.get_title(), k) for k in ks])
    assert max(rows.values()) <= 3 and len(rows) == -(-len(sets) // 3)
    assert smallest_text_pt(fig) >= 9
    assert_legend_outside(fig)


def test_id_vs_ood_uses_the_shifts_only_and_puts_zero_shot_where_the_tables_do():
    recs = world()
    fig = plot_id_vs_ood(recs, 16)
    ax = fig.axes[0]
    assert "colour" not in ax.get_ylabel() and "sketch" in ax.get_ylabel()
    handles, labels = ax.get_legend_handles_labels()
    pts = {lab: h.get_offsets()[0] for h, lab in zip(handles, labels) if hasattr(h, "get_offsets")}
    assert np.allclose(pts["zero-shot"], [40.0, 45.0])
    for m in METHODS:
        assert np.allclose(pts[m], [mean_of(recs, m, "val", 16), mean_of(recs, m, "sketch", 16)])
    path = next(h for h, lab in zip(handles, labels) if lab == "wise-tip-adapter (path)")
    for axis, s in ((path.get_xdata(), "val"), (path.get_ydata(), "sketch")):
        assert np.allclose(axis, [np.mean([r["metrics"]["top1"] for r in recs if r["role"] == "sweep"
                                           and r["eval_set"] == s and r["hyperparameters"]["lambda"] == lam])
                                  for lam in (0.0, 0.5, 1.0)])


def test_wise_curve_draws_the_sweep_means_per_set():
    recs = world()
    fig = plot_wise_curve(recs, "wise-tip-adapter", 16)
    lines = {line.get_label(): line for line in fig.axes[0].lines if not line.get_label().startswith("_")}
    assert set(lines) == {"val", "sketch"}
    for s, line in lines.items():
        want = [np.mean([r["metrics"]["top1"] for r in recs if r["role"] == "sweep" and r["eval_set"] == s
                         and r["hyperparameters"]["lambda"] == lam]) for lam in (0.0, 0.5, 1.0)]
        assert np.allclose(line.get_ydata(), want)


def make_grid(shots=16, chosen=(1.0, 2.0)):
    """A 3 × 4 (β × α) grid whose test optimum sits on the largest α."""
    test = np.array([[0.1, 0.2, 0.3, 0.4], [0.2, 0.3, 0.5, 0.9], [0.1, 0.1, 0.2, 0.3]])
    return {"alphas": [0.5, 1.0, 1.5, 2.0], "betas": [1.0, 2.0, 3.0], "test": test.tolist(),
            "loo": (test[::-1] * 0.9).tolist(), "chosen": list(chosen), "shots": shots, "seed": 1,
            "tuned_on": "loo-train"}


def test_grid_figure_marks_the_chosen_point_and_the_optimum_outside_the_legend():
    g = make_grid()
    fig = plot_grid(g)
    test_ax = [ax for ax in fig.axes if ax.get_title().startswith("test")][0]
    mesh = test_ax.collections[0]
    assert np.allclose(np.asarray(mesh.get_array()).reshape(3, 4), 100 * np.array(g["test"]))
    marks = {line.get_marker(): (line.get_xdata()[0], line.get_ydata()[0]) for line in test_ax.lines}
    assert marks["o"] == (2.0, 2.0) and marks["x"] == (1.0, 2.0)  # argmax of test; the chosen point
    assert not any(line.get_clip_on() for line in test_ax.lines)  # an edge point is drawn whole
    assert smallest_text_pt(fig) >= 9
    assert_legend_outside(fig)


def test_example_images_that_are_not_there_leave_a_marked_square(tmp_path):
    """A run folder read where its dataset is not (another machine, a moved dataset): the example
    grid still draws, each missing image a grey square naming the file; present images are drawn."""
    from PIL import Image

    from fewshot.report.figures import plot_examples

    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "a" / "x.png")
    pred = {"labels": [0, 1], "classnames": ["a", "b"], "paths": ["a/x.png", "b/gone.png"], "shots": 16,
            "seed": 1, "dataset_root": str(tmp_path), "predictions": {"zero-shot": [0, 0], "tip-adapter": [0, 1]}}
    fig = plot_examples(pred, "tip-adapter", n=2)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("image not found:\ngone.png") == 1 and not any("x.png" in t for t in texts)
    drawn = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(drawn) == 2 and any(np.asarray(a)[0, 0, 0] == 255 for a in drawn)  # the red file itself
