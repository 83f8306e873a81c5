"""The method contract, checked over the registry (as timm tests every registered model): every
method in ``list_methods()``, fitted by the pipeline on a tiny world, gives finite ``[n, C]``
logits for every test set; its records carry JSON-able hyperparameters and a ``tuned_on`` from the
allowed set (never ``test-oracle`` outside an oracle run); and its saved state reloads from the
run folder with the same hyperparameters, the same label and finite tensors, and rebuilds
(``Method.rebuild``) a head whose logits on the val set are the fitted head's, bit for bit."""
import dataclasses
import json

import torch

from fewshot.methods import get_method, list_methods
from fewshot.protocol.method import TUNED_ON
from fewshot.run import pipeline
from fewshot.run.config import RunConfig
from fewshot.run.launch import run_all


# Methods whose head cannot be rebuilt from the run folder (Method.rebuild is None), each with
# the reason. None today: every registered method rebuilds.
NOT_REBUILT: dict = {}


def _capturing(method, heads: dict):
    """``method`` whose fit keeps each fitted Head under id(head.logits) -> (name, shots, seed, head)."""
    def fit(shots, ctx):
        head = method.fit(shots, ctx)
        heads[id(head.logits)] = (method.name, 0 if shots is None else shots.shots,
                                  None if shots is None else shots.seed, head)
        return head
    return dataclasses.replace(method, fit=fit)


def test_every_registered_method_keeps_the_contract(small_world, tiny_clip_path, tmp_path, monkeypatch):
    seen = {}  # what -> [(n, C), ...]: every logits tensor the pipeline scored
    heads = {}  # id(logits fn) -> (name, shots, seed, Head): every method's own fitted head
    scored = {}  # (name, shots, seed) -> (val feats [n, D], logits [n, C], own encoder?) as scored
    real = pipeline.evaluate
    methods = {name: _capturing(get_method(name), heads) for name in list_methods()}
    monkeypatch.setattr(pipeline, "get_method", methods.__getitem__)

    def watched(fn, sets, what="a head", **kw):
        if id(fn) in heads:  # a method's own head (not its sweep nor a companion), on what the run gives it
            name, k, seed, head = heads[id(fn)]
            scored.setdefault((name, k, seed), (sets["val"].feats, fn(sets["val"].feats), head.encoder is not None))
        def logits(feats):
            out = fn(feats)
            assert out.dim() == 2 and out.shape[0] == feats.shape[0], f"{what}: logits {tuple(out.shape)}"
            assert torch.isfinite(out).all(), f"{what}: non-finite logits"
            seen.setdefault(what.split(" (")[0], []).append(tuple(out.shape))
            return out
        return real(logits, sets, what, **kw)

    monkeypatch.setattr(pipeline, "evaluate", watched)
    cfg = RunConfig(data=str(small_world), backbone=str(tiny_clip_path), out=str(tmp_path / "run"),
                    cache_dir=str(tmp_path / "cache"), templates="single", shots=(1, 2), seeds=(1,),
                    views=2, beta_steps=3, alpha_steps=3, epochs=1, lambdas=(0.0, 0.5, 1.0), cv_folds=2,
                    clip_lora_iters=1, ft_epochs=1, coop_epochs=1, device="cpu", num_workers=0, progress=False)
    run = run_all(cfg, stream=open("/dev/null", "w"))
    records = run.records()
    classes = len(run.dataset.classnames)
    for name in list_methods():
        method = get_method(name)
        assert name in seen, f"{name}: never scored"
        assert {c for _, c in seen[name]} == {classes}, f"{name}: logits over {seen[name]}, not {classes} classes"
        mine = [r for r in records if r["method"] in (name, *method.companions) and r["role"] == "final"]
        assert mine, f"{name}: no final record"
        for r in mine:
            assert r["tuned_on"] in TUNED_ON and r["tuned_on"] != "test-oracle", (name, r["tuned_on"])
            assert json.loads(json.dumps(r["hyperparameters"])) == r["hyperparameters"], name
        grid = [(0, None)] if method.shot_free else [(k, 1) for k in run.shots_of(method)]
        for k, seed in grid:
            fitted = run.dir.load_fitted(name, k, seed, run.digest, method.step)
            rec = next(r for r in mine if r["method"] == name and r["shots"] == k and r["eval_set"] == "val")
            assert (fitted.hyperparameters, fitted.tuned_on) == (rec["hyperparameters"], rec["tuned_on"]), name
            for key, t in fitted.state.items():
                assert not torch.is_tensor(t) or not t.is_floating_point() or torch.isfinite(t).all(), (name, key)
            if name in NOT_REBUILT:
                assert method.rebuild is None, f"{name} rebuilds now: drop it from NOT_REBUILT"
                continue
            assert method.rebuild is not None, f"{name}: no Method.rebuild (or list it in NOT_REBUILT with the reason)"
            _check_rebuilt(run, name, k, seed, scored[(name, k, seed)])


def _check_rebuilt(run, name, k, seed, fitted_scores) -> None:
    """The head rebuilt from the run folder gives the fitted head's val logits bit for bit (and,
    for a head with its own encoder, the same val features through the rebuilt encoder): the
    rebuild goes through the same function as the fit's final head, on the same tensors and the
    same device (CPU), so no tolerance is due; a state saved in another dtype, or too little of
    it, changes the bits."""
    feats, logits, own_encoder = fitted_scores
    head = run.rebuild(name, k, seed)
    assert (head.encoder is not None) == own_encoder, f"{name}: rebuilt encoder {head.encoder}, fitted has own: {own_encoder}"
    if head.encoder is not None:
        mine = head.encoder("val")
        assert torch.equal(mine, feats), f"{name} ({k}-shot): rebuilt encoder's val features differ by {(mine - feats).abs().max()}"
    got = head.logits(feats)
    assert got.dtype == logits.dtype and got.shape == logits.shape, (name, got.dtype, logits.dtype, got.shape)
    assert torch.equal(got, logits), f"{name} ({k}-shot): rebuilt logits differ by {(got - logits).abs().max()}"


def test_report_roles_are_declared_by_the_methods_not_named_by_the_report():
    """The report draws what methods declare (Method.report); no module outside fewshot/methods
    names a registered method in a string (the world's calibration checks excepted: they are
    claims about named methods)."""
    import re
    from pathlib import Path

    from fewshot.methods import baseline_method, list_record_names, with_report_role

    assert baseline_method() == "zero-shot"
    assert with_report_role("grid") == ["tip-adapter"] and with_report_role("training") == ["tip-adapter-f"]
    root = Path(__file__).resolve().parent.parent / "fewshot"
    pattern = re.compile("|".join(r"[\"']" + re.escape(n) + r"[\"']" for n in sorted(list_record_names(), key=len, reverse=True)))
    found = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("methods/", "world/")):
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code) and "ft_recipe" not in code and "RECIPES" not in code:
                found.append(f"{rel}:{i}: {line.strip()}")
    assert not found, "\n".join(found)
