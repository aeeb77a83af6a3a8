"""The process executor: handlers in worker processes, hard timeouts by killing the worker.

Each of ``max_workers`` slots owns one worker process (started with the ``forkserver`` method
where available, else ``spawn`` — never ``fork``, which is unsafe in a threaded process) and a
thread in the owning process that feeds it one job at a time and waits for the result, the
worker's death, a stop request or the deadline, whichever comes first:

* **timeout** — the worker is killed (SIGKILL, to its whole process group: the processes its
  handler started die with it) and the attempt recorded as **Timeout**;
* **cancel** / non-draining shutdown — the worker is killed, the run's outcome follows the
  request (Canceled in the log already / given back);
* **the worker dies** (segfault, ``os._exit``, OOM kill) — the attempt is a
  **RetryableFailure** whose error names the signal or exit code; retried while attempts
  remain;
* in every case a fresh worker replaces the dead one and the queue keeps going.

What crosses the pipe is pickled by ``multiprocessing`` between this process and its own
children: the handler function (module-level, importable by name in the worker), the decoded
payload and a :class:`~actionqueue.runtime.context.ContextSnapshot`; back comes an
:class:`~actionqueue.runtime.outcomes.AttemptResult`. Nothing read from the log is unpickled.
Handlers get a :class:`~actionqueue.runtime.context.RemoteContext`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import signal
import sys
import threading
import time
from multiprocessing.context import BaseContext
from multiprocessing.reduction import ForkingPickler
from typing import Any

from actionqueue.errors import ExecutorError, ValidationError
from actionqueue.runtime.executors._procworker import leads_own_group, worker_main
from actionqueue.runtime.executors.base import ExecutorAdapter, Job, interrupted
from actionqueue.runtime.executors.watcher import LONGEST_WAIT_S
from actionqueue.runtime.outcomes import AttemptResult, ErrorInfo, ResultKind, describe_exception

__all__ = ["ProcessExecutor", "check_shippable", "default_mp_context"]

_LOG = logging.getLogger("actionqueue.runtime")


def default_mp_context() -> BaseContext:
    """``forkserver`` where the platform has it (fast replacement of killed workers), else
    ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods and sys.platform != "darwin":
        ctx = multiprocessing.get_context("forkserver")
        # Workers fork from a server that already imported the runtime: cheap replacements.
        # The server also ignores SIGTERM sent to the whole service (see _forkserver).
        ctx.set_forkserver_preload(
            [
                "actionqueue.runtime.executors._forkserver",
                "actionqueue.runtime.executors._procworker",
            ]
        )
        return ctx
    return multiprocessing.get_context("spawn")


def check_shippable(name: str, fn: Any, where: str) -> None:
    """:class:`ValidationError` if the handler ``fn`` can never reach a worker process that
    loads it by reference (``pickle``): it does not pickle here (a lambda, a closure, a local
    class's method), or it belongs to a ``__main__`` that workers cannot import (an
    interactive session, a notebook, ``python -c``: no file to import it from)."""
    try:
        pickle.dumps(fn)
    except Exception as e:
        raise ValidationError(
            f"handler {name!r} cannot be sent to {where}: it does not pickle "
            f"({type(e).__name__}: {e}); define it at module level of an importable module"
        ) from e
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    if getattr(target, "__module__", None) == "__main__" and not _main_importable():
        raise ValidationError(
            f"handler {name!r} cannot be loaded by {where}: it is defined in a __main__ "
            "that they cannot import (an interactive session, a notebook, `python -c`); "
            "define it in a module (a .py file) and import it from there"
        )


