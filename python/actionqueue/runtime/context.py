"""What a handler receives besides its payload: ids, attempt facts, cancellation, heartbeats.

A :class:`HandlerContext` is built by the runtime for every attempt. Handlers that run in
another process (process pool, Dask) get a :class:`RemoteContext` instead: the same read-only
facts from a picklable :class:`ContextSnapshot`, with ``heartbeat()`` and ``report_progress()``
reduced to logging — the owning process heartbeats the lease on the worker's behalf while the
attempt is pending, and a hard stop there is a kill, not a signal.

>>> snap = ContextSnapshot("t", "r", "a", 1, 3, 0, None, "h")
>>> ctx = RemoteContext(snap)
>>> ctx.attempt, ctx.max_attempts, ctx.is_last_attempt, ctx.cancelled.is_set()
(1, 3, False, False)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from actionqueue.core.ids import AttemptId, RunId, TaskId
from actionqueue.errors import ValidationError, WrongTypeError
from actionqueue.runtime.api import Cancelled
from actionqueue.runtime.codecs import short_repr

__all__ = [
    "PROGRESS_MESSAGE_MAX",
    "AttemptLoggerAdapter",
    "CancelSignal",
    "ContextSnapshot",
    "HandlerContext",
    "RemoteContext",
    "attempt_log_fields",
    "attempt_logger",
    "current_context",
]

_LOG = logging.getLogger("actionqueue.handler")


class AttemptLoggerAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Adds ``run_id``, ``attempt_id``, ``task_id``, ``handler`` and ``attempt`` to every record
    (``extra=`` given by the caller is kept), so a formatter can use ``%(run_id)s``."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        given = kwargs.get("extra")
        if given:
            extra.update(given)
        kwargs["extra"] = extra
        return msg, kwargs


def attempt_logger(
    base: logging.Logger | None,
    *,
    task_id: str,
    run_id: str,
    attempt_id: str,
    attempt: int,
    handler: str | None,
) -> AttemptLoggerAdapter:
    """A logger adapter carrying an attempt's ids on every record."""
    return AttemptLoggerAdapter(
        base or _LOG,
        attempt_log_fields(
            task_id=task_id, run_id=run_id, attempt_id=attempt_id, attempt=attempt, handler=handler
        ),
    )


def attempt_log_fields(
    *, task_id: object, run_id: object, attempt_id: object, attempt: int, handler: str | None
) -> dict[str, Any]:
    """The fields every log record about one attempt carries (``ctx.log``'s and the
    runtime's alike), so that a formatter may print ``%(run_id)s``, ``%(attempt_id)s``,
    ``%(task_id)s``, ``%(handler)s`` and ``%(attempt)s``."""
    return {
        "task_id": str(task_id),
        "run_id": str(run_id),
        "attempt_id": str(attempt_id),
        "attempt": attempt,
        "handler": handler,
    }


#: Guards every CancelSignal's rare transitions (set, callbacks, making the Event): signals are
#: created per attempt and almost never used, so each does not pay for its own lock and Event.
_SIGNAL_LOCK = threading.Lock()


