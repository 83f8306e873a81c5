"""Long fits survive a kill (checkpoint per epoch, resume equals an uninterrupted fit) and a full
disk stops a run with one error line, leaving every earlier file as it was."""
import errno
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fewshot import cli
from fewshot.models.backbones import load_backbone
from fewshot.training.checkpoint import Checkpoint
from fewshot.training.encoder import Recipe, build_classifier, trainable_state
from fewshot.training.encoder_loop import train
from fewshot.methods import coop
from fewshot.run.config import RunConfig
from fewshot.methods.finetune import _Noise


class _Killed(Exception):
    pass


class _DiesAfter(Checkpoint):
    """A checkpoint whose process 'dies' right after saving epoch ``k`` (a runtime reset)."""

    def __init__(self, *args, k: int):
        super().__init__(*args)
        self.k = k

    def save(self, epoch, *args, **kw):
        super().save(epoch, *args, **kw)
        if epoch == self.k:
            raise _Killed(epoch)


def _coop_fit(model, views, labels, epochs, checkpoint=None):
    parts = coop.prompt_parts(model, ["cat", "dog", "red bird"])
    cfg = RunConfig()  # CoOp's published rate and batch (the config's defaults)
    return coop._train(parts, views, labels, 100.0, 3, False, "coop", (epochs, cfg.coop_lr, cfg.coop_batch_size),
                       checkpoint)


def test_a_coop_fit_killed_after_an_epoch_resumes_to_the_uninterrupted_result(tiny_clip_path, tmp_path):
    model = load_backbone(str(tiny_clip_path)).model
    gen = torch.Generator().manual_seed(0)
    views = F.normalize(torch.randn(2, 70, model.text_projection.shape[1], generator=gen), dim=-1)
    labels = torch.randint(0, 3, (70,), generator=gen)  # 70 shots: 2 batches of 32 per epoch
    ref_ctx, ref_hist = _coop_fit(model, views, labels, 4)
    path = tmp_path / "ck.pt"
    with pytest.raises(_Killed):
        _coop_fit(model, views, labels, 4, _DiesAfter(path, "d1", "coop main", k=2))
    assert torch.load(path, weights_only=True)["epoch"] == 2
    ctx, hist = _coop_fit(model, views, labels, 4, Checkpoint(path, "d1", "coop main"))
    assert torch.equal(ctx, ref_ctx) and hist == ref_hist
    assert not torch.equal(ctx, coop.prompt_parts(model, ["cat"]).ctx)  # it did train


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_an_encoder_fine_tuning_killed_mid_way_resumes_to_the_uninterrupted_state(strategy, tiny_clip_path, tmp_path):
    model = load_backbone(str(tiny_clip_path)).model
    heads = F.normalize(torch.randn(3, model.text_projection.shape[1], generator=torch.Generator().manual_seed(1)), dim=-1)
    recipe = Recipe(epochs=3, lr=1e-3, batch_size=4)
    pool, rows, labels = _Noise(10, 36), torch.arange(10), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])

    def fit(checkpoint=None):
        clf, groups = build_classifier(model, heads, 100.0, strategy, "cpu", recipe, seed=5)
        history = train(clf, groups, pool, rows, labels, recipe, "cpu", seed=5, progress=False, checkpoint=checkpoint)
        return trainable_state(clf), history

    ref_state, ref_hist = fit()
    path = tmp_path / "ft.pt"
    with pytest.raises(_Killed):
        fit(_DiesAfter(path, "d", "ft", k=1))
    state, hist = fit(Checkpoint(path, "d", "ft"))
    assert hist == ref_hist and state.keys() == ref_state.keys()
    assert all(torch.equal(state[k], ref_state[k]) for k in state)


def test_a_checkpoint_of_another_config_is_ignored_with_a_warning(tmp_path):
    p = torch.nn.Parameter(torch.ones(2))
    Checkpoint(tmp_path / "c.pt", "digest-a", "fit").save(1, [p], {}, {})
    with pytest.warns(UserWarning, match="another config or fit; the fit starts over"):
        assert Checkpoint(tmp_path / "c.pt", "digest-b", "fit").resume([p], {}, {}) is None


