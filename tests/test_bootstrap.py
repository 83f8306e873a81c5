"""The hosted notebooks' set-up (fewshot/notebooks/bootstrap.py): unsupported platforms stop with the steps
that work, and CLIP installs from git as the course does, or from PyPI where git fails."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from fewshot.notebooks import bootstrap

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
    assert "make wheelhouse" in res.stderr and "bootstrap.py --wheelhouse wheelhouse-py310.zip" in res.stderr  # offline too


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


# ----------------------------------------------------------------------------- offline: a wheelhouse
def _wheel(folder: Path, name: str, version: str, files: dict, requires=(), tag="py3-none-any") -> Path:
    """A minimal wheel written by hand (PEP 427): ``files`` {path in the wheel: text}."""
    import base64
    import hashlib
    import zipfile

    dist = f"{name.replace('-', '_')}-{version}"
    meta = {f"{dist}.dist-info/METADATA": "Metadata-Version: 2.1\nName: %s\nVersion: %s\n%s" % (
                name, version, "".join(f"Requires-Dist: {r}\n" for r in requires)),
            f"{dist}.dist-info/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n"}
    entries = {**files, **meta}
    record = []
    for path, text in entries.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    entries[f"{dist}.dist-info/RECORD"] = "\n".join(record + [f"{dist}.dist-info/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name_in, text in entries.items():
            z.writestr(name_in, text)
    return path


@pytest.fixture
def offline_pip(monkeypatch):
    """pip with no configured index or find-links (this machine's pip.conf and PIP_FIND_LINKS)."""
    import os

    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # unreachable, and --no-index anyway
    return [sys.executable, "-m", "pip"]


def _wheelhouse_zip(tmp_path) -> Path:
    """A zip of one folder of wheels, as `make wheelhouse` writes it: a CLIP stand-in that needs
    a dependency found only in the wheelhouse, and a torch/torchvision stand-in."""
    import zipfile

    wheels = tmp_path / "wheels"
    _wheel(wheels, "openai-clip", "1.0.1", {"clip/__init__.py": "def available_models():\n    return ['RN50']\n"},
           requires=["fewshot-test-dep"])
    _wheel(wheels, "fewshot-test-dep", "0.1", {"fewshot_test_dep.py": "VALUE = 7\n"})
    _wheel(wheels, "torch", "2.1.2", {"torch/__init__.py": "__version__ = '2.1.2'\n"})
    _wheel(wheels, "torchvision", "0.16.2", {"torchvision/__init__.py": "__version__ = '0.16.2'\n"})
    archive = tmp_path / "wheelhouse-py310.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for w in wheels.iterdir():
            z.write(w, f"wheelhouse-py310/{w.name}")
    return archive


def _run_in(site: Path, code: str) -> str:
    res = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
                         capture_output=True, text=True, cwd="/")
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_clip_installs_offline_from_a_zipped_wheelhouse_into_a_target(tmp_path, offline_pip):
    folder = bootstrap.wheelhouse_folder(_wheelhouse_zip(tmp_path))
    assert folder == str(tmp_path / "wheelhouse-py310")  # unpacked beside the zip, the inner folder
    assert sorted(p.name.split("-")[0] for p in Path(folder).glob("*.whl")) == [
        "fewshot_test_dep", "openai_clip", "torch", "torchvision"]
    site = tmp_path / "site"
    how = bootstrap.install_clip(offline_pip, git="git+file:///no/such/repo", pypi="no-such-package==0",
                                 options=["--target", str(site)], force=True, wheelhouse=folder)
    assert how == "wheelhouse"
    # CLIP and its dependency came from the wheelhouse (neither exists on any index)
    assert _run_in(site, "import clip, fewshot_test_dep; print(clip.available_models()[0], fewshot_test_dep.VALUE, clip.__file__)") \
        == f"RN50 7 {site / 'clip' / '__init__.py'}"
    assert bootstrap.wheelhouse_folder(tmp_path / "wheelhouse-py310.zip") == folder  # unpacked once


def test_a_missing_torch_comes_from_the_wheelhouse_and_a_present_one_is_kept(tmp_path, offline_pip, monkeypatch):
    folder = bootstrap.wheelhouse_folder(_wheelhouse_zip(tmp_path))
    site = tmp_path / "site"
    assert bootstrap.install_torch_offline(offline_pip, folder, ["--target", str(site)]) == []  # this venv has both
    assert not site.exists()
    real = bootstrap.importlib.util.find_spec
    monkeypatch.setattr(bootstrap.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("torch", "torchvision") else real(name, *a))
    assert bootstrap.install_torch_offline(offline_pip, folder, ["--target", str(site)]) == ["torch", "torchvision"]
    assert _run_in(site, "import torch, torchvision; print(torch.__version__, torchvision.__version__)") == "2.1.2 0.16.2"


def test_a_wheelhouse_for_another_python_or_without_wheels_is_refused_in_one_line(tmp_path):
    other = tmp_path / "other"
    _wheel(other, "torch", "2.1.2", {"torch/__init__.py": ""}, tag="cp37-cp37m-manylinux1_x86_64")
    with pytest.raises(ValueError, match=r"wheels for Python 3\.7, this is Python %d\.%d.*python=3\.7" % sys.version_info[:2]):
        bootstrap.wheelhouse_folder(other)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .whl files"):
        bootstrap.wheelhouse_folder(tmp_path / "empty")
    with pytest.raises(ValueError, match="no wheelhouse at"):
        bootstrap.wheelhouse_folder(tmp_path / "missing.zip")
    (tmp_path / "notes.txt").write_text("not a zip")
    with pytest.raises(ValueError, match="neither a folder nor a zip"):
        bootstrap.wheelhouse_folder(tmp_path / "notes.txt")


def test_the_wheelhouse_is_found_from_the_flag_the_variable_or_beside_the_suite(tmp_path, monkeypatch):
    suite = tmp_path / "work" / "fewshot-suite"
    suite.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert bootstrap.find_wheelhouse([], {}, str(suite)) is None
    beside = tmp_path / "work" / ("wheelhouse-py%d%d.zip" % sys.version_info[:2])
    beside.write_bytes(b"")
    assert bootstrap.find_wheelhouse([], {}, str(suite)) == str(beside)
    assert bootstrap.find_wheelhouse([], {"FEWSHOT_WHEELHOUSE": "/w.zip"}, str(suite)) == "/w.zip"
    assert bootstrap.find_wheelhouse(["--wheelhouse", "/x"], {"FEWSHOT_WHEELHOUSE": "/w.zip"}, str(suite)) == "/x"
    with pytest.raises(ValueError, match="needs a path"):
        bootstrap.find_wheelhouse(["--wheelhouse"], {}, str(suite))


def test_the_script_with_a_missing_wheelhouse_stops_in_one_line(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), "--wheelhouse", str(tmp_path / "wh.zip")],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [f"error: no wheelhouse at {tmp_path / 'wh.zip'}: copy "
                                               "wheelhouse-py310.zip (from `make wheelhouse`) there"]
