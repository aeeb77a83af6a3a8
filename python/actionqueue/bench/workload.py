"""The workload model: what one measurement is and what it returns."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from actionqueue.bench.durability import Durability

#: Default record shape: a 100-byte payload, the size SPEC §10's disk figures were taken with.
DEFAULT_RECORD_BYTES = 100


class Unavailable(Exception):
    """Raised by a workload (or its system check) that cannot run here; the run notes it."""


class SizeClass(enum.Enum):
    """Which op count of the :class:`Scale` a workload uses.

    Fsync-bound workloads do ~5k ops/s, buffered ones 50k-1M ops/s, so one N for all would
    either take minutes or measure nothing.
    """

    DURABLE = "durable"
    BUFFERED = "buffered"
    BATCHES = "batches"
    #: Raw writes synced every K records: cheap, and K=1000 needs many records to mean much.
    CEILING = "ceiling"


@dataclass(frozen=True, slots=True)
class Scale:
    """How much work each measurement does, and how many times it is repeated."""

    durable_ops: int
    buffered_ops: int
    batches: int
    repeats: int
    ceiling_ops: int = 20_000
    #: Durable calls per producer thread at least: with 300 calls over 32 threads (~9 each)
    #: a group-commit row measured mostly its start and its tail, not its steady state.
    durable_per_thread: int = 50

    def ops(self, size: SizeClass, threads: int = 1) -> int:
        """The op count for a workload of the given size class and producer count."""
        if size is SizeClass.DURABLE:
            return max(self.durable_ops, threads * self.durable_per_thread)
        if size is SizeClass.BUFFERED:
            return self.buffered_ops
        if size is SizeClass.CEILING:
            return self.ceiling_ops
        return self.batches


QUICK = Scale(
    durable_ops=300,
    buffered_ops=10_000,
    batches=10,
    repeats=3,
    ceiling_ops=20_000,
    durable_per_thread=50,
)
FULL = Scale(
    durable_ops=3_000,
    buffered_ops=50_000,
    batches=100,
    repeats=5,
    ceiling_ops=200_000,
    durable_per_thread=200,
)


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a workload gets for one repetition: a fresh empty directory and its op count."""

    workdir: Path
    #: Number of calls to make (records for single ops, batches for batch workloads).
    ops: int
    #: Payload bytes of every record (the same for all systems).
    payload: bytes


@dataclass(slots=True)
class Sample:
    """Timings of one repetition.

    ``seconds`` is the wall time of the timed section only (setup and prefill excluded);
    ``latencies_ns`` holds one entry per call (a call is one record, or one batch).
    """

    records: int
    seconds: float
    latencies_ns: list[int] = field(default_factory=list)

    @property
    def records_per_s(self) -> float:
        """Throughput in records per second."""
        return self.records / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True, slots=True)
class System:
    """A thing being measured: the physical baseline, a peer library, or actionqueue."""

    name: str
    #: What its acknowledgements really promise, with the evidence (source/doc citation).
    durability_evidence: str
    #: Modules that must import for the system to be available.
    requires: tuple[str, ...] = ()
    #: Distribution whose version is reported (``None``: nothing to report).
    distribution: str | None = None
    #: Optional extra availability check returning a reason when unavailable.
    check: Callable[[], str | None] | None = None
    #: Optional probe returning runtime evidence (e.g. the PRAGMAs a live connection uses).
    probe: Callable[[Path], dict[str, str]] | None = None
    is_ours: bool = False
    is_baseline: bool = False


@dataclass(frozen=True, slots=True)
class Workload:
    """One named measurement: a system, an operation, a durability level and a callable."""

    name: str
    system: System
    #: Operation family, used to pair workloads for comparison ("submit", "submit-batch",
    #: "claim-complete", "write", ...).
    kind: str
    durability: Durability
    run: Callable[[RunContext], Sample]
    size: SizeClass
    threads: int = 1
    #: Records per call (1 for single-record ops).
    batch: int = 1
    #: Name of the baseline workload this one's ratio is computed against.
    baseline: str | None = None
    #: One line of context printed next to the result (thread-safety, configuration, ...).
    note: str = ""
    record_bytes: int = DEFAULT_RECORD_BYTES
