"""pytest-benchmark set-up for ``python -m pytest benches``.

``bench_*.py`` files are collected here (the project's pytest config only looks in ``tests/``,
which keeps these out of the default run). Every benchmark records its records/s, and the
terminal summary divides each by the baseline named for it, measured in the same session.
Data goes to a temporary directory under ``$AQ_BENCH_DIR`` (default: the current directory),
so the filesystem measured is the one you run from, not a possibly memory-backed ``/tmp``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from actionqueue.bench.machine import machine_info
from actionqueue.bench.runner import make_payload


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@dataclass
class Rates:
    """records/s of each benchmark in this session, and the baseline it is divided by."""

    rates: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, str | None] = field(default_factory=dict)

    def record(
        self, name: str, benchmark: Any, records_per_call: int = 1, baseline: str | None = None
    ) -> None:
        """Note ``benchmark``'s median as records/s (nothing when benchmarks are disabled)."""
        stats = getattr(getattr(benchmark, "stats", None), "stats", None)
        median = getattr(stats, "median", None)
        if median:
            self.rates[name] = records_per_call / median
            self.baselines[name] = baseline


_RATES = Rates()
#: Where the session's data went, described while the directory still exists.
_WHERE: list[str] = []


@pytest.fixture(scope="session")
def rates() -> Rates:
    return _RATES


@pytest.fixture(scope="session")
def bench_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="aq-benches-", dir=os.environ.get("AQ_BENCH_DIR", ".")))
    fs = machine_info(root)["filesystem"]
    assert isinstance(fs, dict)
    kind = fs["statfs_type"] or fs["mounts_type"]
    _WHERE.append(f"{root.resolve().parent} on {kind} ({fs['mounts_type']}, {fs['device']})")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def workdir(bench_root: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=request.node.name[:40] + "-", dir=bench_root))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def payload() -> bytes:
    return make_payload(100)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    _wal_summary(terminalreporter)
    _storage_summary(terminalreporter)
    if not _RATES.rates:
        return
    tr = terminalreporter
    tr.section("records/s and ratios (same session)")
    for where in _WHERE:
        tr.write_line(f"data in {where}; set AQ_BENCH_DIR to choose")
    for name, rate in _RATES.rates.items():
        base = _RATES.baselines.get(name)
        base_rate = _RATES.rates.get(base) if base else None
        ratio = f"{rate / base_rate:6.2f}x {base}" if base_rate else ""
        tr.write_line(f"{name:45} {rate:14,.0f} records/s  {ratio}")


#: Rates the WAL benchmarks (``bench_wal.py``) measure by hand, interleaved with their raw
#: baselines so both see the same disk weather.
RATES: dict[str, float] = {}

# (label, numerator, denominator, target from SPEC §10)
RATIOS = [
    ("Immediate 1 thread / raw write+fdatasync", "immediate_1", "raw_sync", 0.8),
    ("Immediate 8 threads / Immediate 1 thread", "immediate_8", "immediate_1_near_8", 5.0),
    ("Immediate 32 threads / Immediate 1 thread", "immediate_32", "immediate_1_near_32", 15.0),
    (
        "1000-event Immediate batch / raw write+fdatasync of its bytes",
        "batch_1000",
        "raw_batch",
        0.5,
    ),
]


def _wal_summary(tr: Any) -> None:
    if not RATES:
        return
    tr.section("WAL rates (same run)")
    for name, rate in RATES.items():
        tr.write_line(f"{name:>24}: {rate:>14,.0f} /s")
    tr.section("WAL ratios (target)")
    for label, num, den, target in RATIOS:
        if num in RATES and den in RATES:
            ratio = RATES[num] / RATES[den]
            ok = "ok" if ratio >= target else "BELOW"
            tr.write_line(f"{label}: {ratio:6.2f}x  (>= {target}x: {ok})")


#: Figures of ``bench_storage.py`` (rates per second, or seconds/bytes where named so).
STORAGE: dict[str, float] = {}

# (label, numerator, denominator, target from SPEC §10 or None)
STORAGE_RATIOS: list[tuple[str, str, str, float | None]] = [
    ("authority Immediate 1 thread / raw write+fdatasync", "auth_immediate_1", "raw_sync", 0.8),
    (
        "authority Immediate 1 thread / WAL Immediate 1 thread",
        "auth_immediate_1",
        "wal_immediate_1",
        None,
    ),
    (
        "authority Immediate 8 threads / 1 thread",
        "auth_immediate_8",
        "auth_immediate_1_near_8",
        5.0,
    ),
    (
        "authority Immediate 32 threads / 1 thread",
        "auth_immediate_32",
        "auth_immediate_1_near_32",
        15.0,
    ),
    ("authority Deferred / WAL Deferred (1 thread)", "auth_deferred_1", "wal_deferred_1", None),
    ("replay (apply) / verify (read + CRC only)", "replay_events", "verify_events_rust", None),
]


def _storage_summary(tr: Any) -> None:
    if not STORAGE:
        return
    tr.section("storage figures (same run)")
    for name, value in STORAGE.items():
        if "_s_" in name:
            tr.write_line(f"{name:>36}: {value:>14,.3f} s")
        elif "bytes" in name:
            tr.write_line(f"{name:>36}: {value:>14,.0f} bytes")
        else:
            tr.write_line(f"{name:>36}: {value:>14,.0f} /s")
    tr.section("storage ratios (target)")
    for label, num, den, target in STORAGE_RATIOS:
        if num in STORAGE and den in STORAGE:
            ratio = STORAGE[num] / STORAGE[den]
            verdict = ""
            if target is not None:
                verdict = f" (>= {target}x: {'ok' if ratio >= target else 'BELOW'})"
            tr.write_line(f"{label}: {ratio:6.2f}x{verdict}")
