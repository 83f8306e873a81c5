"""The report built from a hand-made run folder: the few-shot sections see the few-shot test sets
only, the merging study is a section of its own (asked for by name), every figure has a caption
computed from the records, sections are selected by name, and an edge optimum is flagged."""
import json
import re

import numpy as np
import pytest

from fewshot import cli
from fewshot.base.errors import ConfigError
from fewshot.report.build import build_report, default_sections, list_sections
from fewshot.protocol.results import dumps_records

from test_report_figures import make_grid, world


@pytest.fixture()
def run_dir(tmp_path):
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    recs = world()
    by_method = {}
    for r in recs:
        by_method.setdefault(r["method"].replace(":", "_"), []).append(r)
    for m, rs in by_method.items():
        (run / "results" / f"{m}.jsonl").write_text(dumps_records(rs))
    (run / "diagnostics").mkdir()
    grids = [make_grid(1, (1.0, 1.0)), make_grid(16)]
    (run / "diagnostics" / "tip-adapter.json").write_text(json.dumps(grids))
    merge = {"tasks": ["colour", "count"], "cosine": {"full": [[1.0, 0.2], [0.2, 1.0]]},
             "curves": {"task-arithmetic:full": {"0.5": [40.0, 48.0], "1.0": [44.0, 46.0]}}}
    (run / "diagnostics" / "merging.json").write_text(json.dumps(merge))
    return run


def _figures(text):
    return re.findall(r"!\[([^\]]+)\]\(\1\.png\)\n\n\*\*Figure (\d+)\.\*\* (\S[^\n]+)", text)


def test_default_report_keeps_the_merge_tasks_out_and_captions_every_figure(run_dir, tmp_path):
    text = build_report(run_dir, tmp_path / "rep").read_text()
    assert "colour" not in text and "on count" not in text and "merg" not in text.lower()
    tables = re.findall(r"(\| method \|[^\n]*\n\|[-|]+\|\n)(?!\|)", text)
    assert not tables  # no table with a header and no row
    assert text.count("| method | 1-shot | 2-shot | 16-shot | tuned on |") == 2  # leaderboard + sketch
    images = re.findall(r"!\[([^\]]+)\]", text)
    figs = _figures(text)
    assert [name for name, _, _ in figs] == images and [int(n) for _, n, _ in figs] == list(range(1, len(images) + 1))
    assert {"accuracy_vs_shots", "id_vs_ood", "tip_adapter_grid", "path_wise_tip_adapter"} <= set(images)
    grid_caption = next(c for name, _, c in figs if name == "tip_adapter_grid")
    assert "on the edge of the searched range** (largest α) at 2 of 2 shot counts (1, 16 shots)" in grid_caption
    # chosen (1.0, 2.0) gives 30 % on test, the optimum (2.0, 2.0) 90 %
    assert "the chosen point gives 30.00 % against the test optimum's 90.00 % (60.00 points" in grid_caption
    assert "Chosen on test, for illustration only" in next(c for n, _, c in figs if n == "path_wise_tip_adapter")


def test_merging_is_its_own_section_when_asked_for(run_dir, tmp_path):
    text = build_report(run_dir, tmp_path / "rep", sections=["all"]).read_text()
    few, merging = text.split("## Merging several fine-tuned encoders")
    assert "colour" not in few.split("## Published")[0]
    assert "| average | full |  | 50.0 | 50.0 | 50.0 |" in merging  # the merge table, from its records
    assert "merge_task_vectors.png" in merging and "merge_lambda.png" in merging
    assert "mean 0.20 and largest 0.20" in merging  # the off-diagonal cosine
    assert "held-out shots pick λ = 1.0 (46.0 % on test), test would pick 0.5 (48.0 %)" in merging


def test_sections_are_chosen_by_name(run_dir, tmp_path):
    assert "merging" in list_sections() and "merging" not in default_sections()
    text = build_report(run_dir, tmp_path / "rep", sections=["summary", "leaderboard", "costs"]).read_text()
    assert re.findall(r"^## (.+)$", text, re.M) == ["Summary", "Leaderboard", "What fine-tuning costs"]
    assert "no results for this section" in text.split("## What fine-tuning costs")[1]
    assert not list((tmp_path / "rep").glob("*.png"))  # the figures of an earlier build: none here
    with pytest.raises(ConfigError, match="unknown report section.*known: summary"):
        build_report(run_dir, tmp_path / "rep", sections=["sumary"])


def test_a_rebuild_removes_the_figures_it_no_longer_shows(run_dir, tmp_path):
    out = tmp_path / "rep"
    build_report(run_dir, out)
    assert (out / "id_vs_ood.png").exists()
    build_report(run_dir, out, sections=["accuracy"])
    assert not (out / "id_vs_ood.png").exists() and (out / "accuracy_vs_shots.png").exists()