def _quick(world, ckpt, tmp, *extra):
    return ["run", "--config", "miniworld-quick", "--set", f"data={world}", f"backbone={ckpt}",
            f"out={tmp / 'run'}", f"cache_dir={tmp / 'cache'}", "merge_tasks=", "shots=[1,2]", "seeds=[1]", *extra]


def test_a_prompt_step_killed_after_an_epoch_reruns_to_the_same_records(small_world, tiny_clip_path, tmp_path,
                                                                         monkeypatch):
    from fewshot.run.rundir import RunDir

    assert cli.main(_quick(small_world, tiny_clip_path, tmp_path, "--steps", "zeroshot", "splits", "features", "prompt")) == 0
    clean = RunDir(tmp_path / "run").read_records("coop")
    every = RunDir(tmp_path / "run").read_records()
    half = {(r["eval_set"], r["shots"]): r for r in every if r["method"] == "wise-coop-default"}
    swept = {(r["eval_set"], r["shots"]): r for r in every if r["method"] == "wise-coop" and r["role"] == "sweep"
             and r["hyperparameters"].get("alpha") == 0.5}
    assert half and half.keys() == swept.keys()  # WiSE-FT's own default beside the held-out choice
    assert all(r["tuned_on"] == "default" and r["hyperparameters"] == {"alpha": 0.5} for r in half.values())
    assert all(half[k]["metrics"]["top1"] == swept[k]["metrics"]["top1"] for k in half)
    saves = []

    save = Checkpoint.save
    dies_after_first = lambda self, epoch, *a, **kw: (save(self, epoch, *a, **kw), saves.append(self.path),  # noqa: E731
                                                      (_ for _ in ()).throw(_Killed(epoch)))
    monkeypatch.setattr(Checkpoint, "save", dies_after_first)
    with pytest.raises(_Killed):
        cli.main(_quick(small_world, tiny_clip_path, tmp_path, "--steps", "prompt"))
    assert saves and saves[0].exists() and "checkpoints" in saves[0].parts  # the epoch is kept in the run folder
    monkeypatch.setattr(Checkpoint, "save", save)
    assert cli.main(_quick(small_world, tiny_clip_path, tmp_path, "--steps", "prompt")) == 0
    strip = lambda recs: [{k: v for k, v in r.items() if k != "date"} for r in recs]  # noqa: E731
    assert strip(RunDir(tmp_path / "run").read_records("coop")) == strip(clean)
    assert not (tmp_path / "run" / "checkpoints" / "coop").exists()  # removed once the results are written


def _tree(root: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("where", ["write", "replace"])
def test_a_full_disk_is_one_error_line_naming_the_path_and_earlier_files_stay(where, small_world, tiny_clip_path,
                                                                            tmp_path, monkeypatch, capsys):
    assert cli.main(_quick(small_world, tiny_clip_path, tmp_path, "--steps", "zeroshot", "splits", "features",
                           "tip_adapter")) == 0
    before = {**_tree(tmp_path / "run"), **_tree(tmp_path / "cache")}
    capsys.readouterr()

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "replace":  # the rename of a finished temporary file fails
        real = os.replace
        monkeypatch.setattr(os, "replace", lambda a, b: full() if "fitted" in str(b) else real(a, b))
    else:  # the write itself fails part-way
        real = torch.save
        monkeypatch.setattr(torch, "save", lambda obj, f: (real(obj, f), full()) if "fitted" in str(f) else real(obj, f))
    assert cli.main(_quick(small_world, tiny_clip_path, tmp_path, "--steps", "tip_adapter")) == 1
    err = "".join(line for line in capsys.readouterr().err.splitlines(True) if not line.startswith("warning: "))
    target = tmp_path / "run" / "fitted" / "tip-adapter" / "shots1_seed1.pt"  # the step's first write
    assert err.startswith(f"error: no space left to write {target} (it needs about ") and err.count("\n") == 1, err
    assert "Traceback" not in err and " free on that disk or quota" in err
    assert {**_tree(tmp_path / "run"), **_tree(tmp_path / "cache")} == before  # byte for byte, no temporary file
