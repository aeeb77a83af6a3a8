"""Child of the run_forever test: runs a queue until SIGTERM, then drains and exits 0.

Usage: ``python run_forever_child.py DATA_DIR READY_FILE``. Writes READY_FILE once a handler is
running (so the parent signals mid-work); the handler finishes after a short while.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import actionqueue as aq


def main() -> None:
    data_dir, ready = sys.argv[1], Path(sys.argv[2])
    q = aq.ActionQueue.open(data_dir)
    gate = threading.Event()

    @q.handler("work")
    def work(ctx: Any, n: int) -> int:
        ready.write_text("running")
        gate.wait(0.5)  # still running when SIGTERM arrives: the drain must wait for it
        return n

    q.submit("work", 1)
    q.run_forever(drain_timeout=20)
    print("drained", q.stats()["runs"]["Completed"], flush=True)
    q.close()


if __name__ == "__main__":
    main()
