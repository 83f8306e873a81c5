"""Settings set once: notebook 01 records the run it starts; later notebooks (config = "last")
continue it with its own config.json, printed; the pointer survives a Colab reset on Drive."""
import json

import papermill
import pytest

from fewshot.notebooks import lastrun
from fewshot.notebooks import runner as notebooks
from fewshot.base.errors import ConfigError, MissingStepError
from fewshot.notebooks.hosted import start


@pytest.fixture
def pointer(tmp_path, monkeypatch):
    path = tmp_path / "pointer.json"
    monkeypatch.setenv(lastrun.ENV, str(path))
    return path


def _first(tmp_path, world, **extra):
    overrides = {"data": str(world), "out": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
                 "report_dir": str(tmp_path / "rep"), "shots": [1, 2], "seeds": [4], "device": "cpu", **extra}
    return start("miniworld-quick", overrides, first=True)


def test_a_later_notebook_continues_the_run_notebook_01_started(tmp_path, small_world, pointer, capsys):
    _first(tmp_path, small_world)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    entry = json.loads(pointer.read_text())
    assert entry["out"] == str((tmp_path / "run").resolve()) and entry["config"] == "miniworld-quick"
    capsys.readouterr()
    later = start("last", {"batch_size": 7}, first=False)  # a runtime override is allowed
    said = capsys.readouterr().out
    assert said.startswith(f"continuing the last run started: {entry['out']} (config miniworld-quick")
    assert str(later.out) == entry["out"]
    for field in ("data", "cache_dir", "report_dir", "shots", "seeds", "templates", "backbone"):
        assert later.cfg.to_dict()[field] == saved[field], field  # notebook 01's settings, not the config's
    assert later.cfg.batch_size == 7
    with pytest.raises(ConfigError, match="contradict the run: shots"):
        start("last", {"shots": [1]}, first=False)


def test_the_newest_start_wins_and_a_named_config_ignores_the_pointer(tmp_path, small_world, pointer):
    _first(tmp_path, small_world)
    _first(tmp_path, small_world, out=str(tmp_path / "run2"))
    assert lastrun.last_run()["out"] == str((tmp_path / "run2").resolve())
    named = start("miniworld-quick", {"out": str(tmp_path / "run"), "data": str(small_world)}, first=False)
    assert str(named.out) == str(tmp_path / "run") and named.cfg.seeds == (4,)  # that folder's config.json


def test_last_without_a_run_or_in_notebook_01_stops_in_one_line(tmp_path, small_world, pointer):
    with pytest.raises(MissingStepError, match=r"no run has been started yet .*run notebook 01 first"):
        start("last", {}, first=False)
    with pytest.raises(ConfigError, match="notebook 01 starts the run"):
        start("last", {}, first=True)
    _first(tmp_path, small_world)
    with pytest.raises(ConfigError, match="`out` cannot be overridden"):
        start("last", {"out": str(tmp_path / "elsewhere")}, first=False)
    (tmp_path / "run" / "config.json").unlink()  # the run folder was deleted (or is on an unmounted Drive)
    with pytest.raises(MissingStepError, match="has no config.json: run notebook 01 again"):
        start("last", {}, first=False)
    pointer.write_text("{not json")
    with pytest.raises(ConfigError, match="is damaged"):
        lastrun.last_run()


def test_on_colab_the_pointer_is_also_kept_on_drive_and_survives_a_reset(tmp_path, monkeypatch):
    monkeypatch.delenv(lastrun.ENV, raising=False)
    monkeypatch.setenv("COLAB_RELEASE_TAG", "test")
    local, drive = tmp_path / "suite" / "notebooks" / ".fewshot-run.json", tmp_path / "MyDrive" / "fewshot" / "current_run.json"
    monkeypatch.setattr(lastrun, "LOCAL_POINTER", local)
    monkeypatch.setattr(lastrun, "DRIVE_POINTER", drive)
    run = tmp_path / "MyDrive" / "runs" / "rn50"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    lastrun.record_run(run, "coursework")
    assert json.loads(local.read_text()) == json.loads(drive.read_text())
    local.unlink()  # a runtime reset wipes the clone, not Drive
    assert lastrun.last_run()["out"] == str(run) and lastrun.last_run()["pointer"] == str(drive)
    monkeypatch.delenv("COLAB_RELEASE_TAG")  # elsewhere only the local pointer is read
    with pytest.raises(MissingStepError):
        lastrun.last_run()


def test_notebook_01_sets_the_settings_and_the_others_default_to_the_last_run():
    for name in notebooks.list_notebooks():
        nb = json.loads((notebooks.NOTEBOOK_DIR / f"{name}.ipynb").read_text())
        params = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        first_line = "".join(params["source"]).splitlines()[0]
        want = 'config = "miniworld"' if name == "01_zeroshot" else 'config = "last"'
        assert first_line.startswith(want + "  # "), (name, first_line)
        code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        assert f"first={name == '01_zeroshot'})" in code
        # papermill reads every parameter (a comment it cannot parse drops the parameter silently)
        params = papermill.inspect_notebook(str(notebooks.NOTEBOOK_DIR / f"{name}.ipynb"))
        assert {k: v["default"] for k, v in params.items()} == {
            "config": want.split(" = ")[1], "overrides": "{}", "repo": params["repo"]["default"], "archive": '""'}
