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
__all__ += ["PathError", "explain_os_error"]


class FewshotWarning(UserWarning):
    """Something the user should know that does not stop the run (a recomputed cache, an unknown
    checkpoint); the CLI prints it as one ``warning:`` line."""


class FewshotError(Exception):
    """Base of every error caused by input, data or settings (not by a bug).

    Raised in a DataLoader worker, torch re-raises it in the main process with the worker's whole
    traceback as its message; that message is cut back to the original one (the file that failed),
    so the CLI still prints one line."""

    exit_code = 2

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], str):
            args = (_unwrap_worker(args[0], type(self)),)
        super().__init__(*args)


def _unwrap_worker(message: str, cls: type) -> str:
    """The original message inside torch's "Caught X in DataLoader worker process N. Original
    Traceback ..." text (the last ``module.X: message`` of the traceback); else ``message``."""
    if not (message.startswith(f"Caught {cls.__name__} in ") and "\nOriginal Traceback" in message):
        return message
    head = f"\n{cls.__module__}.{cls.__qualname__}: "
    at = message.rfind(head)
    return message[at + len(head):].rstrip("\n") if at >= 0 else message


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
    needed. Nothing written before is touched (:mod:`fewshot.base.atomic`)."""

    exit_code = 1


class PathError(FewshotError, OSError):
    """A path setting (``out``, ``cache_dir``, ``--out``) names something the suite cannot write:
    a file where a folder belongs, a read-only or virtual file system, a folder without write
    permission. The message names the path, the reason and the fix; nothing was written."""


class BudgetError(FewshotError, RuntimeError):
    """A step's measured estimate exceeds ``time_budget``; the message lists cheaper settings."""


_OS_FIXES = {
    "ENOSPC": "free space there, or point `out` / `cache_dir` to a disk with room, and run again "
              "(earlier files are intact)",
    "EROFS": "that file system is read-only: point `out` / `cache_dir` (or `--out`) to a writable folder",
    "EACCES": "this user may not write there: fix its permissions, or point `out` / `cache_dir` (or "
              "`--out`) to a folder of your own",
    "ENOTDIR": "a file stands where a folder belongs: move it away, or point the setting elsewhere",
    "EISDIR": "a folder stands where a file belongs: move it away, or point the setting elsewhere",
    "EEXIST": "a file stands where a folder belongs: move it away, or point the setting elsewhere",
    "EFBIG": "that file system (FAT32: 4 GB) or a limit (ulimit -f) refuses files this large: point "
             "`out` / `cache_dir` to another disk",
}
_OS_FIXES.update(EDQUOT=_OS_FIXES["ENOSPC"], EPERM=_OS_FIXES["EACCES"])


def explain_os_error(err: OSError) -> "FewshotError | None":
    """The one-line error for an ``OSError`` a user's machine or settings cause (full disk,
    read-only file system, no permission, a file where a folder belongs), naming the path and
    the fix; None for any other (a bug keeps its traceback). A full disk is a DiskFullError."""
    import errno

    if isinstance(err, FewshotError):
        return err
    code = errno.errorcode.get(err.errno or 0, "")
    if code not in _OS_FIXES:
        return None
    where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None) or "a file"
    cls = DiskFullError if code in ("ENOSPC", "EDQUOT") else PathError
    return cls(f"{where}: {err.strerror or 'failed'} ({code}); {_OS_FIXES[code]}.")
