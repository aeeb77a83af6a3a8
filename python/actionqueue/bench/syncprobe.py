"""Counts the sync system calls a workload really makes per call, under ``strace``.

Reading a peer's source tells what it *should* do; this shows what it *did* on this machine.
Each probed workload runs twice in a child process traced by ``strace -f`` (all threads),
with a few calls and then more; the difference in fsync-family calls divided by the
difference in calls cancels whatever setup (schema creation, prefill, open) synced.
Skipped, with a note, where strace is missing or not permitted.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from actionqueue.bench.durability import Durability
from actionqueue.bench.workload import Workload

#: Every call that forces data to stable storage on Linux.
SYNC_CALLS = ("fsync", "fdatasync", "sync_file_range", "msync", "syncfs", "sync")
_SYNC_RE = re.compile(r"\b(" + "|".join(SYNC_CALLS) + r")\(")
FEW, MANY = 10, 60


def probe_reason() -> str | None:
    """Why syncs cannot be counted here, or ``None`` when they can."""
    if not sys.platform.startswith("linux"):
        return "sync counting needs Linux strace"
    if shutil.which("strace") is None:
        return "strace is not installed: sync calls were not counted"
    return None


def should_probe(workload: Workload, full: bool) -> bool:
    """Single-thread, single-record workloads; claim/complete too in full runs.

    Not the fsync-every-K ceilings: with K >= the calls traced, the count says nothing.
    """
    if workload.threads != 1 or workload.batch != 1:
        return False
    if workload.durability is Durability.FSYNC_EVERY_K:
        return False
    return workload.kind in ("submit", "write") or (full and workload.kind == "claim-complete")


def _count(name: str, calls: int, root: Path) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="sync-", dir=root))
    trace = workdir / "strace.out"
    try:
        cmd = [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=" + ",".join(SYNC_CALLS),
            "-o",
            str(trace),
            sys.executable,
            "-m",
            "actionqueue.bench.syncprobe",
            name,
            str(workdir),
            str(calls),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"traced run of {name} failed: {last}")
        return sum(1 for line in trace.read_text().splitlines() if _SYNC_RE.search(line))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def syncs_per_call(name: str, root: Path) -> float:
    """Sync calls per workload call for ``name``, measured as described in the module doc."""
    return (_count(name, MANY, root) - _count(name, FEW, root)) / (MANY - FEW)


def _child(name: str, workdir: str, calls: int) -> None:
    from actionqueue.bench.registry import all_workloads
    from actionqueue.bench.runner import make_payload
    from actionqueue.bench.workload import RunContext

    (workload,) = [w for w in all_workloads() if w.name == name]
    run_dir = Path(workdir) / "run"
    run_dir.mkdir()
    workload.run(RunContext(run_dir, calls, make_payload(workload.record_bytes)))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
