"""The CPU smoke of the GPU dress rehearsal: ImageNet-shaped layout (100 classes, tiny images,
V2 numeric folders, A/R subsets, grayscale and CMYK files), every notebook, per-notebook figures."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_smoke_rehearsal_runs_every_notebook(tmp_path):
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable}
    res = subprocess.run(["bash", str(ROOT / "bench" / "rehearsal.sh"), str(tmp_path)], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads((tmp_path / "rehearsal.json").read_text())
    from fewshot.notebooks.runner import list_notebooks

    assert [r["notebook"] for r in rows] == list_notebooks()
    assert all(r["ok"] and r["wall_s"] > 0 and r["peak_host_gib"] > 0 for r in rows)
    sets = {json.loads(line)["eval_set"] for line in (tmp_path / "run" / "results" / "zero-shot.jsonl").open()}
    assert sets == {"val", "imagenet-v2", "imagenet-a", "imagenet-r"}
