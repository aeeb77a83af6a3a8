"""Where a group-committed Immediate submit spends its time: rate, CPU and context switches
per commit, and records per fdatasync, for blocking threads and asyncio submitters.

    python benches/group_commit_probe.py                 # t1, t8, t32, a8, a32
    python benches/group_commit_probe.py t32 a32 --n 20000 --rounds 3

CPU and context switches come from ``getrusage`` over the whole process (submitters, the
completer thread and the kernel work they cause), records per sync from the authority's WAL
counters. Rates move with the machine's load; CPU per commit and context switches per commit
much less, which is what makes them useful for comparing two builds.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from actionqueue.bench.ours import task_create_event
from actionqueue.core.mutation import DurabilityPolicy
from actionqueue.storage.mutation import StorageMutationAuthority
from actionqueue.storage.recovery import bootstrap

PAYLOAD = b"x" * 100


def probe(mode: str, n: int, directory: Path) -> str:
    """One measurement: ``mode`` is ``t<threads>`` (blocking submits) or ``a<tasks>``
    (``submit_wire_async`` on one event loop)."""
    kind, width = mode[0], int(mode[1:])
    with tempfile.TemporaryDirectory(dir=directory) as d:
        auth, _ = bootstrap(Path(d) / "data", snapshot_on_close=False)
        try:
            now = int(time.time() * 1000)
            auth.submit_wire([task_create_event(PAYLOAD, now)], DurabilityPolicy.IMMEDIATE)
            records = [[task_create_event(PAYLOAD, now)] for _ in range(n)]
            before, r0, t0 = (
                auth.stats(),
                resource.getrusage(resource.RUSAGE_SELF),
                time.perf_counter(),
            )
            if kind == "t":
                _threads(auth, records, width)
            else:
                asyncio.run(_tasks(auth, records, width))
            elapsed = time.perf_counter() - t0
            r1, after = resource.getrusage(resource.RUSAGE_SELF), auth.stats()
        finally:
            auth.close()
    usr = (r1.ru_utime - r0.ru_utime) / n * 1e6
    sys_ = (r1.ru_stime - r0.ru_stime) / n * 1e6
    switches = (r1.ru_nvcsw + r1.ru_nivcsw - r0.ru_nvcsw - r0.ru_nivcsw) / n
    syncs = max(after.wal_syncs - before.wal_syncs, 1)
    return (
        f"{mode:>4}  {n / elapsed:>9,.0f} commits/s  cpu {usr + sys_:5.1f} us/commit "
        f"(user {usr:4.1f}, sys {sys_:4.1f})  {switches:4.2f} switches/commit  "
        f"{n / syncs:5.1f} records/sync"
    )


def _threads(auth: StorageMutationAuthority, records: list[list[Any]], width: int) -> None:
    def work(k: int) -> None:
        for r in records[k::width]:
            auth.submit_wire(r, DurabilityPolicy.IMMEDIATE)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(width)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


async def _tasks(auth: StorageMutationAuthority, records: list[list[Any]], width: int) -> None:
    async def work(k: int) -> None:
        for r in records[k::width]:
            await auth.submit_wire_async(r, DurabilityPolicy.IMMEDIATE)

    await asyncio.gather(*(work(k) for k in range(width)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("modes", nargs="*", default=["t1", "t8", "t32", "a8", "a32"])
    p.add_argument("--n", type=int, default=10_000, help="commits per measurement (t1: n/5)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--dir", type=Path, default=Path.cwd(), help="where the logs are written")
    args = p.parse_args()
    for _ in range(args.rounds):
        for mode in args.modes:
            print(probe(mode, args.n // 5 if mode == "t1" else args.n, args.dir), flush=True)


if __name__ == "__main__":
    main()
