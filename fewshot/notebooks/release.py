"""What a machine without GitHub or download.pytorch.org (ModelArts) needs, built on one that has them.

``python -m fewshot.notebooks.release archive`` (``make release``) writes ``dist/fewshot-suite.zip``: the
committed tree at HEAD (``git archive``), inside one folder ``fewshot-suite/``, as the notebooks'
setup cell unpacks it. ``python -m fewshot.notebooks.release wheelhouse`` (``make wheelhouse``) writes
``dist/wheelhouse-py310.zip``: every wheel the suite needs on the course's ModelArts target
(CPython 3.10, x86_64, glibc >= 2.17), for ``python fewshot/notebooks/bootstrap.py --wheelhouse`` to install
with ``pip install --no-index``:

- torch 2.1.2 and torchvision 0.16.2 with their dependencies; from PyPI by default, whose 2.1.2
  wheels are built for CUDA 12.1 (the CUDA libraries come as ``nvidia-*-cu12`` wheels; compiled
  for sm_50 to sm_90, so a P100, sm_60, is included) and need an NVIDIA driver >= 525.60.13;
  ``--torch-index https://download.pytorch.org/whl/cu118`` takes the CUDA 11.8 builds instead
  (driver >= 450.80.02);
- ``numpy<2`` (torch 2.1 is compiled against NumPy 1.x), the suite's other dependencies, ``ftfy``,
  ``regex``, ``tqdm``, ``ipykernel`` (to register a conda environment as a notebook kernel) and
  ``hatchling`` and ``editables`` (the build backend of the suite's editable install, which pip
  fetches into an isolated build environment: offline, from the wheelhouse too);
- ``openai-clip`` 1.0.1, built here as a wheel (PyPI has only its sdist).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

__all__ = ["ROOT", "archive", "wheelhouse_commands", "missing_requirements", "wheelhouse", "TORCH", "REQUIREMENTS"]

ROOT = Path(__file__).resolve().parents[2]
TORCH = ["torch==2.1.2", "torchvision==0.16.2"]
# with the versions the suite supports (pyproject.toml) and torch 2.1.2 can use
REQUIREMENTS = ["numpy>=1.22,<2", "packaging>=23", "pillow>=9", "tqdm>=4.60", "matplotlib>=3.7",
                "seaborn>=0.13", "ftfy", "regex", "ipykernel", "hatchling>=1.18", "editables~=0.3"]
CLIP = "openai-clip==1.0.1"
# glibc >= 2.17 (manylinux2014 and older): what the course's ModelArts images (Ubuntu 18.04) run
PLATFORMS = ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def archive(out: str | os.PathLike = ROOT / "dist" / "fewshot-suite.zip", rev: str = "HEAD",
            root: Path = ROOT) -> Path:
    """Write the committed tree at ``rev`` as a zip of one folder, ``fewshot-suite/`` (atomically);
    uncommitted changes are not in it (a warning says so). Returns the path."""
    from fewshot.base.atomic import atomic_path

    out = Path(out)
    if _git("status", "--porcelain", "--untracked-files=no", cwd=root):
        print(f"warning: uncommitted changes are not in the archive (it holds {rev}: "
              f"{_git('rev-parse', '--short=10', rev, cwd=root)})", file=sys.stderr)
    with atomic_path(out) as tmp:
        _git("archive", "--format=zip", "--prefix=fewshot-suite/", "-o", str(tmp), rev, cwd=root)
        tmp.chmod(0o644)
    return out


def wheelhouse_commands(folder: str | os.PathLike, python: str = "3.10", torch_index: str = "",
                        pip: tuple = (sys.executable, "-m", "pip")) -> list[list[str]]:
    """The pip commands that fill ``folder`` with the wheels for CPython ``python`` on x86_64
    Linux (glibc >= 2.17): torch (from ``torch_index`` if given, else PyPI), the rest from PyPI,
    and CLIP built from its sdist."""
    target = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp",
              "--abi", "cp" + python.replace(".", "")]
    for platform in PLATFORMS:
        target += ["--platform", platform]
    pip, folder = list(pip), str(folder)
    index = ["--index-url", torch_index] if torch_index else []
    return [pip + ["download", "-q", "-d", folder] + target + index + TORCH,
            pip + ["download", "-q", "-d", folder] + target + REQUIREMENTS,
            pip + ["wheel", "-q", "--no-deps", "-w", folder, CLIP]]


def _wheel_requirements(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` lines of a wheel's METADATA."""
    from email.parser import Parser

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(z.read(meta).decode("utf-8")).get_all("Requires-Dist") or []


