"""No GitHub needed: `make release` writes the committed suite as one zip folder, and the notebooks'
setup cell finds the suite in order (present, archive, git clone), each failure one line."""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fewshot.notebooks import runner as notebooks
from fewshot.notebooks import release

ROOT = notebooks.ROOT


def _git(*args, cwd=ROOT):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_the_release_archive_is_the_committed_tree_in_one_folder_with_its_commit(tmp_path):
    out = release.archive(tmp_path / "dist" / "fewshot-suite.zip")
    with zipfile.ZipFile(out) as z:
        files = sorted(n for n in z.namelist() if not n.endswith("/"))
        revision = z.read("fewshot-suite/fewshot/REVISION").decode().strip()
    assert files == sorted("fewshot-suite/" + p for p in _git("ls-tree", "-r", "--name-only", "HEAD").split())
    assert revision == _git("rev-parse", "HEAD").strip()  # export-subst: records name the commit
    assert "fewshot-suite/notebooks/01_zeroshot.ipynb" in files and "fewshot-suite/fewshot/notebooks/bootstrap.py" in files


def test_git_revision_reads_the_stamp_outside_git(tmp_path):
    with zipfile.ZipFile(release.archive(tmp_path / "s.zip")) as z:
        z.extractall(tmp_path)
    code = "from fewshot.protocol.results import git_revision; print(git_revision())"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "fewshot-suite", capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "GIT_CEILING_DIRECTORIES": str(tmp_path),
                              "PYTHONPATH": str(tmp_path / "fewshot-suite")})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == _git("rev-parse", "--short=10", "HEAD").strip()


def test_the_wheelhouse_targets_python_310_manylinux_with_a_numpy_torch_2_1_can_use(tmp_path):
    download_torch, download_rest, build_clip = release.wheelhouse_commands(tmp_path, torch_index="https://x/cu118")
    for cmd in (download_torch, download_rest):
        assert cmd[3:4] == ["download"] and "--only-binary=:all:" in cmd
        assert cmd[cmd.index("--python-version") + 1] == "3.10" and cmd[cmd.index("--abi") + 1] == "cp310"
        assert {cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"} == {"manylinux_2_17_x86_64", "manylinux2014_x86_64"}
    assert download_torch[-2:] == ["torch==2.1.2", "torchvision==0.16.2"]
    assert download_torch[download_torch.index("--index-url") + 1] == "https://x/cu118"
    assert "--index-url" not in download_rest and "numpy>=1.22,<2" in download_rest
    assert build_clip[3:] == ["wheel", "-q", "--no-deps", "-w", str(tmp_path), "openai-clip==1.0.1"]
    # everything the suite imports (bootstrap's list) and the editable install's backend are in it
    from fewshot.notebooks import bootstrap

    names = {r.split("=")[0].split(">")[0].split("<")[0].split("~")[0] for r in download_rest}
    assert {r.split(">")[0] for r in bootstrap.PURE_DEPENDENCIES.values()} | {"ipykernel", "hatchling", "editables", "ftfy", "regex"} <= names
    backend = (ROOT / "pyproject.toml").read_text().split('build-backend = "')[1].split(".")[0]
    assert backend == "hatchling"


# ----------------------------------------------------------------------------- the setup cell
def _setup_cell() -> str:
    nb = json.loads((notebooks.NOTEBOOK_DIR / "02_splits.ipynb").read_text())
    return next("".join(c["source"]) for c in nb["cells"] if "zipfile.ZipFile(found)" in "".join(c["source"]))


def _stub_suite(where: Path) -> Path:
    """A stand-in suite: fewshot/__init__.py and a bootstrap.py that only says where it ran."""
    (where / "fewshot" / "notebooks").mkdir(parents=True)
    (where / "fewshot" / "__init__.py").write_text("")
    (where / "fewshot" / "notebooks" / "__init__.py").write_text("")
    (where / "fewshot" / "notebooks" / "bootstrap.py").write_text("import os; print('stub bootstrap in', os.getcwd())\n")
    return where


def _zip_of(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(folder.rglob("*")):
            z.write(p, "fewshot-suite/" + str(p.relative_to(folder)))
    return archive


def _run_setup(cwd: Path, archive="", repo="/no/such/repo"):
    code = f"archive = {archive!r}\nrepo = {repo!r}\n" + _setup_cell()
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)


@pytest.fixture
def work(tmp_path):
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def test_an_uploaded_archive_comes_before_git(tmp_path, work):
    _zip_of(_stub_suite(tmp_path / "src"), work / "fewshot-suite.zip")
    res = _run_setup(work, repo=str(tmp_path / "would-be-cloned"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"the suite was unpacked from fewshot-suite.zip",
                                       f"stub bootstrap in {work / 'fewshot-suite'}"]
    res = _run_setup(work, archive="/no/such.zip")  # now present: neither archive nor git is needed
    assert res.returncode == 0 and res.stdout.splitlines() == [f"stub bootstrap in {work / 'fewshot-suite'}"]


def test_without_an_archive_the_repository_is_cloned(tmp_path, work):
    src = _stub_suite(tmp_path / "repo")
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "s"]):
        _git(*cmd, cwd=src)
    res = _run_setup(work, repo=str(src))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"stub bootstrap in {work / 'fewshot-suite'}"]
    assert (work / "fewshot-suite" / ".git").is_dir()


@pytest.mark.parametrize("case", ["no-clone", "missing-archive", "foreign-zip"])
def test_each_way_of_not_finding_the_suite_is_one_line_saying_what_to_do(tmp_path, work, case):
    archive = ""
    if case == "missing-archive":
        archive = str(tmp_path / "nope.zip")
    if case == "foreign-zip":
        with zipfile.ZipFile(work / "fewshot-suite.zip", "w") as z:
            z.writestr("something/else.txt", "")
    res = _run_setup(work, archive=archive)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert {"no-clone": "error: could not clone /no/such/repo: put fewshot-suite.zip (`make release`) in "
                        f"{work} or Drive's MyDrive, or set `repo`/`archive`",
            "missing-archive": f"error: no file {archive}: copy fewshot-suite.zip (`make release`) there, or "
                               "set archive = '' to clone /no/such/repo",
            "foreign-zip": "error: fewshot-suite.zip holds no fewshot-suite/fewshot/: make the archive with "
                           "`make release`"}[case] == last


def test_requirements_that_only_the_target_python_needs_are_found_missing(tmp_path):
    from test_bootstrap import _wheel

    _wheel(tmp_path, "hatchling", "1.33", {"hatchling/__init__.py": ""},
           requires=["pathspec>=0.10", "tomli>=1.2.2; python_version < '3.11'", "pluggy; extra == 'dev'"])
    _wheel(tmp_path, "ipython", "8.39", {"IPython/__init__.py": ""},
           requires=["exceptiongroup; python_version < \"3.11\"", "colorama; sys_platform == 'win32'",
                     "new-thing; python_version >= '3.12'"])
    _wheel(tmp_path, "pathspec", "1.1", {"pathspec/__init__.py": ""})
    # by hand: on 3.10 the two backports; on 3.12 only the 3.12 one; never Windows' or an extra's
    assert release.missing_requirements(tmp_path, "3.10") == ["exceptiongroup", "tomli>=1.2.2"]
    assert release.missing_requirements(tmp_path, "3.12") == ["new-thing"]
