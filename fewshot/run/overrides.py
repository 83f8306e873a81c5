"""Overrides: ``--set key=value`` pairs, read into the values a config takes (no code runs: literals only)."""
from __future__ import annotations

import ast
import json

from fewshot.base.errors import ConfigError

__all__ = ["parse_overrides", "parse_value"]


def parse_value(text: str):
    """One ``--set`` value: a Python or JSON literal, a list of bare words, else the plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return json.loads(text)  # JSON spellings too: --set progress=false
    except ValueError:
        pass
    if text.startswith("[") and text.endswith("]"):  # a list of bare words: methods=[gda,lp++]
        return [parse_value(part.strip()) for part in text[1:-1].split(",") if part.strip()]
    return text  # plain strings need no quotes: --set device=cpu


def parse_overrides(pairs: list[str]) -> dict:
    """``["key=value", ...]`` (``--set``) as ``{key: value}``; values as :func:`parse_value` reads them."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = parse_value(value)
    return out
