"""The ways a request can fail, shared by planning, running, the job store and the HTTP layer."""

from __future__ import annotations

import errno
import sqlite3


class RequestError(ValueError):
    """The request cannot run as asked; the message says what to change (answered with 400)."""


class RunError(RuntimeError):
    """A run failed after it started (target errors, a dead worker): answered with 500 and the reason."""


class JobEndedUnfinished(RunError):
    """A job a caller waited on was cancelled or interrupted by a restart rather than failing on its own (answered
    with 409: not a failure of the run, and not one a client should retry under the same key)."""


class PartialRunError(RunError):
    """Part of a run failed and part succeeded: the job fails, and keeps the result of the part that succeeded."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message, result)
        self.result = result  # the response model of what succeeded

    def __str__(self) -> str:
        return self.args[0]


class StorageError(RunError):
    """The outputs root cannot be written: 507 when it is full, else 500 (read-only, permissions, ...)."""

    def __init__(self, message: str, full: bool = False) -> None:
        super().__init__(message, full)  # both args, so the error survives pickling between Ray processes
        self.full = full

    def __str__(self) -> str:
        return self.args[0]


def storage_error(what: str, exc: OSError | sqlite3.Error) -> StorageError:
    """A StorageError saying what could not be written and why; SQLite words a full disk in its message."""
    full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in str(exc)
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return StorageError(f"{what} cannot be written: {reason}", full=full)
