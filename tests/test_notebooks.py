"""Every notebook, top to bottom, on the mini-world (quick settings), in order; pairs in sync."""
import json
import os

import pytest

from fewshot import notebooks
from fewshot.world.generate import make_world
from fewshot.world.tasks import make_tasks


def test_ipynb_files_match_their_py_sources_and_hold_no_outputs():
    assert notebooks.out_of_sync() == []
    header = (notebooks.NOTEBOOK_DIR / "_header.py").read_text()
    assert "repo = " in header  # the shared header is written once ...
    for name in notebooks.list_notebooks():  # ... and no source repeats it
        assert "repo = " not in (notebooks.NOTEBOOK_DIR / f"{name}.py").read_text()
    for name in notebooks.list_notebooks():
        nb = json.loads((notebooks.NOTEBOOK_DIR / f"{name}.ipynb").read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "python3"
        assert all(not c.get("outputs") for c in nb["cells"])
        assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb["cells"])


@pytest.mark.slow
def test_all_notebooks_execute_in_order(tmp_path):
    make_world(notebooks.ROOT / "data" / "miniworld")  # kept as it is when current
    make_tasks(notebooks.ROOT / "data" / "tasks")
    overrides = {"out": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
                 "report_dir": str(tmp_path / "report")}
    names = notebooks.list_notebooks()
    assert names[:6] == ["01_zeroshot", "02_splits", "03_features", "04_tip_adapter",
                         "05_tip_adapter_f", "06_wise_ft"] and names[-1] == "12_report"
    notebooks.execute(names, tmp_path / "executed", {"config": "miniworld-quick", "overrides": overrides})
    assert (tmp_path / "report" / "report.md").exists()
    assert sorted(os.listdir(tmp_path / "executed")) == [f"{n}.ipynb" for n in names]
    # run from notebooks/ (as Jupyter opens them), they found data/ at the root and left no strays
    assert not {"runs", "cache", "data", "report"} & set(os.listdir(notebooks.NOTEBOOK_DIR))
