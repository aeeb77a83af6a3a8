"""The workload of the runtime kill loop (``test_kill_loop.py``): an :class:`ActionQueue`
(Immediate durability, worker threads, real clock, short leases) and submitter threads that
submit (some with a dedupe key shared between threads) and wait for results, until SIGKILLed.

Acknowledgement lines, each written and fsynced after the call it records returned:
``S task`` (a submit without a dedupe key), ``K key task`` (a submit with ``key`` returned
``task``: new or the live holder), ``R task`` (``result(task)`` returned the output: the run is
Completed), ``RF task`` (``result(task)`` raised RunFailedError: the run is Failed). A
submitter that raises writes its traceback to ``ACK_FILE.err`` and ends the process (exit
status 3).
"""

from __future__ import annotations

import os
import random
import threading
import traceback
from typing import Any

import actionqueue as aq
from actionqueue.errors import RunFailedError

LEASE = 0.3  # seconds
SUBMITTERS = 3
DEDUPE_KEYS = ("q0", "q1")


def run(data_dir: str, ack_path: str, seed: int, ready_fd: int, options: dict[str, Any]) -> None:
    try:
        _run(data_dir, ack_path, seed, ready_fd, options)
    except BaseException:
        traceback.print_exc()
        raise


def _run(data_dir: str, ack_path: str, seed: int, ready_fd: int, options: dict[str, Any]) -> None:
    ack = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    q = aq.ActionQueue.open(
        data_dir, lease=LEASE, max_workers=4, snapshot_on_close=False, storage_options=options
    )

    @q.handler("job", max_attempts=2, backoff=aq.fixed(0.001))
    def job(ctx: Any, n: int) -> int:
        if n % 5 == 0 and ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        if n % 13 == 0:
            raise aq.Fail("terminal")
        return n

    def log(line: str) -> None:
        os.write(ack, (line + "\n").encode())
        os.fsync(ack)

    def submitter(k: int) -> None:
        rng = random.Random(seed * 31 + k)
        try:
            while True:
                n = rng.randint(0, 1_000_000)
                key = rng.choice(DEDUPE_KEYS) if rng.random() < 0.3 else None
                tid = q.submit("job", n, dedupe_key=key)
                log(f"S {tid}" if key is None else f"K {key} {tid}")
                if rng.random() < 0.5:
                    try:
                        q.result(tid, timeout=30)
                    except RunFailedError:
                        log(f"RF {tid}")
                    else:
                        log(f"R {tid}")
        except BaseException:  # pragma: no cover - reported by the parent
            with open(ack_path + ".err", "a") as f:
                f.write(traceback.format_exc())
            os._exit(3)

    q.start()
    threads = [
        threading.Thread(target=submitter, args=(k,), daemon=True) for k in range(SUBMITTERS)
    ]
    for t in threads:
        t.start()
    os.write(ready_fd, b"ready\n")
    threading.Event().wait()
