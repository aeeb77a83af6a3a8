"""The loop a worker process runs: receive a job, run it, send back a plain result.

Kept small: the parent kills this process to enforce a timeout or a cancel, and replaces it
when it dies, so nothing here needs to be interruptible.
"""

from __future__ import annotations

import signal
from multiprocessing.connection import Connection
from typing import Any

from actionqueue.runtime.executors.base import run_remote
from actionqueue.runtime.outcomes import AttemptResult

__all__ = ["worker_main"]


def worker_main(conn: Connection) -> None:
    """Serve jobs until the parent closes the pipe.

    SIGINT is ignored: a Ctrl-C in a terminal goes to the whole process group, workers
    included, and the owner's ``run_forever`` answers it by draining — the attempt a worker
    runs must finish, not fail with the ``KeyboardInterrupt`` the signal would raise in the
    handler. The owner stops a worker that must stop by killing it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            msg: Any = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        fn, payload, snapshot, is_async = msg
        result = run_remote(fn, payload, snapshot, is_async)
        try:
            conn.send(result)
        except (BrokenPipeError, EOFError):
            return
        except Exception as e:
            # The return value cannot travel back: report that instead of dying.
            conn.send(
                AttemptResult.raised(
                    TypeError(
                        f"the handler's return value ({type(result.value).__name__}) cannot be "
                        f"sent back from the worker process: {e}"
                    ),
                    result.duration,
                )
            )
