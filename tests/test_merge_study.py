"""The merge study end to end on a tiny task world, on both image towers: every record family
appears with honest labels, the adaptive rules say what they adapted on, WEMoE runs on a ViT only,
and the robustness rows cover the seven corruptions of every honest rule listed."""
import pytest
import torch

from fewshot.data.corruptions import CORRUPTIONS
from fewshot.merging.study import ROBUST_RULES, run_study
from fewshot.models.backbones import build_clip, load_backbone, save_checkpoint
from fewshot.run.config import RunConfig
from fewshot.world.tasks import make_tasks


class _Res:
    def __init__(self, bb):
        self.backbone = bb


def _record(method, eval_set, metrics, shots, seed, hp, tuned_on):
    return {"method": method, "eval_set": eval_set, "metrics": metrics, "shots": shots, "seed": seed,
            "hyperparameters": hp, "tuned_on": tuned_on, "role": "merge"}


@pytest.fixture(scope="module")
def tiny_tasks(tmp_path_factory):
    return make_tasks(tmp_path_factory.mktemp("tasks") / "tasks", train=4, val=3, tasks=("shape", "count", "style"))


def test_wemoe_needs_a_vit_tower(tiny_clip_path):
    from fewshot.merging.study.adaptive import is_vit, wemoe_rows

    bb = load_backbone(str(tiny_clip_path))
    assert not is_vit(bb.model.visual)
    assert wemoe_rows(type("C", (), {"visual": bb.model.visual})(), [], {}, [], 2, "cpu", 0, {}) == []


@pytest.mark.parametrize("tower", ["vit"])  # the ResNet tower runs the same code but for WEMoE (2 min here)
def test_the_study_writes_every_family_with_honest_labels(tower, tiny_tasks, tmp_path):
    torch.manual_seed(0)
    vision = dict(vision_layers=(1, 1, 1, 1), vision_width=8) if tower == "rn" else \
        dict(vision_layers=2, vision_width=64, vision_patch_size=8)
    path = tmp_path / f"{tower}.pt"
    save_checkpoint(build_clip(embed_dim=64, image_resolution=32, context_length=16, transformer_width=64,
                               transformer_layers=1, **vision), path)
    bb = load_backbone(str(path))
    cfg = RunConfig(merge_tasks=str(tiny_tasks), merge_shots=4, merge_steps=2, merge_lr=1e-4, adamerging_steps=2,
                    cv_folds=2, seeds=(1, 2), templates="single", cache_dir=str(tmp_path / "cache"), device="cpu",
                    progress=False)
    records, diag = run_study(_Res(bb), cfg, torch.device("cpu"), _record, progress=False)
    methods = {r["method"] for r in records}
    for rule in ("pre-trained", "individual", "average", "task-arithmetic", "ties", "ties-sum", "fisher", "regmean",
                 "adamerging-layer-wise", "concrete-task-arithmetic", "concrete-adamerging-layer-wise", "multi-task"):
        assert f"merge:{rule}" in methods, rule
    assert {r["hyperparameters"]["strategy"] for r in records if r["method"] == "merge:individual"} == {"full", "lora", "l-lora"}
    wemoe = {m for m in methods if "wemoe" in m}
    assert (wemoe == {"merge:wemoe", "merge:e-wemoe", "merge:wemoe (test-unlabeled)", "merge:e-wemoe (test-unlabeled)"}) \
        == (tower == "vit"), wemoe
    if tower == "vit":
        routing = torch.tensor(diag["routing"]["wemoe"])
        assert routing.shape == (3, 2, 3)  # tasks × MoE layers × experts
    for r in records:
        adaptive = any(w in r["method"] for w in ("adamerging", "concrete", "wemoe"))
        if adaptive:
            assert r["tuned_on"] == ("test-unlabeled" if "(test-unlabeled)" in r["method"] else "unlabeled-train"), r
        assert 0 <= r["metrics"]["top1"] <= 100
    robust = [r for r in records if r["method"].startswith("robustness:")]
    got = {(r["method"].split(":", 1)[1], r["eval_set"], r["hyperparameters"]["corruption"]) for r in robust}
    want = {(rule, t, c) for rule in ROBUST_RULES for t in ("shape", "count", "style") for c in ("clean", *CORRUPTIONS)}
    assert got == want
    clean = {(r["method"], r["eval_set"]): r["metrics"]["top1"] for r in robust if r["hyperparameters"]["corruption"] == "clean"}
    merged = {(r["method"], r["eval_set"]): r["metrics"]["top1"] for r in records if r["method"] == "merge:task-arithmetic"
              and r["hyperparameters"]["strategy"] == "full"}
    assert all(clean[("robustness:task-arithmetic", t)] == v for (_, t), v in merged.items())  # clean = the merge row
    assert sorted(diag["cross"]) == ["full", "l-lora", "lora"]
    _check_the_report_parts(records, diag)


def _check_the_report_parts(records, diag):
    """The robustness table is the mean over the tasks of each rule's rows, column by column; the
    adaptive and routing figures draw what the diagnostics hold and cut off no text."""
    import numpy as np

    from fewshot.report.figstyle import texts_outside
    from fewshot.report.merge_adaptive import plot_adaptive, plot_routing, robustness_table

    table = robustness_table(records).splitlines()
    assert table[0].split(" | ")[1:3] == ["clean", CORRUPTIONS[0].replace("_", " ")]
    row = next(line for line in table if line.startswith("| regmean |"))
    want = [np.mean([r["metrics"]["top1"] for r in records if r["method"] == "robustness:regmean"
                     and r["hyperparameters"]["corruption"] == c]) for c in ("clean", *CORRUPTIONS)]
    assert row.split(" | ")[1:-1] == [f"{v:.1f}" for v in want]
    lam = np.array(diag["adaptive"]["lambda"]["adamerging-layer-wise"])
    assert lam.shape == (3, len(diag["adaptive"]["names"]))
    for fig in (plot_adaptive(diag), plot_routing(diag)):
        assert not texts_outside(fig)
    assert np.allclose(plot_adaptive(diag).axes[0].images[0].get_array(), lam)
