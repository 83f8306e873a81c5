"""The method protocol: registry, a method added in one module, and the run treating it like any other."""
import sys
import textwrap

import pytest
import numpy as np
import torch
import torch.nn.functional as F

from fewshot.run.config import RunConfig
from fewshot.methods import get_method, list_methods
from fewshot.run.pipeline import Run, list_steps
from fewshot.protocol.method import Context, Shots


def _shots(n_per_class=3, c=4, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(c).repeat_interleave(n_per_class)
    center = F.normalize(torch.randn(len(labels), d, generator=g), dim=-1)
    return Shots(n_per_class, 1, center, center[None].half(), labels,
                 torch.arange(n_per_class).repeat(c), c)


def _ctx(c=4, d=8):
    return Context(F.normalize(torch.randn(c, d), dim=-1), 10.0, RunConfig(), torch.device("cpu"))


def test_registry_order_and_unknown_names():
    names = list_methods()
    assert names[0] == "zero-shot" and names.index("tip-adapter") < names.index("tip-adapter-f") < names.index("wise-tip-adapter")
    with pytest.raises(KeyError, match="unknown method 'nope'; registered: zero-shot"):
        get_method("nope")
    assert all(get_method(n).step in list_steps() for n in names)


def test_class_means_equal_a_loop_over_classes():
    shots, ctx = _shots(), _ctx()
    head = get_method("class-means").fit(shots, ctx)
    feats = F.normalize(torch.randn(5, 8), dim=-1)
    for c in range(4):
        members = [shots.center[i] for i in range(len(shots.labels)) if shots.labels[i] == c]
        proto = sum(members) / len(members)
        proto = proto / proto.norm()
        assert torch.allclose(head.logits(feats)[:, c], 10.0 * feats @ proto, atol=1e-5)


def test_a_method_added_in_one_module_runs_end_to_end(small_world, tiny_clip_path, tmp_path, monkeypatch):
    """The README's recipe: one module that registers a method; nothing else changes."""
    module = tmp_path / "my_method.py"
    module.write_text(textwrap.dedent('''
        from fewshot.protocol.method import Head, Method, register

        def fit(shots, ctx):
            return Head(lambda f: -ctx.logit_scale * f @ ctx.text_weights.T, "none", {"sign": -1})

        register(Method("anti-zero-shot", fit, step="anti", summary="zero-shot, upside down"))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_method  # noqa: F401  (registers)
    from fewshot.protocol import method as protocol

    try:
        cfg = RunConfig(data=str(small_world), backbone=str(tiny_clip_path), out=str(tmp_path / "run"),
                        cache_dir=str(tmp_path / "cache"), templates="single", shots=(2,), seeds=(1,),
                        views=1, methods=("zero-shot", "anti-zero-shot"), device="cpu",
                        num_workers=0, progress=False)
        assert "anti" in list_steps()
        run = Run(cfg)
        for step in ("zeroshot", "splits", "anti"):
            run.step(step)
        recs = {(r["method"], r["eval_set"]): r for r in run.records()}
        assert recs[("anti-zero-shot", "val")]["hyperparameters"] == {"sign": -1}
        assert recs[("anti-zero-shot", "val")]["shots"] == 2
        from fewshot.report.build import build_report

        text = build_report(run.out, tmp_path / "report").read_text()
        assert "anti-zero-shot" in text
    finally:
        protocol._REGISTRY.pop("anti-zero-shot", None)
        sys.modules.pop("my_method", None)


def test_first_best_takes_the_highest_score_and_the_first_of_exact_ties():
    from fewshot.protocol.selection import first_best

    rng = np.random.default_rng(0)
    for _ in range(200):
        scores = list(rng.integers(0, 4, size=int(rng.integers(1, 8))) / 4)
        best = 0
        for i, v in enumerate(scores):  # a loop: strictly better replaces, a tie keeps the earlier
            if v > scores[best]:
                best = i
        assert first_best(scores) == best
    with pytest.raises(ValueError):
        first_best([])
