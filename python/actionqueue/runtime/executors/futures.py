"""Any ``concurrent.futures``-style executor, including a Dask ``distributed.Client``.

``executor.submit(fn, *args)`` must return a future with ``add_done_callback``, ``result`` /
``exception`` and ``cancel``. That is what :class:`concurrent.futures.Executor` and
:class:`distributed.Client` both provide, so one adapter serves both.

What is shipped to the worker is plain and picklable: the handler function, the decoded
payload and a :class:`~actionqueue.runtime.context.ContextSnapshot`; the worker runs
:func:`~actionqueue.runtime.executors.base.run_remote` and returns an
:class:`~actionqueue.runtime.outcomes.AttemptResult`. Workers need ``actionqueue`` installed and
the handler importable (Dask pickles lambdas and closures too, through cloudpickle).

* Heartbeats cannot come from a remote worker; the owning runtime heartbeats the lease of every
  pending attempt itself, so a long remote task keeps its lease while the owner is alive.
* **Timeouts are cooperative here**: at the deadline the attempt is recorded as Timeout and
  ``future.cancel()`` is called, which stops a task that has not started; a running one cannot
  be interrupted, so it may finish on the worker and its result is ignored. Until its future
  completes it still holds its worker (:meth:`FuturesExecutor.occupied`): the runtime does not
  hand out another attempt in its place, which would wait in the executor's queue behind it
  with its own timeout running. (A Dask future is done once cancelled on the client, whatever
  the worker still does.)
* A future that the executor cancels by itself (a Dask client closed with tasks in flight) is
  recorded as **Lost**, like a lost worker: only the runtime's own stop requests count as
  canceled.
* A future that fails *outside* the handler (worker lost, ``KilledWorker``) is recorded as
  **Lost**: nobody knows whether the handler ran.
* With a process pool or Dask the result is pickled on the worker
  (:func:`~actionqueue.runtime.executors.base.run_remote_serialized`): a return value that
  does not pickle there, or not unpickle here, is the handler's terminal failure — it ran,
  so it is not retried (it was taken for Lost, and the handler ran again).
* A :class:`concurrent.futures.ThreadPoolExecutor` runs in this process, so its handlers get the
  live context (cancel signal, heartbeat) instead of a snapshot.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import threading
from typing import Any

from actionqueue.errors import ExecutorError, ValidationError, WrongTypeError
from actionqueue.runtime.executors.base import (
    ExecutorAdapter,
    Job,
    interrupted,
    load_result,
    run_local,
    run_remote,
    run_remote_serialized,
)
from actionqueue.runtime.executors.watcher import DeadlineWatcher
from actionqueue.runtime.outcomes import AttemptResult, ResultKind

__all__ = ["FuturesExecutor", "is_dask_client"]


def is_dask_client(obj: object) -> bool:
    """Whether ``obj`` is a ``distributed.Client`` (without importing distributed)."""
    return any(
        k.__module__.startswith("distributed") and k.__name__ == "Client" for k in type(obj).__mro__
    )


def _dask_workers(client: Any) -> int:
    try:
        info = client.scheduler_info()
        n = sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values())
        return max(1, n)
    except Exception:
        return 8


class FuturesExecutor(ExecutorAdapter):
    """Adapter for a ``concurrent.futures.Executor`` or a Dask ``distributed.Client``.

    ``max_workers`` bounds attempts in flight (default: the executor's own worker count when it
    can be read — a Dask cluster's total threads — else 8). The adapter does not own the
    executor: ``shutdown`` does not shut it down.
    """

    inline_completion = False

    def __init__(self, executor: Any, *, max_workers: int | None = None) -> None:
        if not callable(getattr(executor, "submit", None)):
            raise WrongTypeError(
                f"executor must have a submit(fn, *args) method returning a future, got "
                f"{executor!r}"
            )
        self._ex = executor
        self.dask = is_dask_client(executor)
        self.name = "dask" if self.dask else "futures"
        self._local = isinstance(executor, concurrent.futures.ThreadPoolExecutor)
        self.remote = not self._local
        #: results are pickled on the worker (see ``run_remote_serialized``) where the
        #: executor would pickle them anyway: a process pool, Dask
        self._serialized = self.dask or isinstance(executor, concurrent.futures.ProcessPoolExecutor)
        if max_workers is None:
            if self.dask:
                max_workers = _dask_workers(executor)
            else:
                max_workers = int(getattr(executor, "_max_workers", 8) or 8)
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValidationError(f"max_workers must be an int >= 1, got {max_workers!r}")
        self.max_workers = max_workers
        self._watcher = DeadlineWatcher("aq-futures-deadlines")
        self._closed = False
        #: futures submitted and not done (see :meth:`occupied`); guarded by ``_lock``
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def executor(self) -> Any:
        return self._ex

    def check_handler(self, name: str, fn: Any) -> None:
        # A process pool pickles what it ships (a Dask client uses cloudpickle: closures and
        # lambdas travel); a handler that cannot make it would be Lost at every attempt.
        if isinstance(self._ex, concurrent.futures.ProcessPoolExecutor):
            from actionqueue.runtime.executors.processes import check_shippable

            check_shippable(name, fn, "the worker processes of a ProcessPoolExecutor")

    def submit(self, job: Job) -> None:
        if self._closed:
            raise ExecutorError("the futures executor adapter is shut down")
        # Running (maybe remotely) until its future is done: a task that cannot be stopped
        # keeps its run's concurrency key busy until then. (A Dask future is done once
        # cancelled, whatever the worker still does.)
        job.enter()
        if job.done:  # canceled before it was handed over (see ThreadExecutor._loop)
            job.leave()
            return
        try:
            fut = self._hand_over(job)
        except BaseException:
            job.leave()  # refused: it never runs
            raise
        job.handle = fut
        with self._lock:
            self._pending += 1
        timer = None
        if job.timeout is not None:
            timer = self._watcher.schedule(
                job.timeout, functools.partial(self.cancel, job, "timeout")
            )
        fut.add_done_callback(functools.partial(self._done, job, timer))

    def _hand_over(self, job: Job) -> Any:
        if self._local:
            return self._ex.submit(run_local, job)
        if self.dask:
            # pure=False: two attempts with equal arguments are still two executions.
            return self._ex.submit(
                run_remote_serialized, job.fn, job.payload, job.snapshot, job.is_async, pure=False
            )
        if self._serialized:
            return self._ex.submit(
                run_remote_serialized, job.fn, job.payload, job.snapshot, job.is_async
            )
        return self._ex.submit(run_remote, job.fn, job.payload, job.snapshot, job.is_async)

    def occupied(self) -> int:
        return self._pending

    def _done(self, job: Job, timer: int | None, fut: Any) -> None:
        job.leave()
        with self._lock:
            self._pending -= 1
        if timer is not None:
            self._watcher.cancel(timer)
        if job.done:
            # A late end of an attempt recorded already (timeout, cancel): its worker is free.
            notify = self.on_capacity
            if notify is not None:
                notify()
            return
        try:
            if fut.cancelled():
                reason = job.context.cancelled.requested
                if reason is None:  # not our stop request: the executor dropped the task
                    job.finish(
                        AttemptResult(
                            ResultKind.LOST,
                            detail="the executor cancelled the task (shut down or closed?)",
                            duration=job.elapsed(),
                        )
                    )
                else:
                    job.finish(interrupted(reason, job.elapsed()))
                return
            exc = fut.exception()
            if exc is not None:
                job.finish(
                    AttemptResult(
                        ResultKind.LOST,
                        detail=f"{type(exc).__name__}: {exc}",
                        duration=job.elapsed(),
                    )
                )
                return
            result = fut.result()
            if self._serialized:
                result = load_result(result)
        except BaseException as e:
            job.finish(
                AttemptResult(
                    ResultKind.LOST, detail=f"{type(e).__name__}: {e}", duration=job.elapsed()
                )
            )
            return
        if not isinstance(result, AttemptResult):
            job.finish(
                AttemptResult(
                    ResultKind.LOST,
                    detail=f"the executor returned {type(result).__name__}, not an AttemptResult",
                )
            )
            return
        job.finish(result)

    def cancel(self, job: Job, reason: str = "canceled") -> None:
        job.context.cancelled.request(reason)
        fut = job.handle
        if fut is not None:
            with contextlib.suppress(Exception):
                fut.cancel()
        extra = None
        if reason == "timeout":
            extra = AttemptResult(
                ResultKind.TIMED_OUT,
                detail="the future was cancelled; a task already running may still finish",
                duration=job.elapsed(),
            )
        job.finish(extra or interrupted(reason, job.elapsed()))

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        self._closed = True
        self._watcher.stop()
