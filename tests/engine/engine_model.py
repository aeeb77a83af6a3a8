"""A tiny pure-Python model of the reducer, enough to run engine plans end to end in tests.

It applies commands to ``RunInstance`` snapshots with the DESIGN.md reducer rules that the
engine relies on (state must match, counted attempts, leases), raising ``AssertionError`` when
a plan would be refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from actionqueue.core import (
    AttemptFinishCommand,
    AttemptOutcome,
    AttemptRecord,
    AttemptStartCommand,
    Lease,
    LeaseAcquireCommand,
    LeaseExpireCommand,
    LeaseHeartbeatCommand,
    LeaseReleaseCommand,
    MutationCommand,
    RunCreateCommand,
    RunId,
    RunInstance,
    RunState,
    RunStateTransitionCommand,
    StateChange,
    TaskConstraints,
    TaskId,
)
from actionqueue.engine import key_holders


class Model:
    def __init__(self) -> None:
        self.runs: dict[RunId, RunInstance] = {}
        self.constraints: dict[TaskId, TaskConstraints] = {}
        self.priority: dict[TaskId, int] = {}
        self.seq = 0
        self.attempts_started = 0

    def add_task(self, task_id: TaskId, constraints: TaskConstraints, priority: int = 0) -> None:
        self.constraints[task_id] = constraints
        self.priority[task_id] = priority

    def apply(self, commands: Iterable[MutationCommand]) -> None:
        for cmd in commands:
            self.seq += 1
            self._apply(cmd)
        key_holders((r, self.constraints[r.task_id]) for r in self.runs.values())

    def _apply(self, cmd: MutationCommand) -> None:
        if isinstance(cmd, RunCreateCommand):
            assert cmd.run_id not in self.runs
            self.runs[cmd.run_id] = RunInstance(
                cmd.run_id,
                cmd.task_id,
                RunState.SCHEDULED,
                cmd.ordinal,
                cmd.scheduled_at,
                cmd.timestamp,
                history=(StateChange(None, RunState.SCHEDULED, cmd.timestamp),),
                created_seq=self.seq,
            )
            return
        run = self.runs[cmd.run_id]  # type: ignore[attr-defined]
        c = self.constraints[run.task_id]
        if isinstance(cmd, RunStateTransitionCommand):
            assert run.state is cmd.previous_state, (run.state, cmd)
            new = cmd.new_state
            changes: dict[str, object] = {
                "state": new,
                "last_state_change_at": cmd.timestamp,
                "history": (
                    *run.history,
                    StateChange(run.state, new, cmd.timestamp, cmd.reason),
                ),
            }
            if run.state is RunState.RUNNING and new is not RunState.CANCELED:
                assert run.current_attempt is None, "attempt must be closed first"
            if new is RunState.RETRY_WAIT:
                assert cmd.not_before is not None
                assert run.attempt_count < c.max_attempts
                changes["not_before"] = cmd.not_before
            if new is RunState.RUNNING:
                assert run.lease is not None
                assert run.lease.expires_at > cmd.timestamp
            if new is RunState.READY:
                changes["effective_priority"] = self.priority[run.task_id]
            if new is RunState.LEASED and c.concurrency_key is not None:
                holders = key_holders((r, self.constraints[r.task_id]) for r in self.runs.values())
                assert holders.get(c.concurrency_key) in (None, run.run_id), "key held"
            if run.state in (RunState.LEASED, RunState.RUNNING) and new is not RunState.RUNNING:
                changes["lease"] = None
            if new is RunState.CANCELED:
                changes["current_attempt"] = None
            self.runs[run.run_id] = replace(run, **changes)  # type: ignore[arg-type]
        elif isinstance(cmd, LeaseAcquireCommand):
            assert run.state is RunState.LEASED
            assert run.lease is None
            self.runs[run.run_id] = replace(run, lease=Lease(cmd.owner, cmd.expires_at))
        elif isinstance(cmd, LeaseHeartbeatCommand):
            assert run.lease is not None
            assert run.lease.owner == cmd.owner
            exp = max(run.lease.expires_at, cmd.expires_at)
            self.runs[run.run_id] = replace(run, lease=Lease(cmd.owner, exp))
        elif isinstance(cmd, LeaseExpireCommand):
            assert run.lease is not None
            assert run.lease.owner == cmd.owner
            assert cmd.timestamp >= run.lease.expires_at
            self.runs[run.run_id] = replace(run, lease=None)
        elif isinstance(cmd, LeaseReleaseCommand):
            assert run.lease is not None
            assert run.lease.owner == cmd.owner
            self.runs[run.run_id] = replace(run, lease=None)
        elif isinstance(cmd, AttemptStartCommand):
            assert run.state is RunState.RUNNING
            assert run.current_attempt is None
            assert run.attempt_count < c.max_attempts
            assert all(a.attempt_id != cmd.attempt_id for a in run.attempts)
            self.attempts_started += 1
            self.runs[run.run_id] = replace(
                run,
                current_attempt=cmd.attempt_id,
                attempt_count=run.attempt_count + 1,
                attempts=(*run.attempts, AttemptRecord(cmd.attempt_id, cmd.timestamp)),
            )
        elif isinstance(cmd, AttemptFinishCommand):
            assert run.current_attempt == cmd.attempt_id
            last = run.attempts[-1]
            done = replace(
                last,
                finished_at=cmd.timestamp,
                outcome=cmd.outcome,
                error=cmd.error,
                output=cmd.output,
            )
            count = run.attempt_count - (cmd.outcome is AttemptOutcome.SUSPENDED)
            self.runs[run.run_id] = replace(
                run,
                current_attempt=None,
                attempt_count=count,
                attempts=(*run.attempts[:-1], done),
            )
        else:  # pragma: no cover - not used by these tests
            raise AssertionError(f"model does not handle {cmd!r}")

    def in_state(self, state: RunState) -> list[RunInstance]:
        return [r for r in self.runs.values() if r.state is state]

    def held_keys(self) -> set[str]:
        return set(key_holders((r, self.constraints[r.task_id]) for r in self.runs.values()))