class CancelSignal:
    """A one-shot stop request: ``is_set()``, ``wait(timeout)``, ``reason``, truthiness.

    The runtime sets it on cancel (``"canceled"``), at the deadline of a timed-out attempt
    (``"timeout"``), at a non-draining shutdown (``"shutdown"``) and when the attempt's lease
    is lost (``"lost"``): :meth:`request`, which also records the request as
    :attr:`requested`. Handlers check it between steps or wait on it instead of sleeping. A
    handler may :meth:`set` it itself (to stop helpers it started): that is not a request of
    the runtime, so raising :class:`~actionqueue.runtime.api.Cancelled` afterwards is an
    ordinary failure, not a cancel, timeout or shutdown.
    """

    __slots__ = ("_callbacks", "_event", "_set", "reason", "requested")

    def __init__(self) -> None:
        # Built lazily: one attempt per run pays for a threading.Event only if someone waits.
        self._event: threading.Event | None = None
        self._set = False
        self.reason: str | None = None
        #: The runtime's stop request for the attempt (first kept), ``None`` if it made none:
        #: what decides a stopped attempt's outcome, whatever the handler did to the signal.
        self.requested: str | None = None
        self._callbacks: list[Callable[[str], None]] | None = None

    def set(self, reason: str = "canceled") -> bool:
        """Set the signal; returns ``False`` if it was already set (first reason kept)."""
        with _SIGNAL_LOCK:
            if self._set:
                return False
            self.reason = reason
            self._set = True
            if self._event is not None:
                self._event.set()
        return True

    def request(self, reason: str) -> bool:
        """The runtime asks the attempt to stop: records :attr:`requested` (first kept), sets
        the signal, and runs the executor's callbacks (e.g. cancelling an asyncio task).
        Returns ``False`` if the runtime had asked already."""
        with _SIGNAL_LOCK:
            if self.requested is not None:
                return False
            self.requested = reason
            callbacks, self._callbacks = self._callbacks, None
        self.set(reason)
        for cb in callbacks or ():
            cb(reason)
        return True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested or ``timeout`` seconds pass; returns ``is_set()``."""
        if self._set:
            return True
        with _SIGNAL_LOCK:
            ev = self._event
            if ev is None:
                ev = self._event = threading.Event()
                if self._set:
                    ev.set()
        return ev.wait(timeout)

    def add_callback(self, cb: Callable[[str], None]) -> None:
        """Call ``cb(reason)`` when the runtime requests a stop (at once if it has)."""
        with _SIGNAL_LOCK:
            reason = self.requested
            if reason is None:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(cb)
                return
        cb(reason)

    def __bool__(self) -> bool:
        return self._set

    def __repr__(self) -> str:
        return f"CancelSignal(set={self.is_set()}, reason={self.reason!r})"


@dataclass(frozen=True, slots=True)
class ContextSnapshot:
    """The picklable facts of an attempt (ids as canonical strings, times as epoch ms)."""

    task_id: str
    run_id: str
    attempt_id: str
    attempt: int
    max_attempts: int
    scheduled_at: int
    deadline: int | None
    handler: str | None
    timeout: float | None = None
    tags: tuple[str, ...] = ()

    def log_fields(self) -> dict[str, Any]:
        """The attempt's fields for a log record (:func:`attempt_log_fields`)."""
        return attempt_log_fields(
            task_id=self.task_id,
            run_id=self.run_id,
            attempt_id=self.attempt_id,
            attempt=self.attempt,
            handler=self.handler,
        )


class AttemptSource(Protocol):
    """What a local context asks the runtime for, only when a handler needs it: the
    attempt's facts, a heartbeat, a progress report (the dispatcher's in-flight record)."""

    def snapshot(self) -> ContextSnapshot: ...

    def beat(self) -> None: ...

    def on_progress(self, value: float | str) -> None: ...


