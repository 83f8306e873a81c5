"""Every notebook, top to bottom, on the mini-world (quick settings), in order; pairs in sync."""
import json
import os

import pytest

from fewshot.notebooks import runner as notebooks
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


def test_a_bare_figure_displays_as_a_png_in_an_ipython_shell():
    from IPython.core.interactiveshell import InteractiveShell
    from matplotlib.figure import Figure

    from fewshot.notebooks.hosted import show_figures_inline

    shell = InteractiveShell.instance()
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    assert "image/png" not in shell.display_formatter.format(fig)[0]  # what users saw: text only
    assert show_figures_inline()
    data, _ = shell.display_formatter.format(fig)
    assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n"


def figure_problems(nb: dict) -> list[str]:
    """Cells of an executed notebook that draw a figure but hold no image/png output: an output
    whose text is a Figure's repr without an image, or a cell ending in a plot_* call without one."""
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        outs = cell.get("outputs", [])
        images = sum("image/png" in o.get("data", {}) for o in outs)
        texts = ["".join(o.get("data", {}).get("text/plain", "")) for o in outs]
        if any(t.startswith("<Figure") for t, o in zip(texts, outs) if "image/png" not in o.get("data", {})):
            problems.append(f"cell {i}: a Figure shown as text")
        lines = [ln for ln in "".join(cell["source"]).splitlines() if ln.strip() and not ln.startswith("#")]
        if lines and lines[-1].lstrip().startswith("plot_") and " if " not in lines[-1] and not images:
            problems.append(f"cell {i}: {lines[-1].strip()[:40]} drew no image")
    return problems


@pytest.mark.slow
def test_saved_notebooks_show_text_bars_as_they_end_and_keep_other_output():
    """What tqdm's text bars write (one stream output per update, erased at the end with
    leave=False) is saved as a terminal shows it; warnings, prints and images stay, in order."""
    bar = [{"output_type": "stream", "name": "stderr", "text": f"\rencoding val:  {p}%|"} for p in (0, 50, 100)]
    erase = [{"output_type": "stream", "name": "stderr", "text": "\r              "},
             {"output_type": "stream", "name": "stderr", "text": "\r"}]
    kept = {"output_type": "stream", "name": "stderr", "text": ["\rtraining: 100%|", "\n"]}  # leave=True
    image = {"output_type": "display_data", "data": {"image/png": "iVBOR"}, "metadata": {}}
    nb = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "name": "stderr", "text": "warning: 3 classes hold fewer shots\n"},
        *bar, *erase, {"output_type": "stream", "name": "stdout", "text": "features ready\n"}, kept, image]},
        {"cell_type": "markdown", "source": "text"}]}
    outs = notebooks.tidy_streams(nb)["cells"][0]["outputs"]
    assert [(o.get("name"), o.get("text")) for o in outs] == [
        ("stderr", "warning: 3 classes hold fewer shots\n"), ("stdout", "features ready\n"),
        ("stderr", "training: 100%|\n"), (None, None)]
    assert outs[-1] is image


def test_all_notebooks_execute_in_order(tmp_path):
    make_world(notebooks.ROOT / "data" / "miniworld")  # kept as it is when current
    make_tasks(notebooks.ROOT / "data" / "tasks", tasks=("shape", "colour", "count", "position", "style"))  # as make world
    overrides = {"out": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
                 "report_dir": str(tmp_path / "report")}
    names = notebooks.list_notebooks()
    assert names[:6] == ["01_zeroshot", "02_splits", "03_features", "04_tip_adapter",
                         "05_tip_adapter_f", "06_wise_ft"] and names[-1] == "12_report"
    notebooks.execute(names, tmp_path / "executed", {"config": "miniworld-quick", "overrides": overrides})
    assert (tmp_path / "report" / "report.md").exists()
    assert sorted(os.listdir(tmp_path / "executed")) == [f"{n}.ipynb" for n in names]
    images = {}
    for n in names:  # every figure a notebook draws is an inline PNG, cell by cell
        nb = json.loads((tmp_path / "executed" / f"{n}.ipynb").read_text())
        assert figure_problems(nb) == [], n
        images[n] = sum("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))
    assert all(images[n] >= 1 for n in ("01_zeroshot", "02_splits", "04_tip_adapter", "05_tip_adapter_f",
                                         "06_wise_ft", "07_linear_probe")), images
    # run from notebooks/ (as Jupyter opens them), they found data/ at the root and left no strays
    assert not {"runs", "cache", "data", "report"} & set(os.listdir(notebooks.NOTEBOOK_DIR))


def test_an_interrupted_run_resumes_at_the_notebook_that_did_not_finish(tmp_path, monkeypatch):
    import papermill

    src = tmp_path / "nb"
    src.mkdir()
    for name in ("01_a", "02_b", "03_c"):
        (src / f"{name}.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                       "nbformat_minor": 5}))
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", src)
    ran, fail = [], {"02_b"}

    def fake_execute(inp, out, **kw):  # papermill writes the output as it goes, then may fail
        name = os.path.basename(inp)[:-6]
        ran.append(name)
        with open(inp) as f, open(out, "w") as g:
            g.write(f.read())
        if name in fail:
            raise RuntimeError("kernel died")

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    names, params = ["01_a", "02_b", "03_c"], {"config": "miniworld", "overrides": {}}
    with pytest.raises(RuntimeError):
        notebooks.execute(names, tmp_path / "out", params)
    assert ran == ["01_a", "02_b"]
    fail.clear()
    ran.clear()
    notebooks.execute(names, tmp_path / "out", params)  # resumes: 01 was complete
    assert ran == ["02_b", "03_c"]
    ran.clear()
    notebooks.execute(names, tmp_path / "out", params)
    assert ran == []
    notebooks.execute(names, tmp_path / "out", {"config": "miniworld-quick", "overrides": {}})
    assert ran == names  # other settings: everything again
    ran.clear()
    notebooks.execute(names, tmp_path / "out", {"config": "miniworld-quick", "overrides": {}}, fresh=True)
    assert ran == names
    ran.clear()
    (src / "02_b.ipynb").write_text((src / "02_b.ipynb").read_text() + " ")
    notebooks.execute(names, tmp_path / "out", {"config": "miniworld-quick", "overrides": {}})
    assert ran == ["02_b", "03_c"]  # a changed notebook runs again, and all after it
