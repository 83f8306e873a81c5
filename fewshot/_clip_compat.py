"""Let OpenAI's ``clip`` package import on setuptools releases without ``pkg_resources``.

``openai-clip`` 1.0.1 runs ``from pkg_resources import packaging`` and only ever uses
``packaging.version.parse``. setuptools >= 81 no longer ships ``pkg_resources``, while torch >= 2.14
needs setuptools >= 77.0.3, so pinning an old setuptools is not an option.

:func:`install` adds an import hook that answers ``import pkg_resources`` with a tiny module
exposing only the real ``packaging`` distribution, and only when (a) no real ``pkg_resources`` is
installed and (b) the importer is ``clip.clip``. Every other importer still gets the usual
``ModuleNotFoundError``, so libraries that probe for ``pkg_resources`` keep their fallbacks.

The hook is installed by ``import fewshot`` and, for a bare ``import clip`` in any interpreter of
the environment, by the one-line ``fewshot_clip_compat.pth`` that ``pip install`` places in
site-packages. It is stdlib-only and costs nothing until something imports ``pkg_resources``.
The ``.pth`` line never imports the ``fewshot`` package (a moved or copied checkout then imports
its own code, not the one found at start-up): it finds this file without importing anything,
loads it alone as ``_fewshot_clip_compat``, and does nothing, silently, when the package is gone
or anything fails.
After ``fewshot`` imports ``clip`` it removes the stand-in from ``sys.modules`` (:func:`forget`);
after a bare ``import clip`` the stand-in stays there.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

_IMPORTERS = frozenset({"clip.clip"})  # modules allowed to see the shim


def _importer_name() -> str | None:
    """Name of the first module on the stack that is not import machinery or this file."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(("importlib", "_frozen_importlib")) and name != __name__:
            return name
        frame = frame.f_back
    return None


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return None  # default module creation

    def exec_module(self, module: types.ModuleType) -> None:
        import packaging.version  # noqa: F401  (makes `packaging.version` an attribute)
        import packaging

        module.packaging = packaging
        module.__doc__ = "fewshot's minimal stand-in for pkg_resources: only `packaging` is provided."


class _Finder(importlib.abc.MetaPathFinder):
    FEWSHOT_SHIM = True  # one hook, whichever copy of this file installed it (see install)

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "pkg_resources" or _importer_name() not in _IMPORTERS:
            return None
        for finder in sys.meta_path:  # a real pkg_resources always wins
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            if finder.find_spec(fullname, path, target) is not None:
                return None
        return importlib.machinery.ModuleSpec(fullname, _Loader(), origin="fewshot._clip_compat")


def forget() -> None:
    """Drop the stand-in from ``sys.modules`` once ``clip`` has been imported, so that later
    importers of ``pkg_resources`` (pytest, for one) see no module rather than the stand-in.
    ``fewshot`` calls this right after ``import clip``."""
    mod = sys.modules.get("pkg_resources")
    if mod is not None and getattr(mod, "__spec__", None) is not None and \
            mod.__spec__.origin == "fewshot._clip_compat":
        del sys.modules["pkg_resources"]


def import_clip():
    """OpenAI's ``clip`` module, imported on first use (it pulls in torchvision, about 2 s: steps
    that work on cached features never pay for it), with the stand-in forgotten afterwards."""
    import clip

    forget()
    return clip


def install() -> None:
    """Add the import hook once (idempotent); safe to call at interpreter start-up."""
    if not any(getattr(f, "FEWSHOT_SHIM", False) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
