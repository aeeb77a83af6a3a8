"""Our WAL workloads, run against a stand-in of the announced API (issue 3, docs/DESIGN.md).

The real ``actionqueue.storage.wal`` is being built elsewhere; this pins down that the
harness's speculative calls (``WalFsWriter(dir).append([event], durability)``,
``WalFsReader(dir)`` iteration, durability objects found by ``.name``) work end to end, and
that ratios against peers and SPEC targets are then computed.
"""

from __future__ import annotations

import enum
import json
import os
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from actionqueue.bench.harness import run_and_report
from actionqueue.bench.runner import BenchConfig
from actionqueue.bench.workload import Scale


class DurabilityPolicy(enum.Enum):
    IMMEDIATE = 1
    DEFERRED = 2


class FakeWalFsWriter:
    """Appends one line per event; fdatasyncs on IMMEDIATE, like the real writer will."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self._fd = os.open(os.path.join(directory, "0.log"), os.O_WRONLY | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        self.appended: list[tuple[object, ...]] = []

    def append(self, events: list[tuple[object, ...]], durability: DurabilityPolicy) -> None:
        if not isinstance(durability, DurabilityPolicy):
            raise TypeError(f"not a durability: {durability!r}")
        if not events or events[0][0] != 0:  # TaskCreate tag
            raise ValueError("expected TaskCreate events")
        with self._lock:
            os.write(self._fd, b"".join(b"%d\n" % len(repr(e)) for e in events))
            if durability is DurabilityPolicy.IMMEDIATE:
                os.fdatasync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


class FakeWalFsReader:
    def __init__(self, directory: str) -> None:
        self._path = os.path.join(directory, "0.log")

    def __iter__(self) -> Iterator[tuple[int, str, int, tuple[object, ...]]]:
        with open(self._path, "rb") as f:
            for seq, _line in enumerate(f, 1):
                yield (seq, "0.log", 0, (0,))


@pytest.fixture
def fake_wal(monkeypatch: pytest.MonkeyPatch) -> None:
    names = {
        "actionqueue.storage": {},
        "actionqueue.storage.wal": {},
        "actionqueue.storage.wal.fs_writer": {
            "WalFsWriter": FakeWalFsWriter,
            "DurabilityPolicy": DurabilityPolicy,
        },
        "actionqueue.storage.wal.fs_reader": {"WalFsReader": FakeWalFsReader},
    }
    for name, attrs in names.items():
        module = types.ModuleType(name)
        for key, value in attrs.items():
            setattr(module, key, value)
        monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.usefixtures("fake_wal")
def test_wal_workloads_run_and_feed_comparisons_and_targets(tmp_path: Path) -> None:
    config = BenchConfig(
        scale=Scale(durable_ops=8, buffered_ops=40, batches=2, repeats=1),
        only=r"^ours-wal|^persist-queue\.submit\.t(1|32)$|^sqlite3-wal-full\.submit\.t1$",
        data_dir=tmp_path / "data",
        count_syncs=False,
    )
    artifacts = run_and_report(config, tmp_path / "out", chart=False)
    data = json.loads(artifacts.json_path.read_text())
    results = {r["name"]: r for r in data["results"]}
    for name in (
        "ours-wal-immediate.submit.t1",
        "ours-wal-immediate.submit.t8",
        "ours-wal-immediate.submit.t32",
        "ours-wal-deferred.submit.t1",
        "ours-wal-immediate.submit-batch-1000",
        "ours-wal-deferred.submit-batch-1000",
        "ours-wal.replay",
    ):
        assert results[name]["status"] == "ok", (name, results[name]["reason"])
    assert results["ours-wal-immediate.submit-batch-1000"]["records_per_s"]["runs"]
    assert results["ours-wal.replay"]["latency_us_per_call"] is None
    pairs = {(c["ours"], c["peer"]) for c in data["comparisons"]}
    assert ("ours-wal-immediate.submit.t1", "sqlite3-wal-full.submit.t1") in pairs
    if (
        "persist-queue.submit.t1" in results
        and results["persist-queue.submit.t1"]["status"] == "ok"
    ):
        assert ("ours-wal-immediate.submit.t1", "persist-queue.submit.t1") in pairs
    targets = {t["target"]: t for t in data["targets"]}
    # SPEC §10's submit targets are read from the authority-level workloads (a task
    # submission is validated, logged and applied), which this WAL-only run did not select.
    single = targets["Immediate, 1 thread >= 0.8x raw write+fdatasync loop"]
    assert single["status"] == "n/a"
    assert targets["Runtime lifecycle Deferred >= 50k runs/s"]["status"] == "n/a"
    assert "actionqueue ÷ peers" in artifacts.markdown_path.read_text()
