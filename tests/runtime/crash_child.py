"""The child of the kill -9 test: runs a queue mid-work until it is SIGKILLed.

Usage: ``python crash_child.py DATA_DIR ACK_FILE STARTS_FILE COUNT``. Every submit is
Immediate; its task id is appended to ACK_FILE only after ``submit`` returned (so each line is
an acknowledged commit). Handlers append ``run_id attempt pid`` to STARTS_FILE with an
unbuffered ``O_APPEND`` write (in the kernel once written: survives SIGKILL of this process).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import actionqueue as aq


def main() -> None:
    data_dir, ack_path, starts_path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    starts = os.open(starts_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    acks = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    q = aq.ActionQueue.open(data_dir, lease=0.5, max_workers=8, snapshot_on_close=False)
    forever = threading.Event()

    @q.handler("job", max_attempts=3)
    def job(ctx: Any, n: int) -> int:
        os.write(starts, f"{ctx.run_id} {ctx.attempt} {os.getpid()}\n".encode())
        if n % 50 == 7:
            forever.wait(60)  # in flight when the kill comes
        return n

    q.start()
    for n in range(count):
        tid = q.submit("job", n)
        os.write(acks, f"{tid}\n".encode())
    forever.wait()


if __name__ == "__main__":
    main()