def missing_requirements(folder: str | os.PathLike, python: str = "3.10") -> list[str]:
    """Requirements of the wheels in ``folder`` that apply on CPython ``python`` (x86_64 Linux) but
    have no wheel there. pip evaluates markers for the interpreter it runs on, not for its
    ``--python-version``, so a wheelhouse for 3.10 downloaded by Python 3.11 lacks the 3.10-only
    backports (``tomli`` for hatchling, ``exceptiongroup`` for IPython)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env = {"python_version": python, "python_full_version": python + ".0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    wheels = sorted(Path(folder).glob("*.whl"))
    have = {canonicalize_name(w.name.split("-")[0]) for w in wheels}
    missing = []
    for wheel in wheels:
        for line in _wheel_requirements(wheel):
            req = Requirement(line)
            if (req.marker is None or req.marker.evaluate(env)) and canonicalize_name(req.name) not in have:
                missing.append(f"{req.name}{req.specifier}")
    return sorted(set(missing))


def wheelhouse(out: str | os.PathLike = ROOT / "dist" / "wheelhouse-py310.zip", python: str = "3.10",
               torch_index: str = "") -> Path:
    """Download and build the wheelhouse (about 2.5 GB with PyPI's CUDA 12.1 torch), then zip it
    (stored, wheels are compressed already) into ``out`` atomically. Returns the path."""
    from fewshot.base.atomic import atomic_path

    out = Path(out)
    name = out.name[:-4] if out.name.endswith(".zip") else out.name
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.is_dir() else None) as tmp:
        folder = Path(tmp) / name
        commands = wheelhouse_commands(folder, python, torch_index)
        for cmd in commands:
            print("+ " + " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
        for _ in range(5):  # what pip's markers missed for the target Python, until nothing is
            missing = missing_requirements(folder, python)
            if not missing:
                break
            print(f"+ for Python {python}: {' '.join(missing)}", flush=True)
            subprocess.run(commands[1][:-len(REQUIREMENTS)] + missing, check=True)  # same target, from PyPI
        else:
            raise RuntimeError(f"the wheelhouse still lacks {', '.join(missing)} for Python {python}")
        wheels = sorted(folder.glob("*.whl"))
        with atomic_path(out) as tmp_zip, zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            for wheel in wheels:
                z.write(wheel, f"{name}/{wheel.name}")
    size = out.stat().st_size / 2**30
    print(f"{out}: {len(wheels)} wheels, {size:.2f} GiB. On the target: "
          f"python fewshot-suite/fewshot/notebooks/bootstrap.py --wheelhouse {out.name}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fewshot.notebooks.release", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("archive", help="dist/fewshot-suite.zip: the suite at HEAD (git archive)")
    a.add_argument("--out", default=str(ROOT / "dist" / "fewshot-suite.zip"))
    a.add_argument("--rev", default="HEAD")
    w = sub.add_parser("wheelhouse", help="dist/wheelhouse-py310.zip: every wheel, for an offline install")
    w.add_argument("--python", default="3.10", help="target CPython version (default 3.10)")
    w.add_argument("--torch-index", default="", help="index of the torch wheels, e.g. "
                   "https://download.pytorch.org/whl/cu118 (default: PyPI, CUDA 12.1)")
    w.add_argument("--out", default="", help="default: dist/wheelhouse-py<version>.zip")
    args = p.parse_args(argv)
    if args.what == "archive":
        print(archive(args.out, args.rev))
        return 0
    out = args.out or str(ROOT / "dist" / f"wheelhouse-py{args.python.replace('.', '')}.zip")
    wheelhouse(out, args.python, args.torch_index)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
