"""One place that turns exceptions into a clear line, a hint and an exit code.

Every command raises; :func:`report` (called by the group in :mod:`actionqueue.cli.app`) maps
the exception to what the user sees. Tracebacks only with ``--debug``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from actionqueue import errors as e

__all__ = ["EXIT", "CliError", "describe", "lock_holder_pid"]

#: Exit codes (documented in docs/cli.md). 2 is click's own usage error.
EXIT = {
    "ok": 0,
    "error": 1,
    "usage": 2,
    "no_data_dir": 3,
    "locked": 4,
    "corrupt": 5,
    "not_found": 6,
    "refused": 7,
    "aborted": 8,
}


class CliError(Exception):
    """An error the CLI itself detects: ``message``, optional ``hint``, and an exit code name."""

    def __init__(self, message: str, hint: str | None = None, code: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


@dataclass(frozen=True, slots=True)
class Described:
    message: str
    hint: str | None
    exit_code: int


_READ_ONLY = "stats, tasks, runs, show, why, wal verify and wal dump work while it runs"


def lock_holder_pid(data_dir: str) -> int | None:
    """The pid the lock holder wrote into ``wal/LOCK`` if that process is alive, else ``None``.

    Reading the file never touches the lock itself, so a live queue is not disturbed (taking
    the flock even briefly could make that queue's own open fail).
    """
    try:
        with open(os.path.join(data_dir, "wal", "LOCK")) as f:
            pid = int(f.read().strip() or "0")
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, owned by someone else
    return pid


def describe(exc: BaseException, data_dir: str) -> Described:
    """The message, hint and exit code for ``exc`` (any exception)."""
    if isinstance(exc, CliError):
        return Described(exc.message, exc.hint, EXIT[exc.code])
    text = str(exc) or type(exc).__name__
    if isinstance(exc, e.DataDirLockedError):
        lock = os.path.join(data_dir, "wal", "LOCK")
        pid = lock_holder_pid(data_dir)
        who = "another process" if pid is None else f"another process (pid {pid})"
        return Described(
            f"data directory {data_dir} is in use by {who} (lock file {lock})",
            f"stop that process first; the read-only commands ({_READ_ONLY})",
            EXIT["locked"],
        )
    if isinstance(exc, (e.WalCorruptionError, e.RecoveryError, e.SnapshotError, e.CodecError)):
        return Described(
            f"the data in {data_dir} is damaged: {text}",
            "run `actionqueue wal verify` for details; `actionqueue wal repair` cuts the log "
            "at the first bad record (it shows what it would drop first)",
            EXIT["corrupt"],
        )
    if isinstance(exc, e.DataDirError):
        return Described(
            text,
            "point --data-dir at a directory written by actionqueue (it holds wal/ and snapshots/)",
            EXIT["no_data_dir"],
        )
    if isinstance(exc, e.NotFoundError):
        return Described(
            text,
            "list ids with `actionqueue tasks` or `actionqueue runs`",
            EXIT["not_found"],
        )
    if isinstance(exc, e.CommandRejectedError):
        return Described(
            f"refused: {text}", "`actionqueue why RUN_ID` explains a run's state", EXIT["refused"]
        )
    if isinstance(exc, e.RecordTooLargeError) and exc.segment is not None:
        return Described(
            f"{text} (the log is not damaged)",
            f"pass --max-record-size {exc.size} (or the queue's own max_record_size) before "
            "the command",
            EXIT["usage"],
        )
    if isinstance(exc, e.InvalidIdError):
        return Described(
            text,
            "ids are UUIDs (or a unique prefix of one), as listed by `actionqueue runs`",
            EXIT["not_found"],
        )
    if isinstance(exc, e.ValidationError):
        return Described(text, None, EXIT["usage"])
    if isinstance(exc, e.StorageError):
        return Described(f"storage error: {text}", None, EXIT["error"])
    if isinstance(exc, e.ActionQueueError):
        return Described(text, None, EXIT["error"])
    if isinstance(exc, PermissionError):
        return Described(f"permission denied: {text}", None, EXIT["error"])
    if isinstance(exc, OSError):
        return Described(f"I/O error: {text}", None, EXIT["error"])
    return Described(
        f"unexpected error: {type(exc).__name__}: {text}",
        "run again with --debug for the traceback, and please report it",
        EXIT["error"],
    )
