"""The child of the orphaned-worker test: a queue with the processes executor whose handler
starts a process of its own, writes its worker's pid and that process's pid to PID_FILE and
then runs for a minute; the test SIGKILLs this process meanwhile. Usage:
``python orphan_child.py DATA_DIR PID_FILE``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import actionqueue as aq


def long_job(ctx: Any, pid_file: str) -> None:
    tool = subprocess.Popen(["sleep", "60"])
    with open(pid_file + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {tool.pid}")
    os.replace(pid_file + ".tmp", pid_file)
    time.sleep(60)


def main() -> None:
    data_dir, pid_file = sys.argv[1], sys.argv[2]
    from orphan_child import long_job as handler  # importable by the worker processes

    q = aq.ActionQueue.open(data_dir, executor="processes", max_workers=1, lease=1)
    q.register("long", handler)
    q.submit("long", pid_file)
    q.run_until_idle()  # killed in here


if __name__ == "__main__":
    main()
