"""The executor interface: run a prepared attempt somewhere, report its result once.

The runtime prepares a :class:`Job` (handler, decoded payload, context) and hands it to an
:class:`ExecutorAdapter`. The adapter calls ``job.finish(result)`` exactly once — the first
call wins, so a timeout that fires while a late return arrives records one outcome only — and
the job's ``on_done`` callback tells the runtime.

Only handler execution fans out: whatever the executor, results come back to the owning
process, which alone writes the log.
"""

from __future__ import annotations

import asyncio
import inspect
import pickle
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from actionqueue.runtime.api import Fail
from actionqueue.runtime.context import (
    CURRENT_HANDLER,
    ContextSnapshot,
    HandlerContext,
    RemoteContext,
)
from actionqueue.runtime.outcomes import AttemptResult, ResultKind, describe_exception

__all__ = [
    "ExecutorAdapter",
    "Job",
    "call_handler",
    "load_result",
    "run_remote",
    "run_remote_serialized",
]


#: Guards every job's first-result-wins check: held for a few instructions and never while
#: calling out, so one lock for all jobs costs less than a lock made per attempt.
_FINISH_LOCK = threading.Lock()


class Job:
    """One attempt to execute. ``finish`` is idempotent: only the first result counts."""

    __slots__ = (
        "_done",
        "_on_exit",
        "_running",
        "context",
        "fn",
        "handle",
        "is_async",
        "on_done",
        "payload",
        "result",
        "started",
        "timeout",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        payload: Any,
        context: HandlerContext,
        *,
        timeout: float | None = None,
        is_async: bool = False,
        on_done: Callable[[Job, AttemptResult], None] | None = None,
    ) -> None:
        self.fn = fn
        self.payload = payload
        self.context = context
        self.timeout = timeout
        self.is_async = is_async
        self.on_done = on_done
        self.result: AttemptResult | None = None
        #: executor-specific handle (thread, asyncio task, future...)
        self.handle: Any = None
        self.started = time.monotonic()
        self._done = False
        #: the handler's code is executing (set by the executor around the call; executors
        #: that stop a handler before they report it — killed worker processes — never set it)
        self._running = False
        self._on_exit: Callable[[Job], None] | None = None

    @property
    def snapshot(self) -> ContextSnapshot:
        return self.context.snapshot

    @property
    def done(self) -> bool:
        return self._done

    def finish(self, result: AttemptResult) -> bool:
        """Record the result; returns ``False`` (and does nothing) if one was recorded already.

        A raised ``Cancelled`` is judged here against this job's actual stop request (every
        executor's results pass through, remote ones included: the request lives in this
        process), see :meth:`AttemptResult.as_stopped_by`."""
        if result.error is not None and result.error.control == "cancelled":
            result = result.as_stopped_by(self.context.cancelled.requested)
        with _FINISH_LOCK:
            if self._done:
                return False
            self._done = True
            self.result = result
        cb = self.on_done
        if cb is not None:
            cb(self, result)
        return True

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # The handler's code may outlive the job's result: a thread cannot be stopped, so a
    # timed-out or canceled handler goes on after its outcome is recorded. The executor says
    # when the code runs (``enter`` / ``leave``); the runtime asks to hear when it stops
    # (``linger``), to keep the run's concurrency key busy meanwhile. ``leave`` is on every
    # attempt's path, so it takes no lock unless someone listens; the GIL orders the plain
    # stores and loads below, and the callback is claimed under the lock by exactly one side.

    def enter(self) -> None:
        """Executor: the handler's code starts running (in this process or remotely)."""
        self._running = True

    def leave(self) -> None:
        """Executor: the handler's code is no longer running (returned, raised, killed).
        Calls the :meth:`linger` callback, if one is waiting."""
        self._running = False
        if self._on_exit is not None:
            with _FINISH_LOCK:
                cb, self._on_exit = self._on_exit, None
            if cb is not None:
                cb(self)

    @property
    def running(self) -> bool:
        """Whether the handler's code is executing now."""
        return self._running

    def linger(self, on_exit: Callable[[Job], None]) -> bool:
        """If the handler's code still runs, have ``on_exit(job)`` called (once, from the
        thread where it stops) when it does and return ``True``; else ``False`` (and
        ``on_exit`` is never called)."""
        self._on_exit = on_exit
        if self._running:
            return True
        with _FINISH_LOCK:  # it left meanwhile: take the callback back unless leave() has
            cb, self._on_exit = self._on_exit, None
        return cb is None

    def __repr__(self) -> str:
        return f"Job({self.snapshot.handler!r}, run={self.snapshot.run_id}, done={self._done})"


