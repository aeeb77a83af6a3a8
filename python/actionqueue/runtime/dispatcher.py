"""The dispatch loop: hand Ready runs to the executor, record outcomes, keep leases alive.

One thread at a time *drives* the loop (the background thread of ``start()``, or the caller of
``run_until_idle()`` / ``wait()``). While it does, finished attempts are queued and the driver
records them at its next step: one record for the results, one for the next lease batch, and
(Immediate) one fsync for both before any new handler starts. With no driver, the first
finisher records the pending results itself (the worker thread for the thread executor, a
small completer pool for executors whose callbacks run on an event loop). While the driver
sleeps, a thread-executor worker that finishes a batch takes the driver's step itself (record,
lease the next batch into the executor, which it then runs), and wakes the driver only when
it has something to do — so a stream of quick handlers costs no thread switch per step.

The loop is **event-driven**. A step promotes what is due and dispatches up to the free
capacity (one authority record for the whole batch), then the driver sleeps on a condition
until something happens — a submit, a finished attempt, a cancel, a resume, a change of a
``ManualClock`` — or until the engine's next wake-up (the next due run, retry or lease expiry)
or the next lease heartbeat, whichever is first. It never polls.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from actionqueue.core.mutation import DurabilityPolicy
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.run.state import RunState
from actionqueue.engine.engine import Dispatch, Engine, Finish
from actionqueue.engine.time.clock import Clock, ManualClock
from actionqueue.errors import (
    ActionQueueError,
    ClosedError,
    CommandRejectedError,
    ExecutorError,
    NotFoundError,
    RecordTooLargeError,
    StorageError,
    UnknownHandlerError,
    WaitTimeoutError,
)
from actionqueue.runtime.codecs import CodecRegistry
from actionqueue.runtime.context import ContextSnapshot, HandlerContext, attempt_log_fields
from actionqueue.runtime.executors.base import ExecutorAdapter, Job
from actionqueue.runtime.handlers import HandlerRegistry, RegisteredHandler
from actionqueue.runtime.metrics import Metrics
from actionqueue.runtime.outcomes import (
    AttemptResult,
    ResultKind,
    Verdict,
    describe_exception,
    interpret,
)

__all__ = ["Dispatcher", "InFlight"]

_LOG = logging.getLogger("actionqueue.runtime")
_RETURNED = ResultKind.RETURNED
_SUCCESS = Verdict(AttemptOutcome.SUCCESS)
_SUCCESS_LABEL = AttemptOutcome.SUCCESS.label
_COMPLETED = RunState.COMPLETED
_FAILED = RunState.FAILED
#: the outcome counted for a run given back unfinished (the log holds a Suspended attempt)
_RELEASED_LABEL = "Released"
#: builds a NamedTuple (``Finish``) without the Python-level ``__new__`` frame
_new_tuple = tuple.__new__

#: Longest single sleep on a real clock: a guard against wall-clock jumps, not a poll.
MAX_SLEEP_S = 10.0
#: Longest single sleep of a main-thread driver, so that Ctrl-C is handled promptly.
MAIN_THREAD_SLICE_S = 0.2
#: Sleep when the engine keeps reporting work due now but a step changes nothing.
SPIN_GUARD_S = 0.005
#: Re-check of results handed over while the executor still had queued jobs (no wake-up).
RESULT_RECHECK_S = 0.002
#: Handlers whose attempts take less than this on average (moving average over recorded
#: results) are "quick": the loop then leases up to ``prefetch`` runs per worker at once.
QUICK_ATTEMPT_S = 0.001


@dataclass(eq=False, slots=True)
class InFlight:
    """An attempt handed to the executor and not yet recorded."""

    dispatch: Dispatch
    job: Job | None
    handler: RegisteredHandler | None
    lease_expires_at: int
    next_heartbeat_at: int
    lease_ms: int
    dispatched_at: int
    progress: float | str | None = None
    lease_lost: bool = False
    #: set at close for attempts whose result will not be recorded (the run was released)
    abandoned: bool = False
    last_manual_beat: float = field(default=0.0)
    #: the run id's bytes: the key of ``Dispatcher.inflight`` / ``executing``
    run_key: bytes = b""
    #: the loop that dispatched it (for ``ctx.heartbeat()``) and the timeout in seconds
    owner: Dispatcher | None = None
    timeout_s: float | None = None
    #: its run's concurrency key is counted in ``Dispatcher.busy_keys`` until it is forgotten
    #: (see :meth:`Dispatcher.hold_keys`)
    key_held: bool = False

    # The handler context's AttemptSource: asked only when a handler uses these.

    def snapshot(self) -> ContextSnapshot:
        return _snapshot_of(self.dispatch, self.timeout_s)

    def beat(self) -> None:
        if self.owner is not None:
            self.owner.beat_now(self.run_key)

    def on_progress(self, value: float | str) -> None:
        self.progress = value


def _outcome_label(verdict: Verdict, state: RunState) -> str:
    """The outcome the log holds for a finished attempt, for the metrics: a run canceled while
    its handler ran has the attempt recorded Canceled by the cancellation, whatever verdict the
    handler's end produced (which the engine then ignores)."""
    if state is RunState.CANCELED:
        return _CANCELED_LABEL
    return verdict.outcome.label


_CANCELED_LABEL = AttemptOutcome.CANCELED.label


