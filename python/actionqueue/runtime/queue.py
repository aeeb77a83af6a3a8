"""``ActionQueue``: the embedded queue users open, submit to and run.

>>> import actionqueue as aq, tempfile
>>> with aq.ActionQueue.open(tempfile.mkdtemp()) as q:
...     @q.handler("add")
...     def add(ctx, payload):
...         return payload["a"] + payload["b"]
...     task = q.submit("add", {"a": 2, "b": 3})
...     n = q.run_until_idle()
...     q.result(task)
5

**Units**: at this layer plain numbers are **seconds** (``timeout=30``, ``delay=0.5``,
``lease=10``); ``timedelta`` works everywhere; a point in time (``at=``) is an aware
``datetime`` or epoch seconds. See :mod:`actionqueue.runtime.units`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import inspect
import logging
import math
import os
import signal
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from actionqueue.core._validate import check_str
from actionqueue.core.ids import RunId, TaskId
from actionqueue.core.mutation import DurabilityPolicy
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.run.run_instance import RunInstance
from actionqueue.core.run.state import TERMINAL_STATES, RunState
from actionqueue.core.task.metadata import TaskMetadata
from actionqueue.core.task.run_policy import RunPolicy
from actionqueue.core.task.task_spec import TaskPayload, TaskSpec
from actionqueue.engine.engine import Engine
from actionqueue.engine.ports import TaskRecordLike, task_is_finished
from actionqueue.engine.time.clock import Clock, ManualClock, SystemClock
from actionqueue.errors import (
    ActionQueueError,
    ClosedError,
    ExecutorError,
    ForkedProcessError,
    InvalidIdError,
    NotFoundError,
    ReentrantCallError,
    RunCanceledError,
    RunFailedError,
    UnknownHandlerError,
    ValidationError,
    WaitTimeoutError,
    WrongTypeError,
)
from actionqueue.runtime.codecs import Codec, CodecRegistry, is_content_type
from actionqueue.runtime.context import current_context
from actionqueue.runtime.dispatcher import Dispatcher, InFlight
from actionqueue.runtime.executors import ExecutorAdapter, make_executor
from actionqueue.runtime.handlers import (
    HandlerFn,
    HandlerOptions,
    HandlerRegistry,
    RegisteredHandler,
    check_option_names,
)
from actionqueue.runtime.metrics import Metrics
from actionqueue.runtime.units import Seconds, instant_to_ms, positive_seconds_to_ms, seconds_to_ms

__all__ = ["DEFAULT_PATH", "ActionQueue"]

_LOG = logging.getLogger("actionqueue.runtime")

DEFAULT_PATH = "./actionqueue-data"
#: Placeholders of a submit call's template spec (the engine gives each task its own).
_TEMPLATE_ID = TaskId.new()
_NO_PAYLOAD = TaskPayload(b"")
_LOST_LABEL = AttemptOutcome.LOST.label
#: How long close() keeps the log open, after its drain, for threads in wait() / result() to
#: look at targets the drain finished (each needs one read; the grace only bounds a stuck one).
_READERS_GRACE_S = 5.0

#: Forks survived by this process: bumped in a child right after ``fork()``. A queue compares
#: it with its value at open (a list read: no system call on the hot path, unlike getpid).
_forks = [0]


def _count_fork() -> None:
    _forks[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_count_fork)

#: Queues not closed yet, closed at interpreter exit (see :func:`_close_at_exit`).
_open_queues: weakref.WeakSet[ActionQueue] = weakref.WeakSet()
_exit_hook = [False]


def _close_at_exit() -> None:
    """Closes the queues a program left open, as ``close()`` would: a script that ends after
    ``q.start()`` otherwise stops like a ``kill -9`` (the loop and workers are daemon
    threads), leaving attempts already logged as started Running — Lost at the next open, an
    attempt used, although their handlers never finished. Registered at the first open, so
    it runs before the exit hooks of modules imported earlier (``atexit`` is last in, first
    out): executors still work while the queues drain."""
    for q in list(_open_queues):
        try:
            q.close()
        except Exception:
            _LOG.exception("closing the queue on %s at interpreter exit failed", q.path)


def _track_open(q: ActionQueue) -> None:
    if not _exit_hook[0]:
        _exit_hook[0] = True
        atexit.register(_close_at_exit)
    _open_queues.add(q)


F = TypeVar("F", bound=HandlerFn)
_T = TypeVar("_T")
IdLike = TaskId | RunId | str | uuid.UUID | bytes


class ActionQueue:
    """A durable queue on a data directory, with handlers, a dispatch loop and inspection.

    Open with ``ActionQueue.open(path, ...)`` or ``ActionQueue(path, ...)`` (the same); use it
    as a context manager or call :meth:`close`. Opening recovers the directory (snapshot + WAL
    tail) and runs the lease-expiry sweep, so attempts that were running when a previous
    process died become eligible again (recorded as Lost, then retried while attempts remain).

    Args:
        path: the data directory (created if missing).
        clock: where time comes from (default: the wall clock). Pass a shared
            :class:`~actionqueue.engine.ManualClock` in tests; the loop wakes when it moves.
        durability: ``IMMEDIATE`` (default: a submit returns once the task is on stable storage)
            or ``DEFERRED`` (written to the OS, synced by the next Immediate commit, ``flush()``,
            ``close()`` or every ``sync_interval`` seconds).
        executor: ``"threads"`` (default), ``"asyncio"``, ``"processes"``, an
            :class:`~actionqueue.runtime.executors.ExecutorAdapter`, any
            ``concurrent.futures.Executor`` or a Dask ``distributed.Client``.
        max_workers: attempts run at once (default: 8 threads, 100 asyncio tasks, 4 processes,
            or what the given executor reports).
        lease: lease duration in seconds for tasks without a timeout (default 30). In-flight
            attempts are heartbeated every third of it; after a crash their runs are re-run
            once it has expired.
        snapshot_on_close: take a snapshot at a clean close (faster next open).
        sync_interval: seconds between background syncs of Deferred records.
        owner: lease owner name (default: ``host:pid:random``).
        codecs: a :class:`~actionqueue.runtime.codecs.CodecRegistry` (default: bytes, JSON, text).
        handlers: a :class:`~actionqueue.runtime.handlers.HandlerRegistry` to share.
        authority: an already-open mutation authority (advanced; ``path`` is then ignored).
        storage_options: passed to :func:`actionqueue.storage.recovery.bootstrap`, e.g.
            ``{"max_record_size": 1 << 20}`` (bytes; a bigger submit raises
            :class:`~actionqueue.errors.RecordTooLargeError` and writes nothing).
        allow_unregistered: let :meth:`submit` accept handler names not registered in this
            process (a producer feeding a consumer process); default ``False``: such a submit
            raises :class:`~actionqueue.errors.UnknownHandlerError` and writes nothing.

    Bad arguments raise before anything is created on disk.
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_PATH,
        *,
        clock: Clock | None = None,
        durability: DurabilityPolicy | str = DurabilityPolicy.IMMEDIATE,
        executor: Any = "threads",
        max_workers: int | None = None,
        lease: Seconds = 30,
        snapshot_on_close: bool = True,
        sync_interval: float | None = None,
        owner: str | None = None,
        codecs: CodecRegistry | None = None,
        handlers: HandlerRegistry | None = None,
        authority: Any = None,
        storage_options: dict[str, Any] | None = None,
        rng: Any = None,
        allow_unregistered: bool = False,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise WrongTypeError(
                f"path must be a str or os.PathLike naming the data directory, "
                f"got {type(path).__name__} {path!r:.80}"
            )
        _check_options(
            handlers=handlers,
            codecs=codecs,
            snapshot_on_close=snapshot_on_close,
            sync_interval=sync_interval,
            owner=owner,
            storage_options=storage_options,
            allow_unregistered=allow_unregistered,
        )
        self.allow_unregistered = allow_unregistered
        self.path = Path(path)
        self.clock: Clock = SystemClock() if clock is None else clock
        if not callable(getattr(self.clock, "now", None)):
            raise WrongTypeError(f"clock must have a now() method, got {clock!r}")
        self.durability = DurabilityPolicy.parse(durability)
        self.handlers = HandlerRegistry() if handlers is None else handlers
        self.codecs = CodecRegistry() if codecs is None else codecs
        self.metrics = Metrics()
        self._closed = False
        #: close() is letting in-flight attempts finish: their handlers may still use the queue
        self._draining = False
        self._owner_pid = os.getpid()
        self._forks = _forks[0]
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._unsubscribe: Callable[[], None] | None = None
        self._loop_exit: threading.Event | None = None
        #: the error that stopped the background loop for good (a refusing executor, a failed
        #: log): the threads waiting for that loop raise it instead of waiting on
        self._loop_failure: BaseException | None = None
        #: handler name -> (its registry entry, template, encoder) for submits that use the
        #: handler's defaults; a re-registration makes a new entry, so a stale one never matches
        self._plain_templates: dict[
            str, tuple[RegisteredHandler, TaskSpec, Callable[[Any], tuple[bytes, str | None]]]
        ] = {}
        lease_ms = positive_seconds_to_ms(lease, "lease")
        self.recovery: Any = None
        # Before the directory is touched: a bad executor or max_workers creates nothing.
        self.executor: ExecutorAdapter = make_executor(executor, max_workers)

        t0 = time.monotonic()
        self._given_authority = authority
        if authority is None:
            authority = self._open_authority(snapshot_on_close, sync_interval, storage_options)
        self.authority = authority
        self.metrics.set_gauge("recovery_seconds", time.monotonic() - t0)

        try:
            self.engine = Engine(
                authority,
                self.clock,
                owner=owner,
                rng=rng,
                default_lease_ms=lease_ms,
                durability=self.durability,
                on_lost=self._count_lost,
            )
            self.owner = self.engine.owner
            self._dispatcher = Dispatcher(
                self.engine,
                self.clock,
                self.handlers,
                self.codecs,
                self.executor,
                self.metrics,
                owner=self.owner,
                max_in_flight=self.executor.max_workers,
                durability=self.durability,
                prefetch=self.executor.prefetch,
            )
            subscribe = getattr(self.clock, "subscribe", None)
            if callable(subscribe):
                # A clock change concerns the driver only: it ends no run by itself.
                self._unsubscribe = subscribe(lambda _now: self._dispatcher.wake(waiters=False))
            self.metrics.add_collector(self._collect)
            # The uncertainty clause: leases of a dead process are recovered now, not at first use.
            self.engine.tick()
            _track_open(self)
        except BaseException:
            # A shared ManualClock must not keep calling (and keeping alive) a queue that
            # never came to life (the first tick can fail: a failed log).
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            # Do not keep the directory locked for a queue that never came to life.
            closer = getattr(authority, "close", None)
            if callable(closer) and authority is not self._given_authority:
                closer()
            raise

    @classmethod
    def open(cls, path: str | Path = DEFAULT_PATH, **options: Any) -> ActionQueue:
        """Open (creating if needed) a queue on ``path``; the options are the constructor's."""
        params = inspect.signature(cls.__init__).parameters
        unknown = sorted(set(options) - set(params))
        if unknown:
            known = sorted(n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)
            raise WrongTypeError(
                f"unknown option(s) {', '.join(unknown)} for ActionQueue.open; "
                f"expected one of {', '.join(known)}"
            )
        return cls(path, **options)

    def _open_authority(
        self,
        snapshot_on_close: bool,
        sync_interval: float | None,
        storage_options: dict[str, Any] | None,
    ) -> Any:
        try:
            from actionqueue.storage.recovery.bootstrap import bootstrap
        except ImportError as e:  # pragma: no cover - only in a partial checkout
            raise ActionQueueError(f"the storage layer is not available: {e}") from e
        opts = dict(storage_options or {})
        opts.setdefault("snapshot_on_close", snapshot_on_close)
        opts.setdefault("sync_interval", sync_interval)
        authority, report = bootstrap(self.path, **opts)
        self.recovery = report
        return authority

    # --- context manager / lifecycle -----------------------------------------------------------

    def __enter__(self) -> ActionQueue:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # Leaving on an exception: do not wait for handlers to finish.
        self.close(drain=exc_type is None)

    def _check_open(self) -> None:
        if _forks[0] != self._forks:
            raise self._forked()
        if self._closed:
            raise ClosedError(f"the queue on {str(self.path)!r} is closed")

    def _check_usable(self) -> None:
        """:meth:`_check_open` for the calls a handler may make (submit, inspect, cancel,
        pause, ...): they stay open to the handlers that ``close()`` is draining, until the
        drain ends — an attempt close lets finish must be able to finish the way it would have
        (a handler that submits its follow-up work failed with ClosedError, and with no
        attempts left its run ended Failed). Calls that wait or drive stay refused."""
        if (
            self._closed
            and self._draining
            and _forks[0] == self._forks
            and self._running_handler_run() is not None
        ):
            return
        self._check_open()

    def _forked(self) -> ForkedProcessError:
        """The refusal of a copy of this queue inherited through ``fork()``. Checked before
        any lock is taken: a lock another thread of the parent held at the fork stays held in
        the child for ever (the Rust core refuses the copy's writes as well)."""
        e = ForkedProcessError(
            f"this queue (data directory {str(self.path)!r}) was opened by process "
            f"{self._owner_pid}; process {os.getpid()} is a child forked from it and cannot use "
            "it: open the data directory in the child after the parent has closed it, or fork "
            "before opening the queue"
        )
        e.path, e.owner_pid, e.pid = str(self.path), self._owner_pid, os.getpid()
        return e

    def _running_handler_run(self) -> RunId | None:
        """The run of this queue's handler that is calling us from its own thread, if any."""
        ctx = current_context()
        if ctx is None:
            return None
        rid = RunId(ctx.snapshot.run_id)
        return rid if rid.bytes in self._dispatcher.inflight else None

    def _refuse_in_handler(self, call: str, target: TaskId | RunId | None = None) -> None:
        """Refuse a call that would wait for the handler making it (a certain deadlock).

        ``target`` given: refuse only when it is the calling handler's own run or task."""
        rid = self._running_handler_run()
        if rid is None:
            return
        ctx = current_context()
        assert ctx is not None
        if target is not None and target != rid and target != ctx.task_id:
            return
        raise ReentrantCallError(
            f"{call} cannot be called from inside a handler of this queue: it would wait for "
            f"the calling handler itself ({ctx.handler!r}, run {rid}). Return from the handler "
            "instead, or call it from another thread"
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Stop the loop, let in-flight attempts finish (``drain``; up to ``timeout`` s), give
        back the runs of attempts still running after that, flush, snapshot (if configured) and
        release the data directory. Idempotent. Refused (:class:`ReentrantCallError`) from
        inside a handler of this queue, which close would wait for."""
        timeout = _check_timeout(timeout, "timeout")
        if _forks[0] != self._forks:
            # An inherited copy in a forked child: forget it. The parent's threads (loop,
            # workers) do not exist here and the locks they held stay held, so nothing may be
            # waited for or locked; the core's handles write nothing when they are dropped.
            self._closed = True
            return
        self._refuse_in_handler("close()")
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._draining = True
        _open_queues.discard(self)
        d = self._dispatcher
        d.begin_close()  # threads driving from wait() / run_until_idle() return now
        try:
            self.stop(drain=drain, timeout=timeout, _closing=True)
            d.await_step()  # a step begun before begin_close may still be leasing a batch
            if d.inflight:
                if drain:
                    d.wait_in_flight(timeout)
                if d.inflight:
                    d.signal(lambda a: True, "shutdown")
                    d.wait_in_flight(1.0)
                released = d.abandon_in_flight()
                if released:
                    _LOG.warning(
                        "%d attempts were still running at close; their runs were given back",
                        released,
                    )
            d.close_executor(wait=drain, timeout=0 if not drain else timeout)
            d.shutdown_completer()
        finally:
            self._draining = False
            # A result() whose run finished in the drain reads it before the log closes.
            d.await_readers(_READERS_GRACE_S)
            if self._unsubscribe is not None:
                self._unsubscribe()
            try:
                closer = getattr(self.authority, "close", None)
                if callable(closer):
                    closer()
                else:
                    flush = getattr(self.authority, "flush", None)
                    if callable(flush):
                        flush()
            finally:
                # The log is closed: what the engine keeps about its tasks goes with it, not
                # with the last reference to this queue (the core drops its state likewise).
                self.engine.forget()
                d.finish_close()  # threads still in wait() raise ClosedError now

    def flush(self) -> None:
        """Make every Deferred record durable now."""
        self._check_usable()
        self.authority.flush()

    def snapshot(self) -> Any:
        """Take a snapshot now (faster recovery; lets old WAL segments be deleted)."""
        self._check_usable()
        return self.authority.snapshot()

    # --- handlers ------------------------------------------------------------------------------

    def handler(self, name: str, **options: Any) -> Callable[[F], F]:
        """Decorator: register a handler ``fn(ctx, payload)`` under ``name``.

        Options (task defaults, each overridable per submit): ``max_attempts``, ``timeout``
        (seconds), ``backoff`` (``aq.exponential(base, cap)`` / ``aq.fixed(delay)``, seconds),
        ``concurrency_key``, ``priority``, ``retry_on``, ``terminal`` (exception classes that
        fail the run at once), ``codec`` (for payload and result), ``hold_policy``,
        ``replace``. Bad options raise here, not at the first submit.
        """
        self._check_open()
        check_option_names(options)
        self._check_codec_option(options)
        deco = self.handlers.handler(name, **options)

        def register(fn: F) -> F:
            self._check_handler(name, fn)
            return deco(fn)

        return register

    def register(self, name: str, fn: HandlerFn, **options: Any) -> None:
        """Function form of :meth:`handler`."""
        self._check_open()
        check_option_names(options)
        self._check_codec_option(options)
        self._check_handler(name, fn)
        self.handlers.register(name, fn, **options)

    def _check_handler(self, name: str, fn: HandlerFn) -> None:
        """A handler the executor can never run (one a worker process cannot load) is refused
        now, instead of failing every run submitted for it."""
        if isinstance(name, str) and callable(fn):  # else the registry names what is wrong
            self.executor.check_handler(name, fn)

    def _check_codec_option(self, options: dict[str, Any]) -> None:
        codec = options.get("codec")
        if isinstance(codec, str):
            self.codecs.get(codec)  # PayloadError naming an unregistered content type
        elif isinstance(codec, Codec):
            # Payloads are decoded at dispatch (and results read back) by content type, from
            # this queue's registry: a codec object the registry does not know would write
            # tasks that can never run. Registered here; another codec already holding its
            # content type is refused (ValidationError), before anything is written.
            self.codecs.register(codec)

    # --- submitting ----------------------------------------------------------------------------

    def _template(
        self,
        handler: str,
        *,
        policy: RunPolicy | None,
        priority: int | None,
        tags: Iterable[str],
        description: str | None,
        content_type: str | None,
        overrides: dict[str, Any],
        allow_unregistered: bool | None,
    ) -> tuple[TaskSpec, Callable[[Any], tuple[bytes, str | None]]]:
        """What every task of one submit call shares (options, constraints, metadata, policy),
        computed and validated once, as a spec whose id and payload are placeholders; and
        ``encode_one(payload) -> (data, content_type)``. A call with the handler's defaults
        (no policy, priority, tags, description, content type or overrides) reuses the
        template of the previous such call for the same registration."""
        plain = (
            policy is None
            and priority is None
            and not tags
            and description is None
            and content_type is None
            and not overrides
            and allow_unregistered is None
            and type(handler) is str
        )
        reg = self.handlers.find(handler) if type(handler) is str else None
        if plain and reg is not None:
            hit = self._plain_templates.get(handler)
            if hit is not None and hit[0] is reg:
                return hit[1], hit[2]
        made = self._make_template(
            handler,
            reg,
            policy=policy,
            priority=priority,
            tags=tags,
            description=description,
            content_type=content_type,
            overrides=overrides,
            allow_unregistered=allow_unregistered,
        )
        if plain and reg is not None:
            self._plain_templates[handler] = (reg, *made)
        return made

    def _make_template(
        self,
        handler: str,
        reg: RegisteredHandler | None,
        *,
        policy: RunPolicy | None,
        priority: int | None,
        tags: Iterable[str],
        description: str | None,
        content_type: str | None,
        overrides: dict[str, Any],
        allow_unregistered: bool | None,
    ) -> tuple[TaskSpec, Callable[[Any], tuple[bytes, str | None]]]:
        if not isinstance(handler, str):
            raise WrongTypeError(
                f"handler must be a str naming a handler, got {type(handler).__name__} "
                f"{handler!r:.80}"
            )
        if not handler.strip():
            raise ValidationError(f"handler must be a non-empty str, got {handler!r}")
        if reg is None:
            allow = self.allow_unregistered if allow_unregistered is None else allow_unregistered
            if allow is not True:
                if allow is not False:
                    raise WrongTypeError(f"allow_unregistered must be a bool, got {allow!r:.80}")
                raise UnknownHandlerError(
                    f"{self.handlers._unknown_message(handler)}; or pass "
                    "allow_unregistered=True if another process runs it"
                )
        options = reg.options if reg is not None else HandlerOptions()
        options = options.merged(overrides)
        codec: Codec | str | None = options.codec
        if priority is None:
            priority = options.priority if options.priority is not None else 0
        if policy is None:
            policy = RunPolicy.once()
        elif not isinstance(policy, RunPolicy):
            raise WrongTypeError(
                f"policy must be a RunPolicy (e.g. aq.RunPolicy.cron('0 9 * * *') or "
                f"aq.every(60, count=3)), got {policy!r}"
            )
        # Every part is checked here (the policy's type above, the constraints and metadata by
        # their constructors, the handler name): the template needs no second check.
        template = TaskSpec._trusted(
            _TEMPLATE_ID,
            _NO_PAYLOAD,
            policy,
            options.constraints(),
            TaskMetadata(priority, tags, description),
            check_str(handler, "handler"),
            None,
        )
        encode = self.codecs.encode_payload
        # The common case, bytes under the default rules, is checked here once; a bad codec
        # or content type is refused per payload below (nothing to refuse if there is none).
        try:
            raw = self.codecs.resolve(codec) is None and _valid_content_type(content_type)
        except ActionQueueError:
            raw = False

        def encode_one(payload: Any) -> tuple[bytes, str | None]:
            if raw and type(payload) is bytes:
                return payload, content_type
            data, ct = encode(payload, codec, content_type)
            p = TaskPayload(data, ct)
            return p.data, p.content_type

        return template, encode_one

    def _origin(self, at: datetime | float | None, delay: Seconds | None) -> int | None:
        if at is not None and delay is not None:
            raise ValidationError("give either at= or delay=, not both")
        if at is not None:
            ms = instant_to_ms(at, "at")
            if ms < 0:
                raise ValidationError(f"at must not be before the epoch (1970), got {at!r}")
            return ms
        if delay is not None:
            ms = seconds_to_ms(delay, "delay")
            if ms < 0:
                raise ValidationError(f"delay must be >= 0 seconds, got {delay!r}")
            return self.clock.now() + ms
        return None

    def submit(
        self,
        handler: str,
        payload: Any = None,
        *,
        policy: RunPolicy | None = None,
        at: datetime | float | None = None,
        delay: Seconds | None = None,
        priority: int | None = None,
        dedupe_key: str | None = None,
        tags: Iterable[str] = (),
        description: str | None = None,
        content_type: str | None = None,
        durability: DurabilityPolicy | str | None = None,
        task_id: TaskId | None = None,
        allow_unregistered: bool | None = None,
        **overrides: Any,
    ) -> TaskId:
        """Submit a task for ``handler``; returns its id. Safe from any thread.

        ``payload``: bytes are stored as they are; anything else is encoded by the handler's
        codec (JSON by default). ``policy``: once (default), ``aq.every(...)``, a
        ``RunPolicy``. ``at`` (aware datetime or epoch seconds) or ``delay`` (seconds) sets
        when the schedule starts. ``dedupe_key``: if a live task already has it, that task's id
        is returned and nothing is written. ``**overrides``: ``max_attempts``, ``timeout``,
        ``backoff``, ``concurrency_key``, ``retry_on``, ``terminal``, ``hold_policy`` — on top
        of the handler's defaults. With Immediate durability the call returns once the task
        and its runs are on stable storage.

        The handler must be registered in this process, else
        :class:`~actionqueue.errors.UnknownHandlerError` (nothing written) — unless
        ``allow_unregistered=True`` (here or at open): a producer may submit for a consumer
        process. A run whose handler is unknown when it is dispatched fails with an
        ``UnknownHandlerError`` text in its attempt history.
        """
        tid = self._submit(
            False,
            handler,
            payload,
            policy=policy,
            at=at,
            delay=delay,
            priority=priority,
            dedupe_key=dedupe_key,
            tags=tags,
            description=description,
            content_type=content_type,
            durability=durability,
            task_id=task_id,
            allow_unregistered=allow_unregistered,
            **overrides,
        )
        assert tid is not None  # only a nonblocking submit gives up
        return tid

    def _submit(
        self,
        nonblocking: bool,
        handler: str,
        payload: Any = None,
        /,
        *,
        policy: RunPolicy | None = None,
        at: datetime | float | None = None,
        delay: Seconds | None = None,
        priority: int | None = None,
        dedupe_key: str | None = None,
        tags: Iterable[str] = (),
        description: str | None = None,
        content_type: str | None = None,
        durability: DurabilityPolicy | str | None = None,
        task_id: TaskId | None = None,
        allow_unregistered: bool | None = None,
        **overrides: Any,
    ) -> TaskId | None:
        """:meth:`submit`; with ``nonblocking`` (Deferred, for an event-loop thread) ``None``
        and nothing written when it would wait on the authority (its lock held, a snapshot
        due) or is not a plain submit (``task_id`` / ``dedupe_key``: the spec path).
        ``nonblocking`` is positional-only: a caller's ``nonblocking=`` keyword is one of the
        ``**overrides``, refused as an unknown option like any other."""
        self._check_usable()
        template, encode_one = self._template(
            handler,
            policy=policy,
            priority=priority,
            tags=tags,
            description=description,
            content_type=content_type,
            overrides=overrides,
            allow_unregistered=allow_unregistered,
        )
        data, ct = encode_one(payload)
        origin = self._origin(at, delay)
        if nonblocking:
            if task_id is not None or dedupe_key is not None:
                return None
            got = self.engine.try_submit_uniform(template, [(data, ct)], origin=origin)
            if got is None:
                return None
            (tid,) = got
        elif task_id is None and dedupe_key is None:
            # The template's parts are converted once per registration (engine cache).
            (tid,) = self.engine.submit_uniform(
                template, [(data, ct)], origin=origin, durability=durability
            )
        else:
            spec = TaskSpec(  # validates the caller's task id and dedupe key
                TaskId.new() if task_id is None else task_id,
                TaskPayload._trusted(data, ct),
                template.run_policy,
                template.constraints,
                template.metadata,
                handler=template.handler,
                dedupe_key=dedupe_key,
            )
            tid = self.engine.submit(spec, origin=origin, durability=durability)
            if tid != spec.task_id:  # a live task holds the dedupe key: nothing was written
                return tid
        self.metrics.inc("submitted_total", handler=handler)
        self._dispatcher.wake(waiters=False)  # a new task ends no run anyone waits for
        return tid

    def submit_many(
        self,
        handler: str,
        payloads: Iterable[Any],
        *,
        policy: RunPolicy | None = None,
        at: datetime | float | None = None,
        delay: Seconds | None = None,
        priority: int | None = None,
        tags: Iterable[str] = (),
        description: str | None = None,
        content_type: str | None = None,
        durability: DurabilityPolicy | str | None = None,
        allow_unregistered: bool | None = None,
        **overrides: Any,
    ) -> list[TaskId]:
        """Submit one task per payload, all in **one** record (all or nothing, one fsync)."""
        self._check_usable()
        _check_payloads(payloads)
        if isinstance(tags, (str, bytes)):
            raise WrongTypeError(f"tags must be a list or tuple of str, got str {tags!r:.80}")
        template, encode_one = self._template(
            handler,
            policy=policy,
            priority=priority,
            tags=tuple(tags),
            description=description,
            content_type=content_type,
            overrides=overrides,
            allow_unregistered=allow_unregistered,
        )
        items = [encode_one(p) for p in payloads]
        if not items:
            return []
        # No spec object per task: the engine stamps the template (engine.submit_uniform).
        ids = self.engine.submit_uniform(
            template, items, origin=self._origin(at, delay), durability=durability
        )
        self.metrics.inc("submitted_total", len(ids), handler=handler)
        self._dispatcher.wake(waiters=False)
        return ids

    async def asubmit(self, handler: str, payload: Any = None, **kwargs: Any) -> TaskId:
        """:meth:`submit` for asyncio code, without blocking the event loop. The record is
        written with Deferred durability — on the loop itself when that cannot wait (a plain
        submit while the authority's lock is free and no snapshot is due: microseconds),
        else on a worker thread (``asyncio.to_thread``); when the submit's durability is
        Immediate the coroutine then awaits the group sync that covers it on the loop
        (:meth:`_await_durable`), so concurrent ``asubmit`` calls share fsyncs without a
        thread each."""
        immediate = self._immediate(kwargs.pop("durability", None))
        # On the loop itself when that cannot wait (a few µs); else on a worker thread.
        tid = self._submit(True, handler, payload, **kwargs)
        if tid is None:
            tid = await asyncio.to_thread(
                self.submit, handler, payload, durability=DurabilityPolicy.DEFERRED, **kwargs
            )
        if immediate:
            await self._await_durable()
        return tid

    async def asubmit_many(
        self, handler: str, payloads: Iterable[Any], **kwargs: Any
    ) -> list[TaskId]:
        """:meth:`submit_many` for asyncio code (durability awaited as in :meth:`asubmit`)."""
        self._check_usable()
        immediate = self._immediate(kwargs.pop("durability", None))
        # Checked before list(): a str or a dict would be split into characters or keys.
        _check_payloads(payloads)
        ids: list[TaskId] = await asyncio.to_thread(
            self.submit_many,
            handler,
            list(payloads),
            durability=DurabilityPolicy.DEFERRED,
            **kwargs,
        )
        if immediate:
            await self._await_durable()
        return ids

    def _immediate(self, durability: DurabilityPolicy | str | None) -> bool:
        dur = self.durability if durability is None else DurabilityPolicy.parse(durability)
        return dur is DurabilityPolicy.IMMEDIATE

    async def _await_durable(self) -> None:
        """Wait until everything submitted so far is durable: on the loop through the storage
        authority's awaitable group-commit wait, else (another authority) in a thread."""
        wait = getattr(self.authority, "wait_durable_async", None)
        if wait is None:
            await asyncio.to_thread(self.engine.flush)
            return
        try:
            await wait()
        except ClosedError:
            # close() (in another thread) stopped the authority's group-sync thread after
            # this coroutine's record was written, before the log was closed: the close
            # flushes everything the log holds. A flush either makes the record durable
            # itself or, refused, shows that the close is over (it keeps the authority's lock
            # until its log is closed); the wait then returns if the log is durable through
            # its last record, and raises ClosedError only if the close failed to sync it.
            try:
                await asyncio.to_thread(self.authority.flush)
            except ClosedError:
                await wait()

    # --- running ------------------------------------------------------------------------------

    def run_until_idle(
        self,
        *,
        advance_clock: bool = False,
        max_time: Seconds | None = None,
        timeout: float | None = None,
    ) -> int:
        """Run handlers in this thread until nothing is runnable **now** and nothing is in
        flight; returns the number of attempts started meanwhile.

        "Nothing runnable now" is literal: runs scheduled in the future, waiting for a retry
        backoff, blocked by a concurrency key held by a waiting run, Suspended, or Ready while
        the queue is paused are not waited for. A Ready run that waits only for a handler still
        running after its Timeout or Canceled was recorded (its concurrency key is busy, or
        every worker of a ``concurrent.futures`` pool is held by such tasks) is: it runs once
        that handler returns. With ``advance_clock=True`` the queue also works
        through future work: a ``ManualClock`` is moved to each next wake-up (instantly); any
        other clock is slept on until it. ``max_time`` (seconds) bounds how far the clock may
        go from now (needed for an endless cron). ``timeout`` (real seconds) raises
        :class:`~actionqueue.errors.WaitTimeoutError`.

        When the background loop runs (:meth:`start`), this waits for it to become idle
        instead; with ``advance_clock`` a ManualClock is moved here, any other clock is waited
        for (the loop runs the work when it falls due).

        Refused (:class:`~actionqueue.errors.ReentrantCallError`) from inside a handler of
        this queue: it would wait for that handler.
        """
        self._check_open()
        timeout = _check_timeout(timeout, "timeout")
        self._refuse_in_handler("run_until_idle()")
        until = None if max_time is None else self.clock.now() + seconds_to_ms(max_time, "max_time")
        deadline = None if timeout is None else time.monotonic() + timeout
        d = self._dispatcher
        # Counted on the dispatcher, not by this thread's steps: executor threads step for a
        # sleeping driver too (and the background loop, when it runs).
        before = d.started_total
        if self._thread is not None:
            self._await_background_idle(advance_clock, until, deadline)
        else:
            with self._driving(deadline):
                d.drive(
                    on_idle="advance" if advance_clock else "return",
                    until_ms=until,
                    deadline=deadline,
                )
            if d.closing:
                raise ClosedError(f"the queue on {str(self.path)!r} was closed meanwhile")
        return d.started_total - before

    def _driving(self, deadline: float | None) -> _DriverLock:
        return _DriverLock(self._dispatcher, deadline)

    def _await_background_idle(
        self, advance: bool, until: int | None, deadline: float | None
    ) -> None:
        d = self._dispatcher
        while True:
            with d.mutex:
                while not (d.idle_gen == d.gen and not d.inflight):
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise WaitTimeoutError("run_until_idle: the timeout passed")
                    if self._thread is None:
                        break
                    self._raise_loop_failure()
                    # Notified when the driver finds the queue idle (not on every event);
                    # bounded so that a loop that stopped meanwhile is noticed.
                    d.idle_cond.wait(0.5 if left is None else min(left, 0.5))
            if not advance:
                return
            wake = self.engine.next_wakeup()
            if wake is None or (until is not None and wake > until):
                return
            if isinstance(self.clock, ManualClock):
                self.clock.set(wake)
            else:
                self._wait_for_clock(wake, deadline)

    def _wait_for_clock(self, wake: int, deadline: float | None) -> None:
        """Sleeps until a real clock reads ``wake``, then makes the loop judge the queue
        again: its last "idle" predates the work now due, which only the clock changed."""
        pause = (wake - self.clock.now()) / 1000.0
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeoutError("run_until_idle: the timeout passed")
            pause = min(pause, left)
        if pause > 0:
            time.sleep(pause)
        self._dispatcher.wake(waiters=False)

    def start(self) -> None:
        """Run the dispatch loop on a background thread (returns at once)."""
        self._check_open()
        with self._lock:
            # Again under the lock close() sets it with: a start() that passed the check as
            # close() began started a loop that dispatched through close's drain.
            self._check_open()
            if self._thread is not None and self._loop_failure is None:
                return
            # (A loop stopped by a failure is replaced: the new one meets it again if it lasts.)
            self._loop_failure = None
            self._stopping = False
            self._dispatcher.draining = False
            self._thread = threading.Thread(
                target=self._background, name="aq-dispatch", daemon=True
            )
            self._thread.start()

    def _background(self) -> None:
        try:
            self._background_loop()
        finally:
            exit_event = self._loop_exit
            if exit_event is not None:
                exit_event.set()

    def _background_loop(self) -> None:
        d = self._dispatcher
        with d.driver_lock:
            backoff = 0.05
            while True:
                try:
                    d.drive(done=self._should_stop, on_idle="wait", through_close=True)
                    return
                except Exception as e:
                    d.loop_error = e
                    self.metrics.inc("errors_total", kind="loop")
                    failed = getattr(self.authority, "failed", None)
                    if failed or isinstance(e, (ClosedError, ExecutorError)):
                        _LOG.error("dispatch loop stopped: %s", e)
                        self._loop_failure = e
                        d.wake()  # waiters see the failure now
                        return
                    _LOG.exception("dispatch loop error; retrying in %.2f s", backoff)
                    time.sleep(backoff)
                    backoff = min(2.0, backoff * 2)

    def _should_stop(self) -> bool:
        d = self._dispatcher
        return self._stopping and (not d.draining or not d.inflight)

    @property
    def running(self) -> bool:
        """Whether the background loop is running (``False`` once a failure stopped it)."""
        return self._thread is not None and self._loop_failure is None

    def _raise_loop_failure(self) -> None:
        """Called by a thread waiting for the background loop: raises the error that stopped
        the loop (a refusing executor, a failed log), which nothing would otherwise report to
        it — the wait went on until its timeout, for ever without one."""
        error = self._loop_failure
        if error is not None and self._thread is not None:
            raise error

    def stop(
        self, drain: bool = True, timeout: float | None = None, *, _closing: bool = False
    ) -> bool:
        """Stop the background loop. ``drain=True``: dispatch nothing new and wait (up to
        ``timeout`` s) for in-flight attempts to finish. ``drain=False``: signal in-flight
        handlers to stop (reason ``"shutdown"``; their runs are given back without using an
        attempt). Returns whether everything in flight finished in time. Refused
        (:class:`~actionqueue.errors.ReentrantCallError`) from inside a handler of this queue."""
        if not _closing:
            self._check_open()
            timeout = _check_timeout(timeout, "timeout")
            self._refuse_in_handler("stop()")
        d = self._dispatcher
        with self._lock:
            thread = self._thread
            self._stopping = True
            d.draining = True
        if not drain:
            d.signal(lambda a: True, "shutdown")
        d.wake()
        ok = True
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                ok = False
                # Stop dispatching at once even though attempts are still running.
                d.signal(lambda a: True, "shutdown")
                d.wake()
                thread.join(5)
        with self._lock:
            self._thread = None
            self._stopping = False
            d.draining = d.closing  # closing: nothing is dispatched again
        d.wake()  # a run_until_idle() waiting for the loop sees that it stopped
        return ok and not d.inflight

    def run_forever(self, *, drain_timeout: float | None = 30.0) -> None:
        """Run until SIGINT or SIGTERM, then drain (up to ``drain_timeout`` s) and return.

        A second signal during the drain stops in-flight handlers (their runs are given back).
        Signal handlers are installed only when called from the main thread.
        """
        self._check_open()
        drain_timeout = _check_timeout(drain_timeout, "drain_timeout")
        self._refuse_in_handler("run_forever()")
        stop = threading.Event()
        hits = [0]

        def on_signal(signum: int, frame: FrameType | None) -> None:
            hits[0] += 1
            if hits[0] > 1:
                self._dispatcher.signal(lambda a: True, "shutdown")
            stop.set()

        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        self._loop_exit = stop  # the loop dying (storage failure) ends run_forever too
        self.start()
        try:
            stop.wait()
        finally:
            _LOG.info("stopping: draining in-flight attempts")
            self.stop(drain=True, timeout=drain_timeout)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        error = self._dispatcher.loop_error
        if error is not None and (
            getattr(self.authority, "failed", None) or isinstance(error, ExecutorError)
        ):
            raise error

    # --- control -------------------------------------------------------------------------------

    def _resolve(self, ident: IdLike) -> TaskId | RunId:
        """The task or run ``ident`` names; an id this queue does not know (object or string
        alike) is :class:`~actionqueue.errors.NotFoundError`."""
        if isinstance(ident, TaskId):
            if self.engine.get_task(ident) is None:
                raise NotFoundError(f"no task with id {str(ident)!r} (never submitted, or pruned)")
            return ident
        if isinstance(ident, RunId):
            if self.engine.get_run(ident) is None:
                raise NotFoundError(f"no run with id {str(ident)!r} (never submitted, or pruned)")
            return ident
        if not isinstance(ident, (str, uuid.UUID, bytes, bytearray, memoryview)):
            raise WrongTypeError(
                f"expected a TaskId, RunId, or an id as a string, uuid.UUID or 16 bytes (as "
                f"get_task / get_run accept), got {type(ident).__name__} {ident!r:.80}"
            )
        try:
            rid = RunId(ident)
        except InvalidIdError:
            raise InvalidIdError(
                f"expected a task or run id (a UUID string, TaskId or RunId), got {ident!r:.80}"
            ) from None
        if self.engine.get_run(rid) is not None:
            return rid
        tid = TaskId(rid.bytes)
        if self.engine.get_task(tid) is not None:
            return tid
        raise NotFoundError(f"no task or run with id {str(rid)!r}")

    def cancel(self, ident: IdLike, reason: str | None = None) -> None:
        """Cancel a task (and all its unfinished runs) or one run. A handler running for it is
        signalled (``ctx.cancelled``; a process worker is killed, an asyncio task cancelled);
        its result, if any, is ignored — the log says Canceled."""
        self._check_usable()
        target = self._resolve(ident)
        d = self._dispatcher
        of_task = isinstance(target, TaskId)

        def match(a: InFlight) -> bool:
            return (a.dispatch.task_id if of_task else a.dispatch.run_id) == target

        # The log frees the keys of the canceled runs at once, while their handlers still run
        # until the signal below stops them (or, a thread, does not): keep those keys busy
        # from before, else the key's next run may be dispatched in between, beside them.
        d.hold_keys(match)
        if isinstance(target, TaskId):
            self.engine.cancel_task(target, reason)
        else:
            self.engine.cancel_run(target, reason)
        d.canceled(match)  # (and the attempts a step was starting meanwhile: see there)
        d.signal(match, "canceled")
        d.wake()

    def retry_now(self, run_id: RunId | str) -> None:
        """Make a RetryWait or Suspended run Ready now (skipping the rest of its backoff)."""
        self._check_usable()
        self.engine.retry_now(run_id if isinstance(run_id, RunId) else RunId(run_id))
        self._dispatcher.wake()

    def pause(self) -> bool:
        """Stop handing out work (durable: a reopened queue stays paused). In-flight attempts
        finish normally. Returns ``False`` if already paused."""
        self._check_usable()
        changed = self.engine.pause()
        self._dispatcher.wake()
        return changed

    def resume(self) -> bool:
        self._check_usable()
        changed = self.engine.resume()
        self._dispatcher.wake()
        return changed

    @property
    def paused(self) -> bool:
        return self.engine.is_paused

    def prune(self, older_than: Seconds) -> None:
        """Forget terminal runs (and finished tasks) last changed more than ``older_than``
        seconds ago."""
        self._check_usable()
        before = self.clock.now() - seconds_to_ms(older_than, "older_than")
        # Nothing is older than the epoch: an age reaching past it prunes nothing (it raised a
        # ValidationError about a negative ``Prune.before``, naming no argument of this call).
        self.engine.prune(max(0, before))

    # --- inspection ----------------------------------------------------------------------------

    def get_task(self, task_id: TaskId | str) -> TaskRecordLike | None:
        """The task's record (spec, origin, created/canceled times, runs derived/unfinished)."""
        self._check_usable()
        return self.engine.get_task(task_id if isinstance(task_id, TaskId) else TaskId(task_id))

    def get_run(self, run_id: RunId | str) -> RunInstance | None:
        """The run with its state history and attempts (errors, outputs)."""
        self._check_usable()
        return self.engine.get_run(run_id if isinstance(run_id, RunId) else RunId(run_id))

    def runs(self, task_id: TaskId | str) -> list[RunInstance]:
        """The runs of a task, in order."""
        self._check_usable()
        tid = task_id if isinstance(task_id, TaskId) else TaskId(task_id)
        return sorted(self.engine.runs_for_task(tid), key=lambda r: r.ordinal)

    def list_runs(
        self,
        *,
        state: RunState | str | Iterable[RunState | str] | None = None,
        tag: str | None = None,
        handler: str | None = None,
        limit: int | None = 100,
    ) -> list[RunInstance]:
        """Runs filtered by state(s), tag and handler; each state in its index order (e.g.
        Ready in dispatch order, Scheduled by due time). A state named twice is listed once.
        The listing reads the live state page by page: a run that stays in its state
        throughout is listed exactly once; one that changes meanwhile may be missing or
        listed under both states."""
        self._check_usable()
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise WrongTypeError(f"limit must be an int or None, got {limit!r:.80}")
        if limit is not None and limit < 0:
            raise ValidationError(f"limit must be >= 0 or None, got {limit}")
        for name, value in (("tag", tag), ("handler", handler)):
            if value is not None and not isinstance(value, str):
                raise WrongTypeError(f"{name} must be a str or None, got {value!r:.80}")
        states = _states(state)
        if limit == 0:
            return []
        out: list[RunInstance] = []
        page = 512
        # The tag / handler filter is applied in the core, per index entry: a run tuple (and
        # a task lookup) for every run of the state cost ~25 µs each, 2.6 s for a rare tag
        # among 100k runs.
        filters = {"tag": tag, "handler": handler} if tag is not None or handler is not None else {}
        for st in states:
            cursor: bytes | None = None
            while True:
                want = page if limit is None else min(page, limit - len(out))
                rows, cursor = self.authority.runs_page(st, want, cursor, **filters)
                out.extend(map(RunInstance.from_wire, rows))
                if limit is not None and len(out) >= limit:
                    return out
                if cursor is None:
                    break
        return out

    def stats(self) -> dict[str, Any]:
        """Runs in every state (all nine, Suspended included), in-flight attempts, pause
        state, executor, and the runtime counters."""
        self._check_usable()
        s = self.engine.stats()
        s["in_flight"] = len(self._dispatcher.executing)
        # Keys kept busy by handlers still running after their outcome was recorded.
        s["busy_keys"] = sorted(self._dispatcher.busy_keys)
        s["executor"] = self.executor.name
        s["max_workers"] = self.executor.max_workers
        s["handlers"] = self.handlers.names()
        s["submitted"] = self.metrics.total("submitted_total")
        s["dispatched"] = self.metrics.total("dispatched_total")
        return s

    def progress(self, run_id: RunId | str) -> float | str | None:
        """The last ``ctx.report_progress()`` value of a run's in-flight attempt."""
        self._check_usable()
        rid = run_id if isinstance(run_id, RunId) else RunId(run_id)
        d = self._dispatcher
        # Not once its outcome is recorded (the entry stays until that is durable).
        if rid.bytes not in d.executing:
            return None
        a = d.inflight.get(rid.bytes)
        return None if a is None else a.progress

    def _count_lost(self, lost: Mapping[str | None, int]) -> None:
        """Attempts the engine's expiry sweep recorded as Lost: their handlers never returned
        a result that could be recorded (this process stalled or its clock jumped past their
        leases, or another process crashed), so the dispatcher never counts them."""
        for handler, n in lost.items():
            self.metrics.inc("outcomes_total", n, handler=handler, outcome=_LOST_LABEL)

    def _collect(self) -> Iterator[tuple[str, str, dict[str, object], float]]:
        if self._closed:
            return
        for st, n in self.engine.counts().items():
            yield ("runs", "gauge", {"state": st.label}, float(n))
        yield ("in_flight", "gauge", {}, float(len(self._dispatcher.executing)))
        yield ("busy_keys", "gauge", {}, float(len(self._dispatcher.busy_keys)))
        stats = getattr(self.authority, "stats", None)
        if callable(stats):
            a = stats()
            # The WAL's own counters start at 0 when the queue opens: counters of this
            # process's writes, not the size of the log on disk (which a reopen keeps).
            for attr, name in (
                ("wal_bytes", "wal_appended_bytes_total"),
                ("wal_syncs", "wal_fsyncs_total"),
            ):
                v = getattr(a, attr, None)
                if v is not None:
                    yield (name, "counter", {}, float(v))

    # --- waiting and results -------------------------------------------------------------------

    def _is_done(self, target: TaskId | RunId) -> bool:
        if isinstance(target, RunId):
            run = self.engine.get_run(target)
            return run is None or run.state in TERMINAL_STATES
        rec = self.engine.get_task(target)
        if rec is None:
            return True  # pruned
        if rec.non_terminal:
            return False
        return rec.canceled_at is not None or task_is_finished(rec)

    def wait(self, ident: IdLike, timeout: float | None = None) -> None:
        """Block until a run is terminal, or every run of a task is (``timeout`` real seconds,
        then :class:`~actionqueue.errors.WaitTimeoutError`).

        If no loop is running (no :meth:`start`, no other thread driving), this thread runs
        handlers while it waits, so ``q.result(q.submit(...))`` just works. It never moves a
        ManualClock: work due in the future waits for the test to advance it.

        From inside a handler, waiting for its own run or task is refused
        (:class:`~actionqueue.errors.ReentrantCallError`); waiting for others works (give a
        ``timeout``: every worker slot blocked in a wait is a deadlock).
        """
        self._wait(ident, timeout)

    def _wait(
        self, ident: IdLike, timeout: float | None, stop: threading.Event | None = None
    ) -> None:
        """:meth:`wait`; ``stop`` (set, then :meth:`Dispatcher.wake`) ends it early with
        ``asyncio.CancelledError``, driving included: the awaiting coroutine was cancelled."""
        self._check_open()
        timeout = _check_timeout(timeout, "timeout")
        target = self._resolve(ident)
        self._refuse_in_handler(f"wait({str(target)!r})", target)
        deadline = None if timeout is None else time.monotonic() + timeout
        d = self._dispatcher

        def closed_error() -> ClosedError:
            return ClosedError(
                f"the queue on {str(self.path)!r} was closed while waiting for {target}"
            )

        def done() -> bool:
            try:
                return (stop is not None and stop.is_set()) or self._is_done(target)
            except ClosedError:  # past close's grace for waiters: the log is closed
                raise closed_error() from None

        # While this thread waits, close() keeps the log open for its looks (`reading`): a
        # target finished in close's drain is seen as done, not as closed. It sleeps on a
        # condition of its own (`watching`), woken by the results of its target's runs and by
        # the events that may end any wait — not by every result recorded.
        with d.reading(), d.watching(target.bytes) as mine:
            while True:
                if done():
                    break
                if d.final:  # close() is closing the log: the target cannot finish any more
                    raise closed_error()
                # While close() drains, in-flight attempts may still finish the target: wait
                # for them, but never drive a queue being closed.
                if self._thread is None and not d.closing and d.driver_lock.acquire(blocking=False):
                    try:
                        d.drive(done=done, on_idle="wait", deadline=deadline, eager=True)
                    finally:
                        d.driver_lock.release()
                    continue
                with d.mutex:
                    if done() or d.final:
                        continue
                    self._raise_loop_failure()
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise WaitTimeoutError(f"{target} did not finish within {timeout} s")
                    # Bounded so that a driver finishing elsewhere is noticed and taken over.
                    mine.wait(0.5 if left is None else min(left, 0.5))
            if stop is not None and stop.is_set():
                raise asyncio.CancelledError
            self._durable_outcome(closed_error)

    def _durable_outcome(self, closed_error: Callable[[], ClosedError]) -> None:
        """Under Immediate durability, a wait returns once the outcome it saw is on stable
        storage. Results are applied first and synced right after, together with the next
        lease batch (one fsync for both): without this, ``result()`` could hand out an output
        that a crash a moment later would lose — and the run would run again. The sync is
        the group commit's (usually the one already under way)."""
        if self.durability is not DurabilityPolicy.IMMEDIATE:
            return
        try:
            self.authority.flush()
        except ClosedError:  # close() synced everything before closing the log
            if not self._dispatcher.final:
                raise closed_error() from None

    def result(self, ident: IdLike, timeout: float | None = None) -> Any:
        """Wait (see :meth:`wait`), then return the decoded output of the run's successful
        attempt — for a task, of its last run. A Failed run raises
        :class:`~actionqueue.errors.RunFailedError` (with the last error), a Canceled one
        :class:`~actionqueue.errors.RunCanceledError`."""
        return self._result(ident, timeout)

    def _result(
        self, ident: IdLike, timeout: float | None, stop: threading.Event | None = None
    ) -> Any:
        self._check_open()
        target = self._resolve(ident)
        self._refuse_in_handler(f"result({str(target)!r})", target)
        # Read from the engine at once, not through runs() / get_run(): when a close() began
        # during the wait and its drain finished the target, those refuse already (the queue
        # is closing), and close keeps the log open until this read is done (`reading`).
        with self._dispatcher.reading():
            self._wait(target, timeout, stop)
            return self._run_result(self._final_run(target))

    def _final_run(self, target: TaskId | RunId) -> RunInstance:
        try:
            if isinstance(target, TaskId):
                runs = self.engine.runs_for_task(target)
                if not runs:
                    raise NotFoundError(f"task {target} has no runs left (pruned?)")
                run = max(runs, key=lambda r: r.ordinal)
            else:
                got = self.engine.get_run(target)
                if got is None:
                    raise NotFoundError(f"run {target} is not known (pruned?)")
                run = got
        except ClosedError:
            raise ClosedError(
                f"the queue on {str(self.path)!r} was closed while waiting for {target}"
            ) from None
        return run

    def _run_result(self, run: RunInstance) -> Any:
        if run.state is RunState.COMPLETED:
            for a in reversed(run.attempts):
                if a.outcome is AttemptOutcome.SUCCESS:
                    return self.codecs.decode_output(a.output)
            return None
        if run.state is RunState.CANCELED:
            err = RunCanceledError(f"run {run.run_id} was canceled")
            err.run_id = run.run_id
            raise err
        last = next((a.error for a in reversed(run.attempts) if a.error), None)
        head = (last or "no error text").split("\n", 1)[0]
        ferr = RunFailedError(
            f"run {run.run_id} failed after {run.attempt_count} attempt(s): {head}"
        )
        ferr.run_id = run.run_id
        ferr.error = last
        raise ferr

    async def await_task(self, ident: IdLike, timeout: float | None = None) -> None:
        """:meth:`wait` for asyncio code (in a worker thread; cancelling the coroutine ends
        that thread's wait at once)."""
        await self._await_in_thread(self._wait, ident, timeout)

    async def aresult(self, ident: IdLike, timeout: float | None = None) -> Any:
        """:meth:`result` for asyncio code (cancellable, as :meth:`await_task`)."""
        return await self._await_in_thread(self._result, ident, timeout)

    async def _await_in_thread(
        self, fn: Callable[..., _T], ident: IdLike, timeout: float | None
    ) -> _T:
        """``fn(ident, timeout, stop)`` on a thread of its own, awaited on the loop.

        Not on the loop's default executor (``asyncio.to_thread``): its few threads (6 on a
        2-core machine) were each held for a whole wait, so a handful of pending waits for
        tasks due later starved every other ``to_thread`` user of the application — an
        ``asubmit_many``, an ``asubmit`` that cannot write on the loop, the next ``aresult`` —
        until those tasks ran. A waiting thread sleeps until its own target's results (see
        :meth:`Dispatcher.watching`). Cancelling the awaiting coroutine sets ``stop`` and wakes
        the queue's waiters, and the coroutine ends once the thread has: its wait (or the
        driving it does while no loop runs) ends promptly, and ``asyncio.run`` returns."""
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[_T] = loop.create_future()
        ended: asyncio.Future[None] = loop.create_future()
        context = contextvars.copy_context()

        def deliver(value: Any, error: BaseException | None) -> None:
            if not outcome.done():
                if error is None:
                    outcome.set_result(value)
                else:
                    outcome.set_exception(error)
            if not ended.done():
                ended.set_result(None)

        def run() -> None:
            value: Any = None
            error: BaseException | None = None
            try:
                value = context.run(fn, ident, timeout, stop)
            except BaseException as e:
                error = e
            # A closed loop (RuntimeError): nobody awaits this any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver, value, error)

        thread = threading.Thread(target=run, name="actionqueue-await", daemon=True)
        thread.start()
        try:
            return await outcome
        except asyncio.CancelledError:
            stop.set()
            self._dispatcher.wake()
            await asyncio.shield(ended)
            thread.join()  # it has delivered: only its return is left
            raise

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._thread else "open")
        return f"ActionQueue({str(self.path)!r}, executor={self.executor.name!r}, {state})"


class _DriverLock:
    """The dispatcher's driver lock as a context manager with a deadline; on release, one
    thread in ``wait()`` is offered the driver's role."""

    def __init__(self, dispatcher: Dispatcher, deadline: float | None) -> None:
        self._dispatcher = dispatcher
        self._lock = dispatcher.driver_lock
        self._deadline = deadline

    def __enter__(self) -> None:
        timeout = -1.0 if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        if not self._lock.acquire(timeout=timeout):
            raise WaitTimeoutError("another thread is driving the queue; the timeout passed")

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        self._dispatcher.pass_driving()  # a thread in wait() may take over


def _states(state: RunState | str | Iterable[RunState | str] | None) -> list[RunState]:
    """The states named by ``state``, each once, in the order first named."""
    if state is None:
        return list(RunState)
    if isinstance(state, (RunState, str)):
        items: list[RunState | str] = [state]
    elif isinstance(state, Iterable):
        items = list(state)
    else:
        raise WrongTypeError(
            f"state must be a RunState, its name, or a list of them, got {state!r:.80}"
        )
    out = []
    for s in items:
        if isinstance(s, RunState):
            out.append(s)
        elif isinstance(s, str):
            key = s.replace("-", "_").upper()
            by_label = {m.label.upper(): m for m in RunState}
            m = RunState.__members__.get(key) or by_label.get(s.upper())
            if m is None:
                raise ValidationError(
                    f"unknown run state {s!r}; expected one of "
                    f"{', '.join(m.label for m in RunState)}"
                )
            out.append(m)
        else:
            raise WrongTypeError(f"state must be a RunState or its name, got {s!r}")
    return list(dict.fromkeys(out))


def _check_payloads(payloads: object) -> None:
    """``submit_many``'s ``payloads``: an iterable of payloads, not one payload (a str, bytes or
    mapping is iterable too, but its characters, bytes or keys are not the payloads meant)."""
    if isinstance(payloads, (str, bytes, bytearray, memoryview, Mapping)) or not isinstance(
        payloads, Iterable
    ):
        raise WrongTypeError(
            f"payloads must be an iterable of payloads (e.g. a list), got "
            f"{type(payloads).__name__} {payloads!r:.80}"
        )


def _valid_content_type(value: object) -> bool:
    """Whether a content type would pass the per-payload checks (``None``, or a plain ``str``
    that ``encode_payload`` and ``TaskPayload`` accept): the condition under which
    ``submit_many`` may skip them per task."""
    return value is None or (type(value) is str and is_content_type(value))


def _check_timeout(value: float | None, field: str) -> float | None:
    """``None`` or a finite number of real seconds >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WrongTypeError(
            f"{field} must be seconds (int or float) or None, got {type(value).__name__} "
            f"{value!r:.80}"
        )
    if not math.isfinite(value) or value < 0:
        raise ValidationError(f"{field} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _storage_option_names() -> frozenset[str]:
    try:
        from actionqueue.storage.recovery.bootstrap import bootstrap
    except ImportError:  # pragma: no cover - only in a partial checkout
        return frozenset()
    params = inspect.signature(bootstrap).parameters
    return frozenset(n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)


#: bootstrap options that are sizes/counts: ints, checked here so a bad one names itself.
_INT_STORAGE_OPTIONS = {
    "segment_size": 1,
    "max_record_size": 1,
    "preallocate": 0,
    "keep_snapshots": 1,
    "max_snapshot_size": 1,
}


def _check_options(
    *,
    handlers: object,
    codecs: object,
    snapshot_on_close: object,
    sync_interval: object,
    owner: object,
    storage_options: object,
    allow_unregistered: object,
) -> None:
    """The constructor's cheap checks, done before the data directory is touched."""
    if handlers is not None and not isinstance(handlers, HandlerRegistry):
        raise WrongTypeError(f"handlers must be a HandlerRegistry or None, got {handlers!r:.80}")
    if codecs is not None and not isinstance(codecs, CodecRegistry):
        raise WrongTypeError(f"codecs must be a CodecRegistry or None, got {codecs!r:.80}")
    for name, flag in (
        ("snapshot_on_close", snapshot_on_close),
        ("allow_unregistered", allow_unregistered),
    ):
        if not isinstance(flag, bool):
            raise WrongTypeError(f"{name} must be a bool, got {flag!r:.80}")
    if sync_interval is not None:
        if isinstance(sync_interval, bool) or not isinstance(sync_interval, (int, float)):
            raise WrongTypeError(
                f"sync_interval must be seconds (int or float) or None, got {sync_interval!r:.80}"
            )
        if not math.isfinite(sync_interval) or sync_interval <= 0:
            raise ValidationError(
                f"sync_interval must be a positive number of seconds or None, got {sync_interval!r}"
            )
    if owner is not None and (not isinstance(owner, str) or not owner.strip()):
        raise ValidationError(f"owner must be a non-empty str, got {owner!r:.80}")
    if storage_options is None:
        return
    if not isinstance(storage_options, Mapping):
        raise WrongTypeError(
            f"storage_options must be a dict of bootstrap options, got {storage_options!r:.80}"
        )
    known = _storage_option_names()
    for key, value in storage_options.items():
        if known and key not in known:
            raise WrongTypeError(
                f"unknown storage option {key!r}; expected one of {', '.join(sorted(known))}"
            )
        low = _INT_STORAGE_OPTIONS.get(key)
        if low is not None:
            if isinstance(value, bool) or not isinstance(value, int):
                raise WrongTypeError(
                    f"storage option {key} must be an int (bytes or a count), got {value!r:.80}"
                )
            if value < low:
                raise ValidationError(f"storage option {key} must be >= {low}, got {value}")
