"""Hypothesis stateful test: random command sequences against the Rust authority and a
pure-Python model, compared after every step and after restarts (reopen → same digest, same
model view). Refused commands must change neither the state nor the log's length."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
from authority_helpers import T0, S, spec, tr
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from storage_model import Model

from actionqueue.core.ids import AttemptId, RunId, TaskId
from actionqueue.core.mutation import (
    AttemptFinishCommand,
    AttemptStartCommand,
    DurabilityPolicy,
    EnginePauseCommand,
    EngineResumeCommand,
    LeaseAcquireCommand,
    LeaseExpireCommand,
    MutationCommand,
    RunCreateCommand,
    TaskCancelCommand,
    TaskCreateCommand,
)
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.run.state import RunState
from actionqueue.errors import CommandRejectedError
from actionqueue.storage.mutation import StorageMutationAuthority
from actionqueue.storage.recovery import bootstrap

DUR = st.sampled_from([DurabilityPolicy.DEFERRED, DurabilityPolicy.IMMEDIATE])
TTL = 1_000


class AuthorityMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        base = "/dev/shm" if Path("/dev/shm").is_dir() else None
        self.tmp = Path(tempfile.mkdtemp(prefix="aq-stateful-", dir=base))
        self.opts = {"segment_size": 4096, "preallocate": 0, "snapshot_every": 7}
        self.auth, _ = bootstrap(self.tmp / "data", **self.opts)  # type: ignore[arg-type]
        self.model = Model()
        self.now = T0

    def teardown(self) -> None:
        self.auth.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------------------

    def submit(self, cmds: list[MutationCommand], ok: bool, dur: DurabilityPolicy) -> bool:
        before = (self.auth.latest_sequence, self.auth.state_digest())
        try:
            self.auth.submit_batch(cmds, dur)
        except CommandRejectedError:
            assert not ok, f"refused but the model accepts: {cmds}"
            assert (self.auth.latest_sequence, self.auth.state_digest()) == before
            return False
        assert ok, f"accepted but the model refuses: {cmds}"
        return True

    def pick(self, states: set[RunState], i: int) -> bytes | None:
        rids = sorted(r for r, m in self.model.runs.items() if m.state in states)
        return rids[i % len(rids)] if rids else None

    def tick(self, ms: int = 7) -> int:
        self.now += ms
        return self.now

    # --- rules -------------------------------------------------------------------------------

    @rule(
        runs=st.integers(1, 2),
        key=st.sampled_from([None, "a", "b"]),
        max_attempts=st.integers(1, 3),
        prio=st.integers(-2, 2),
        dur=DUR,
    )
    def create(
        self, runs: int, key: str | None, max_attempts: int, prio: int, dur: DurabilityPolicy
    ) -> None:
        s = spec(priority=prio, key=key, max_attempts=max_attempts, runs=runs)
        at = self.tick()
        rids = [RunId.new() for _ in range(runs)]
        cmds: list[MutationCommand] = [TaskCreateCommand(None, s, at)]
        cmds += [RunCreateCommand(None, r, s.task_id, k, at, at) for k, r in enumerate(rids)]
        self.submit(cmds, True, dur)
        self.model.create(s.task_id.bytes, key, max_attempts, [r.bytes for r in rids])

    @rule(i=st.integers(0, 50))
    def promote(self, i: int) -> None:
        rid = self.pick({S.SCHEDULED, S.RETRY_WAIT}, i)
        if rid is None:
            return
        m = self.model.runs[rid]
        self.submit(
            [tr(RunId.from_bytes(rid), m.state, S.READY, self.tick())],
            True,
            DurabilityPolicy.DEFERRED,
        )
        m.state = S.READY
        self.model.seq += 1

    @rule(i=st.integers(0, 50), dur=DUR)
    def dispatch(self, i: int, dur: DurabilityPolicy) -> None:
        rid = self.pick({S.READY}, i)
        if rid is None:
            return
        at, attempt, run = self.tick(), AttemptId.new(), RunId.from_bytes(rid)
        cmds: list[MutationCommand] = [
            tr(run, S.READY, S.LEASED, at),
            LeaseAcquireCommand(None, run, "w", at + TTL, at),
            tr(run, S.LEASED, S.RUNNING, at),
            AttemptStartCommand(None, run, attempt, at),
        ]
        ok = self.model.can_dispatch(rid)
        if self.submit(cmds, ok, dur):
            self.model.dispatch(rid, attempt.bytes, "w", at + TTL)

    @rule(i=st.integers(0, 50), outcome=st.sampled_from(["ok", "retry", "fail", "lost"]), dur=DUR)
    def finish(self, i: int, outcome: str, dur: DurabilityPolicy) -> None:
        rid = self.pick({S.RUNNING}, i)
        if rid is None:
            return
        m = self.model.runs[rid]
        run, attempt = RunId.from_bytes(rid), AttemptId.from_bytes(m.open_attempt)  # type: ignore[arg-type]
        cmds: list[MutationCommand] = []
        if outcome == "lost":
            # The lease runs out first: expire it, then the attempt can only end Lost.
            assert m.lease is not None
            self.now = max(self.now, m.lease[1])
            cmds.append(LeaseExpireCommand(None, run, "w", self.now))
        at = self.tick()
        out = {
            "ok": AttemptOutcome.SUCCESS,
            "retry": AttemptOutcome.RETRYABLE_FAILURE,
            "fail": AttemptOutcome.TERMINAL_FAILURE,
            "lost": AttemptOutcome.LOST,
        }[outcome]
        cmds.append(
            AttemptFinishCommand(
                None, run, attempt, out, at, error=None if outcome == "ok" else "x"
            )
        )
        max_attempts = self.model.tasks[m.task].max_attempts
        if outcome == "ok":
            to = S.COMPLETED
        elif outcome in ("retry", "lost") and m.attempts < max_attempts:
            to = S.RETRY_WAIT
        else:
            to = S.FAILED
        kw = {"not_before": at + 5} if to is S.RETRY_WAIT else {}
        cmds.append(tr(run, S.RUNNING, to, at, **kw))
        self.submit(cmds, True, dur)
        m.state, m.lease, m.open_attempt = to, None, None
        self.model.seq += len(cmds)

    @rule(i=st.integers(0, 50))
    def cancel(self, i: int) -> None:
        if not self.model.tasks:
            return
        tids = sorted(self.model.tasks)
        tid = tids[i % len(tids)]
        ok = not self.model.tasks[tid].canceled
        if self.submit(
            [TaskCancelCommand(None, TaskId.from_bytes(tid), self.tick())],
            ok,
            DurabilityPolicy.IMMEDIATE,
        ):
            self.model.cancel(tid)

    @rule()
    def pause_or_resume(self) -> None:
        cmd = (
            EngineResumeCommand(None, self.tick())
            if self.model.paused
            else EnginePauseCommand(None, self.tick())
        )
        self.submit([cmd], True, DurabilityPolicy.DEFERRED)
        self.model.paused = not self.model.paused
        self.model.seq += 1

    @rule(i=st.integers(0, 50), wrong=st.sampled_from([S.SCHEDULED, S.READY, S.LEASED]))
    def stale_transition(self, i: int, wrong: RunState) -> None:
        """A transition naming a state the run is not in: refused, nothing changes."""
        rid = self.pick(set(RunState) - {wrong}, i)
        if rid is None:
            return
        to = {S.SCHEDULED: S.READY, S.READY: S.LEASED, S.LEASED: S.READY}[wrong]
        self.submit(
            [tr(RunId.from_bytes(rid), wrong, to, self.tick())], False, DurabilityPolicy.DEFERRED
        )

    @precondition(lambda self: self.model.seq > 0)
    @rule(snapshot=st.booleans())
    def restart(self, snapshot: bool) -> None:
        if snapshot:
            self.auth.snapshot()
        digest = self.auth.state_digest()
        self.auth.close()
        self.auth, report = bootstrap(self.tmp / "data", digest=True, **self.opts)  # type: ignore[arg-type]
        assert report.digest == digest
        snap = report.snapshot_sequence or 0
        assert report.events_replayed == report.final_sequence - snap

    # --- comparison --------------------------------------------------------------------------

    @invariant()
    def same_view(self) -> None:
        a: StorageMutationAuthority = self.auth
        assert a.latest_sequence == self.model.seq
        assert a.is_paused == self.model.paused
        assert a.counts() == self.model.ended()
        for rid, m in self.model.runs.items():
            run = a.get_run(RunId.from_bytes(rid))
            assert run is not None
            assert run.state is m.state, (run, m)
            assert run.attempt_count == m.attempts
            assert (run.current_attempt.bytes if run.current_attempt else None) == m.open_attempt
            assert (
                None if run.lease is None else (run.lease.owner, run.lease.expires_at)
            ) == m.lease
        for key in ("a", "b"):
            assert a.key_holder(key) == self.model.key_holder(key)
        for c in a.ready_candidates(100):
            assert self.model.runs[c[0]].state is RunState.READY


AuthorityMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAuthorityStateMachine = AuthorityMachine.TestCase
