"""Which checkout's code runs: a moved or copied checkout is told when it runs another's.

An editable install (``make install``: ``pip install -e .``) records the checkout's folder in the
environment. Copy or move the checkout with its ``.venv`` and that record still names the old
folder: Python run from the new root imports the new code (the working directory comes first),
but run from anywhere else (``notebooks/``, a kernel) it imports the old folder's code.
:func:`stale_install` spots this case on ``import fewshot`` (stdlib only; the usual case costs two
path comparisons) and says what to re-run.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["stale_install"]


def _checkout_of(path: Path) -> Path | None:
    """The nearest folder above ``path`` that is a checkout of this project, or None."""
    for folder in path.parents:
        project = folder / "pyproject.toml"
        if (folder / "fewshot" / "__init__.py").is_file() and project.is_file() and \
                'name = "fewshot"' in project.read_text(encoding="utf-8", errors="replace"):
            return folder
    return None


def _editable_target() -> Path | None:
    """The folder the environment's editable install of ``fewshot`` points at, or None."""
    try:
        from importlib.metadata import distribution

        info = json.loads(distribution("fewshot").read_text("direct_url.json") or "{}")
        url = info.get("url", "") if info.get("dir_info", {}).get("editable") else ""
        return Path(url[len("file://"):]).resolve() if url.startswith("file://") else None
    except Exception:  # no such distribution, no record, unreadable: nothing to say
        return None


def stale_install(package_dir: str | Path, prefix: str | Path | None = None) -> str | None:
    """A one-line message when the environment (``prefix``, default ``sys.prefix``) lives in one
    checkout but the editable install made Python import ``package_dir`` from another; else None.
    Code found on ``PYTHONPATH`` (not the editable install's target) is never questioned."""
    code_root = Path(package_dir).resolve().parent
    env = Path(prefix or sys.prefix).resolve()
    if env == code_root or code_root in env.parents:
        return None
    home = _checkout_of(env)
    if home is None or home == code_root or _editable_target() != code_root:
        return None
    return (f"this environment ({env}) belongs to the checkout {home}, but Python imported fewshot "
            f"from {code_root}, where its editable install still points (the checkout was copied "
            f"or moved): run `{env}/bin/python -m pip install --no-deps -e {home}` once to use "
            f"{home}'s code (`make install` thinks the copied environment is current).")
