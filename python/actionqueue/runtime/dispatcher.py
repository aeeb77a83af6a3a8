"""The dispatch loop: hand Ready runs to the executor, record outcomes, keep leases alive.

One thread at a time *drives* the loop (the background thread of ``start()``, or the caller of
``run_until_idle()`` / ``wait()``); outcomes are recorded by whichever thread learns them
(the worker thread for the thread executor, a small completer pool for executors whose
callbacks run on an event loop), so Immediate commits from many finishing attempts share one
fsync (group commit).

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
from collections.abc import Callable
from dataclasses import dataclass, field

from actionqueue.core.mutation import DurabilityPolicy
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.run.state import RunState
from actionqueue.engine.engine import Dispatch, Engine
from actionqueue.engine.time.clock import Clock, ManualClock
from actionqueue.errors import (
    ActionQueueError,
    ClosedError,
    CommandRejectedError,
    NotFoundError,
    StorageError,
    UnknownHandlerError,
    WaitTimeoutError,
)
from actionqueue.runtime.codecs import CodecRegistry
from actionqueue.runtime.context import ContextSnapshot, HandlerContext
from actionqueue.runtime.executors.base import ExecutorAdapter, Job
from actionqueue.runtime.handlers import HandlerRegistry, RegisteredHandler
from actionqueue.runtime.metrics import Metrics
from actionqueue.runtime.outcomes import AttemptResult, Verdict, interpret

__all__ = ["Dispatcher", "InFlight"]

_LOG = logging.getLogger("actionqueue.runtime")

#: Longest single sleep on a real clock: a guard against wall-clock jumps, not a poll.
MAX_SLEEP_S = 10.0
#: Longest single sleep of a main-thread driver, so that Ctrl-C is handled promptly.
MAIN_THREAD_SLICE_S = 0.2
#: Sleep when the engine keeps reporting work due now but a step changes nothing.
SPIN_GUARD_S = 0.005


@dataclass(eq=False)
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

    @property
    def run_key(self) -> bytes:
        return self.dispatch.run_id.bytes


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
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.handlers = handlers
        self.codecs = codecs
        self.executor = executor
        self.metrics = metrics
        self.owner = owner
        self.max_in_flight = max_in_flight
        self.durability = durability
        self.manual = isinstance(clock, ManualClock)
        self.cond = threading.Condition()
        #: bumped on every event that may make work runnable or change a run's state
        self.gen = 0
        self.inflight: dict[bytes, InFlight] = {}
        #: the generation at which the driver last found nothing to do (run_until_idle)
        self.idle_gen = -1
        self.draining = False
        self.driver_lock = threading.Lock()
        self._completer: concurrent.futures.ThreadPoolExecutor | None = None
        self._completer_lock = threading.Lock()
        self._executor_started = False
        self.loop_error: BaseException | None = None

    # --- events ------------------------------------------------------------------------------

    def wake(self) -> None:
        """Something changed: wake the driver and every waiter."""
        with self.cond:
            self.gen += 1
            self.cond.notify_all()

    def free(self) -> int:
        return self.max_in_flight - len(self.inflight)

    # --- one step ----------------------------------------------------------------------------

    def step(self) -> tuple[int, int | None]:
        """Heartbeat, promote, dispatch up to the free capacity. Returns ``(dispatched, wake)``
        where ``wake`` is the clock time (ms) of the next thing to do, or ``None``."""
        now = self.clock.now()
        next_beat = self._heartbeats(now)
        started = 0
        if self.draining:
            wake = self.engine.next_wakeup(now)
            if wake is not None and wake <= now:
                self.engine.tick(now)  # the expiry sweep still runs while draining
        else:
            free = self.free()
            batch = self.engine.dispatch_next(self.owner, now, max(0, free))
            for d in batch:
                self._start(d, now)
            started = len(batch)
        now = self.clock.now()
        wake = self.engine.next_wakeup(now)
        if next_beat is not None and (wake is None or next_beat < wake):
            wake = next_beat
        return started, wake

    def _heartbeats(self, now: int) -> int | None:
        """Extend the leases that are a third through; returns the next heartbeat time."""
        with self.cond:
            due = [a for a in self.inflight.values() if not a.lease_lost]
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
            if a.run_key in self.inflight:
                self.metrics.inc("heartbeat_failures_total")
                _LOG.debug(
                    "heartbeat refused for run %s: %s",
                    a.dispatch.run_id,
                    e,
                    extra={"run_id": str(a.dispatch.run_id)},
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

    def _start(self, d: Dispatch, now: int) -> None:
        self.metrics.inc("dispatched_total", handler=d.handler)
        self.metrics.observe(
            "dispatch_latency_seconds", max(0, now - d.scheduled_at) / 1000, handler=d.handler
        )
        lease_ms = max(1, d.lease_expires_at - now)
        reg = self.handlers.find(d.handler)
        att = InFlight(
            d,
            None,
            reg,
            d.lease_expires_at,
            now + max(1, lease_ms // 3),
            lease_ms,
            now,
        )
        with self.cond:
            self.inflight[att.run_key] = att
        if reg is None:
            err = UnknownHandlerError(self.handlers._unknown_message(d.handler))
            self._record(att, Verdict(AttemptOutcome.TERMINAL_FAILURE, error=_err_text(err)))
            return
        try:
            payload = self.codecs.decode_payload(d.payload.data, d.payload.content_type)
        except Exception as e:
            verdict = Verdict(
                AttemptOutcome.TERMINAL_FAILURE,
                error=f"the payload could not be decoded: {_err_text(e)}",
            )
            self._record(att, verdict)
            return
        c = d.constraints
        timeout_s = None if c.timeout_ms is None else c.timeout_ms / 1000
        snap = ContextSnapshot(
            str(d.task_id),
            str(d.run_id),
            str(d.attempt_id),
            d.attempt,
            c.max_attempts,
            d.scheduled_at,
            d.deadline,
            d.handler,
            timeout_s,
            d.spec.metadata.tags,
        )
        ctx = HandlerContext(
            snap,
            payload,
            heartbeat=functools.partial(self.beat_now, att.run_key),
            on_progress=functools.partial(self._progress, att),
        )
        job = Job(
            reg.fn,
            payload,
            ctx,
            timeout=timeout_s,
            is_async=reg.is_async,
            on_done=functools.partial(self._on_done, att),
        )
        att.job = job
        try:
            if not self._executor_started:
                self.executor.start()
                self._executor_started = True
            self.executor.submit(job)
        except Exception as e:
            # The executor refused (shut down, broken): give the run back unchanged.
            _LOG.error("executor refused run %s: %s", d.run_id, e)
            self.metrics.inc("errors_total", kind="executor")
            self._record(att, Verdict(AttemptOutcome.SUSPENDED, error=str(e), release=True))

    def _progress(self, att: InFlight, value: float | str) -> None:
        att.progress = value

    # --- finishing an attempt ----------------------------------------------------------------

    def _on_done(self, att: InFlight, job: Job, result: AttemptResult) -> None:
        if self.executor.inline_completion:
            self._complete(att, result)
        else:
            self._completer_pool().submit(self._complete, att, result)

    def _completer_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._completer_lock:
            if self._completer is None:
                self._completer = concurrent.futures.ThreadPoolExecutor(
                    max_workers=max(2, min(32, self.max_in_flight)),
                    thread_name_prefix="aq-complete",
                )
            return self._completer

    def _complete(self, att: InFlight, result: AttemptResult) -> None:
        d = att.dispatch
        reg = att.handler
        codec = None if reg is None else reg.options.codec
        c = d.constraints
        try:
            verdict = interpret(
                result,
                c.retry_on,
                self.codecs,
                codec,
                timeout_s=None if c.timeout_ms is None else c.timeout_ms / 1000,
            )
        except Exception as e:  # pragma: no cover - interpret is total; belt and braces
            verdict = Verdict(AttemptOutcome.RETRYABLE_FAILURE, error=_err_text(e))
        self.metrics.observe(
            "attempt_duration_seconds",
            result.duration,
            handler=d.handler,
            outcome=verdict.outcome.label,
        )
        self._record(att, verdict)

    def _record(self, att: InFlight, verdict: Verdict) -> None:
        d = att.dispatch
        extra = {"run_id": str(d.run_id), "attempt_id": str(d.attempt_id), "handler": d.handler}
        try:
            if att.abandoned:
                return
            if verdict.release:
                self.engine.release(d.run_id, self.owner)
                self.metrics.inc("outcomes_total", handler=d.handler, outcome="Released")
                _LOG.debug("run %s released (%s)", d.run_id, verdict.error, extra=extra)
            else:
                state = self.engine.finish_attempt(
                    d.run_id,
                    d.attempt_id,
                    verdict.outcome,
                    error=verdict.error,
                    output=verdict.output,
                    retry_delay=verdict.retry_delay_ms,
                )
                self.metrics.inc("outcomes_total", handler=d.handler, outcome=verdict.outcome.label)
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
        except (CommandRejectedError, NotFoundError) as e:
            # Canceled, swept as Lost after a lease expiry, or pruned meanwhile: the log already
            # says what happened to the run; this late result is dropped.
            self.metrics.inc("errors_total", kind="late_result")
            _LOG.info("result of run %s not recorded: %s", d.run_id, e, extra=extra)
        except (ClosedError, StorageError) as e:
            self.metrics.inc("errors_total", kind="storage")
            _LOG.error("result of run %s not recorded: %s", d.run_id, e, extra=extra)
        except Exception:
            self.metrics.inc("errors_total", kind="record")
            _LOG.exception("recording the result of run %s failed", d.run_id, extra=extra)
        finally:
            with self.cond:
                self.inflight.pop(att.run_key, None)
                self.gen += 1
                self.cond.notify_all()

    # --- control -----------------------------------------------------------------------------

    def signal(self, predicate: Callable[[InFlight], bool], reason: str) -> int:
        """Ask the in-flight attempts matching ``predicate`` to stop (``reason``: canceled,
        shutdown); returns how many were signalled."""
        with self.cond:
            targets = [a for a in self.inflight.values() if predicate(a)]
        for a in targets:
            if a.job is not None and not a.job.done:
                self.executor.cancel(a.job, reason)
        return len(targets)

    def wait_in_flight(self, timeout: float | None) -> bool:
        """Wait until nothing is in flight; returns whether that happened within ``timeout``."""
        end = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while self.inflight:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def abandon_in_flight(self) -> int:
        """At close: give back (release) every run whose result will not be recorded now."""
        with self.cond:
            left = list(self.inflight.values())
        n = 0
        for a in left:
            a.abandoned = True
            try:
                self.engine.release(a.dispatch.run_id, self.owner)
                n += 1
            except ActionQueueError as e:
                _LOG.debug("could not release run %s at close: %s", a.dispatch.run_id, e)
            with self.cond:
                self.inflight.pop(a.run_key, None)
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
    ) -> int:
        """Run steps until ``done()`` is true, or — by ``on_idle`` — until nothing is runnable
        now and nothing is in flight (``"return"``), through future work by moving a
        ``ManualClock`` or sleeping on a real one (``"advance"``, not past ``until_ms``), or
        forever (``"wait"``). ``deadline`` (``time.monotonic()``) raises
        :class:`~actionqueue.errors.WaitTimeoutError`. Returns the attempts dispatched."""
        dispatched = 0
        spins = 0
        while True:
            with self.cond:
                gen = self.gen
            n, wake = self.step()
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
            with self.cond:
                if self.gen != gen:
                    # Something happened during the step (an attempt finished, a submit): its
                    # effects may not be covered by the step, so step again before judging.
                    continue
                idle = not self.inflight
                if idle:
                    self.idle_gen = gen
                    self.cond.notify_all()
            if idle and on_idle == "return":
                return dispatched
            if idle and on_idle == "advance":
                if wake is None or (until_ms is not None and wake > until_ms):
                    return dispatched
                if self.manual:
                    assert isinstance(self.clock, ManualClock)
                    self.clock.set(wake)
                    continue
            self._wait(gen, wake, deadline)

    def _wait(self, gen: int, wake: int | None, deadline: float | None) -> None:
        """Sleep until the generation moves, the clock reaches ``wake``, or the deadline."""
        # In the main thread, sleep in slices: a Ctrl-C is delivered to whichever thread the OS
        # picks, and the main thread only runs the Python handler once it wakes up. A slice
        # ending without an event re-checks the condition only; it does not run a step.
        slice_s = (
            MAIN_THREAD_SLICE_S if threading.current_thread() is threading.main_thread() else None
        )
        with self.cond:
            while self.gen == gen:
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
                self.cond.wait(timeout)

    def _sleep(self, gen: int, seconds: float, deadline: float | None) -> None:
        with self.cond:
            if self.gen == gen:
                self.cond.wait(seconds)
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeoutError("gave up waiting: the timeout passed")

    def close_executor(self, wait: bool, timeout: float | None) -> None:
        with contextlib.suppress(Exception):
            self.executor.shutdown(wait=wait, timeout=timeout)


def _err_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"