class Dispatcher:
    """The loop's state and steps; :class:`~actionqueue.runtime.queue.ActionQueue` owns one."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        handlers: HandlerRegistry,
        codecs: CodecRegistry,
        executor: ExecutorAdapter,
        metrics: Metrics,
        *,
        owner: str,
        max_in_flight: int,
        durability: DurabilityPolicy,
        prefetch: int = 1,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.handlers = handlers
        self.codecs = codecs
        self.executor = executor
        # A worker held past its attempt's recorded outcome coming back is capacity again.
        executor.on_capacity = self.wake
        executor.on_drained = self._queue_drained
        self.metrics = metrics
        self.owner = owner
        self.max_in_flight = max_in_flight
        #: Runs leased per worker at once while attempts are quick (see ``free``).
        self.prefetch = prefetch
        #: moving average of attempt durations (s); None until results are recorded: no
        #: prefetch until they show the handlers are quick (under ``quick_attempt_s``)
        self.avg_attempt_s: float | None = None
        self.quick_attempt_s = QUICK_ATTEMPT_S
        self.durability = durability
        self.manual = isinstance(clock, ManualClock)
        lock = threading.RLock()
        #: the lock of every condition below; ``with self.mutex`` where nothing waits or
        #: notifies (a Condition's ``__enter__``/``__exit__`` are Python calls around it)
        self.mutex = lock
        self.cond = threading.Condition(lock)
        #: same lock; notified only when the driver finds the queue idle (and by ``wake``), so
        #: a thread waiting for idleness is not woken by every finished attempt
        self.idle_cond = threading.Condition(lock)
        #: bumped on every event that may make work runnable or change a run's state
        self.gen = 0
        self.inflight: dict[bytes, InFlight] = {}
        #: run keys of attempts holding an executor slot: dispatched and not yet recorded. An
        #: attempt whose result is applied but not yet durable (Immediate) has left this set
        #: (its handler is done, so its slot is free) but is still in ``inflight`` until the
        #: fsync covering it returns; so the next dispatch overlaps that fsync instead of
        #: waiting for it, and both records often share the next one.
        self.executing: set[bytes] = set()
        #: concurrency keys of handlers still running after their outcome was recorded (a
        #: timed-out or canceled thread cannot be stopped): key -> how many. Runs of these keys
        #: are not dispatched until those handlers return, so a key never has two handlers
        #: running at once in this process (see :meth:`_keep_key_busy`).
        self.busy_keys: dict[str, int] = {}
        #: bumped (under ``mutex``) by every cancel once the log has it: a step whose dispatch
        #: overlapped one looks at the runs of its batch again (see :meth:`_stop_canceled`)
        self.cancels = 0
        #: Immediate only: results applied but not yet synced, whose fsync a driver will do
        #: together with its next lease batch (one fdatasync for both); ``drivers`` counts the
        #: threads inside :meth:`drive` (when none, a recorder syncs its results itself).
        self.settling: list[InFlight] = []
        self.drivers = 0
        #: the generation at which the driver last found nothing to do (run_until_idle)
        self.idle_gen = -1
        self.draining = False
        #: the queue is closing: nothing new is dispatched any more (``draining`` stays set)
        #: and every driver returns — a thread blocked in ``wait()`` must not go on driving a
        #: queue that is being closed (it would lease runs the shut-down executor refuses)
        self.closing = False
        #: close() is about to close the log: a wait whose target is not done ends now
        self.final = False
        #: threads between seeing their target done and reading it (``result``): the log
        #: is closed only once they are out (see :meth:`reading`)
        self.readers = 0
        #: close() is over
        self.closed = False
        self.driver_lock = threading.Lock()
        self._completer: concurrent.futures.ThreadPoolExecutor | None = None
        self._completer_lock = threading.Lock()
        self._done: list[tuple[InFlight, AttemptResult]] = []
        #: whether the driver was woken for the results in ``_done`` already
        self._nudged = False
        #: the driver thread while it runs a step, and the generation bumps it made in it
        self._stepper: int | None = None
        self._own = 0
        #: the driver sleeps on its own condition (same lock): woken by events that need it
        #: (submits, control, results to record, a step by a worker), not by every recording
        self.drive_cond = threading.Condition(lock)
        #: one step at a time, by the driver or by an executor worker standing in for it
        self._step_lock = threading.Lock()
        #: while the driver sleeps: the clock time it sleeps until (None: until woken)
        self._sleeping = False
        self._driver_wake: int | None = None
        #: the driver wants to hear of every recorded result (``wait()`` on a run)
        self._eager = False
        self._tls = threading.local()
        self._recording = False
        self._executor_started = False
        self.loop_error: BaseException | None = None
        #: attempts started by every step so far, the driver's and its stand-ins' (steps are
        #: serialized by ``_step_lock``)
        self.started_total = 0
        #: threads in ``wait()`` / ``result()``: target key (a run's or a task's id bytes) ->
        #: their conditions (on ``mutex``, one thread each). A recorded result wakes the
        #: waiters of its run and task only: waking every waiter on every result (``cond``)
        #: cost O(waiters) per result — 1,000 threads waiting for their own tasks took 9.3 s
        #: of CPU for work a single waiter finished in 0.5 s. Events that may end any wait
        #: (cancel, close, control, a tick ending runs) still wake them all.
        self._watchers: dict[bytes, set[threading.Condition]] = {}
        #: ``engine.tick_finished`` when last looked at (see :meth:`step`)
        self._tick_finished = engine.tick_finished

    # --- events ------------------------------------------------------------------------------

    def wake(self, waiters: bool = True) -> None:
        """Something changed: wake the driver and every waiter. ``waiters=False`` (a submit:
        it cannot end a run anyone waits for) leaves the threads in ``wait()`` asleep."""
        with self.mutex:
            self.gen += 1
            self.cond.notify_all()
            self.idle_cond.notify_all()
            self.drive_cond.notify_all()
            if waiters:
                self._wake_watchers_locked(None)

    def _changed_locked(self, recorded: Iterable[InFlight]) -> None:
        """Bump the generation and wake waiters (call with ``cond`` held) after the results
        of ``recorded`` attempts were applied or settled: of the threads in ``wait()``, only
        those waiting for their runs or tasks. A bump by the driver inside its own step is
        counted apart: the step covers it, so it is no reason for the driver to step
        again."""
        self.gen += 1
        if self._stepper == threading.get_ident():
            self._own += 1
        self.cond.notify_all()
        if self._eager or not getattr(self._tls, "stepping", False):
            self.drive_cond.notify_all()
        watchers = self._watchers
        if watchers:
            for att in recorded:
                for key in (att.run_key, att.dispatch.task_id.bytes):
                    for c in watchers.get(key, ()):
                        c.notify()

    def _wake_watchers_locked(self, key: bytes | None) -> None:
        """Wake the threads in ``wait()`` for ``key`` (``None``: all of them)."""
        if key is not None:
            for c in self._watchers.get(key, ()):
                c.notify()
            return
        for conds in self._watchers.values():
            for c in conds:
                c.notify()

    @contextlib.contextmanager
    def watching(self, key: bytes) -> Iterator[threading.Condition]:
        """A condition (on ``mutex``) for a thread waiting for the run or task ``key``: it is
        notified when a result of that run (of a run of that task) is recorded, and by the
        events that wake every waiter. On the way out, the driver's role is offered to one
        other waiter (:meth:`pass_driving`)."""
        c = threading.Condition(self.mutex)
        with self.mutex:
            self._watchers.setdefault(key, set()).add(c)
        try:
            yield c
        finally:
            with self.mutex:
                conds = self._watchers.get(key)
                if conds is not None:
                    conds.discard(c)
                    if not conds:
                        del self._watchers[key]
            self.pass_driving()

    def pass_driving(self) -> None:
        """Wake one thread in ``wait()``, if any: with no loop running, the waiting threads
        drive the queue in turn, and the one that stopped driving (its target finished, or
        a ``run_until_idle`` returned) hands over this way instead of waking them all. A
        thread that does not take the role leaves ``wait()`` (its target is done), and so
        passes it on again."""
        with self.mutex:
            for conds in self._watchers.values():
                for c in conds:
                    c.notify()
                    return

    def free(self) -> int:
        """How many more runs to lease now. Up to ``max_in_flight`` (the executor's workers);
        while attempts are quick, up to ``prefetch`` times that: the extra runs wait in the
        executor's queue for a worker, and each step (one lease record, one result record and,
        Immediate, one fsync) covers that many runs instead of one per worker. With slow
        handlers a prefetched run would wait long in the queue, Running but not running, so
        there is none."""
        cap = self.max_in_flight
        avg = self.avg_attempt_s
        if self.prefetch > 1 and avg is not None and avg < self.quick_attempt_s:
            cap *= self.prefetch
        # Workers still running attempts recorded already (timed out, canceled) count too.
        return cap - max(len(self.executing), self.executor.occupied())

    # --- one step ----------------------------------------------------------------------------

    def step(self) -> tuple[int, int | None]:
        """Heartbeat, promote, dispatch up to the free capacity. Returns ``(dispatched, wake)``
        where ``wake`` is the clock time (ms) of the next thing to do, or ``None``."""
        with self.mutex:
            done, self._done = self._done, []
            self._nudged = False
        if done:
            # Results handed to this driver: applied now; Immediate ones land in `settling`
            # and are synced below with this step's lease batch.
            self._record_batch(done)
        now = self.clock.now()
        next_beat = self._heartbeats(now)
        started = 0
        with self.mutex:
            settling, self.settling = self.settling, []
        batch: list[Dispatch] = []
        try:
            if self.draining:
                wake = self.engine.next_wakeup(now)
                if wake is not None and wake <= now:
                    self.engine.tick(now)  # the expiry sweep still runs while draining
            else:
                free = self.free()
                cancels = self.cancels
                # Applied now, synced below together with the results waiting in `settling`.
                busy = self.busy_keys
                batch = self.engine.dispatch_next(
                    self.owner,
                    now,
                    max(0, free),
                    durability=DurabilityPolicy.DEFERRED,
                    busy_keys=tuple(busy) if busy else (),
                )
        finally:
            # Even if the dispatch failed: the results applied before it must be synced.
            if (batch or settling) and self.durability is DurabilityPolicy.IMMEDIATE:
                self._sync(settling)
            elif settling:
                self._settle(settling, None)
        if batch:
            first_beat = self._start_batch(batch, now, cancels)
            # The batch's first heartbeats belong to this step's wake-up: `next_beat` was read
            # before it was dispatched, and a loop whose slots the batch filled sleeps until
            # the wake-up — else until the new leases' expiry, when the beat is refused and the
            # sweep records live attempts as Lost.
            if next_beat is None or first_beat < next_beat:
                next_beat = first_beat
        started = len(batch)
        self.started_total += started
        ended = self.engine.tick_finished
        if ended != self._tick_finished:
            # A tick ended runs with no result of ours (misfire cancels, the expiry sweep):
            # their waiters are not among those a recorded result wakes.
            self._tick_finished = ended
            with self.mutex:
                self._wake_watchers_locked(None)
        now = self.clock.now()
        wake = self.engine.next_wakeup(now)
        if next_beat is not None and (wake is None or next_beat < wake):
            wake = next_beat
        return started, wake

    def _sync(self, settling: list[InFlight]) -> None:
        """One fsync for everything applied so far; then the settled results count as done."""
        try:
            self.engine.flush()
        except Exception as e:
            self._settle(settling, e)
            raise
        self._settle(settling, None)

    def _settle(self, settling: list[InFlight], error: BaseException | None) -> None:
        if not settling:
            return
        if error is not None:
            for att in settling:
                self._not_recorded(att, error)
        with self.mutex:
            forget = self._forget_locked
            for att in settling:
                forget(att)
            self._changed_locked(settling)

    def _heartbeats(self, now: int) -> int | None:
        """Extend the leases that are a third through; returns the next heartbeat time."""
        with self.mutex:
            executing = self.executing
            due = [a for a in self.inflight.values() if not a.lease_lost and a.run_key in executing]
        nxt: int | None = None
        for a in due:
            if a.next_heartbeat_at <= now:
                self._beat(a, now)
            if not a.lease_lost and (nxt is None or a.next_heartbeat_at < nxt):
                nxt = a.next_heartbeat_at
        return nxt

    def _beat(self, a: InFlight, now: int) -> None:
        try:
            exp = self.engine.heartbeat(
                a.dispatch.run_id, self.owner, now, durability=DurabilityPolicy.DEFERRED
            )
        except (CommandRejectedError, NotFoundError) as e:
            # Expired (the sweep will record Lost) or already finished: stop beating.
            a.lease_lost = True
            job = a.job
            if job is not None and not job.done:
                # The sweep frees the run's key (maybe in this very step) while a worker
                # process is killed only once its slot's thread sees the request: the key
                # stays busy until then (see hold_keys).
                self.hold_keys(lambda x: x is a)
                # The lease ran out under a live handler: the clock jumped, or this process
                # stalled for longer than the lease. The attempt is Lost like after a crash
                # and its run may be dispatched again: ask the handler to stop (enforced by
                # the process / asyncio executors, `ctx.cancelled` for threads).
                self.executor.cancel(job, "lost")
            if a.run_key in self.inflight:
                self.metrics.inc("heartbeat_failures_total")
                _LOG.debug(
                    "heartbeat refused for run %s: %s",
                    a.dispatch.run_id,
                    e,
                    extra=_log_fields(a.dispatch),
                )
            return
        self.metrics.inc("heartbeats_total")
        a.lease_expires_at = exp
        a.next_heartbeat_at = now + max(1, a.lease_ms // 3)

    def beat_now(self, run_key: bytes) -> None:
        """``ctx.heartbeat()`` from a handler (throttled to one write per tenth of a lease)."""
        a = self.inflight.get(run_key)
        if a is None or a.lease_lost:
            return
        t = time.monotonic()
        if (t - a.last_manual_beat) * 1000 < a.lease_ms / 10:
            return
        a.last_manual_beat = t
        self._beat(a, self.clock.now())

    # --- starting an attempt -----------------------------------------------------------------

    def _start_batch(self, batch: list[Dispatch], now: int, cancels: int) -> int:
        """Start a dispatched batch (not empty); metrics are recorded once per handler, not per
        run. ``cancels``: :attr:`cancels` before the batch was dispatched. Returns the time of
        the batch's first heartbeat."""
        latencies: dict[str | None, list[float]] = {}
        regs: dict[str | None, RegisteredHandler | None] = {}
        find = self.handlers.find
        for d in batch:
            h = d.spec.handler
            lat = latencies.get(h)
            if lat is None:
                lat = latencies[h] = []
                regs[h] = find(h)
            # From when it became due for this attempt: a retry's wait for its backoff (or a
            # Suspended run's for retry_now) is no dispatch delay.
            lat.append(max(0, now - d.due_at) / 1000)
        for h, lat in latencies.items():
            self.metrics.inc("dispatched_total", len(lat), handler=h)
            self.metrics.observe_many("dispatch_latency_seconds", lat, handler=h)
        atts = []
        for d in batch:
            exp = d.lease_expires_at
            lease_ms = exp - now
            if lease_ms < 1:
                lease_ms = 1
            tmo = d.spec.constraints.timeout_ms
            atts.append(
                InFlight(
                    d,
                    None,
                    regs[d.spec.handler],
                    exp,
                    now + max(1, lease_ms // 3),
                    lease_ms,
                    now,
                    None,
                    False,
                    False,
                    0.0,
                    d.run_id.bytes,
                    self,
                    None if tmo is None else tmo / 1000,
                )
            )
        with self.mutex:  # one lock round for the batch's bookkeeping
            inflight = self.inflight
            add = self.executing.add
            for att in atts:
                inflight[att.run_key] = att
                add(att.run_key)
        first_beat = min(att.next_heartbeat_at for att in atts)
        ready = [att for att in atts if self._start(att)]
        if not ready:
            return first_beat
        try:
            if not self._executor_started:
                self.executor.start()
                self._executor_started = True
            # One hand-off for the batch where the executor can (asyncio: one loop wake-up).
            self.executor.submit_many([att.job for att in ready if att.job is not None])
        except Exception as e:
            # The executor refused (shut down, broken): give the runs back unchanged (an
            # attempt it did take is finished already or will be; releasing it is refused),
            # then stop driving. A refusal is not transient: stepping on would lease the same
            # runs again at once, a record each time, for ever.
            _LOG.error("executor refused %d runs: %s", len(ready), e)
            self.metrics.inc("errors_total", len(ready), kind="executor")
            for att in ready:
                if att.job is not None and not att.job.done:
                    self._record(att, Verdict(AttemptOutcome.SUSPENDED, error=str(e), release=True))
            raise ExecutorError(
                f"the executor refused work ({type(e).__name__}: {e}); its {len(ready)} runs "
                "were given back. A shut-down or broken executor cannot run handlers: close "
                "the queue and open it with a working one"
            ) from e
        if self.cancels != cancels:
            self._stop_canceled(ready)
        return first_beat

    def _stop_canceled(self, ready: list[InFlight]) -> None:
        """A cancel was recorded while this batch was dispatched and started: it may have
        ended runs the batch had leased before they were in flight, where its signal looks
        for them — their handlers would run on unsignalled, their keys free in the log, and
        the key's next run would start beside them. Stop those now, their keys busy
        meanwhile (no other step dispatches before this one ends)."""
        get = self.engine.get_run
        stopped = set()
        for att in ready:
            try:
                run = get(att.dispatch.run_id)
            except ActionQueueError:  # the log failed or closed: nothing more to do
                return
            if run is not None and run.state is RunState.CANCELED:
                stopped.add(att.run_key)
        if not stopped:
            return
        self.hold_keys(lambda a: a.run_key in stopped)
        for att in ready:
            job = att.job
            if att.run_key in stopped and job is not None and not job.done:
                self.executor.cancel(job, "canceled")

    def _start(self, att: InFlight) -> bool:
        """Prepare an attempt's job (``att`` is in ``inflight`` already); returns whether it is
        to be submitted, ``False`` if it was recorded at once (unknown handler, undecodable
        payload)."""
        d = att.dispatch
        reg = att.handler
        if reg is None:
            err = UnknownHandlerError(self.handlers._unknown_message(d.handler))
            self._record(
                att, Verdict(AttemptOutcome.TERMINAL_FAILURE, error=describe_exception(err))
            )
            return False
        spec = d.spec
        try:
            payload = self.codecs.decode_payload(spec.payload.data, spec.payload.content_type)
        except Exception as e:
            verdict = Verdict(
                AttemptOutcome.TERMINAL_FAILURE,
                error=f"the payload could not be decoded: {describe_exception(e)}",
            )
            self._record(att, verdict)
            return False
        job = Job(
            reg.fn,
            payload,
            HandlerContext._of_attempt(att, payload),
            timeout=att.timeout_s,
            is_async=reg.is_async,
            on_done=functools.partial(self._on_done, att),
        )
        att.job = job
        return True

    # --- finishing an attempt ----------------------------------------------------------------

    def _on_done(self, att: InFlight, job: Job, result: AttemptResult) -> None:
        if job._running:  # stopped (timeout, cancel, lost lease) while its code still runs
            key = att.dispatch.spec.constraints.concurrency_key
            if key is not None:
                self._keep_key_busy(key, job)
        # The job is over: drop the InFlight -> Job link. It is the only reference cycle of an
        # attempt (job -> on_done / context -> progress callback -> att -> job), so without it
        # the attempt's objects are freed by reference counting instead of piling up for the
        # cyclic garbage collector (whose passes over a large heap cost more than the runs).
        att.job = None
        # Results are recorded in batches: one authority record (and, Immediate, one fsync) for
        # every attempt that finished meanwhile. While a driver runs the loop, it records them
        # at its next step together with its next dispatch (the finisher only wakes it, once
        # per batch). Otherwise the first finisher that finds nobody recording becomes the
        # recorder (inline for the thread executor, on a completer thread for executors whose
        # callbacks run on an event loop) and drains until nothing is pending.
        with self.mutex:
            done = self._done
            done.append((att, result))
            if self._recording:
                return
            if self.drivers:
                if self.executor.backlog():
                    # A job still waiting for a thread holds a slot already: recording now
                    # frees nothing. The thread that takes the last queued job records them
                    # (_queue_drained), before running it: it may be slow. (A result left
                    # without a wake-up is picked up by the driver's short re-check.)
                    return
                if not (self._sleeping and self.executor.on_worker_thread()):
                    if not self._nudged:  # wake the driver once per batch of results
                        self._nudged = True
                        self.gen += 1
                        self.drive_cond.notify_all()
                    return
                stand_in = True
            else:
                stand_in = False
                self._recording = True
        if stand_in:
            # The driver sleeps and this executor thread is about to go idle: take the
            # driver's step here (record, dispatch into the executor, which this thread then
            # runs) instead of two thread switches (wake the driver, which wakes a worker).
            self._step_for_driver()
            return
        if self.executor.inline_completion:
            self._drain()
        else:
            try:
                self._completer_pool().submit(self._drain)
            except RuntimeError:  # the pool is shut down (closing): record here
                self._drain()

    def _keep_key_busy(self, key: str, job: Job) -> None:
        """``job``'s outcome is being recorded while its handler still runs: its concurrency
        key stays busy here until the handler returns. Counted before the outcome is
        recorded, so no dispatch sees the key free in between (the log releases it with the
        outcome)."""
        with self.mutex:
            self.busy_keys[key] = self.busy_keys.get(key, 0) + 1
        if not job.linger(functools.partial(self._key_free_again, key)):
            self._key_free_again(key)  # it returned meanwhile

    def _key_free_again(self, key: str, _job: Job | None = None) -> None:
        with self.mutex:
            n = self.busy_keys.get(key, 0) - 1
            if n > 0:
                self.busy_keys[key] = n
                return
            self.busy_keys.pop(key, None)
            # The key's next run may be dispatched now: wake the driver (and idle waiters).
            self.gen += 1
            self.drive_cond.notify_all()
            self.cond.notify_all()

    def hold_keys(self, predicate: Callable[[InFlight], bool]) -> None:
        """Keep the concurrency keys of the in-flight attempts matching ``predicate`` busy until
        each attempt is over here (recorded, or dropped at close). Called before their runs
        are ended in the log (a cancel frees the key at once) or their handlers are asked to
        stop in a way that takes effect later (a worker process is killed by its slot's
        thread): until then the handler still runs, and :meth:`_on_done` has not yet kept
        the key busy for it — the key's next run would start beside it. By the time the
        attempt is forgotten, its job is over: a handler still running is counted by
        :meth:`_keep_key_busy`."""
        with self.mutex:
            busy = self.busy_keys
            for a in self.inflight.values():
                if a.key_held or not predicate(a):
                    continue
                key = a.dispatch.spec.constraints.concurrency_key
                if key is not None:
                    a.key_held = True
                    busy[key] = busy.get(key, 0) + 1

    def canceled(self, predicate: Callable[[InFlight], bool]) -> None:
        """A cancel is in the log (before its signal): counted (see :meth:`_stop_canceled`),
        and the keys of the canceled runs' attempts that entered ``inflight`` since
        :meth:`hold_keys` looked are held too."""
        with self.mutex:
            self.cancels += 1
            self.hold_keys(predicate)

    def waiting_on_busy_keys(self) -> bool:
        """Whether a Ready run waits only for handlers still running after their outcome was
        recorded — for its busy key (see :attr:`busy_keys`), or, nothing being in flight, for
        a worker such a handler holds (``executor.occupied()``: a ``concurrent.futures`` task
        that cannot be stopped): it becomes runnable when that handler returns, so the queue
        is not idle."""
        if self.free() <= 0:
            return self.engine.has_ready()
        with self.mutex:
            busy = tuple(self.busy_keys)
        return bool(busy) and self.engine.ready_on_keys(busy)  # no engine call when none

    def _queue_drained(self) -> None:
        """An executor thread took the last queued job. Results that came while jobs were
        queued woke nobody (see :meth:`_on_done`: the batch's last job records them); that job
        may be slow, and they must not wait for it, their runs Running in the log. Record them
        now — here, before this thread runs the job, when the driver sleeps (one step per
        batch as before, taken earlier), else by waking the driver."""
        with self.mutex:
            if not self._done or self._recording or self._nudged or not self.drivers:
                return
            if not (self._sleeping and self.executor.on_worker_thread()):
                self._nudged = True
                self.gen += 1
                self.drive_cond.notify_all()
                return
        self._step_for_driver()

    def _step_for_driver(self) -> None:
        """One loop step on an executor thread while the driver sleeps; the driver is woken
        only when it has something to do: nothing was dispatched (maybe idle now), a wake-up
        earlier than it planned, a failure, or (``wait()`` on a run) any result."""
        if not self._step_lock.acquire(blocking=False):
            with self.mutex:  # the driver (or another stand-in) is stepping: it will see these
                self.gen += 1
                self.drive_cond.notify_all()
            return
        self._tls.stepping = True
        n, wake, failed = 0, None, False
        try:
            n, wake = self.step()
        except Exception:
            failed = True  # the driver's own step meets the failure again and reports it
        finally:
            self._tls.stepping = False
            self._step_lock.release()
        with self.mutex:
            planned = self._driver_wake
            earlier = wake is not None and (planned is None or wake < planned)
            if failed or not n or earlier or self._eager or self._done:
                self.gen += 1
                self.drive_cond.notify_all()

    def _drain(self) -> None:
        while True:
            with self.mutex:
                batch = self._done
                if not batch:
                    self._recording = False
                    return
                self._done = []
                self._nudged = False
            try:
                self._record_batch(batch)
            except BaseException:
                # _record_batch handles every error itself; this is a last resort (e.g. a
                # KeyboardInterrupt delivered here) so that recording is never wedged.
                with self.mutex:
                    self._recording = False
                raise

    def _completer_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._completer_lock:
            if self._completer is None:
                self._completer = concurrent.futures.ThreadPoolExecutor(
                    max_workers=max(2, min(32, self.max_in_flight)),
                    thread_name_prefix="aq-complete",
                )
            return self._completer

    def _verdict(self, att: InFlight, result: AttemptResult) -> Verdict:
        if result.value is None and result.kind is _RETURNED:
            return _SUCCESS  # returned None: nothing to encode (the common no-result case)
        reg = att.handler
        c = att.dispatch.spec.constraints
        try:
            return interpret(
                result,
                c.retry_on,
                self.codecs,
                None if reg is None else reg.options.codec,
                timeout_s=None if c.timeout_ms is None else c.timeout_ms / 1000,
            )
        except Exception as e:  # pragma: no cover - interpret is total; belt and braces
            return Verdict(AttemptOutcome.RETRYABLE_FAILURE, error=describe_exception(e))

    def _free_slot_locked(self, att: InFlight) -> None:
        """``att`` no longer occupies a slot — unless its run was dispatched again meanwhile.

        ``inflight`` and ``executing`` are keyed by run: after a Lost attempt (lease expired
        under a live thread, which cannot be stopped) the run may be dispatched again while the
        old handler still runs, and the new attempt's entry replaces the old one. The old
        attempt's late result must not remove the new attempt's entry: the new attempt would no
        longer be heartbeated (its lease would expire under its live handler, the run would be
        retried or failed and its concurrency key handed to another run meanwhile) nor be
        asked to stop, and its slot would count as free."""
        cur = self.inflight.get(att.run_key)
        if cur is None or cur is att:
            self.executing.discard(att.run_key)

    def _forget_locked(self, att: InFlight) -> None:
        """``att`` is over: drop its entries, not those of a newer attempt of its run (see
        :meth:`_free_slot_locked`)."""
        if self.inflight.get(att.run_key) is att:
            del self.inflight[att.run_key]
        self._free_slot_locked(att)
        if att.key_held:  # see hold_keys
            att.key_held = False
            key = att.dispatch.spec.constraints.concurrency_key
            assert key is not None
            self._key_free_again(key)

    def _record_batch(self, items: list[tuple[InFlight, AttemptResult]]) -> None:
        """Record finished attempts: one ``Engine.finish_attempts`` call for all of them."""
        try:
            finishes: list[Finish] = []
            recorded: list[tuple[InFlight, Verdict]] = []
            #: the handlers' durations of ``recorded``, in order
            took: list[float] = []
            total = 0.0
            for att, result in items:
                d = att.dispatch
                if result.value is None and result.kind is _RETURNED:
                    verdict = _SUCCESS  # returned None: the common no-result case
                else:
                    verdict = self._verdict(att, result)
                total += result.duration
                if att.abandoned:
                    continue
                if verdict.release:
                    self._record(att, verdict, notify=False, took=result.duration)
                    continue
                finishes.append(
                    _new_tuple(
                        Finish,
                        (
                            d.run_id,
                            d.attempt_id,
                            verdict.outcome,
                            verdict.error,
                            verdict.output,
                            verdict.retry_delay_ms,
                        ),
                    )
                )
                recorded.append((att, verdict))
                took.append(result.duration)
            if items:
                mean, avg = total / len(items), self.avg_attempt_s
                self.avg_attempt_s = mean if avg is None else avg + (mean - avg) * 0.2
            if finishes:
                try:
                    states: list[RunState | BaseException] = list(
                        self.engine.finish_attempts(finishes, durability=DurabilityPolicy.DEFERRED)
                    )
                except Exception as e:  # storage failed / closed: nothing was recorded
                    states = [e] * len(finishes)
                for i, state in enumerate(states):
                    if isinstance(state, RecordTooLargeError):
                        states[i] = self._record_smaller(i, recorded, state)
                immediate = self.durability is DurabilityPolicy.IMMEDIATE
                # Applied: the slots are free for the next dispatch. Immediate: the results are
                # done only once synced; a running driver syncs them with its next lease batch
                # (one fdatasync for both), else this thread syncs them now.
                handed = False
                with self.mutex:
                    free_slot = self._free_slot_locked
                    for att, _ in items:
                        free_slot(att)
                    if immediate and self.drivers:
                        handed = True
                        self.settling.extend(att for att, _ in recorded)
                    self._changed_locked([att for att, _ in items])
                if handed:  # the driver removes them from `inflight` once synced
                    settled = {id(a) for a, _ in recorded}
                    items = [(a, r) for a, r in items if id(a) not in settled]
                elif immediate:
                    try:
                        self.engine.flush()
                    except Exception as e:  # the authority is now failed: nothing is durable
                        states = [e] * len(finishes)
                # The durations by (handler, outcome the log holds): the handler's own verdict
                # may not be it (a cancel while it ran, a result too large to record).
                outcomes: dict[tuple[str | None, str], list[float]] = {}
                for (att, verdict), state, seconds in zip(recorded, states, took, strict=True):
                    if verdict is _SUCCESS and state is _COMPLETED:
                        k = (att.dispatch.spec.handler, _SUCCESS_LABEL)
                    elif isinstance(state, BaseException):
                        self._not_recorded(att, state)
                        continue
                    else:
                        k = (att.dispatch.spec.handler, _outcome_label(verdict, state))
                        if verdict.outcome is not AttemptOutcome.SUCCESS or state is _FAILED:
                            self._log_outcome(att, verdict, state)
                    dl = outcomes.get(k)
                    if dl is None:
                        dl = outcomes[k] = []
                    dl.append(seconds)
                for (h, label), dl in outcomes.items():
                    self._count_outcomes(h, label, len(dl), dl)
        except Exception:  # pragma: no cover - belt and braces: never leave attempts in flight
            self.metrics.inc("errors_total", kind="record")
            _LOG.exception("recording %d results failed", len(items))
        finally:
            with self.mutex:
                forget = self._forget_locked
                for att, _ in items:
                    forget(att)
                self._changed_locked([att for att, _ in items])

    def _record_smaller(
        self, i: int, recorded: list[tuple[InFlight, Verdict]], e: RecordTooLargeError
    ) -> RunState | BaseException:
        """The output (or error text) of ``recorded[i]`` does not fit in one WAL record: record
        the attempt without it, else the run would sit in Running until its lease expired and
        then be retried into the same wall."""
        att, verdict = recorded[i]
        smaller = _too_large(verdict, e)
        recorded[i] = (att, smaller)
        try:
            return self._finish(att, smaller, DurabilityPolicy.DEFERRED)
        except Exception as again:  # storage failed meanwhile: reported like any other
            return again

    def _finish(
        self, att: InFlight, verdict: Verdict, durability: DurabilityPolicy | None = None
    ) -> RunState:
        """Record ``verdict`` for ``att``'s attempt in a record of its own."""
        d = att.dispatch
        return self.engine.finish_attempt(
            d.run_id,
            d.attempt_id,
            verdict.outcome,
            error=verdict.error,
            output=verdict.output,
            retry_delay=verdict.retry_delay_ms,
            durability=durability,
        )

    def _log_outcome(self, att: InFlight, verdict: Verdict, state: RunState) -> None:
        d = att.dispatch
        extra = _log_fields(d)
        if state is RunState.FAILED:
            _LOG.warning(
                "run %s of %r failed on attempt %d: %s",
                d.run_id,
                d.handler,
                d.attempt,
                (verdict.error or "").split("\n", 1)[0],
                extra=extra,
            )
        elif verdict.outcome is not AttemptOutcome.SUCCESS:
            _LOG.info(
                "run %s attempt %d: %s -> %s",
                d.run_id,
                d.attempt,
                verdict.outcome.label,
                state.label,
                extra=extra,
            )

    def _not_recorded(self, att: InFlight, e: BaseException) -> None:
        d = att.dispatch
        extra = _log_fields(d)
        if isinstance(e, (CommandRejectedError, NotFoundError)):
            # Canceled, swept as Lost after a lease expiry, or pruned meanwhile: the log already
            # says what happened to the run; this late result is dropped.
            self.metrics.inc("errors_total", kind="late_result")
            _LOG.info("result of run %s not recorded: %s", d.run_id, e, extra=extra)
        elif isinstance(e, (ClosedError, StorageError)):
            self.metrics.inc("errors_total", kind="storage")
            _LOG.error("result of run %s not recorded: %s", d.run_id, e, extra=extra)
        else:
            self.metrics.inc("errors_total", kind="record")
            _LOG.error(
                "recording the result of run %s failed",
                d.run_id,
                exc_info=(type(e), e, e.__traceback__),
                extra=extra,
            )

    def _count_outcomes(self, handler: str | None, label: str, n: int, took: list[float]) -> None:
        """Count ``n`` recorded attempts in ``outcomes_total`` and the durations of those whose
        handler ran (``took``) in ``attempt_duration_seconds``, under the same labels: the
        outcome the log holds, so both metrics agree with the log and each other."""
        self.metrics.inc("outcomes_total", n, handler=handler, outcome=label)
        if took:
            self.metrics.observe_many(
                "attempt_duration_seconds", took, handler=handler, outcome=label
            )

    def _record(
        self, att: InFlight, verdict: Verdict, *, notify: bool = True, took: float | None = None
    ) -> None:
        """Record one verdict now (unknown handler, undecodable payload, release); ``took``:
        the handler's duration, if it ran."""
        d = att.dispatch
        seconds = [] if took is None else [took]
        try:
            if att.abandoned:
                return
            if verdict.release:
                self.engine.release(d.run_id, self.owner)
                self._count_outcomes(d.handler, _RELEASED_LABEL, 1, seconds)
                _LOG.debug("run %s released (%s)", d.run_id, verdict.error, extra=_log_fields(d))
            else:
                try:
                    state = self._finish(att, verdict)
                except RecordTooLargeError as e:
                    # E.g. a codec's decode error quoting a huge payload: recorded cut, not left
                    # Running until its lease expires (then Lost, retried into the same wall).
                    verdict = _too_large(verdict, e)
                    state = self._finish(att, verdict)
                self._count_outcomes(d.handler, _outcome_label(verdict, state), 1, seconds)
                self._log_outcome(att, verdict, state)
        except Exception as e:
            self._not_recorded(att, e)
        finally:
            if notify:
                with self.mutex:
                    self._forget_locked(att)
                    self._changed_locked((att,))

    # --- control -----------------------------------------------------------------------------

    def signal(self, predicate: Callable[[InFlight], bool], reason: str) -> int:
        """Ask the in-flight attempts matching ``predicate`` to stop (``reason``: canceled,
        shutdown); returns how many were signalled."""
        with self.mutex:
            targets = [a for a in self.inflight.values() if predicate(a)]
        for a in targets:
            if a.job is not None and not a.job.done:
                self.executor.cancel(a.job, reason)
        return len(targets)

    def wait_in_flight(self, timeout: float | None) -> bool:
        """Wait until nothing is in flight; returns whether that happened within ``timeout``."""
        end = None if timeout is None else time.monotonic() + timeout
        with self.mutex:
            while self.inflight:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def abandon_in_flight(self) -> int:
        """At close: give back (release) every run whose result will not be recorded now."""
        with self.mutex:
            left = list(self.inflight.values())
        n = 0
        for a in left:
            a.abandoned = True
            try:
                self.engine.release(a.dispatch.run_id, self.owner)
                n += 1
            except ActionQueueError as e:
                _LOG.debug("could not release run %s at close: %s", a.dispatch.run_id, e)
            with self.mutex:
                self._forget_locked(a)
        return n

    def shutdown_completer(self) -> None:
        with self._completer_lock:
            pool, self._completer = self._completer, None
        if pool is not None:
            pool.shutdown(wait=True)

    # --- driving -----------------------------------------------------------------------------

    def drive(
        self,
        *,
        done: Callable[[], bool] | None = None,
        on_idle: str = "return",
        until_ms: int | None = None,
        deadline: float | None = None,
        eager: bool = False,
        through_close: bool = False,
    ) -> int:
        """Run steps until ``done()`` is true, or — by ``on_idle`` — until nothing is runnable
        now and nothing is in flight (``"return"``), through future work by moving a
        ``ManualClock`` or sleeping on a real one (``"advance"``, not past ``until_ms``), or
        forever (``"wait"``). ``deadline`` (``time.monotonic()``) raises
        :class:`~actionqueue.errors.WaitTimeoutError`. ``eager``: ``done()`` depends on results
        (a wait for a run), so the driver is woken for each one recorded while it sleeps.
        When the queue starts closing, a driver returns at once unless ``through_close`` (the
        queue's own loop: it heartbeats the attempts close() drains until ``done()``).
        Returns the attempts dispatched."""
        with self.mutex:
            self.drivers += 1
            self._eager = eager
        try:
            return self._drive(done, on_idle, until_ms, deadline, through_close)
        finally:
            with self.mutex:
                self.drivers -= 1
                self._eager = False
                last = not self.drivers
                pending, self._done = (self._done, []) if last else ([], self._done)
                if last:
                    self._nudged = False
            if pending:  # results handed to this driver after its last step: record them now
                self._record_batch(pending)
            if last:
                with self.mutex:
                    left, self.settling = self.settling, []
                if left:
                    self._sync(left)

    def _drive(
        self,
        done: Callable[[], bool] | None,
        on_idle: str,
        until_ms: int | None,
        deadline: float | None,
        through_close: bool,
    ) -> int:
        dispatched = 0
        spins = 0
        me = threading.get_ident()
        while True:
            if self.closing and not through_close:
                return dispatched
            with self.mutex:
                gen = self.gen
                self._stepper, self._own = me, 0
            try:
                with self._step_lock:
                    n, wake = self.step()
            finally:
                with self.mutex:
                    self._stepper = None
                    gen += self._own  # what the step itself changed, it has seen
            dispatched += n
            if done is not None and done():
                return dispatched
            if n and self.free() > 0:
                continue  # maybe more Ready runs than this batch took
            now = self.clock.now()
            if wake is not None and wake <= now:
                # Due now (the step promoted or swept it): step again, but never spin.
                spins += 1
                if spins > 2:
                    self._sleep(gen, SPIN_GUARD_S, deadline)
                continue
            spins = 0
            with self.mutex:
                if self.gen != gen:
                    # Something happened during the step (an attempt finished, a submit): its
                    # effects may not be covered by the step, so step again before judging.
                    continue
                idle = not self.inflight
            if idle and self.waiting_on_busy_keys():
                idle = False  # a run waits for a stopped handler to return
            with self.mutex:
                if idle and self.gen != gen:
                    continue
                if idle:
                    self.idle_gen = gen
                    self.cond.notify_all()
                    self.idle_cond.notify_all()
            if idle and on_idle == "return":
                return dispatched
            if idle and on_idle == "advance":
                if wake is None or (until_ms is not None and wake > until_ms):
                    return dispatched
                if self.manual:
                    assert isinstance(self.clock, ManualClock)
                    self.clock.set(wake)
                    continue
            self._wait(gen, wake, deadline, through_close)

    def _wait(
        self, gen: int, wake: int | None, deadline: float | None, through_close: bool = False
    ) -> None:
        """Sleep until the generation moves, the clock reaches ``wake``, or the deadline."""
        # In the main thread, sleep in slices: a Ctrl-C is delivered to whichever thread the OS
        # picks, and the main thread only runs the Python handler once it wakes up. A slice
        # ending without an event re-checks the condition only; it does not run a step.
        slice_s = (
            MAIN_THREAD_SLICE_S if threading.current_thread() is threading.main_thread() else None
        )
        with self.mutex:
            self._sleeping = True
            self._driver_wake = wake
            try:
                self._wait_locked(gen, wake, deadline, slice_s, through_close)
            finally:
                self._sleeping = False
                self._driver_wake = None

    def _wait_locked(
        self,
        gen: int,
        wake: int | None,
        deadline: float | None,
        slice_s: float | None,
        through_close: bool,
    ) -> None:
        while self.gen == gen and (through_close or not self.closing):
            if self._done:
                # Results waiting with no wake-up on the way (the executor still had a
                # backlog when they came): look again shortly instead of sleeping on.
                self.drive_cond.wait(RESULT_RECHECK_S)
                return
            timeout: float | None = None
            if wake is not None and not self.manual:
                timeout = min(MAX_SLEEP_S, max(0.0, (wake - self.clock.now()) / 1000))
                if timeout <= 0:
                    return
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeoutError("gave up waiting: the timeout passed")
                timeout = left if timeout is None else min(timeout, left)
            if slice_s is not None:
                timeout = slice_s if timeout is None else min(timeout, slice_s)
            self.drive_cond.wait(timeout)

    def _sleep(self, gen: int, seconds: float, deadline: float | None) -> None:
        with self.mutex:
            if self.gen == gen:
                self.drive_cond.wait(seconds)
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeoutError("gave up waiting: the timeout passed")

    def begin_close(self) -> None:
        """The queue is closing: stop dispatching for good and make every driver return."""
        with self.mutex:
            self.closing = True
            self.draining = True
        self.wake()

    def await_step(self) -> None:
        """After :meth:`begin_close`: wait for a step that began before it — a driver's (in
        ``run_until_idle()`` / ``wait()``) or an executor thread's standing in for a sleeping
        driver — which read ``draining`` before it was set and may still lease a batch. Once
        it is over, that batch is in ``inflight`` (close drains or gives it back) and every
        later step dispatches nothing: else close found nothing in flight, shut the executor
        and closed the log under it, and the batch's runs stayed Running in the log. Not from
        inside this thread's own step (close() from a signal handler that interrupted it): it
        would wait for itself."""
        if self._stepper == threading.get_ident() or getattr(self._tls, "stepping", False):
            return
        with self._step_lock:
            pass

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Held by a waiter from before its first look at its target until it has read it,
        so that :meth:`await_readers` keeps the log open for that read: a ``result()`` whose
        run finished in close's drain returns it instead of racing the log's close."""
        with self.mutex:
            self.readers += 1
        try:
            yield
        finally:
            with self.mutex:
                self.readers -= 1
                self.cond.notify_all()

    def await_readers(self, timeout: float) -> None:
        """The log is about to close: waits whose target is not done end (``final``), and
        the readers of finished targets get up to ``timeout`` s to read them."""
        deadline = time.monotonic() + timeout
        with self.mutex:
            self.final = True
            self.cond.notify_all()
            self._wake_watchers_locked(None)
            while self.readers:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)

    def finish_close(self) -> None:
        with self.mutex:
            self.closed = True
        self.wake()

    def close_executor(self, wait: bool, timeout: float | None) -> None:
        with contextlib.suppress(Exception):
            self.executor.shutdown(wait=wait, timeout=timeout)


def _snapshot_of(d: Dispatch, timeout_s: float | None) -> ContextSnapshot:
    spec = d.spec
    return ContextSnapshot(
        str(d.task_id),
        str(d.run_id),
        str(d.attempt_id),
        d.attempt,
        spec.constraints.max_attempts,
        d.scheduled_at,
        d.deadline,
        spec.handler,
        timeout_s,
        spec.metadata.tags,
    )


def _log_fields(d: Dispatch) -> dict[str, object]:
    return attempt_log_fields(
        task_id=d.task_id,
        run_id=d.run_id,
        attempt_id=d.attempt_id,
        attempt=d.attempt,
        handler=d.handler,
    )


def _too_large(verdict: Verdict, e: RecordTooLargeError) -> Verdict:
    """What to record when ``verdict`` makes a record over the size limit: a return value
    that cannot be stored fails the run (like one the codec cannot encode: retrying will not
    shrink it); an over-long error text is cut, keeping the outcome."""
    if verdict.output is not None:
        return Verdict(
            AttemptOutcome.TERMINAL_FAILURE,
            error=f"the handler's return value could not be recorded: {describe_exception(e)}",
        )
    head = (verdict.error or "").split("\n", 1)[0][:200]
    return Verdict(
        verdict.outcome,
        error=f"{head} [error text dropped: {describe_exception(e)}]",
        retry_delay_ms=verdict.retry_delay_ms,
    )