def call_handler(fn: Callable[..., Any], ctx: Any, payload: Any, is_async: bool) -> Any:
    """Call a handler in the current thread; an ``async def`` handler (or one that returns an
    awaitable) runs to completion on a fresh event loop. While it runs, ``ctx`` is the
    thread's :func:`~actionqueue.runtime.context.current_context`."""
    token = CURRENT_HANDLER.set(ctx)  # a ContextVar: cheap, no context manager on the hot path
    try:
        if is_async:
            return asyncio.run(fn(ctx, payload))
        value = fn(ctx, payload)
        if value is not None and inspect.isawaitable(value):
            return asyncio.run(_await(value))
        return value
    finally:
        CURRENT_HANDLER.reset(token)


async def _await(aw: Any) -> Any:
    return await aw


def run_local(job: Job, t0: float | None = None) -> AttemptResult:
    """Run a job's handler in this thread and describe what happened (its duration counted
    from ``t0``, a ``time.monotonic()`` reading the caller just took, else from now). Catches
    ``BaseException`` on purpose: a handler's ``SystemExit`` or ``KeyboardInterrupt`` is its
    failure, not the worker's (see :mod:`actionqueue.runtime.outcomes`)."""
    if t0 is None:
        t0 = time.monotonic()
    job._running = True  # job.enter(), without the call on the hot path
    try:
        value = call_handler(job.fn, job.context, job.payload, job.is_async)
    except BaseException as e:
        return AttemptResult.raised(e, time.monotonic() - t0)
    finally:
        job.leave()
    return AttemptResult.returned(value, time.monotonic() - t0)


def run_remote(
    fn: Callable[..., Any], payload: Any, snapshot: ContextSnapshot, is_async: bool
) -> AttemptResult:
    """What a worker process / Dask worker runs: build a :class:`RemoteContext`, call the
    handler, return a picklable :class:`AttemptResult` (exceptions become ``ErrorInfo``)."""
    ctx = RemoteContext(snapshot, payload)
    t0 = time.monotonic()
    try:
        value = call_handler(fn, ctx, payload, is_async)
    except BaseException as e:
        return AttemptResult.raised(e, time.monotonic() - t0)
    return AttemptResult.returned(value, time.monotonic() - t0)


def run_remote_serialized(
    fn: Callable[..., Any], payload: Any, snapshot: ContextSnapshot, is_async: bool
) -> bytes:
    """:func:`run_remote`, its result pickled here, on the worker, for executors that would
    pickle it anyway (a process pool, Dask). A return value that does not pickle is then the
    handler's terminal failure, as on the processes executor: left to the executor it failed
    the future, the attempt was taken for Lost and retried — the handler, which had run,
    ran again, into the same wall. (:func:`load_result` reads it back in the owner.)"""
    result = run_remote(fn, payload, snapshot, is_async)
    try:
        return _dumps(result)
    except BaseException as e:
        return _dumps(
            AttemptResult.raised(
                Fail(
                    f"the handler's return value ({type(result.value).__name__}) cannot be "
                    f"sent back from the worker: {describe_exception(e)}"
                ),
                result.duration,
            )
        )


def _dumps(result: AttemptResult) -> bytes:
    try:
        return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        try:  # what Dask falls back to: lambdas, local classes (pickle.loads reads it back)
            import cloudpickle  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError:
            raise e from None
        data: bytes = cloudpickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        return data


