"""The one exception hierarchy of actionqueue.

Every error the library raises — from Python or from the Rust core — is an
:class:`ActionQueueError`. Where it helps callers, classes also subclass the built-in they would
expect (:class:`ValueError` for bad values, :class:`TypeError` for wrong types,
:class:`OSError` for storage failures, :class:`KeyError`-like lookups as :class:`LookupError`),
so ``except ValueError`` keeps working.

The Rust core raises these classes by name (see ``rust/py/errors.rs``); renaming one here means
renaming it there.
"""

from __future__ import annotations

__all__ = [
    "ActionQueueError",
    "AuthorityFailedError",
    "ClosedError",
    "CodecError",
    "CommandRejectedError",
    "DataDirError",
    "DataDirLockedError",
    "DerivationError",
    "DuplicateHandlerError",
    "ExecutorError",
    "ForkedProcessError",
    "InvalidIdError",
    "InvalidPolicyError",
    "InvalidTransitionError",
    "LeaseError",
    "NotFoundError",
    "PayloadError",
    "RecordTooLargeError",
    "RecoveryError",
    "ReentrantCallError",
    "RunCanceledError",
    "RunFailedError",
    "SequenceError",
    "SnapshotError",
    "StorageError",
    "StorageFailedError",
    "StorageIOError",
    "UnknownHandlerError",
    "ValidationError",
    "WaitTimeoutError",
    "WalCorruptionError",
    "WrongTypeError",
]


class ActionQueueError(Exception):
    """Root of every error raised by actionqueue."""


# --- bad input -------------------------------------------------------------------------------


class ValidationError(ActionQueueError, ValueError):
    """A value given to the API is not acceptable. The message names the field and the value."""


class WrongTypeError(ActionQueueError, TypeError):
    """An argument has the wrong type. The message names the field and the type received."""


class InvalidIdError(ValidationError):
    """An id is malformed or nil."""


class InvalidPolicyError(ValidationError):
    """A run policy (once / repeat / cron / misfire) is invalid."""


class DerivationError(ValidationError):
    """Deriving runs would exceed what the run policy allows; nothing was derived."""


class RecordTooLargeError(ValidationError):
    """A record exceeds the configured maximum record size (``max_record_size``).

    Writing: the encoded record is too large; nothing was written. Reading (``segment`` is set):
    an intact record of the log — both checksums verified — is larger than the reader's
    maximum, because the log was written with a larger one. That is not corruption and nothing
    is cut for it: open (read, verify, repair) the log with ``max_record_size >= size``.
    """

    size: int
    max_size: int
    segment: str | None = None
    """Reading only: the segment file holding the record."""
    offset: int | None = None
    """Reading only: the record's byte offset in ``segment``."""
    sequence: int | None = None
    """Reading only: the sequence of the record's first event."""


class UnknownHandlerError(ValidationError, LookupError):
    """No handler is registered under the given routing name."""


class DuplicateHandlerError(ValidationError):
    """A handler name is already registered (pass ``replace=True`` to replace it)."""


class PayloadError(ValidationError):
    """A payload or a handler's output could not be encoded or decoded by its codec."""


# --- commands refused by the state machine -----------------------------------------------


class CommandRejectedError(ActionQueueError, ValueError):
    """The mutation authority refused a command; the state and the log are unchanged."""


class InvalidTransitionError(CommandRejectedError):
    """A run state transition that the transition table does not allow."""


class SequenceError(CommandRejectedError):
    """A command named a sequence other than the next one expected."""

    expected: int
    got: int


class LeaseError(CommandRejectedError):
    """A lease operation was refused (held by another owner, expired, not held)."""


class NotFoundError(ActionQueueError, LookupError):
    """A task or run id that does not exist."""


# --- storage ------------------------------------------------------------------------------


class StorageError(ActionQueueError, OSError):
    """Root of storage failures (WAL, snapshots, data directory)."""


class StorageIOError(StorageError):
    """An I/O call (write, fsync, rename, ...) failed. ``errno`` is set when the OS gave one."""


class DataDirLockedError(StorageError):
    """Another writer holds the data directory's lock."""

    path: str


class DataDirError(StorageError):
    """The data directory holds an entry the store did not write (``path`` names it)."""

    path: str


class WalCorruptionError(StorageError):
    """The WAL holds bytes that fail verification where recovery may not truncate silently.

    ``segment``, ``offset`` and ``reason`` say where and why.
    """

    segment: str
    offset: int
    reason: str


class SnapshotError(StorageError):
    """A snapshot file is unusable."""


class CodecError(StorageError):
    """Bytes that should hold an encoded value could not be decoded."""


class RecoveryError(StorageError):
    """Snapshot + WAL cannot rebuild the state: events are missing (segments deleted by a
    checkpoint after a snapshot that is no longer usable) or a logged record is refused on
    replay. The message names what is missing and where."""


class StorageFailedError(StorageError):
    """An earlier write or fsync failed; the handle refuses work until it is reopened."""


AuthorityFailedError = StorageFailedError


class ForkedProcessError(StorageError):
    """A queue, WAL writer or authority opened by one process was used from a child forked
    from it (``os.fork()``, ``multiprocessing`` with the fork start method). One process owns
    a data directory; the child's inherited copy would write at the parent's offset and its
    acknowledged records be lost. Every call of the copy is refused before anything is written
    (queries too); ``close()`` in the child only forgets the inherited handles and writes
    nothing. ``path`` is the data directory, ``owner_pid`` the process that opened it and
    ``pid`` the child. Open the directory in the child after the parent has closed it, or fork
    before opening the queue."""

    path: str
    owner_pid: int
    pid: int


class ClosedError(ActionQueueError):
    """The queue, writer or authority was already closed."""


# --- runtime ------------------------------------------------------------------------------


class ExecutorError(ActionQueueError):
    """An executor could not run a handler (shut down, misconfigured, broken pool)."""


class ReentrantCallError(ActionQueueError, RuntimeError):
    """A call from inside a handler that would wait for that handler to finish (e.g.
    ``run_until_idle()``, ``stop()``, ``close()``, or ``wait()`` on its own run): refused
    instead of deadlocking. The message names the call and the handler's run."""


class RunFailedError(ActionQueueError):
    """``result()`` of a run that ended Failed. ``run_id`` and ``error`` (the last attempt's
    error text) say which and why."""

    run_id: object
    error: str | None


class RunCanceledError(ActionQueueError):
    """``result()`` of a run that was canceled."""

    run_id: object


class WaitTimeoutError(ActionQueueError, TimeoutError):
    """``wait()`` / ``result()`` / ``run_until_idle()`` gave up after its timeout."""
