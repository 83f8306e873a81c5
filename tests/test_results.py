import json

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
