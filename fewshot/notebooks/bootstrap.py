"""Set up a hosted notebook (Colab, ModelArts) for the suite, never replacing the platform's torch.

Run by every notebook's setup cell on a hosted platform, as a script (``python
fewshot/notebooks/bootstrap.py``): it uses the standard library only and parses on old Pythons, so that an
unsupported environment gets the exact steps that work instead of a pip resolver error.

1. Python and torch are checked against the supported range (README); outside it, it stops with
   what to do (the course's ModelArts image, ``PyTorch-1.8`` on Python 3.7, is outside it).
2. OpenAI's CLIP: kept if importable; else installed from GitHub as the course does
   (``pip install git+https://github.com/openai/CLIP.git``), or, where GitHub cannot be reached,
   from PyPI's ``openai-clip``. Both give the same ``import clip``.
3. The suite itself with ``--no-deps``, then only the missing pure-Python dependencies: torch and
   torchvision are never upgraded here.

Offline (ModelArts without GitHub or download.pytorch.org): ``--wheelhouse PATH`` (or the
``FEWSHOT_WHEELHOUSE`` variable, or a ``wheelhouse-py3XX.zip`` for this Python found beside the
suite or in the working folder) installs everything from a local folder or zip of wheels, built
elsewhere by ``make wheelhouse``, with ``pip install --no-index --find-links``: torch and
torchvision only where they are missing, then CLIP, the suite and its missing dependencies.
"""
import importlib.util
import os
import subprocess
import sys
import zipfile

MIN_PYTHON = (3, 9)
MIN_TORCH = (2, 0)
CLIP_GIT = "git+https://github.com/openai/CLIP.git"
CLIP_PYPI = "openai-clip==1.0.1"
# import name -> pip requirement, for what the package imports besides torch, torchvision and clip
PURE_DEPENDENCIES = {"numpy": "numpy>=1.22", "packaging": "packaging>=23", "PIL": "pillow>=9",
                     "tqdm": "tqdm>=4.60", "matplotlib": "matplotlib>=3.7", "seaborn": "seaborn>=0.13"}
# offline only: what a new conda environment lacks to be a notebook kernel
OFFLINE_EXTRAS = {"ipykernel": "ipykernel"}
WHEELHOUSE_ENV = "FEWSHOT_WHEELHOUSE"

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
  * ModelArts without GitHub or download.pytorch.org (offline): on any machine with internet,
    `make wheelhouse` (writes dist/wheelhouse-py310.zip) and `make release` (dist/fewshot-suite.zip);
    copy both through OBS into the notebook's work folder; then in a Terminal there:
      conda create -y -n fewshot python=3.10 && conda activate fewshot
      unzip -q fewshot-suite.zip && python fewshot-suite/fewshot/notebooks/bootstrap.py --wheelhouse wheelhouse-py310.zip
      python -m ipykernel install --user --name fewshot
    then choose the kernel "fewshot" and rerun this cell (README: "ModelArts, offline").
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


def install_clip(pip, git=CLIP_GIT, pypi=CLIP_PYPI, options=(), timeout=600, force=False, wheelhouse=None):
    """Make ``import clip`` possible: "present", "git", "pypi" or "wheelhouse" (how it was done).
    ``options`` are extra ``pip install`` options (tests install into a ``--target``); with a
    ``wheelhouse`` folder, ``openai-clip`` comes from it, offline."""
    if importlib.util.find_spec("clip") is not None and not force:
        return "present"
    if wheelhouse:
        install_offline(pip, wheelhouse, ["openai-clip"], options, timeout)
        return "wheelhouse"
    try:
        subprocess.run(pip + ["install", "-q"] + list(options) + [git], check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return "git"
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        print("CLIP could not be installed from %s; using PyPI's %s instead." % (git, pypi))
    subprocess.run(pip + ["install", "-q"] + list(options) + [pypi], check=True, timeout=timeout)
    return "pypi"


def install_suite(pip, root=".", wheelhouse=None):
    """The suite, editable and without dependencies; then only the missing pure-Python ones (with
    a ``wheelhouse``: from it, offline, ipykernel included)."""
    index = ["--no-index", "--find-links", wheelhouse] if wheelhouse else []
    subprocess.run(pip + ["install", "-q", "--no-deps"] + index + ["-e", root], check=True)
    wanted = dict(PURE_DEPENDENCIES, **(OFFLINE_EXTRAS if wheelhouse else {}))
    missing = [req for mod, req in wanted.items() if importlib.util.find_spec(mod) is None]
    if missing:
        subprocess.run(pip + ["install", "-q"] + index + missing, check=True)
    return missing


def _unpack(archive, folder):
    """Unpack a zip of wheels into ``folder`` (created whole: unpacked aside, then renamed)."""
    tmp = "%s.partial-%d" % (folder, os.getpid())
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp)
    inner = [n for n in os.listdir(tmp) if not n.startswith(".")]
    nested = len(inner) == 1 and os.path.isdir(os.path.join(tmp, inner[0]))  # zip of one folder
    os.rename(os.path.join(tmp, inner[0]) if nested else tmp, folder)
    if nested:
        os.rmdir(tmp)


