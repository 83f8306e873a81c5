"""Package metadata installs what the package imports; requirements.txt and pyproject.toml agree."""
import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_DIST = {"PIL": "pillow", "clip": "openai-clip", "skimage": "scikit-image"}


def _names(lines) -> set[str]:
    return {re.split(r"[<>=!\[ ]", line.strip())[0].lower() for line in lines
            if line.strip() and not line.strip().startswith("#")}


def _pyproject():
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_requirements_txt_is_the_package_plus_clip_and_the_notebook_tools():
    project = _pyproject()
    extras = project["optional-dependencies"]
    wanted = _names(project["dependencies"]) | _names(extras["clip"]) | _names(extras["notebooks"])
    assert _names((ROOT / "requirements.txt").read_text().splitlines()) == wanted


def test_every_third_party_import_of_the_package_is_declared():
    project = _pyproject()
    declared = _names(project["dependencies"]) | _names(project["optional-dependencies"]["clip"])
    stdlib = set(sys.stdlib_module_names)
    found = set()
    for path in (ROOT / "fewshot").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    third_party = found - stdlib - {"fewshot", "__future__"}
    optional = {"google", "jupytext", "papermill", "IPython", "scipy", "tomllib",  # Colab / notebooks only
                "sklearn",  # t-SNE in fewshot.protocol.analysis, only where installed (PCA otherwise)
                "pyarrow"}  # FusionBench's parquet exports (fewshot.data.hf_files), a clean error without it
    missing = {m for m in third_party - optional if _DIST.get(m, m).lower() not in declared}
    assert missing == set(), f"imported but not declared in pyproject.toml: {sorted(missing)}"