class _ContextBase:
    """Read-only attempt facts shared by the local and the remote context.

    The snapshot (ids as strings) and the logger adapter are built on first use: most handlers
    never read them, and an attempt should not pay for three UUID-to-text conversions and a
    logger it does not use.
    """

    __slots__ = ("_log", "_make", "_snap", "_src", "_started", "cancelled", "progress")

    cancelled: CancelSignal
    progress: float | str | None

    def _init(self, snapshot: ContextSnapshot | Callable[[], ContextSnapshot]) -> None:
        if isinstance(snapshot, ContextSnapshot):
            self._snap: ContextSnapshot | None = snapshot
            self._make: Callable[[], ContextSnapshot] | None = None
        else:
            self._snap = None
            self._make = snapshot
        self._src: AttemptSource | None = None
        self.cancelled = CancelSignal()
        self.progress = None
        self._started = time.monotonic()
        self._log: AttemptLoggerAdapter | None = None

    @property
    def snapshot(self) -> ContextSnapshot:
        """The picklable facts of this attempt."""
        snap = self._snap
        if snap is None:
            make = self._make
            if make is not None:
                snap = make()
            else:
                assert self._src is not None
                snap = self._src.snapshot()
            self._snap = snap
            self._make = None
        return snap

    @property
    def log(self) -> AttemptLoggerAdapter:
        """A logger adapter putting this attempt's ids on every record."""
        lg = self._log
        if lg is None:
            snapshot = self.snapshot
            lg = self._log = attempt_logger(
                None,
                task_id=snapshot.task_id,
                run_id=snapshot.run_id,
                attempt_id=snapshot.attempt_id,
                attempt=snapshot.attempt,
                handler=snapshot.handler,
            )
        return lg

    @property
    def task_id(self) -> TaskId:
        return TaskId(self.snapshot.task_id)

    @property
    def run_id(self) -> RunId:
        """Stable across retries of the run: use it as an idempotency key."""
        return RunId(self.snapshot.run_id)

    @property
    def attempt_id(self) -> AttemptId:
        return AttemptId(self.snapshot.attempt_id)

    @property
    def attempt(self) -> int:
        """This attempt's number, 1 for the first try (counted toward ``max_attempts``)."""
        return self.snapshot.attempt

    @property
    def max_attempts(self) -> int:
        return self.snapshot.max_attempts

    @property
    def is_last_attempt(self) -> bool:
        return self.snapshot.attempt >= self.snapshot.max_attempts

    @property
    def scheduled_at(self) -> int:
        """When the run was due (ms since the epoch, by the queue's clock)."""
        return self.snapshot.scheduled_at

    @property
    def deadline(self) -> int | None:
        """When this attempt times out (ms since the epoch, by the queue's clock), or ``None``."""
        return self.snapshot.deadline

    @property
    def timeout(self) -> float | None:
        """The attempt's timeout in seconds, or ``None``."""
        return self.snapshot.timeout

    @property
    def handler(self) -> str | None:
        return self.snapshot.handler

    @property
    def tags(self) -> tuple[str, ...]:
        return self.snapshot.tags

    def time_left(self) -> float | None:
        """Seconds until the timeout (real elapsed time, never negative), or ``None``."""
        t = self.snapshot.timeout
        if t is None:
            return None
        return max(0.0, t - (time.monotonic() - self._started))

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~actionqueue.runtime.api.Cancelled` if a stop was requested."""
        if self.cancelled.is_set():
            raise Cancelled(self.cancelled.reason or "canceled")


class HandlerContext(_ContextBase):
    """The context of an attempt running in this process (threads, asyncio)."""

    __slots__ = ("_heartbeat", "_on_progress", "payload")

    def __init__(
        self,
        snapshot: ContextSnapshot | Callable[[], ContextSnapshot],
        payload: Any = None,
        *,
        heartbeat: Callable[[], None] | None = None,
        on_progress: Callable[[float | str], None] | None = None,
    ) -> None:
        self._init(snapshot)
        self.payload = payload
        self._heartbeat = heartbeat
        self._on_progress = on_progress

    @classmethod
    def _of_attempt(cls, source: AttemptSource, payload: Any) -> HandlerContext:
        """The runtime's constructor: everything comes from ``source`` when first asked for,
        so an attempt whose handler reads nothing pays for no snapshot and no callbacks."""
        ctx = _new(cls)
        ctx._snap = None
        ctx._make = None
        ctx._src = source
        ctx.cancelled = CancelSignal()
        ctx.progress = None
        ctx._started = _monotonic()
        ctx._log = None
        ctx.payload = payload
        ctx._heartbeat = None
        ctx._on_progress = None
        return ctx

    def heartbeat(self) -> None:
        """Tell the queue this attempt is alive: extends its lease now. The runtime also
        heartbeats every in-flight attempt on its own, so this is optional."""
        if self._heartbeat is not None:
            self._heartbeat()
        elif self._src is not None:
            self._src.beat()

    def report_progress(self, progress: float | str) -> None:
        """Record progress: a fraction in [0, 1] (kept as a ``float``) or a message of at most
        :data:`PROGRESS_MESSAGE_MAX` characters; another type is a :class:`WrongTypeError`, a
        number out of range (or NaN) or a longer message a :class:`ValidationError`. Kept in
        memory (see ``ActionQueue.progress``) and logged at DEBUG; never written to the log."""
        progress = _checked_progress(progress)
        self.progress = progress
        self.log.debug("progress: %s", progress)
        if self._on_progress is not None:
            self._on_progress(progress)
        elif self._src is not None:
            self._src.on_progress(progress)

    def __repr__(self) -> str:
        s = self.snapshot
        return (
            f"HandlerContext(handler={s.handler!r}, run_id={s.run_id}, attempt={s.attempt}/"
            f"{s.max_attempts})"
        )


#: The longest progress message (characters) ``report_progress`` accepts: progress is a
#: status line kept in memory per attempt and logged, not a place for data.
PROGRESS_MESSAGE_MAX = 1000


def _checked_progress(progress: object) -> float | str:
    """``progress`` as the value to keep: a fraction in [0, 1] (as a ``float``) or a message of
    at most :data:`PROGRESS_MESSAGE_MAX` characters. The one check of the local and the remote
    context: another type is a :class:`WrongTypeError`, a value out of range a
    :class:`ValidationError`."""
    if isinstance(progress, str):
        if len(progress) > PROGRESS_MESSAGE_MAX:
            raise ValidationError(
                f"a progress message must be at most {PROGRESS_MESSAGE_MAX} characters, got "
                f"{len(progress)}: {short_repr(progress)}"
            )
        return str(progress)
    # bool is an int, but True as progress is a bug on the caller's side, not "100%".
    if isinstance(progress, bool) or not isinstance(progress, (int, float)):
        raise WrongTypeError(
            f"progress must be a fraction (a float in [0, 1]) or a str message, got "
            f"{type(progress).__name__} {short_repr(progress)}"
        )
    # Compared before any conversion: float() of a huge int overflows. NaN fails both tests.
    if not 0 <= progress <= 1:
        raise ValidationError(f"progress must be a fraction in [0, 1], got {short_repr(progress)}")
    return float(progress)


class RemoteContext(_ContextBase):
    """The context of an attempt running in another process (process pool, Dask worker)."""

    __slots__ = ("payload",)

    def __init__(self, snapshot: ContextSnapshot, payload: Any = None) -> None:
        self._init(snapshot)
        self.payload = payload

    def heartbeat(self) -> None:
        """No-op: the owning process heartbeats the lease while the attempt is pending."""

    def report_progress(self, progress: float | str) -> None:
        """Checked like :meth:`HandlerContext.report_progress` and logged on the worker
        (progress does not travel back from another process)."""
        progress = _checked_progress(progress)
        self.progress = progress
        self.log.debug("progress: %s", progress)

    def __repr__(self) -> str:
        s = self.snapshot
        return f"RemoteContext(handler={s.handler!r}, run_id={s.run_id}, attempt={s.attempt})"


_new = object.__new__
_monotonic = time.monotonic

#: The context of the handler running in this thread / asyncio task (set by the executors).
CURRENT_HANDLER: ContextVar[_ContextBase | None] = ContextVar("actionqueue_handler", default=None)


def current_context() -> HandlerContext | RemoteContext | None:
    """The context of the attempt whose handler is running in this thread (or asyncio task),
    or ``None`` outside handlers. The queue uses it to refuse calls that would wait for the
    calling handler itself (``run_until_idle``, ``stop``, ``close`` from inside a handler)."""
    ctx = CURRENT_HANDLER.get()
    return ctx if isinstance(ctx, (HandlerContext, RemoteContext)) else None


@contextmanager
def running_handler(ctx: Any) -> Iterator[None]:
    """Mark ``ctx`` as the running handler's context for the duration of the call."""
    token = CURRENT_HANDLER.set(ctx)
    try:
        yield
    finally:
        CURRENT_HANDLER.reset(token)