def wheelhouse_folder(path):
    """The folder of wheels at ``path``: the folder itself, or a zip unpacked once beside it
    (``wheelhouse-py310.zip`` -> ``wheelhouse-py310/``). Raises ValueError naming the problem."""
    path = os.path.abspath(path)
    folder = path
    if os.path.isfile(path) and zipfile.is_zipfile(path):
        folder = path[:-4] if path.endswith(".zip") else path + ".d"
        if not os.path.isdir(folder):
            _unpack(path, folder)
    elif os.path.exists(path) and not os.path.isdir(path):
        raise ValueError("%s is neither a folder nor a zip of wheels (make it with `make wheelhouse`)" % path)
    elif not os.path.exists(path):
        raise ValueError("no wheelhouse at %s: copy wheelhouse-py310.zip (from `make wheelhouse`) there" % path)
    wheels = [n for n in os.listdir(folder) if n.endswith(".whl")]
    if not wheels:
        raise ValueError("%s holds no .whl files: build it with `make wheelhouse`" % folder)
    here = "cp%d%d" % sys.version_info[:2]
    built_for = sorted({n.split("-")[-3] for n in wheels if n.split("-")[-3].startswith("cp3")})
    if built_for and here not in built_for:
        want = "3." + built_for[0][3:]
        raise ValueError("%s holds wheels for Python %s, this is Python %d.%d: run it in a Python %s "
                         "environment (conda create -y -n fewshot python=%s)" % (
                             folder, want, sys.version_info[0], sys.version_info[1], want, want))
    return folder


def install_offline(pip, folder, requirements, options=(), timeout=3600):
    """``pip install --no-index --find-links folder requirements``: nothing comes from a network."""
    subprocess.run(pip + ["install", "-q", "--no-index", "--find-links", folder] + list(options)
                   + list(requirements), check=True, timeout=timeout)


def find_wheelhouse(argv, environ, suite_root):
    """The wheelhouse to use, or None: ``--wheelhouse PATH`` in ``argv``, else ``$FEWSHOT_WHEELHOUSE``,
    else ``wheelhouse-py3XX.zip`` (or that folder) for this Python beside the suite or in the cwd."""
    if "--wheelhouse" in argv:
        i = argv.index("--wheelhouse")
        if i + 1 >= len(argv):
            raise ValueError("--wheelhouse needs a path (a folder or zip of wheels)")
        return argv[i + 1]
    if environ.get(WHEELHOUSE_ENV):
        return environ[WHEELHOUSE_ENV]
    name = "wheelhouse-py%d%d" % sys.version_info[:2]
    for where in (os.path.dirname(os.path.abspath(suite_root)), os.getcwd()):
        for candidate in (os.path.join(where, name + ".zip"), os.path.join(where, name)):
            if os.path.exists(candidate):
                return candidate
    return None


def install_torch_offline(pip, folder, options=()):
    """torch and torchvision from the wheelhouse where they are missing; returns what was installed.
    A torch that is present is never replaced (it matches the machine's driver)."""
    missing = [m for m in ("torch", "torchvision") if importlib.util.find_spec(m) is None]
    if missing:
        install_offline(pip, folder, missing, options)
    return missing


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pip = [sys.executable, "-m", "pip"]
    try:
        wheelhouse = find_wheelhouse(argv, os.environ, root)
        folder = wheelhouse_folder(wheelhouse) if wheelhouse else None
    except ValueError as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    if folder and sys.version_info[:2] >= MIN_PYTHON:
        installed = install_torch_offline(pip, folder)
        if installed:
            importlib.invalidate_caches()
            print("installed %s from %s" % (" and ".join(installed), folder))
    problems = platform_problems()
    if problems:
        print("error: " + "\n".join(problems), file=sys.stderr)
        return 1
    how = install_clip(pip, wheelhouse=folder)
    installed = install_suite(pip, root, wheelhouse=folder)
    importlib.invalidate_caches()
    print("fewshot is ready (CLIP: %s%s%s)." % (how, "; installed " + ", ".join(installed) if installed else "",
                                              "; offline, from " + folder if folder else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
