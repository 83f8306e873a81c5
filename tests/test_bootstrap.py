"""The hosted notebooks' set-up (fewshot/bootstrap.py): unsupported platforms stop with the steps
that work, and CLIP installs from git as the course does, or from PyPI where git fails."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from fewshot import bootstrap

SCRIPT = Path(bootstrap.__file__)


def test_the_script_parses_on_the_course_python_3_7():
    tree = ast.parse(SCRIPT.read_text(), feature_version=(3, 7))  # so that old platforms get the message
    assert "platform_problems" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_an_old_torch_stops_with_the_steps_that_work(tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("__version__ = '1.8.1+cu102'\n")  # ModelArts' PyTorch-1.8
    res = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 1
    assert "PyTorch 1.8.1+cu102 found; the suite needs PyTorch >= 2.0" in res.stderr
    assert "conda create -y -n fewshot python=3.10" in res.stderr and "pip install torch==2.1.2" in res.stderr


def test_this_platform_is_supported():
    assert bootstrap.platform_problems() == []
    assert bootstrap._version("2.14.1+cu130") == (2, 14) and bootstrap._version("2.0.1") == (2, 0)


def _git_repo_of_clip(tmp_path) -> Path:
    """A git repository holding OpenAI's CLIP source (PyPI's openai-clip 1.0.1 sdist, the code of
    github.com/openai/CLIP), so that `pip install git+file://...` runs the course's git path."""
    dl = tmp_path / "dl"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                    "openai-clip==1.0.1", "-d", str(dl)], check=True)
    src = tmp_path / "src"
    subprocess.run(["tar", "--no-same-owner", "-xzf", str(next(dl.glob("*.tar.gz"))), "-C", str(tmp_path)], check=True)
    next(p for p in tmp_path.iterdir() if p.name.startswith("openai")).rename(src)
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clip"]):
        subprocess.run(["git", *cmd], cwd=src, check=True)
    return src


def _import_clip_from(site: Path) -> str:
    code = (f"import sys; sys.path.insert(0, {str(site)!r}); import fewshot, clip; "
            "print(clip.__file__); print(clip.available_models()[0])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.slow
def test_clip_installs_from_git_and_falls_back_to_pypi(tmp_path):
    repo = _git_repo_of_clip(tmp_path)
    pip = [sys.executable, "-m", "pip"]
    options = ["--no-deps", "--no-build-isolation"]
    site = tmp_path / "site-git"
    how = bootstrap.install_clip(pip, git=f"git+file://{repo}", options=options + ["--target", str(site)], force=True)
    assert how == "git" and _import_clip_from(site).split() == [str(site / "clip" / "__init__.py"), "RN50"]
    site = tmp_path / "site-pypi"
    how = bootstrap.install_clip(pip, git=f"git+file://{tmp_path}/no-such-repo",
                                 options=options + ["--target", str(site)], force=True)
    assert how == "pypi" and _import_clip_from(site).split() == [str(site / "clip" / "__init__.py"), "RN50"]
