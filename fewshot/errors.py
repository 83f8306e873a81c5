"""Errors: one base class for every problem a user can fix, so the CLI prints one ``error:`` line.

Each subclass names the kind of input at fault; every message names the file or setting and says
what to do. Anything else that escapes is a bug and keeps its traceback.
"""
from __future__ import annotations

__all__ = ["FewshotWarning", "FewshotError", "ConfigError", "DatasetError", "ImageError", "BackboneError",
           "CacheError", "MissingStepError", "RunLockedError", "NonFiniteError"]


class FewshotWarning(UserWarning):
    """Something the user should know that does not stop the run (a recomputed cache, an unknown
    checkpoint); the CLI prints it as one ``warning:`` line."""


class FewshotError(Exception):
    """Base of every error caused by input, data or settings (not by a bug)."""


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
