"""Set up a hosted notebook (Colab, ModelArts) for the suite, never replacing the platform's torch.

Run by every notebook's setup cell on a hosted platform, as a script (``python
fewshot/bootstrap.py``): it uses the standard library only and parses on old Pythons, so that an
unsupported environment gets the exact steps that work instead of a pip resolver error.

1. Python and torch are checked against the supported range (README); outside it, it stops with
   what to do (the course's ModelArts image, ``PyTorch-1.8`` on Python 3.7, is outside it).
2. OpenAI's CLIP: kept if importable; else installed from GitHub as the course does
   (``pip install git+https://github.com/openai/CLIP.git``), or, where GitHub cannot be reached,
   from PyPI's ``openai-clip``. Both give the same ``import clip``.
3. The suite itself with ``--no-deps``, then only the missing pure-Python dependencies: torch and
   torchvision are never installed or upgraded here.
"""
import importlib.util
import os
import subprocess
import sys

MIN_PYTHON = (3, 9)
MIN_TORCH = (2, 0)
CLIP_GIT = "git+https://github.com/openai/CLIP.git"
CLIP_PYPI = "openai-clip==1.0.1"
# import name -> pip requirement, for what the package imports besides torch, torchvision and clip
PURE_DEPENDENCIES = {"numpy": "numpy>=1.22", "packaging": "packaging>=23", "PIL": "pillow>=9",
                     "tqdm": "tqdm>=4.60", "matplotlib": "matplotlib>=3.7", "seaborn": "seaborn>=0.13"}

OLD_PLATFORM_STEPS = """\
What works (pick one):
  * ModelArts: create the notebook with a newer image (PyTorch 2.x, Python >= 3.9), or
    open a Terminal and run:
      conda create -y -n fewshot python=3.10
      conda activate fewshot
      pip install torch==2.1.2 torchvision==0.16.2 --index-url https://download.pytorch.org/whl/cu118
      pip install ipykernel && python -m ipykernel install --user --name fewshot
    then choose the kernel "fewshot" and rerun this cell. (cu118 builds run on the P100; the
    GPU driver must support CUDA 11.8: `nvidia-smi` shows its CUDA version.)
  * Colab: Runtime > Change runtime type, keep the default (it has Python >= 3.9 and torch >= 2.0).
  * Your own machine: `make install` in the repository."""


def _version(text):
    parts = []
    for piece in text.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def platform_problems():
    """What stops the suite here, each with the steps that fix it ([] when all is well)."""
    if sys.version_info[:2] < MIN_PYTHON:
        return ["Python %d.%d found; the suite needs Python >= %d.%d.\n%s" % (
            sys.version_info[0], sys.version_info[1], MIN_PYTHON[0], MIN_PYTHON[1], OLD_PLATFORM_STEPS)]
    if importlib.util.find_spec("torch") is None:
        return ["PyTorch is not installed. Install the build for your GPU driver "
                "(https://pytorch.org/get-started/locally/), then rerun.\n" + OLD_PLATFORM_STEPS]
    import torch

    if _version(torch.__version__) < MIN_TORCH:
        return ["PyTorch %s found; the suite needs PyTorch >= %d.%d (it will not replace the "
                "installed one, which matches this machine's CUDA driver).\n%s" % (
                    torch.__version__, MIN_TORCH[0], MIN_TORCH[1], OLD_PLATFORM_STEPS)]
    if importlib.util.find_spec("torchvision") is None:
        return ["torchvision is missing: install the release that matches torch %s (see "
                "https://pytorch.org/get-started/previous-versions/), then rerun." % torch.__version__]
    return []


def install_clip(pip, git=CLIP_GIT, pypi=CLIP_PYPI, options=(), timeout=600, force=False):
    """Make ``import clip`` possible: "present", "git" or "pypi" (how it was done). ``options``
    are extra ``pip install`` options (tests install into a ``--target``)."""
    if importlib.util.find_spec("clip") is not None and not force:
        return "present"
    try:
        subprocess.run(pip + ["install", "-q"] + list(options) + [git], check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return "git"
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        print("CLIP could not be installed from %s; using PyPI's %s instead." % (git, pypi))
    subprocess.run(pip + ["install", "-q"] + list(options) + [pypi], check=True, timeout=timeout)
    return "pypi"


def install_suite(pip, root="."):
    """The suite, editable and without dependencies; then only the missing pure-Python ones."""
    subprocess.run(pip + ["install", "-q", "--no-deps", "-e", root], check=True)
    missing = [req for mod, req in PURE_DEPENDENCIES.items() if importlib.util.find_spec(mod) is None]
    if missing:
        subprocess.run(pip + ["install", "-q"] + missing, check=True)
    return missing


def main(argv=None):
    problems = platform_problems()
    if problems:
        print("error: " + "\n".join(problems), file=sys.stderr)
        return 1
    pip = [sys.executable, "-m", "pip"]
    how = install_clip(pip)
    installed = install_suite(pip, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    importlib.invalidate_caches()
    print("fewshot is ready (CLIP: %s%s)." % (how, "; installed " + ", ".join(installed) if installed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
