"""The whole pipeline on a small world with a tiny random CLIP: files, schema, protocol labels."""
import json

import pytest

from fewshot.run.config import RunConfig, load_config
from fewshot.base.errors import ConfigError, MissingStepError
from fewshot.run.launch import run_all
from fewshot.run.pipeline import Run
from fewshot.report.build import build_report


def _cfg(small_world, tiny_clip_path, tmp_path, **kw):
    return RunConfig(data=str(small_world), backbone=str(tiny_clip_path), out=str(tmp_path / "run"),
                     cache_dir=str(tmp_path / "cache"), templates="single", shots=(1, 2), seeds=(1, 2),
                     views=2, beta_steps=4, alpha_steps=3, epochs=2, lambdas=(0.0, 0.5, 1.0),
                     cv_folds=2, clip_lora_iters=2, device="cpu", num_workers=0, progress=False, **kw)


def test_full_run_writes_labelled_records_and_a_report(small_world, tiny_clip_path, tmp_path, capsys):
    run = run_all(_cfg(small_world, tiny_clip_path, tmp_path))
    recs = run.records()
    finals = [r for r in recs if r["role"] == "final"]
    tuned = {(r["method"], r["shots"]): r["tuned_on"] for r in finals}
    assert tuned[("zero-shot", 0)] == "none"
    assert tuned[("tip-adapter", 1)] == "default" and tuned[("tip-adapter", 2)] == "loo-train"
    assert tuned[("wise-tip-adapter", 1)] == "default" and tuned[("wise-tip-adapter", 2)] == "cv-train"
    assert {r["eval_set"] for r in recs} == {"val", "sketch"}
    assert len([r for r in finals if r["method"] == "tip-adapter-f"]) == 2 * 2 * 2  # shots x seeds x sets
    hist = next(r for r in finals if r["method"] == "tip-adapter-f")["extra"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    assert all(0 <= r["metrics"]["top1"] <= r["metrics"]["top5"] <= 100 for r in recs)
    for r in (r for r in finals if r["method"] == "wise-ft-full"):  # test sets encoded at the chosen α, 0.5 and 1
        path = {s["hyperparameters"]["alpha"] for s in recs if s["role"] == "sweep" and s["method"] == r["method"]
                and (s["shots"], s["seed"], s["eval_set"]) == (r["shots"], r["seed"], r["eval_set"])}
        assert path == {0.0, r["hyperparameters"]["alpha"], 0.5, 1.0}
        half = next(d for d in finals if d["method"] == "wise-ft-full-default"
                    and (d["shots"], d["seed"], d["eval_set"]) == (r["shots"], r["seed"], r["eval_set"]))
        on_path = next(s for s in recs if s["role"] == "sweep" and s["method"] == r["method"] and
                       s["hyperparameters"]["alpha"] == 0.5 and (s["shots"], s["seed"], s["eval_set"]) ==
                       (r["shots"], r["seed"], r["eval_set"]))
        assert (half["tuned_on"], half["hyperparameters"]["alpha"]) == ("default", 0.5)
        assert half["metrics"]["top1"] == on_path["metrics"]["top1"]  # the α = 0.5 point of the path
    lora = [r for r in finals if r["method"] == "clip-lora"]
    assert lora and all(r["hyperparameters"]["variant"] == "resnet-attention-pool" for r in lora)
    assert {r["tuned_on"] for r in finals if r["method"] == "wise-clip-lora-default"} == {"default"}
    assert {r["tuned_on"] for r in finals if r["method"] == "wise-linear-default"} == {"default"}
    assert (run.out / "backbone.json").exists()  # later steps read the backbone's identity there
    assert json.loads((run.out / "config.json").read_text())["shots"] == [1, 2]
    assert "Top-1 (%) on sketch" in capsys.readouterr().out
    md = build_report(run.out, tmp_path / "report")
    text = md.read_text()
    for fig in ("accuracy_vs_shots", "accuracy_vs_shots_finetuning", "tip_adapter_grid",
                "tip_adapter_f_training", "path_wise_tip_adapter", "path_wise_linear", "path_wise_ft_full",
                "id_vs_ood", "finetuning_costs", "examples", "analysis_confusions", "analysis_class_gain",
                "analysis_failures", "analysis_features", "analysis_cache"):
        assert f"![{fig}]({fig}.png)" in text and (md.parent / f"{fig}.pdf").exists()
    assert "would not be comparable" in text  # no published ImageNet numbers beside a toy run
    html = (md.parent / "report.html").read_text()
    assert html.count("data:image/png;base64,") == text.count("![") and "<table>" in html  # self-contained
    assert "## Summary" in text and "Zero-shot CLIP reaches" in text


def test_oracle_runs_are_labelled(small_world, tiny_clip_path, tmp_path):
    run = run_all(_cfg(small_world, tiny_clip_path, tmp_path, oracle=True),
                  steps=("splits", "features", "tip_adapter"))
    assert {r["tuned_on"] for r in run.records()} == {"test-oracle"}


def test_a_step_without_its_inputs_names_the_step_to_run(small_world, tiny_clip_path, tmp_path):
    run = Run(_cfg(small_world, tiny_clip_path, tmp_path))
    with pytest.raises(MissingStepError, match="splits step"):
        run.step("tip_adapter")


def test_shipped_configs_load():
    assert load_config("imagenet-rn50").backbone == "RN50"
    course = load_config("coursework")  # the coursework notebook's protocol
    assert (course.oracle, course.templates, course.seeds, course.tip_f_recipe) == (True, "single", (31,), "official")
    assert load_config("miniworld", seeds=[1]).seeds == (1,)
    with pytest.raises(ConfigError, match="shipped: coursework, imagenet-rn50"):
        load_config("nope")
    with pytest.raises(ConfigError, match=r"overrides: unknown config field\(s\) shot;"):
        load_config("miniworld", shot=[1])


def test_set_values_parse_as_python_or_json():
    from fewshot.run.overrides import parse_overrides

    got = parse_overrides(["progress=false", "oracle=True", "shots=[1, 16]", "device=cuda:1", "lr=1e-3"])
    assert got == {"progress": False, "oracle": True, "shots": [1, 16], "device": "cuda:1", "lr": 1e-3}
    words = parse_overrides(["methods=[zero-shot, lp++,taskres]", "ft_alphas=[0,0.5]", "merge_tasks="])
    assert words == {"methods": ["zero-shot", "lp++", "taskres"], "ft_alphas": [0, 0.5], "merge_tasks": ""}
