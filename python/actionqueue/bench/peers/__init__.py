"""Peers: the embedded, durable queues a Python user would pick instead of actionqueue.

Each module states, in its :class:`~actionqueue.bench.workload.System`, the durability the
peer *actually* provides, citing its source, and probes a live instance for the SQLite
PRAGMAs it really runs with. Peer libraries are imported lazily inside the workloads, so a
missing one is reported as skipped rather than breaking the import of this package.
"""

from __future__ import annotations

from actionqueue.bench.peers import disk_cache, huey_sqlite, lite_queue, persist_queue, sqlite_raw
from actionqueue.bench.workload import Workload


def workloads() -> list[Workload]:
    """Every peer workload, in table order."""
    return [
        *sqlite_raw.workloads(),
        *persist_queue.workloads(),
        *huey_sqlite.workloads(),
        *lite_queue.workloads(),
        *disk_cache.workloads(),
    ]