def _prose(text):
    """The report's sentences: no tables, images, code or headings."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("|", "![", "#"))]
    return re.sub(r"`[^`]*`|\[[^\]]*\]\([^)]*\)", "", "\n".join(lines))


def test_the_chinese_report_states_the_same_numbers_in_chinese_prose(run_dir, tmp_path):
    en = build_report(run_dir, tmp_path / "en", sections=["all"]).read_text()
    zh = build_report(run_dir, tmp_path / "zh", sections=["all"], lang="zh").read_text()
    numbers = lambda t: sorted(re.findall(r"\d+\.\d+", t))  # noqa: E731
    assert numbers(zh) == numbers(en)
    assert re.findall(r"^## ", zh, re.M) and "## 摘要" in zh and "**图 1.**" in zh
    for name in ("tip-adapter", "lp++", "class-means"):
        assert en.count(name) == zh.count(name)
    english = re.findall(r"\b[A-Za-z]+ [a-z]+ [a-z]+ [a-z]+\b", _prose(zh))
    assert not english, english[:5]
    assert re.findall(r"\b[A-Za-z]+ [a-z]+ [a-z]+ [a-z]+\b", _prose(en))  # the check can see English
    assert "lang='zh'" in (tmp_path / "zh" / "report.html").read_text()


def test_a_partial_run_says_at_its_top_which_steps_are_missing(run_dir, tmp_path):
    from fewshot.report.build import load_run, missing_steps

    present = sorted({r["method"] for r in world() if r.get("role") != "merge" and ":" not in r["method"]})
    config = {"methods": present + ["coop", "taskres"], "merge_tasks": "data/tasks"}
    (run_dir / "config.json").write_text(json.dumps(config))
    lacking = dict(missing_steps(load_run(run_dir)))
    assert lacking == {"prompt": ["coop"], "peers": ["taskres"]}  # merge records exist: merging is not missing
    top = build_report(run_dir, tmp_path / "rep").read_text().split("\n\n")[1]
    assert top.startswith("**Partial run") and "`prompt` (coop)" in top and "--steps prompt peers" in top
    config["methods"] = present
    (run_dir / "config.json").write_text(json.dumps(config))
    assert "Partial run" not in build_report(run_dir, tmp_path / "rep2").read_text()


def test_report_never_writes_into_a_users_folder(run_dir, tmp_path, capsys):
    """A folder of the user's (its report.md shows the user's figure) is refused with one error
    line and left unchanged; --force moves it aside whole and writes the report; a folder holding
    an earlier report (before the marker existed) is the report's own."""
    mine = tmp_path / "thesis"
    mine.mkdir()
    before = {"report.md": b"# My thesis\n\n![plot](accuracy_vs_shots.png)\n", "accuracy_vs_shots.png": b"mine"}
    for name, data in before.items():
        (mine / name).write_bytes(data)
    assert cli.main(["report", "--run", str(run_dir), "--out", str(mine)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and f"{mine.resolve()} exists and was not written by" in err[0] \
        and "--force" in err[0], err
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
    assert cli.main(["report", "--run", str(run_dir), "--out", str(mine), "--force"]) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("thesis.old-")]
    assert len(aside) == 1 and {p.name: p.read_bytes() for p in aside[0].iterdir()} == before
    assert (mine / "report.md").read_text().startswith("# Few-shot CLIP report")
    (mine / ".fewshot-report").unlink()
    assert cli.main(["report", "--run", str(run_dir), "--out", str(mine)]) == 0


def test_the_cross_task_matrix_is_a_table_and_a_figure_of_gains_over_the_pre_trained_encoder(run_dir, tmp_path):
    from test_report_figures import _rec

    pre = [_rec("merge:pre-trained", t, v, 16, 1, "merge", {}) for t, v in (("colour", 40.0), ("count", 30.0))]
    (run_dir / "results" / "merge_pre-trained.jsonl").write_text(dumps_records(pre))
    diag = json.loads((run_dir / "diagnostics" / "merging.json").read_text())
    diag["cross"] = {"full": [[70.0, 25.0], [38.0, 60.0]], "lora": [[50.0, 30.0], [40.0, 33.0]]}
    (run_dir / "diagnostics" / "merging.json").write_text(json.dumps(diag))
    text = build_report(run_dir, tmp_path / "rep", sections=["all"]).read_text()
    merging = text.split("## Merging several fine-tuned encoders")[1]
    assert "| expert | colour | count |\n|---|---|---|\n| colour | **70.0** | 25.0 |\n| count | 38.0 | **60.0** |" in merging
    caption = next(c for n, _, c in _figures(text) if n == "merge_cross")
    # full: own (70−40 + 60−30)/2 = +30.0, others (25−30 + 38−40)/2 = −3.5; lora: (10 + 3)/2, (0 + 0)/2
    assert "full fine-tuning: +30.0 on its own task and -3.5 on the others" in caption
    assert "lora fine-tuning: +6.5 on its own task and +0.0 on the others" in caption
    assert (tmp_path / "rep" / "merge_cross.png").stat().st_size > 1000


def test_the_generalisation_table_splits_seen_and_unseen_tasks_by_hand():
    from fewshot.report.merge_tables import generalisation_table
    from test_report_figures import _rec

    tasks = ["a", "b", "c", "d", "e"]
    vals = {"a": 90.0, "b": 60.0, "c": 30.0, "d": 25.0, "e": 55.0}
    recs = [_rec("generalisation:exp1:task-arithmetic", t, v, 16, 1, "merge",
                 {"strategy": "full", "seen": ["a", "b", "c"], "lambda": 0.3}) for t, v in vals.items()]
    recs += [_rec("merge:average", "a", 1.0, 16, 1, "merge", {"strategy": "full"})]  # not this table's
    table = generalisation_table(recs, tasks)
    # seen mean (90 + 60 + 30)/3 = 60.0, unseen (25 + 55)/2 = 40.0
    assert table.splitlines()[2] == "| exp1 | task-arithmetic | 0.3 | a 90.0, b 60.0, c 30.0 | 60.0 | d 25.0, e 55.0 | 40.0 |"
    assert len(table.splitlines()) == 3 and generalisation_table(recs[-1:], tasks) == ""
