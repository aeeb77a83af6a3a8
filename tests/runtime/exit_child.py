"""The child of the interpreter-exit test: starts a queue's loop, submits a task whose handler
takes a moment, and returns from the script once the handler has started, without closing the
queue. Usage: ``python exit_child.py DATA_DIR DONE_FILE``."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import actionqueue as aq


def main() -> None:
    data_dir, done_file = sys.argv[1], Path(sys.argv[2])
    started = threading.Event()

    def slow(ctx: Any, payload: Any) -> str:
        started.set()
        time.sleep(0.3)
        done_file.write_text("done")
        return "ok"

    q = aq.ActionQueue.open(data_dir)
    q.register("slow", slow)
    q.start()
    q.submit("slow")
    if not started.wait(30):
        sys.exit("the handler never started")
    # The script ends here: no q.close(), no q.stop().


if __name__ == "__main__":
    main()
