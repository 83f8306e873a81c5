"""`import clip` works although setuptools >= 81 has no pkg_resources (openai-clip 1.0.1 needs it)."""
import importlib.util
import subprocess
import sys
import sysconfig
from pathlib import Path


def _fresh(code: str) -> subprocess.CompletedProcess:
    # -I: isolated interpreter (no PYTHONPATH, no user site, cwd not on sys.path): only what the
    # environment itself installs is used, as in a fresh shell.
    return subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                          cwd="/")


def test_bare_import_clip_in_fresh_interpreter():
    res = _fresh("import clip; print(clip.available_models()[0]); "
                 "print(clip.tokenize(['a photo of a cat.']).shape)")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["RN50", "torch.Size([1,", "77])"]


def test_the_pitfall_is_real_here_and_the_pth_hook_is_installed():
    site = Path(sysconfig.get_paths()["purelib"])
    assert (site / "fewshot_clip_compat.pth").exists()
    if importlib.util.find_spec("pkg_resources") is None:  # setuptools >= 81: hook is needed
        res = _fresh("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
                     "if type(f).__name__ != '_Finder']; import clip")
        assert res.returncode != 0 and "pkg_resources" in res.stderr


def test_other_importers_still_see_no_pkg_resources():
    res = _fresh("import importlib.util\n"
                 "real = importlib.util.find_spec('pkg_resources') is not None\n"
                 "try:\n    import pkg_resources\n    print('real' if real else 'SHIM LEAKED')\n"
                 "except ModuleNotFoundError:\n    print('absent')")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() in {"absent", "real"}
