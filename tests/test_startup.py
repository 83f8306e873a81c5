"""Start-up cost: the commands that only describe or check things start without torch or clip
(importing torch alone costs 1.5–3 s on a course machine)."""
import subprocess
import sys

import pytest

_PROBE = r"""
import contextlib, io, sys
from fewshot.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as stop:  # argparse ends --help with SystemExit(0)
        code = stop.code
heavy = sorted(m for m in ("torch", "clip", "torchvision", "matplotlib", "seaborn") if m in sys.modules)
print(code, ",".join(heavy) or "-", len(out.getvalue()))
"""


@pytest.mark.parametrize("argv", [["--help"], ["check-data", "--help"], ["splits", "--help"],
                                  ["world", "--help"], ["check-data", "WORLD", "--no-decode"]])
def test_describing_and_checking_commands_never_import_torch(argv, small_world):
    argv = [str(small_world) if a == "WORLD" else a for a in argv]
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    code, heavy, printed = done.stdout.split()
    assert code in ("0", "None") and int(printed) > 50  # it did its job: help or a report
    assert heavy == "-", f"{argv} imported {heavy}"


def test_the_package_draws_text_progress_bars_never_notebook_widgets():
    """Under a Jupyter kernel a tqdm widget alive while DataLoader workers fork makes each worker's
    exit wait about a second (measured: notebook 01 on the mini-world 46 s with widget bars, 24 s
    with text bars); the package's bars are tqdm's text bars, which Jupyter and Colab show in place."""
    import ast
    from pathlib import Path

    import fewshot

    bad = []
    for path in Path(fewshot.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            bad += [f"{path.name}: {n}" for n in names if n in ("tqdm.auto", "tqdm.notebook", "tqdm.autonotebook")]
    assert not bad, bad


def test_the_public_face_is_lazy_and_every_name_resolves_to_its_home():
    """``import fewshot`` imports no torch; each public name is the object of the module it lives in."""
    import importlib

    code = ("import sys, fewshot; assert 'torch' not in sys.modules, 'import fewshot pulled in torch'; "
            "print(sorted(fewshot.__all__))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    import fewshot

    for name, home in fewshot._PUBLIC.items():
        assert getattr(fewshot, name) is getattr(importlib.import_module(home), name)
    assert fewshot.list_methods()[0] == "zero-shot" and "tip-adapter" in fewshot.list_methods()
