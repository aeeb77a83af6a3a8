"""Hypothesis properties: derivation accounting and the concurrency-key gate."""

from __future__ import annotations

import random

from engine_model import Model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actionqueue.core import (
    AttemptOutcome,
    HoldPolicy,
    MisfirePolicy,
    RunPolicy,
    RunState,
    TaskConstraints,
    TaskId,
    TaskMetadata,
)
from actionqueue.engine import (
    Candidate,
    DefaultSelector,
    derive_runs,
    holds_key,
    plan_dispatch,
    plan_expiry_sweep,
    plan_finish,
    plan_misfire,
    plan_retry_promotions,
    run_create_commands,
)
from actionqueue.engine.time.clock import ManualClock

MIN = 60_000

misfires = st.one_of(
    st.builds(
        MisfirePolicy.catch_up, st.none() | st.integers(1, 5), st.none() | st.integers(0, 5_000)
    ),
    st.builds(MisfirePolicy.coalesce, st.none() | st.integers(0, 5_000)),
    st.builds(MisfirePolicy.skip, st.none() | st.integers(0, 5_000)),
)
policies = st.one_of(
    st.builds(lambda m: RunPolicy.once(misfire=m), misfires),
    st.builds(
        lambda c, i, m: RunPolicy.repeat(c, i, misfire=m),
        st.integers(1, 50),
        st.integers(1, 10**7),
        misfires,
    ),
    st.builds(
        lambda e, z, mx, w, m: RunPolicy.cron(e, z, mx, w, misfire=m),
        st.sampled_from(["* * * * *", "*/7 * * * * *", "0 9 * * mon-fri", "30 2 * * *"]),
        st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]),
        st.none() | st.integers(1, 30),
        st.integers(1, 6),
        misfires,
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=policies,
    steps=st.lists(
        st.tuples(st.integers(0, 8), st.integers(0, 3 * 24 * 60 * MIN)), min_size=1, max_size=6
    ),
)
def test_derivation_never_exceeds_the_policy(
    policy: RunPolicy, steps: list[tuple[int, int]]
) -> None:
    clock = ManualClock(0)
    tid = TaskId.new()
    origin = 1_700_000_000_000
    total = 0
    after: int | None = None
    times: list[int] = []
    now = origin
    for non_terminal, gap in steps:
        now += gap
        r = derive_runs(
            clock, tid, policy, total, origin, after=after, non_terminal=non_terminal, now=now
        )
        assert [x.ordinal for x in r.derived] == list(range(total, r.derived_total))
        assert all(x.state is RunState.SCHEDULED for x in r.derived)
        times.extend(x.scheduled_at for x in r.derived)
        total = r.derived_total
        if r.derived:
            after = r.last_scheduled_at
        cap = policy.total_runs()
        if cap is not None:
            assert total <= cap
        if isinstance(policy, RunPolicy.cron("* * * * *").__class__):
            kept_in_window = [
                x for x in r.derived if x.run_id not in r.folded or not r.folded[x.run_id].dropped
            ]
            # The window is exceeded only by capped catch-up survivors.
            if policy.misfire.cap is None:
                assert len(kept_in_window) <= max(0, policy.window - non_terminal) or not r.derived
    if isinstance(policy, RunPolicy.cron("* * * * *").__class__):
        assert times == sorted(set(times))


@st.composite
def task_mixes(draw: st.DrawFn) -> list[tuple[TaskConstraints, int, int]]:
    n = draw(st.integers(1, 6))
    out = []
    for _ in range(n):
        c = TaskConstraints(
            max_attempts=draw(st.integers(1, 3)),
            concurrency_key=draw(st.sampled_from([None, "a", "b"])),
            hold_policy=draw(st.sampled_from(list(HoldPolicy))),
        )
        out.append((c, draw(st.integers(1, 3)), draw(st.integers(-2, 2))))
    return out


ops = st.lists(
    st.tuples(
        st.sampled_from(["dispatch", "finish", "tick", "sweep"]),
        st.sampled_from(list(AttemptOutcome)[:6]),
        st.integers(0, 40_000),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mix=task_mixes(), steps=ops, seed=st.integers(0, 2**16))
def test_key_gate_and_dispatch_bound_hold_for_any_sequence_of_plans(
    mix: list[tuple[TaskConstraints, int, int]],
    steps: list[tuple[str, AttemptOutcome, int]],
    seed: int,
) -> None:
    rng = random.Random(seed)
    clock = ManualClock(1_000)
    model = Model()
    for constraints, count, priority in mix:
        tid = TaskId.new()
        model.add_task(tid, constraints, TaskMetadata(priority=priority).priority)
        policy = RunPolicy.repeat(count, 1_000)
        model.apply(run_create_commands(derive_runs(clock, tid, policy, 0, clock.now())))
    selector = DefaultSelector(presorted=False)
    for op, outcome, advance in steps:
        now = clock.now()
        if op == "tick":
            due = [r for r in model.in_state(RunState.SCHEDULED) if r.scheduled_at <= now]
            model.apply(plan_misfire(due, MisfirePolicy.catch_up(), now).commands(now))
            model.apply(plan_retry_promotions(model.in_state(RunState.RETRY_WAIT), now))
        elif op == "dispatch":
            ready = [
                Candidate(
                    r.run_id,
                    r.task_id,
                    r.effective_priority or 0,
                    r.scheduled_at,
                    r.created_seq or 0,
                    model.constraints[r.task_id].concurrency_key,
                )
                for r in model.in_state(RunState.READY)
            ]
            picked = selector.select(ready, rng.randint(1, 4), model.held_keys())
            model.apply(plan_dispatch(picked, "w", now, 30_000))
        elif op == "finish":
            running = model.in_state(RunState.RUNNING)
            if running:
                run = rng.choice(running)
                c = model.constraints[run.task_id]
                model.apply(plan_finish(run, c, outcome, now, rng=rng))
        else:
            pairs = [
                (r, model.constraints[r.task_id])
                for s in (RunState.LEASED, RunState.RUNNING)
                for r in model.in_state(s)
            ]
            model.apply(plan_expiry_sweep(pairs, now, rng, ordered=False))
        clock.advance(advance)
        # Invariants (Model.apply also re-derives the key holders, raising on a clash).
        holders: dict[str, int] = {}
        for r in model.runs.values():
            c = model.constraints[r.task_id]
            if c.concurrency_key and holds_key(r.state, c.hold_policy):
                holders[c.concurrency_key] = holders.get(c.concurrency_key, 0) + 1
        assert all(v == 1 for v in holders.values())
        for r in model.runs.values():
            assert r.attempt_count <= model.constraints[r.task_id].max_attempts
    bound = sum(count * (c.max_attempts + 40) for c, count, _ in mix)  # suspensions add retries
    assert model.attempts_started <= bound
    counted = sum(
        1
        for r in model.runs.values()
        for a in r.attempts
        if a.outcome is not AttemptOutcome.SUSPENDED
    )
    assert counted <= sum(count * c.max_attempts for c, count, _ in mix)