def _main_importable() -> bool:
    """Whether ``spawn`` / ``forkserver`` workers import this program's ``__main__`` (by its
    module name under ``python -m``, else from its file), as ``multiprocessing`` does."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return bool(getattr(spec, "name", None) or getattr(main, "__file__", None))


def kill_worker(proc: Any) -> None:
    """SIGKILL for a live worker and everything in its process group: the worker leads a group
    of its own (``_procworker``), which the processes its handlers started inherit, so they do
    not run on, orphaned, after a timeout or cancel. A worker that has not made its group yet
    (just started, no handler run) is killed alone."""
    if not proc.is_alive():
        return
    pid = proc.pid
    if pid is not None and leads_own_group(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    else:
        proc.kill()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name} (exit code {code})"
    return f"exited with code {code}"


def _terminal(e: BaseException, message: str, duration: float = 0.0) -> AttemptResult:
    """The handler's terminal failure (retrying cannot help), described by ``message``."""
    info = ErrorInfo.from_exception(e)
    return AttemptResult(
        ResultKind.RAISED,
        error=ErrorInfo(
            type_name=info.type_name, classes=info.classes, message=message, control="fail"
        ),
        duration=duration,
    )


def _unreadable_result(e: BaseException) -> str:
    return (
        "the handler's return value cannot be received from the worker process (it pickles "
        "there but does not unpickle in the queue's process): " + describe_exception(e)
    )


