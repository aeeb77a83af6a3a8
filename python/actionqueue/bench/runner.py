"""Runs the selected workloads, repeated and interleaved, and collects their outcomes."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from actionqueue.bench import registry, syncprobe
from actionqueue.bench.machine import distribution_version, machine_info
from actionqueue.bench.stats import Summary, summarize
from actionqueue.bench.workload import (
    DEFAULT_RECORD_BYTES,
    QUICK,
    RunContext,
    Sample,
    Scale,
    System,
    Unavailable,
    Workload,
)

Progress = Callable[[str], None]

INSTALL_HINT = "pip install 'actionqueue[bench]'"


def make_payload(size: int) -> bytes:
    """``size`` printable ASCII bytes (litequeue stores TEXT), the same for every system."""
    pattern = b"actionqueue-bench-payload-0123456789-"
    return (pattern * (size // len(pattern) + 1))[:size]


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What to run and where."""

    scale: Scale = QUICK
    mode: str = "quick"
    #: Regular expression selecting workloads by name (``None``: all).
    only: str | None = None
    #: Where databases and logs are written; its filesystem is the one measured. ``None``: a
    #: temporary directory inside the results directory.
    data_dir: Path | None = None
    record_bytes: int = DEFAULT_RECORD_BYTES
    #: Probe each system's live SQLite PRAGMAs (a few ms each).
    probe: bool = True
    #: Count sync calls per call under strace after measuring (about 1 s per workload).
    count_syncs: bool = True


@dataclass(slots=True)
class Outcome:
    """The result of one workload over all repetitions."""

    workload: Workload
    status: str = "ok"  # "ok" | "skipped" | "error"
    reason: str = ""
    samples: list[Sample] = field(default_factory=list)
    calls_per_repeat: int = 0
    #: fsync-family calls per workload call, counted under strace (``None``: not counted).
    syncs_per_call: float | None = None

    @property
    def summary(self) -> Summary | None:
        """Statistics over the samples, when the workload ran."""
        return summarize(self.samples) if self.status == "ok" and self.samples else None


@dataclass(slots=True)
class SystemInfo:
    """A system as it was found in this run: availability, version, live evidence."""

    system: System
    available: bool
    reason: str = ""
    version: str | None = None
    observed: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class BenchRun:
    """Everything one run produced, ready for the report writers."""

    config: BenchConfig
    machine: dict[str, object]
    started_at: float
    duration_s: float
    outcomes: list[Outcome]
    systems: dict[str, SystemInfo]
    #: How sync calls were counted, or why they were not.
    sync_note: str = ""


def _check_system(system: System) -> str | None:
    for module in system.requires:
        try:
            importlib.import_module(module)
        except ImportError:
            what = system.distribution or module
            return f"{what} is not installed ({INSTALL_HINT})"
    if system.check is not None:
        return system.check()
    return None


def _system_info(system: System, data_root: Path, probe: bool) -> SystemInfo:
    reason = _check_system(system)
    info = SystemInfo(
        system,
        available=reason is None,
        reason=reason or "",
        version=distribution_version(system.distribution),
    )
    if info.available and probe and system.probe is not None:
        workdir = Path(tempfile.mkdtemp(prefix="probe-", dir=data_root))
        try:
            info.observed = system.probe(workdir)
        except Exception as exc:  # evidence is best effort; the run itself goes on
            info.observed = {"probe_error": f"{type(exc).__name__}: {exc}"}
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return info


def _one_repeat(outcome: Outcome, ctx_root: Path, calls: int, payload: bytes) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="wl-", dir=ctx_root))
    try:
        outcome.samples.append(outcome.workload.run(RunContext(workdir, calls, payload)))
    except Unavailable as exc:
        outcome.status, outcome.reason = "skipped", str(exc)
    except Exception as exc:  # one broken peer must not sink the whole comparison
        outcome.status, outcome.reason = "error", f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _count_syncs(
    config: BenchConfig, outcomes: list[Outcome], data_root: Path, say: Progress
) -> str:
    """Count syncs per call under strace, after all timing is done so it disturbs nothing."""
    if not config.count_syncs:
        return "sync calls not counted (disabled)"
    reason = syncprobe.probe_reason()
    if reason is not None:
        return reason
    full = config.mode == "full"
    for o in outcomes:
        if o.status == "ok" and syncprobe.should_probe(o.workload, full):
            try:
                o.syncs_per_call = syncprobe.syncs_per_call(o.workload.name, data_root)
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                say(f"strace {o.workload.name}: {exc}")
                continue
            say(f"strace {o.workload.name}: {o.syncs_per_call:.2f} syncs/call")
    return (
        f"syncs/call: fsync-family system calls per call, counted with strace -f over "
        f"{syncprobe.MANY} minus {syncprobe.FEW} calls in a separate process"
    )


def run_bench(config: BenchConfig, out_dir: Path, progress: Progress | None = None) -> BenchRun:
    """Run every selected workload ``config.scale.repeats`` times.

    Repetitions are interleaved (all workloads once, then all again) rather than back to
    back, so a burst of load from elsewhere on the machine lands on several systems instead
    of skewing one of them. Each repetition gets a fresh, empty directory.
    """
    say = progress or (lambda _msg: None)
    selected = registry.select(registry.all_workloads(), config.only)
    if not selected:
        raise ValueError(f"--only {config.only!r} matches no workload (try --list)")
    out_dir.mkdir(parents=True, exist_ok=True)
    own_data = config.data_dir is None
    data_root = (
        Path(tempfile.mkdtemp(prefix="bench-data-", dir=out_dir))
        if config.data_dir is None
        else config.data_dir
    )
    data_root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        machine = machine_info(data_root)
        systems: dict[str, SystemInfo] = {}
        for w in selected:
            if w.system.name not in systems:
                systems[w.system.name] = _system_info(w.system, data_root, config.probe)
        payload = make_payload(config.record_bytes)
        outcomes = [Outcome(w) for w in selected]
        for o in outcomes:
            info = systems[o.workload.system.name]
            if not info.available:
                o.status, o.reason = "skipped", info.reason
            o.calls_per_repeat = config.scale.ops(o.workload.size, o.workload.threads)
        for rep in range(config.scale.repeats):
            for o in outcomes:
                if o.status != "ok":
                    continue
                t0 = time.perf_counter()
                _one_repeat(o, data_root, o.calls_per_repeat, payload)
                label = f"[{rep + 1}/{config.scale.repeats}] {o.workload.name}"
                if o.status == "ok":
                    rate = o.samples[-1].records_per_s
                    say(f"{label}: {rate:,.0f} records/s ({time.perf_counter() - t0:.2f} s)")
                else:
                    say(f"{label}: {o.status}: {o.reason}")
        sync_note = _count_syncs(config, outcomes, data_root, say)
        return BenchRun(
            config, machine, started, time.time() - started, outcomes, systems, sync_note
        )
    finally:
        if own_data:
            shutil.rmtree(data_root, ignore_errors=True)
