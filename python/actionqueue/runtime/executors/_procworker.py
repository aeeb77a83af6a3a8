"""The loop a worker process runs: receive a job, run it, send back a plain result.

Kept small: the parent kills this process to enforce a timeout or a cancel, and replaces it
when it dies, so nothing here needs to be interruptible. The one thing the parent cannot do is
stop it after the parent itself died (``kill -9``): a watcher thread ends the worker then, so
a handler never goes on running beside the retry that the next owner of the queue starts.

Each worker leads a process group of its own, and is always ended with its group: the
processes a handler started (``subprocess``, ``multiprocessing``) die with the attempt instead
of running on, orphaned, beside its retry.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

from actionqueue.runtime.api import Fail
from actionqueue.runtime.executors.base import run_remote
from actionqueue.runtime.outcomes import AttemptResult, describe_exception

__all__ = ["ignore_stop_signal", "leads_own_group", "worker_main"]


def worker_main(conn: Connection) -> None:
    """Serve jobs until the parent closes the pipe.

    SIGINT and SIGTERM are ignored: a Ctrl-C, a ``systemctl stop`` (cgroup kill) or a group
    kill reaches every process of the service, workers included, and the owner's
    ``run_forever`` answers it by draining — the attempt a worker runs must finish, not fail
    with the ``KeyboardInterrupt`` or the death the signal would cause. The owner stops a
    worker that must stop by killing it (SIGKILL). The handlers are Python no-ops, not
    ``SIG_IGN``: an ignored disposition is inherited through ``exec``, and the programs a
    handler starts must keep the default ones.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, ignore_stop_signal)
    _lead_own_process_group()
    _exit_with_parent()
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        try:
            msg: Any = ForkingPickler.loads(data)
        except BaseException as e:
            # The job arrived whole but cannot be unpickled here: the handler (or a class in
            # its payload) is not importable in this process — defined in an interactive
            # session, `python -c`, a notebook, or a module this process cannot import. It
            # used to end the worker ("exited with code 1", retried into the same wall).
            # Reported as the handler's terminal failure; the worker serves on.
            conn.send(AttemptResult.raised(Fail(_unloadable(e))))
            continue
        fn, payload, snapshot, is_async = msg
        result = run_remote(fn, payload, snapshot, is_async)
        try:
            conn.send(result)
        except (BrokenPipeError, EOFError):
            return
        except Exception as e:
            # The return value cannot travel back: report that instead of dying. A terminal
            # failure, as an unencodable return value is on the other executors: a retry would
            # run the handler (and its side effects) again into the same wall.
            conn.send(
                AttemptResult.raised(
                    Fail(
                        f"the handler's return value ({type(result.value).__name__}) cannot be "
                        f"sent back from the worker process: {e}"
                    ),
                    result.duration,
                )
            )


def _unloadable(e: BaseException) -> str:
    return (
        "the handler or its payload cannot be loaded in the worker process (a handler must be "
        "importable there by its module and name: defined at module level of a module the "
        "worker can import, not in an interactive session, a notebook or `python -c`): "
        + describe_exception(e)
    )


def ignore_stop_signal(signum: int, frame: object) -> None:
    """SIGINT / SIGTERM sent to the whole service: the owner drains, then ends this process
    (a worker, or the fork server, see ``_forkserver``)."""


def _lead_own_process_group() -> None:
    """Makes this worker the leader of a new process group (its id is the worker's pid), which
    the processes its handlers start inherit. The owner kills the group, not just the worker
    (``processes.kill_worker``). Also takes the worker and its handlers' children out of the
    terminal's foreground group: a Ctrl-C reaches the owner alone, which drains."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)


def leads_own_group(pid: int) -> bool:
    """Whether the live process ``pid`` leads its own process group (a worker that got as far
    as :func:`_lead_own_process_group`): only then is killing the group killing the worker's
    tree, and nothing else."""
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _exit_with_parent() -> None:
    """Ends this process as soon as the process that started it (the queue's owner) is gone.
    ``multiprocessing`` gives a worker a sentinel of its parent that becomes readable when the
    parent dies — the owner, also under the forkserver start method (whose fork server can
    outlive the owner). The pipe only tells the worker between jobs; the watcher also cuts a
    handler short."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:  # pragma: no cover - not a mp child
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        if leads_own_group(os.getpid()):
            os.killpg(os.getpid(), signal.SIGKILL)  # this worker and its handler's children
        os._exit(1)

    threading.Thread(target=watch, name="aq-parent-watch", daemon=True).start()