def load_result(data: Any) -> Any:
    """The owner's side of :func:`run_remote_serialized`: the worker's :class:`AttemptResult`;
    a return value that does not unpickle here (an exception class with its own ``__init__``,
    a class only the worker can import) is the handler's terminal failure — it ran, so it is
    not retried. Anything but bytes is returned as it is (the caller judges it)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return data
    try:
        return pickle.loads(data)
    except BaseException as e:
        return AttemptResult.raised(
            Fail(
                "the handler's return value cannot be received from the worker (it pickles "
                "there but does not unpickle in the queue's process): " + describe_exception(e)
            )
        )


def interrupted(reason: str, elapsed: float) -> AttemptResult:
    """The result of a job the runtime stopped (``reason``: canceled / timeout / shutdown)."""
    if reason == "timeout":
        return AttemptResult(ResultKind.TIMED_OUT, duration=elapsed)
    return AttemptResult(ResultKind.INTERRUPTED, detail=reason, duration=elapsed)


class ExecutorAdapter(ABC):
    """Common interface of the executors.

    Attributes:
        name: ``"threads"``, ``"asyncio"``, ``"processes"``, ``"futures"`` or ``"dask"``.
        max_workers: how many attempts may run at once.
        prefetch: how many attempts per worker the runtime may hand over at once while
            handlers are quick (the rest wait in the executor's queue for a free worker):
            1 — never more than ``max_workers`` — for executors that start every job they
            are given, or whose timeouts would count the wait.
        remote: handlers run in another process and get a
            :class:`~actionqueue.runtime.context.RemoteContext` built from the snapshot.
        inline_completion: ``job.on_done`` may do blocking work (record the outcome, fsync)
            in the thread that finishes the job. False for executors whose callbacks run on an
            event loop: the runtime then records outcomes on its own completer threads.
        hard_timeout: a timed-out handler is really stopped (killed / task cancelled), not
            just signalled.
    """

    name: str = "executor"
    max_workers: int = 1
    prefetch: int = 1
    remote: bool = False
    inline_completion: bool = False
    hard_timeout: bool = False

    def start(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Start threads / processes (called by the runtime before the first submit)."""

    @abstractmethod
    def submit(self, job: Job) -> None:
        """Start running ``job``; report through ``job.finish`` exactly once, from any thread."""

    def submit_many(self, jobs: list[Job]) -> None:
        """Start several jobs (the runtime's dispatch batch); the default submits each."""
        for job in jobs:
            self.submit(job)

    def backlog(self) -> int:
        """Jobs submitted and not started yet (waiting for a thread or a loop turn). The
        runtime wakes its driver for finished results only when this is 0 (the default: every
        executor that does not say otherwise)."""
        return 0

    def occupied(self) -> int:
        """Workers busy, counting those still running an attempt whose outcome is recorded
        already (a timed-out or canceled handler the executor cannot stop): the runtime hands
        out no more than ``max_workers`` minus this, so a new attempt never waits behind such
        a handler with its timeout running. 0 (the default): the executor replaces or stops
        those workers itself. When one comes back it calls :attr:`on_capacity`."""
        return 0

    #: Set by the runtime: called (from any thread) when a worker an earlier attempt kept
    #: busy after its outcome was recorded is free again.
    on_capacity: Callable[[], None] | None = None

    #: Set by the runtime: called by a worker thread that has just taken the last queued job,
    #: before it runs it (only executors that queue jobs behind busy workers: ``backlog()``).
    #: Results handed over while jobs were queued wait for the batch's last job (see
    #: ``Dispatcher._on_done``); if that one is slow they must not wait for it.
    on_drained: Callable[[], None] | None = None

    def on_worker_thread(self) -> bool:
        """Whether the calling thread is one of this executor's own workers, free to do a
        short piece of the runtime's work (record results, hand out the next batch) right
        after a job: only executors whose workers are plain threads say so."""
        return False

    def check_handler(self, name: str, fn: Callable[..., Any]) -> None:  # noqa: B027
        """Raise :class:`~actionqueue.errors.ValidationError` if ``fn`` can never run here
        (called when a handler is registered). The default accepts every callable."""

    def cancel(self, job: Job, reason: str = "canceled") -> None:
        """Ask ``job`` to stop: sets its cancel signal; executors that can stop it harder do.

        The default finishes the job at once (``reason`` decides the outcome) so its slot is
        free again even if the handler ignores the signal.
        """
        job.context.cancelled.request(reason)
        job.finish(interrupted(reason, job.elapsed()))

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:  # noqa: B027
        """Stop accepting work and release resources (waiting up to ``timeout`` s if ``wait``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_workers={self.max_workers})"