class _Slot:
    """One worker process and the thread that drives it."""

    def __init__(self, owner: ProcessExecutor, index: int) -> None:
        self.owner = owner
        self.index = index
        self.proc: Any = None
        self.conn: multiprocessing.connection.Connection | None = None
        self.wake_r, self.wake_w = owner.ctx.Pipe(duplex=False)
        self.job: Job | None = None
        self.thread = threading.Thread(target=self.loop, name=f"aq-proc-slot-{index}", daemon=True)

    def ensure_process(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            return
        self.discard_process()
        parent, child = self.owner.ctx.Pipe(duplex=True)
        proc = self.owner.ctx.Process(  # type: ignore[attr-defined]
            target=worker_main, args=(child,), name=f"aq-proc-worker-{self.index}", daemon=True
        )
        proc.start()
        child.close()
        self.proc, self.conn = proc, parent
        self.owner.started_processes += 1

    def discard_process(self) -> None:
        proc, conn = self.proc, self.conn
        self.proc = self.conn = None
        if conn is not None:
            conn.close()
        if proc is not None:
            kill_worker(proc)
            proc.join(5)
            proc.close()

    def kill(self) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        kill_worker(proc)
        proc.join(5)
        code: int | None = proc.exitcode
        self.discard_process()
        return code

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self.wake_w.send_bytes(b"x")

    def loop(self) -> None:
        jobs = self.owner.jobs
        while True:
            job = jobs.get()
            if job is None:
                break
            if job.done:
                continue
            try:
                self.run(job)
            except Exception as e:  # the slot must survive anything
                _LOG.exception("process executor slot %d failed running a job", self.index)
                job.finish(AttemptResult.raised(e, job.elapsed()))
                self.discard_process()
        self.discard_process()

    def run(self, job: Job) -> None:
        try:
            self.ensure_process()
        except Exception as e:
            # Name the type: some start failures (EOFError from a child that exited while
            # starting, e.g. a main module without an `if __name__ == "__main__":` guard) have
            # no message at all.
            reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            job.finish(
                AttemptResult(
                    ResultKind.CRASHED, detail=f"could not start a worker process: {reason}"
                )
            )
            return
        assert self.conn is not None
        assert self.proc is not None
        # Drain stale wake-ups from an earlier job.
        while self.wake_r.poll():
            self.wake_r.recv_bytes()
        self.job = job
        job.handle = self
        # cancel() sets the signal before it reads the handle; we publish the handle before we
        # read the signal: so either it wakes us, or we see the signal here.
        if job.context.cancelled.is_set() or job.done:
            job.finish(interrupted(job.context.cancelled.requested or "canceled", 0.0))
            self.job = None
            return
        try:
            self.conn.send((job.fn, job.payload, job.snapshot, job.is_async))
        except Exception as e:
            # Pickling failed before anything was written: the handler cannot be shipped.
            # Retrying will not fix that, so report it as the handler's terminal failure.
            job.finish(
                _terminal(
                    e,
                    f"cannot send the handler or its payload to a worker process "
                    f"(define handlers at module level; payloads must be picklable): {e}",
                )
            )
            self.job = None
            return
        job.started = time.monotonic()
        deadline = None if job.timeout is None else job.started + job.timeout
        conn, proc = self.conn, self.proc
        waitables = [conn, proc.sentinel, self.wake_r]
        try:
            while True:
                remaining = (
                    None
                    if deadline is None
                    else min(max(0.0, deadline - time.monotonic()), LONGEST_WAIT_S)
                )
                ready = multiprocessing.connection.wait(waitables, remaining)
                if conn in ready:
                    try:
                        data = conn.recv_bytes()
                    except (EOFError, OSError):
                        code = self.kill()
                        job.finish(AttemptResult(ResultKind.CRASHED, detail=_describe_exit(code)))
                        return
                    try:
                        result = ForkingPickler.loads(data)
                    except BaseException as e:
                        # The handler returned a value that pickles in the worker but does not
                        # unpickle here (an exception class with a custom __init__, a class
                        # only the worker can import...). The handler ran and succeeded: a
                        # terminal failure, as a value that cannot be sent back is, not a retry
                        # running its side effects again. The worker is fine and serves on.
                        job.finish(_terminal(e, _unreadable_result(e), job.elapsed()))
                        return
                    job.finish(result)
                    return
                if proc.sentinel in ready:
                    if conn.poll():  # it answered, then exited
                        continue
                    code = self.kill()
                    job.finish(
                        AttemptResult(
                            ResultKind.CRASHED, detail=_describe_exit(code), duration=job.elapsed()
                        )
                    )
                    return
                if self.wake_r in ready:
                    while self.wake_r.poll():
                        self.wake_r.recv_bytes()
                    if job.context.cancelled.is_set() or job.done:
                        reason = job.context.cancelled.requested or "canceled"
                        self.kill()
                        job.finish(interrupted(reason, job.elapsed()))
                        return
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    job.context.cancelled.request("timeout")
                    self.kill()
                    job.finish(
                        AttemptResult(
                            ResultKind.TIMED_OUT,
                            detail="worker process killed",
                            duration=job.elapsed(),
                        )
                    )
                    return
        finally:
            self.job = None


class ProcessExecutor(ExecutorAdapter):
    """Run handlers in ``max_workers`` worker processes with hard timeouts."""

    name = "processes"
    remote = True
    hard_timeout = True

    def __init__(
        self, max_workers: int = 4, *, mp_context: BaseContext | str | None = None
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValidationError(f"max_workers must be an int >= 1, got {max_workers!r}")
        if isinstance(mp_context, str):
            if mp_context == "fork":
                raise ValidationError(
                    "mp_context='fork' is refused: forking a threaded process can deadlock; "
                    "use 'forkserver' or 'spawn'"
                )
            mp_context = multiprocessing.get_context(mp_context)
        self.ctx: BaseContext = mp_context or default_mp_context()
        self.max_workers = max_workers
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._closed = False
        #: worker processes started so far (replacements included), for tests and metrics
        self.started_processes = 0

    def start(self) -> None:
        with self._lock:
            if self._closed:
                raise ExecutorError("the process executor is shut down")
            if self._slots:
                return
            self._slots = [_Slot(self, i) for i in range(self.max_workers)]
            for s in self._slots:
                s.thread.start()

    def submit(self, job: Job) -> None:
        if self._closed:
            raise ExecutorError("the process executor is shut down")
        if not self._slots:
            self.start()
        self.jobs.put(job)

    def check_handler(self, name: str, fn: Any) -> None:
        check_shippable(name, fn, "the worker processes of the processes executor")

    def cancel(self, job: Job, reason: str = "canceled") -> None:
        job.context.cancelled.request(reason)
        slot = job.handle
        if isinstance(slot, _Slot):
            slot.wake()  # its thread kills the worker and records the outcome
        else:
            job.finish(interrupted(reason, job.elapsed()))

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            slots = list(self._slots)
        for _ in slots:
            self.jobs.put(None)
        if wait:
            end = None if timeout is None else time.monotonic() + timeout
            for s in slots:
                left = None if end is None else max(0.0, end - time.monotonic())
                s.thread.join(left)
        for s in slots:
            job = s.job
            if job is not None:
                self.cancel(job, "shutdown")
        for s in slots:
            s.thread.join(5)
            s.wake_r.close()
            s.wake_w.close()
