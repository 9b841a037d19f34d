"""Operating-system faults (disk full, permission, read-only) as one sentence naming the path."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from debuggable.errors import DebuggableError

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file grew past the size limit (ulimit -f)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOENT: "no such file or directory",
    errno.EIO: "an input/output error (a failing disk?)",
}


class RunIOError(DebuggableError):
    """An ``OSError`` met while a command read or wrote ``path``, as one sentence.

    Attributes:
        path: the file or directory involved.
        errno: the ``OSError``'s errno (``None`` when unknown).
    """

    def __init__(self, message: str, path: Path | None, err: int | None):
        super().__init__(message)
        self.path, self.errno = path, err


def reason(exc: OSError) -> str:
    """What went wrong, in words."""
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    return (os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__).lower()


def io_error(exc: OSError, fallback: Path | None = None, *, then: str = "") -> RunIOError:
    """``exc`` as a :class:`RunIOError`: ``"could not write PATH: REASON; THEN."``.

    Args:
        exc: the error.
        fallback: the path to name when ``exc`` carries none (e.g. a stage's directory).
        then: what the user does next (e.g. "free some space, then rerun the same command").
    """
    path = Path(exc.filename) if getattr(exc, "filename", None) else fallback
    where = f" {path}" if path is not None else ""
    tail = f"; {then}" if then else ""
    return RunIOError(f"could not read or write{where}: {reason(exc)}{tail}.", path, exc.errno)


def name_the_path(exc: OSError, path: str | os.PathLike) -> OSError:
    """Give ``exc`` a file name when it has none (a failed ``write()`` names no file)."""
    if not getattr(exc, "filename", None):
        exc.filename = os.fspath(path)
    return exc


def silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so Python's exit flush stays quiet."""
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
