"""A pure-Python authority implementing ``actionqueue.engine.ports.AuthorityPort``.

Built on :class:`engine_model.Model` (the run-level reducer model), extended with what the
engine needs from the real authority: tasks, dedupe keys, TaskCancel, pause, prune, sequences,
**atomic batches** (a refused batch changes nothing), typed errors as the Rust reducer raises
them, and the index queries with the Rust orders. Every event goes through
``MutationCommand.from_wire`` first, so the engine's hand-built wire tuples are checked against
the command classes too.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from engine_model import Model

from actionqueue.core import (
    AttemptFinishCommand,
    AttemptOutcome,
    AttemptStartCommand,
    CronPolicy,
    DurabilityPolicy,
    EnginePauseCommand,
    EngineResumeCommand,
    HoldPolicy,
    LeaseAcquireCommand,
    LeaseExpireCommand,
    LeaseHeartbeatCommand,
    LeaseReleaseCommand,
    MutationCommand,
    PruneCommand,
    RunCreateCommand,
    RunId,
    RunInstance,
    RunState,
    RunStateTransitionCommand,
    StateChange,
    TaskCancelCommand,
    TaskCreateCommand,
    TaskId,
    TaskSpec,
)
from actionqueue.core.run.state import TERMINAL_STATES
from actionqueue.engine import holds_key
from actionqueue.errors import CommandRejectedError, LeaseError, NotFoundError

I64_MIN = -(2**63)


@dataclass
class FakeTaskRecord:
    spec: TaskSpec
    origin: int
    created_at: int
    canceled_at: int | None
    derived: int
    non_terminal: int
    last_scheduled_at: int | None
    created_seq: int = 0
    finished_at: int | None = None


class FakeAuthority(Model):
    """See the module docs. ``batches`` counts accepted records (tests assert on it)."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[TaskId, FakeTaskRecord] = {}
        self.paused = False
        self.batches = 0
        self.log: list[list[tuple[Any, ...]]] = []

    # --- writes ------------------------------------------------------------------------------

    def submit_wire(
        self,
        events: Sequence[tuple[Any, ...]],
        durability: DurabilityPolicy,
        expected_first: int | None = None,
    ) -> tuple[int, int]:
        assert isinstance(durability, DurabilityPolicy)
        if not events:
            raise CommandRejectedError("an empty batch")
        if expected_first is not None and expected_first != self.seq + 1:
            raise CommandRejectedError(f"expected sequence {self.seq + 1}, got {expected_first}")
        cmds = [MutationCommand.from_wire(e) for e in events]
        for i, c in enumerate(cmds):
            if isinstance(c, PruneCommand) and i != len(cmds) - 1:
                raise CommandRejectedError("Prune must be the last event of its record")
        saved = (
            dict(self.runs),
            copy.deepcopy(self.tasks),
            self.paused,
            self.seq,
            self.attempts_started,
        )
        first = self.seq + 1
        try:
            for c in cmds:
                self.seq += 1
                self._check(c)
                self._apply(c)
            self._sync_tasks(cmds[-1].timestamp)
            self.held_keys()  # the gate's invariant: raises if two runs hold one key
        except AssertionError as e:
            self._restore(saved)
            raise CommandRejectedError(f"refused by the model: {e}") from None
        except Exception:
            self._restore(saved)
            raise
        self.batches += 1
        self.log.append(list(events))
        return first, self.seq

    def _restore(self, saved: tuple[Any, ...]) -> None:
        self.runs, self.tasks, self.paused, self.seq, self.attempts_started = saved

    def flush(self) -> None:
        pass

    def _check(self, c: MutationCommand) -> None:
        """The reducer rules the base model does not check (or checks with bare asserts)."""
        if isinstance(c, TaskCreateCommand):
            tid = c.task_spec.task_id
            if tid in self.tasks:
                raise CommandRejectedError(f"task {tid} already exists")
            key = c.task_spec.dedupe_key
            if key is not None and self.task_by_dedupe_key(key) is not None:
                raise CommandRejectedError(f"dedupe key {key!r} is held by a live task")
            return
        if isinstance(c, RunCreateCommand):
            rec = self.tasks.get(c.task_id)
            if rec is None:
                raise NotFoundError(f"task {c.task_id}")
            if rec.canceled_at is not None:
                raise CommandRejectedError(f"task {c.task_id} is canceled")
            if c.ordinal != rec.derived:
                raise CommandRejectedError(f"ordinal {c.ordinal} != {rec.derived}")
            total = rec.spec.run_policy.total_runs()
            if total is not None and rec.derived >= total:
                raise CommandRejectedError(f"task {c.task_id} has all {total} runs")
            return
        if isinstance(c, TaskCancelCommand):
            rec = self.tasks.get(c.task_id)
            if rec is None:
                raise NotFoundError(f"task {c.task_id}")
            if rec.canceled_at is not None:
                raise CommandRejectedError(f"task {c.task_id} was already canceled")
            return
        if isinstance(c, EnginePauseCommand):
            if self.paused:
                raise CommandRejectedError("already paused")
            return
        if isinstance(c, EngineResumeCommand):
            if not self.paused:
                raise CommandRejectedError("not paused")
            return
        if isinstance(c, PruneCommand):
            return
        run = self.runs.get(c.run_id)  # type: ignore[attr-defined]
        if run is None:
            raise NotFoundError(f"run {c.run_id}")  # type: ignore[attr-defined]
        lease = run.lease
        at = c.timestamp
        if isinstance(c, RunStateTransitionCommand):
            if run.state is not c.previous_state:
                raise CommandRejectedError(
                    f"run {run.run_id} is {run.state}, not {c.previous_state}"
                )
            if c.not_before is not None and c.new_state is not RunState.RETRY_WAIT:
                raise CommandRejectedError("not_before only entering RetryWait")
            if c.new_state is RunState.RUNNING and (lease is None or at >= lease.expires_at):
                raise LeaseError(f"run {run.run_id} holds no live lease")
            if c.new_state is RunState.LEASED and self.paused:
                raise CommandRejectedError(f"the engine is paused; run {run.run_id}")
        elif isinstance(c, LeaseAcquireCommand):
            if run.state is not RunState.LEASED or lease is not None:
                raise LeaseError(f"run {run.run_id} cannot acquire a lease")
        elif isinstance(c, (LeaseHeartbeatCommand, LeaseExpireCommand, LeaseReleaseCommand)):
            if lease is None or lease.owner != c.owner:
                raise LeaseError(f"run {run.run_id} is not leased by {c.owner!r}")
            if isinstance(c, LeaseHeartbeatCommand) and at >= lease.expires_at:
                raise LeaseError(f"the lease of run {run.run_id} expired")
            if isinstance(c, LeaseExpireCommand) and at < lease.expires_at:
                raise LeaseError(f"the lease of run {run.run_id} is not expired")
        elif isinstance(c, AttemptStartCommand):
            if lease is None or at >= lease.expires_at:
                raise LeaseError(f"run {run.run_id} holds no live lease")
        elif isinstance(c, AttemptFinishCommand):
            if run.current_attempt != c.attempt_id:
                raise CommandRejectedError(f"attempt {c.attempt_id} is not open")
            if c.outcome is AttemptOutcome.CANCELED:
                raise CommandRejectedError("outcome Canceled is written only by cancellation")

    def _apply(self, cmd: MutationCommand) -> None:
        if isinstance(cmd, TaskCreateCommand):
            spec = cmd.task_spec
            self.add_task(spec.task_id, spec.constraints, spec.metadata.priority)
            self.tasks[spec.task_id] = FakeTaskRecord(
                spec, cmd.schedule_origin, cmd.timestamp, None, 0, 0, None, self.seq
            )
        elif isinstance(cmd, RunCreateCommand):
            super()._apply(cmd)
            rec = self.tasks[cmd.task_id]
            rec.derived += 1
            rec.last_scheduled_at = cmd.scheduled_at
        elif isinstance(cmd, TaskCancelCommand):
            rec = self.tasks[cmd.task_id]
            rec.canceled_at = cmd.timestamp
            for run in list(self.runs.values()):
                if run.task_id == cmd.task_id and run.state not in TERMINAL_STATES:
                    self._cancel(run, cmd.timestamp, cmd.reason or "task canceled")
        elif isinstance(cmd, RunStateTransitionCommand) and cmd.new_state is RunState.CANCELED:
            self._cancel(self.runs[cmd.run_id], cmd.timestamp, cmd.reason)
        elif isinstance(cmd, EnginePauseCommand):
            self.paused = True
        elif isinstance(cmd, EngineResumeCommand):
            self.paused = False
        elif isinstance(cmd, PruneCommand):
            self._prune(cmd.before)
        else:
            super()._apply(cmd)
            if isinstance(cmd, RunStateTransitionCommand):
                run = self.runs[cmd.run_id]
                if cmd.new_state is not RunState.RETRY_WAIT and run.not_before is not None:
                    self.runs[cmd.run_id] = replace(run, not_before=None)

    def _cancel(self, run: RunInstance, at: int, reason: str | None) -> None:
        attempts = run.attempts
        if run.current_attempt is not None:
            last = replace(attempts[-1], finished_at=at, outcome=AttemptOutcome.CANCELED)
            attempts = (*attempts[:-1], last)
        self.runs[run.run_id] = replace(
            run,
            state=RunState.CANCELED,
            current_attempt=None,
            lease=None,
            not_before=None,
            attempts=attempts,
            last_state_change_at=at,
            history=(*run.history, StateChange(run.state, RunState.CANCELED, at, reason)),
        )

    def _is_finished(self, rec: FakeTaskRecord) -> bool:
        if rec.canceled_at is not None:
            return True
        total = rec.spec.run_policy.total_runs()
        return total == rec.derived and rec.non_terminal == 0

    def _sync_tasks(self, at: int) -> None:
        for rec in self.tasks.values():
            rec.non_terminal = 0
        for r in self.runs.values():
            if r.state not in TERMINAL_STATES:
                self.tasks[r.task_id].non_terminal += 1
        for rec in self.tasks.values():
            finished = self._is_finished(rec)
            if finished and rec.finished_at is None:
                rec.finished_at = at
            elif not finished:
                rec.finished_at = None

    def _prune(self, before: int) -> None:
        # As the core: the newest run of a cron task that is not finished stays (the task's
        # next occurrences are derived after it).
        newest: dict[TaskId, RunInstance] = {}
        for r in self.runs.values():
            n = newest.get(r.task_id)
            if n is None or r.ordinal > n.ordinal:
                newest[r.task_id] = r
        for rid, r in list(self.runs.items()):
            if r.state in TERMINAL_STATES and r.last_state_change_at < before:
                rec = self.tasks.get(r.task_id)
                if (
                    rec is not None
                    and isinstance(rec.spec.run_policy, CronPolicy)
                    and not self._is_finished(rec)
                    and newest[r.task_id] is r
                ):
                    continue
                del self.runs[rid]
        live = {r.task_id for r in self.runs.values()}
        for tid, rec in list(self.tasks.items()):
            if (
                tid not in live
                and self._is_finished(rec)
                and rec.finished_at is not None
                and rec.finished_at < before
            ):
                del self.tasks[tid]

    # --- state -------------------------------------------------------------------------------

    @property
    def is_paused(self) -> bool:
        return self.paused

    @property
    def latest_sequence(self) -> int:
        return self.seq

    # --- typed lookups -----------------------------------------------------------------------

    def get_task(self, task_id: TaskId) -> FakeTaskRecord | None:
        rec = self.tasks.get(task_id)
        return None if rec is None else copy.copy(rec)

    def get_run(self, run_id: RunId) -> RunInstance | None:
        return self.runs.get(run_id)

    def runs_for_task(self, task_id: TaskId) -> list[RunInstance]:
        return sorted((r for r in self.runs.values() if r.task_id == task_id), key=_ordinal)

    def counts(self) -> dict[RunState, int]:
        out = dict.fromkeys(RunState, 0)
        for r in self.runs.values():
            out[r.state] += 1
        return out

    # --- index queries -----------------------------------------------------------------------

    def _in(self, state: RunState) -> list[RunInstance]:
        return [r for r in self.runs.values() if r.state is state]

    def _wire(self, runs: list[RunInstance], limit: int) -> list[tuple[Any, ...]]:
        return [r.to_wire() for r in runs[:limit]]

    def next_due(self) -> int | None:
        times = [r.scheduled_at for r in self._in(RunState.SCHEDULED)]
        times += [r.not_before or I64_MIN for r in self._in(RunState.RETRY_WAIT)]
        return min(times, default=None)

    def next_lease_expiry(self) -> int | None:
        held = self._in(RunState.LEASED) + self._in(RunState.RUNNING)
        return min((_expiry(r) for r in held), default=None)

    def due_scheduled(self, now: int, limit: int) -> list[tuple[Any, ...]]:
        runs = [r for r in self._in(RunState.SCHEDULED) if r.scheduled_at <= now]
        return self._wire(sorted(runs, key=lambda r: (r.scheduled_at, r.created_seq)), limit)

    def due_retries(self, now: int, limit: int) -> list[tuple[Any, ...]]:
        runs = [r for r in self._in(RunState.RETRY_WAIT) if (r.not_before or I64_MIN) <= now]
        return self._wire(
            sorted(runs, key=lambda r: (r.not_before or I64_MIN, r.created_seq)), limit
        )

    def expired_leases(self, now: int, limit: int) -> list[tuple[Any, ...]]:
        out: list[RunInstance] = []
        for state in (RunState.LEASED, RunState.RUNNING):
            runs = [r for r in self._in(state) if _expiry(r) <= now]
            out += sorted(runs, key=lambda r: (_expiry(r), r.created_seq))
        return self._wire(out, limit)

    def _holders(self) -> dict[str, RunId]:
        out: dict[str, RunId] = {}
        for r in self.runs.values():
            c = self.constraints[r.task_id]
            if c.concurrency_key is not None and holds_key(r.state, c.hold_policy):
                out[c.concurrency_key] = r.run_id
        return out

    def ready_candidates(self, limit: int) -> list[tuple[Any, ...]]:
        runs = sorted(
            self._in(RunState.READY),
            key=lambda r: (-(r.effective_priority or 0), r.scheduled_at, r.created_seq),
        )
        held = set(self._holders())
        # A key's head: its first Ready retry under hold_during_retry, else its first run.
        heads: dict[str, tuple[bool, RunInstance]] = {}
        for r in runs:
            c = self.constraints[r.task_id]
            key = c.concurrency_key
            if key is None or key in held:
                continue
            retry = c.hold_policy is HoldPolicy.HOLD_DURING_RETRY and bool(r.attempts)
            head = heads.get(key)
            if head is None or (retry and not head[0]):
                heads[key] = (retry, r)
        out: list[tuple[Any, ...]] = []
        for r in runs:
            if len(out) >= limit:
                break
            key = self.constraints[r.task_id].concurrency_key
            if key is not None and (key not in heads or heads[key][1] is not r):
                continue
            out.append(
                (
                    r.run_id.bytes,
                    r.task_id.bytes,
                    r.effective_priority or 0,
                    r.scheduled_at,
                    r.created_seq,
                    key,
                )
            )
        return out

    def key_holder(self, key: str) -> bytes | None:
        rid = self._holders().get(key)
        return None if rid is None else rid.bytes

    def task_by_dedupe_key(self, key: str) -> bytes | None:
        for tid, rec in self.tasks.items():
            if rec.spec.dedupe_key == key and not self._is_finished(rec):
                return tid.bytes
        return None

    def short_cron_windows(self) -> list[bytes]:
        short = []
        for tid, rec in self.tasks.items():
            p = rec.spec.run_policy
            if (
                isinstance(p, CronPolicy)
                and not self._is_finished(rec)
                and rec.non_terminal < p.window
                and (p.max_occurrences is None or rec.derived < p.max_occurrences)
            ):
                short.append((rec.created_seq, tid.bytes))
        return [b for _, b in sorted(short)]


def _ordinal(r: RunInstance) -> int:
    return r.ordinal


def _expiry(r: RunInstance) -> int:
    return I64_MIN if r.lease is None else r.lease.expires_at
