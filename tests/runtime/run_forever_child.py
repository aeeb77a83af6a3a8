"""Child of the run_forever tests: runs a queue until SIGTERM, then drains and exits 0.

Usage: ``python run_forever_child.py DATA_DIR READY_FILE [EXECUTOR]``. Writes READY_FILE once a
handler is running (so the parent signals mid-work); the handler finishes after a short while.
With ``processes``, the handler runs in a worker process (it is importable from here).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import actionqueue as aq


def work(ctx: Any, job: list[Any]) -> int:
    n, ready = job
    Path(ready).write_text("running")
    time.sleep(0.5)  # still running when SIGTERM arrives: the drain must wait for it
    return int(n)


def main() -> None:
    data_dir, ready = sys.argv[1], sys.argv[2]
    executor = sys.argv[3] if len(sys.argv) > 3 else "threads"
    from run_forever_child import work as handler  # by this name in worker processes

    q = aq.ActionQueue.open(data_dir, executor=executor, max_workers=1)
    q.register("work", handler)
    q.submit("work", [1, ready])
    q.run_forever(drain_timeout=20)
    print("drained", q.stats()["runs"]["Completed"], flush=True)
    q.close()


if __name__ == "__main__":
    main()
