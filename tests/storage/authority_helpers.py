"""Builders for storage tests: specs and the command batches the engine would submit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from actionqueue.core.ids import AttemptId, RunId, TaskId
from actionqueue.core.mutation import (
    AttemptFinishCommand,
    AttemptStartCommand,
    LeaseAcquireCommand,
    MutationCommand,
    RunCreateCommand,
    RunStateTransitionCommand,
    TaskCreateCommand,
)
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.run.state import RunState
from actionqueue.core.task.constraints import TaskConstraints
from actionqueue.core.task.metadata import TaskMetadata
from actionqueue.core.task.run_policy import RunPolicy
from actionqueue.core.task.task_spec import TaskPayload, TaskSpec

T0 = 1_700_000_000_000
S = RunState


def spec(
    *,
    priority: int = 0,
    key: str | None = None,
    max_attempts: int = 1,
    dedupe: str | None = None,
    runs: int = 1,
    task_id: TaskId | None = None,
) -> TaskSpec:
    policy = RunPolicy.once() if runs == 1 else RunPolicy.repeat(runs, 1000)
    return TaskSpec(
        task_id or TaskId.new(),
        TaskPayload(b"payload"),
        policy,
        TaskConstraints(max_attempts=max_attempts, concurrency_key=key),
        TaskMetadata(priority=priority),
        dedupe_key=dedupe,
    )


def create(s: TaskSpec, at: int = T0, runs: int = 1) -> tuple[list[MutationCommand], list[RunId]]:
    """TaskCreate + its RunCreates (one atomic batch, as SPEC §11.7 wants)."""
    ids = [RunId.new() for _ in range(runs)]
    cmds: list[MutationCommand] = [TaskCreateCommand(None, s, at)]
    cmds += [
        RunCreateCommand(None, rid, s.task_id, k, at + 1000 * k, at) for k, rid in enumerate(ids)
    ]
    return cmds, ids


def tr(run: RunId, a: RunState, b: RunState, at: int, **kw: object) -> RunStateTransitionCommand:
    return RunStateTransitionCommand(None, run, a, b, at, **kw)  # type: ignore[arg-type]


def dispatch(
    run: RunId, at: int, owner: str = "w1", ttl: int = 30_000
) -> tuple[list[MutationCommand], AttemptId]:
    """Ready -> Leased + LeaseAcquire + Leased -> Running + AttemptStart."""
    attempt = AttemptId.new()
    return [
        tr(run, S.READY, S.LEASED, at),
        LeaseAcquireCommand(None, run, owner, at + ttl, at),
        tr(run, S.LEASED, S.RUNNING, at),
        AttemptStartCommand(None, run, attempt, at),
    ], attempt


def complete(run: RunId, attempt: AttemptId, at: int) -> list[MutationCommand]:
    return [
        AttemptFinishCommand(None, run, attempt, AttemptOutcome.SUCCESS, at),
        tr(run, S.RUNNING, S.COMPLETED, at),
    ]


def wal_files(data_dir: Path) -> dict[str, bytes]:
    """Every segment of ``data_dir/wal`` by name (to compare a log byte for byte)."""
    return {p.name: p.read_bytes() for p in sorted((data_dir / "wal").glob("*.wal"))}


def segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "wal").glob("*.wal"))


def snapshots(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "snapshots").glob("snapshot-*.aqs"), reverse=True)


def ids(n: int) -> Iterator[TaskId]:
    for _ in range(n):
        yield TaskId.new()
