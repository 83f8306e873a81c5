"""Config fields as data: one :class:`Field` per setting, declared by the layer that owns it.

Each layer keeps a small section module (``fewshot/data/data_config.py``, ...) holding a tuple of
fields; :mod:`fewshot.run.config` assembles the frozen ``RunConfig`` from them, and ``run --help``
prints their help. The checks here (``str_check``, ``int_check``, ...) turn a value that enters a
config into its normalised form (tuples, floats) or raise one :class:`ConfigError` line naming the
field. Nothing here imports torch, clip or numpy: reading a config must stay cheap.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from fewshot.base.errors import ConfigError

__all__ = ["Field", "make_section", "fail", "str_check", "int_check", "float_check", "bool_check",
           "list_check", "SEED_MAX"]

SEED_MAX = 2**63 - 1  # the largest seed: torch generators take 64 bits, fine-tuning also seeds seed + 1


@dataclass(frozen=True)
class Field:
    """One config setting: ``check(name, value)`` returns the normalised value or raises."""

    name: str  # the attribute of RunConfig (and the key of config.json, of --set NAME=VALUE)
    type: type  # the annotation (str, int, float, bool, tuple, dict)
    default: Any  # the value when a config or config.json leaves it out
    check: Callable[[str, Any], Any]  # (name, value) -> normalised value; ConfigError when wrong
    help: str  # one line for `python -m fewshot run --help`
    section: str = ""  # the heading it is listed under (set by make_section)
    runtime: bool = False  # True: changes how or where a run executes, never its numbers


def make_section(title: str, *fields: Field) -> tuple[Field, ...]:
    """``fields`` with their ``section`` set to ``title``."""
    return tuple(dataclasses.replace(f, section=title) for f in fields)


def fail(name, expected, value):
    """Raise the one-line error of a wrong value: ``config field 'x' must be <expected>, got v``."""
    raise ConfigError(f"config field {name!r} must be {expected}, got {value!r}")


def str_check(choices=None, pattern=None, empty=False, desc=""):
    """A string (non-empty unless ``empty``), one of ``choices`` (a tuple or a function returning
    one, read when checked) and matching ``pattern`` (described as ``desc``) when given."""
    def check(name, v):
        if not isinstance(v, str) or (not empty and not v.strip()):
            fail(name, "a non-empty string" if not empty else "a string", v)
        options = choices() if callable(choices) else choices
        if options is not None and v not in options:
            fail(name, f"one of {', '.join(options)}", v)
        if pattern and not re.fullmatch(pattern, v):
            fail(name, desc, v)
        return v
    return check


def int_check(lo=None, hi=None):
    """An integer (not a bool) in [lo, hi]."""
    def check(name, v):
        if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo) or (hi is not None and v > hi):
            fail(name, (f"an integer >= {lo}" if lo is not None else "an integer")
                 + (f" and <= {hi}" if hi is not None else ""), v)
        return v
    return check


def float_check(lo=None, hi=None, lo_open=True):
    """A finite number above ``lo`` (or at it, unless ``lo_open``) and at most ``hi``, as a float."""
    def check(name, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
                (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi):
            low = f"{'>' if lo_open else '>='} {lo}" if lo is not None else ""
            fail(name, "a finite number" + (f" {low}" if low else "") + (f" and <= {hi}" if hi is not None else ""), v)
        return float(v)
    return check


def bool_check(name, v):
    """true or false (not 0 or 1)."""
    if not isinstance(v, bool):
        fail(name, "true or false", v)
    return v


def list_check(item, what, allow_empty=False):
    """A non-empty list of distinct values, each checked by ``item``, as a tuple; with
    ``allow_empty`` an empty list is ``()`` (meaning "all")."""
    def check(name, v):
        if allow_empty and isinstance(v, (list, tuple)) and not v:
            return ()
        if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)) or not v:
            fail(name, f"a non-empty list of {what}", v)
        out = tuple(item(f"{name}[{i}]", x) for i, x in enumerate(v))
        if len(set(out)) != len(out):
            fail(name, f"a list of distinct {what}", v)
        return out
    return check
