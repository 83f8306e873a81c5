"""Errors: one base class for every problem a user can fix, so the CLI prints one ``error:`` line.

Each subclass names the kind of input at fault; every message names the file or setting and says
what to do. Anything else that escapes is a bug and keeps its traceback. ``exit_code`` is the CLI's
exit status: 2 for input, data and settings (as argparse's usage errors), 1 for a machine that
cannot hold the result (a full disk).
"""
from __future__ import annotations

__all__ = ["FewshotWarning", "FewshotError", "ConfigError", "DatasetError", "ImageError", "BackboneError",
           "CacheError", "MissingStepError", "RunLockedError", "NonFiniteError", "DiskFullError",
           "BudgetError"]


class FewshotWarning(UserWarning):
    """Something the user should know that does not stop the run (a recomputed cache, an unknown
    checkpoint); the CLI prints it as one ``warning:`` line."""


class FewshotError(Exception):
    """Base of every error caused by input, data or settings (not by a bug)."""

    exit_code = 2


class ConfigError(FewshotError, ValueError):
    """A config file, field or value that cannot be used."""


class DatasetError(FewshotError, ValueError):
    """A dataset folder that cannot be used; the message names the classes or files."""


class ImageError(FewshotError, ValueError):
    """A file that cannot be decoded as an image."""


class BackboneError(FewshotError, RuntimeError):
    """A checkpoint that cannot be used; the message says why and what to do."""


class CacheError(FewshotError, RuntimeError):
    """A cache or run file that failed verification and could not be recomputed."""


class MissingStepError(FewshotError, FileNotFoundError):
    """An input that an earlier step writes is missing or stale; the message names that step."""


class RunLockedError(FewshotError, RuntimeError):
    """Another process is writing the same run folder."""


class NonFiniteError(FewshotError, FloatingPointError):
    """A loss or logit became NaN or infinite; the message names the step and the setting."""


class DiskFullError(FewshotError, OSError):
    """A cache or run folder's disk (or quota) is full; the message names the path and the space
    needed. Nothing written before is touched (:mod:`fewshot.atomic`)."""

    exit_code = 1


class BudgetError(FewshotError, RuntimeError):
    """A step's measured estimate exceeds ``time_budget``; the message lists cheaper settings."""
