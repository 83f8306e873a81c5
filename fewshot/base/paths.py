"""Path settings: ``~`` and environment variables expanded once, where a value enters.

Every path setting of a run (``data``, ``backbone`` when it is a path, ``out``, ``report_dir``,
``cache_dir``, ``download_root``, ``merge_tasks``, the paths of ``shift_sets``) goes through
:func:`expand_path` when the config is validated, before any work, so every consumer sees the
same path, and a literal ``~`` or ``$HOME`` folder is never created. The command line's path
arguments are expanded the same way (``--out=~/x`` is not expanded by the shell).
"""
from __future__ import annotations

import os
import re

from fewshot.base.errors import ConfigError

__all__ = ["expand_path", "path_setting"]

_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})")


def expand_path(text: str, what: str = "a path") -> str:
    """``text`` with ``~``, ``~user``, ``$VAR`` and ``${VAR}`` expanded as a shell would. An
    unset variable or an unknown user is a :class:`ConfigError` naming ``what`` (the setting or
    argument, e.g. ``config field 'out'``)."""
    out = os.path.expanduser(os.path.expandvars(text))
    unset = _VARIABLE.search(out)
    if unset:
        raise ConfigError(f"{what} uses {unset.group(0)}, which is not set in the environment: set "
                          f"it, or write the path out ({text!r})")
    if out.startswith("~"):
        raise ConfigError(f"{what}: there is no user {out.split(os.sep)[0]!r} for {text!r} to "
                          f"expand to; write the path out")
    return out


def path_setting(empty: bool = False, name_or_path: bool = False):
    """The config check of a path setting: a (non-empty unless ``empty``) string, expanded. With
    ``name_or_path`` (``backbone``) a value without ``~`` or ``$`` is kept as it is (a registered
    name such as ``ViT-B/32``)."""
    def check(name, v):
        if not isinstance(v, str) or (not empty and not v.strip()):
            raise ConfigError(f"config field {name!r} must be {'a string' if empty else 'a non-empty string'}, "
                              f"got {v!r}")
        if not v or (name_or_path and not re.search(r"[~$]", v)):
            return v
        return expand_path(v, f"config field {name!r}")
    return check
