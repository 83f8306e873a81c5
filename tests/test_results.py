import json

import fewshot.methods  # noqa: F401  (the registry: table order, renamed records)

from fewshot.protocol.results import append_records, format_table, load_records, make_record, summarize

CTX = {"backbone": "b", "backbone_sha256": "0" * 64, "dataset": "d", "git_rev": "r", "device": "cpu"}


def _rec(method, shots, seed, top1, tuned_on, role="final", eval_set="val"):
    return make_record(method, eval_set, {"top1": top1, "top5": 100.0}, context=CTX, shots=shots,
                       seed=seed, tuned_on=tuned_on, role=role)


def test_summary_mean_std_and_tuning_labels(tmp_path):
    recs = [_rec("zero-shot", 0, None, 50.0, "none"),
            _rec("tip", 1, 1, 60.0, "default"), _rec("tip", 1, 2, 62.0, "default"),
            _rec("tip", 4, 1, 70.0, "loo-train"), _rec("tip", 4, 2, 74.0, "loo-train"),
            _rec("tip", 4, 3, 72.0, "loo-train"), _rec("wise", 4, 1, 99.0, "none", role="sweep")]
    append_records(tmp_path / "r.jsonl", recs[:3])
    append_records(tmp_path / "r.jsonl", recs[3:])
    back = load_records(tmp_path / "r.jsonl")
    assert back == json.loads(json.dumps(recs))  # round trip
    rows = {(r["method"], r["shots"]): r for r in summarize(back)}
    assert ("wise", 4) not in rows  # sweep points are not results
    assert rows[("tip", 1)]["mean"] == 61.0 and abs(rows[("tip", 1)]["std"] - 2 ** 0.5) < 1e-12
    assert rows[("tip", 4)]["mean"] == 72.0 and rows[("tip", 4)]["std"] == 2.0  # sample std
    assert rows[("tip", 4)]["tuned_on"] == "loo-train" and rows[("tip", 1)]["tuned_on"] == "default"
    assert rows[("zero-shot", 0)]["n"] == 1
    table = format_table(summarize(back))
    assert "| tip | 61.00 ± 1.41 | 72.00 ± 2.00 | default/loo-train |" in table
    assert "| zero-shot | 50.00 | 50.00 | none |" in table
    assert table.splitlines()[2].startswith("| zero-shot |")  # registered methods first, zero-shot on top
    single = format_table(summarize([_rec("tip", 1, 1, 60.0, "default")]))
    assert "| tip | 60.00 | default |" in single  # one seed: no "± 0.00"


def test_a_run_folder_of_an_older_version_reads_under_the_new_record_names(tmp_path):
    """WiSE-FT of Tip-Adapter's keys was recorded as wise-ft… before it became wise-tip-adapter…:
    its records, fitted state and predictions in an existing folder still read, under the new
    names, and a config that lists the old name means the new one."""
    import torch

    from fewshot.protocol.method import Fitted
    from fewshot.run.config import load_config
    from fewshot.run.rundir import RunDir

    rd = RunDir(tmp_path / "run")
    (rd.root / "results").mkdir(parents=True)
    old = [_rec("wise-ft", 4, 1, 70.0, "cv-train"), _rec("wise-ft-default", 4, 1, 69.0, "default"),
           _rec("wise-ft-fisher", 4, 1, 71.0, "cv-train"), _rec("wise-ft-full", 4, 1, 60.0, "cv-train")]
    append_records(rd.results_path("wise-ft"), old)
    back = rd.read_records()
    assert [r["method"] for r in back] == ["wise-tip-adapter", "wise-tip-adapter-default",
                                          "wise-tip-adapter-fisher", "wise-ft-full"]  # the encoder's keeps its name
    assert [r["metrics"]["top1"] for r in rd.read_records("wise-tip-adapter")] == [70.0, 69.0, 71.0, 60.0]
    rd.writer = True
    rd.save_fitted(Fitted("wise-ft", 4, 1, {"lambda": 0.3}, "cv-train", {"k": torch.ones(2)}), "d1")
    assert not rd.fitted_path("wise-tip-adapter", 4, 1).exists()
    got = rd.load_fitted("wise-tip-adapter", 4, 1, "d1", "wise")
    assert got.hyperparameters == {"lambda": 0.3} and torch.equal(got.state["k"], torch.ones(2))
    rd.write_records("wise-tip-adapter", back[:1])  # the step re-run: the old file is superseded
    assert not rd.results_path("wise-ft").exists() and len(rd.read_records()) == 1
    (rd.root / "predictions").mkdir()
    rd.write_json(rd.predictions_path("index"), {"labels": [0], "paths": ["a"], "classnames": ["c"]})
    rd.write_json(rd.predictions_path("wise-ft"), [0])
    assert list(rd.predictions()["predictions"]) == ["wise-tip-adapter"]
    cfg = load_config("miniworld", methods=["zero-shot", "tip-adapter", "tip-adapter-f", "wise-ft"],
                      report_method="wise-ft-default")
    assert cfg.methods[-1] == "wise-tip-adapter" and cfg.report_method == "wise-tip-adapter-default"
