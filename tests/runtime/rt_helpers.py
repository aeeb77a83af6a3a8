"""Handlers and helpers shared by the runtime tests.

Handlers that run in worker processes must be importable by name there: they live in this
module (pytest puts this directory on ``sys.path``, and ``spawn``/``forkserver`` children
inherit ``sys.path``).
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from actionqueue import ActionQueue
from actionqueue.core.ids import AttemptId, RunId, TaskId
from actionqueue.runtime import Fail, Retry, Suspend
from actionqueue.runtime.context import ContextSnapshot, HandlerContext
from actionqueue.runtime.executors import ExecutorAdapter, Job
from actionqueue.runtime.outcomes import AttemptResult

T0 = 1_700_000_000_000

MakeQueue = Callable[..., ActionQueue]


def real_storage() -> bool:
    try:
        importlib.import_module("actionqueue.storage.recovery.bootstrap")
    except ImportError:
        return False
    return True


needs_real_storage = pytest.mark.skipif(
    not real_storage(), reason="needs actionqueue.storage (the Rust authority)"
)

# --- handlers (module level: picklable by reference) -----------------------------------------


def echo(ctx: Any, payload: Any) -> Any:
    return payload


def getpid(ctx: Any, payload: Any) -> int:
    return os.getpid()


def boom(ctx: Any, payload: Any) -> None:
    raise ValueError(f"boom {payload}")


def key_error(ctx: Any, payload: Any) -> None:
    raise KeyError(payload)


def sys_exit(ctx: Any, payload: Any) -> None:
    raise SystemExit(3)


def keyboard_interrupt(ctx: Any, payload: Any) -> None:
    raise KeyboardInterrupt


def retry_later(ctx: Any, payload: Any) -> None:
    raise Retry(delay=payload)


def fail_now(ctx: Any, payload: Any) -> None:
    raise Fail("bad input")


def suspend(ctx: Any, payload: Any) -> None:
    raise Suspend()


def sleep_long(ctx: Any, payload: Any) -> str:
    time.sleep(60)
    return "woke"


def flock_and_sleep(ctx: Any, path: str) -> str:
    """Holds an exclusive ``flock`` on ``path`` (released when the process dies), writes
    ``path + ".held"``, then sleeps."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    with open(path + ".held", "w"):
        pass
    time.sleep(60)
    return "woke"


def flock_free(ctx: Any, path: str) -> bool:
    """Whether nobody holds a ``flock`` on ``path`` (no other handler of the key runs)."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def start_child_and_sleep(ctx: Any, pid_file: str) -> str:
    """Starts a process of its own (as a handler running a tool would), writes its pid to
    ``pid_file``, then sleeps: killing the worker must take that process down too."""
    child = subprocess.Popen(["sleep", "60"])
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(child.pid))
    os.replace(pid_file + ".tmp", pid_file)
    time.sleep(60)
    return "woke"


def child_signal_dispositions(ctx: Any, payload: Any) -> str:
    """What a program started by a handler inherits for SIGINT and SIGTERM."""
    code = (
        "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, "
        "signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def wait_gone(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` ends within ``seconds``. A zombie counts as gone: once its
    parent died, whoever adopted it (init, a container's first process) may never reap it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


def segfault(ctx: Any, payload: Any) -> None:
    # A real SIGSEGV (a null read) where ctypes allows, else the signal itself.
    try:
        ctypes.string_at(0)
    finally:
        os.kill(os.getpid(), signal.SIGSEGV)


def hard_exit(ctx: Any, payload: Any) -> None:
    os._exit(7)


def ctrl_c_in_worker(ctx: Any, payload: Any) -> str:
    """What a terminal's Ctrl-C does to a worker process of the owner's process group."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # let the signal be delivered (it would interrupt this sleep)
    return "finished"


def wait_cancel(ctx: Any, payload: Any) -> str:
    """Cooperative: waits for the cancel signal (bounded), then raises Cancelled."""
    ctx.cancelled.wait(30)
    ctx.raise_if_cancelled()
    return "not cancelled"


def ctx_facts(ctx: Any, payload: Any) -> dict[str, Any]:
    return {
        "run_id": str(ctx.run_id),
        "attempt": ctx.attempt,
        "max_attempts": ctx.max_attempts,
        "pid": os.getpid(),
    }


def unpicklable_result(ctx: Any, payload: Any) -> Any:
    return threading.Lock()


class NeedsTwoArgs(Exception):
    """Pickles (as ``(cls, (a,))``) but does not unpickle: ``__init__`` wants two arguments."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(a)


def unloadable_result(ctx: Any, payload: Any) -> Any:
    return NeedsTwoArgs("a", "b")


async def async_echo(ctx: Any, payload: Any) -> Any:
    await asyncio.sleep(0)
    return payload


async def async_sleep_long(ctx: Any, payload: Any) -> str:
    await asyncio.sleep(60)
    return "woke"


async def async_boom(ctx: Any, payload: Any) -> None:
    await asyncio.sleep(0)
    raise ValueError("async boom")


# --- running one job -------------------------------------------------------------------------


def snapshot(
    *, attempt: int = 1, max_attempts: int = 3, timeout: float | None = None, handler: str = "h"
) -> ContextSnapshot:
    return ContextSnapshot(
        str(TaskId.new()),
        str(RunId.new()),
        str(AttemptId.new()),
        attempt,
        max_attempts,
        0,
        None,
        handler,
        timeout,
    )


class Waiter:
    """Collects a job's result; ``wait()`` blocks (bounded) until it arrives."""

    def __init__(self) -> None:
        self.results: list[AttemptResult] = []
        self.event = threading.Event()
        self.threads: list[str] = []

    def __call__(self, job: Job, result: AttemptResult) -> None:
        self.results.append(result)
        self.threads.append(threading.current_thread().name)
        self.event.set()

    def wait(self, timeout: float = 60.0) -> AttemptResult:
        # A safety net, not a timing assertion: a loaded CI machine can take many seconds to
        # ship the first job to a fresh Dask or process worker.
        assert self.event.wait(timeout), "the executor never reported a result"
        return self.results[0]


def submit(
    ex: ExecutorAdapter,
    fn: Any,
    payload: Any = None,
    *,
    timeout: float | None = None,
    is_async: bool | None = None,
) -> tuple[Job, Waiter]:
    import inspect

    w = Waiter()
    ctx = HandlerContext(snapshot(timeout=timeout), payload)
    job = Job(
        fn,
        payload,
        ctx,
        timeout=timeout,
        is_async=inspect.iscoroutinefunction(fn) if is_async is None else is_async,
        on_done=w,
    )
    ex.submit(job)
    return job, w


def run(ex: ExecutorAdapter, fn: Any, payload: Any = None, **kw: Any) -> AttemptResult:
    return submit(ex, fn, payload, **kw)[1].wait()
