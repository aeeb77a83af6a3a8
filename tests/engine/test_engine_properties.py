"""Hypothesis properties of the engine end to end: the retry cap and the concurrency-key gate
hold for random task mixes, random outcomes, abandoned attempts and clock jumps."""

from __future__ import annotations

import contextlib
import random
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fake_authority import FakeAuthority
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actionqueue.core import (
    AttemptOutcome,
    Backoff,
    DurabilityPolicy,
    HoldPolicy,
    RunId,
    RunPolicy,
    RunState,
    TaskConstraints,
    TaskId,
    TaskMetadata,
    TaskSpec,
)
from actionqueue.engine import Engine, ManualClock
from actionqueue.errors import CommandRejectedError
from conftest import T0, open_real, real_available

tasks = st.lists(
    st.tuples(
        st.integers(1, 3),  # runs (repeat count)
        st.integers(1, 3),  # max_attempts
        st.sampled_from([None, "a", "b"]),  # concurrency key
        st.sampled_from(list(HoldPolicy)),
        st.integers(-2, 2),  # priority
    ),
    min_size=1,
    max_size=8,
)
OUTCOMES = [
    AttemptOutcome.SUCCESS,
    AttemptOutcome.RETRYABLE_FAILURE,
    AttemptOutcome.TERMINAL_FAILURE,
    AttemptOutcome.TIMEOUT,
    AttemptOutcome.SUSPENDED,
    None,  # abandoned: the worker vanished, the lease will expire
]


def _held_keys_ok(auth: Any, keys: dict[TaskId, str | None]) -> None:
    in_flight: Counter[str] = Counter()
    for state in (RunState.LEASED, RunState.RUNNING):
        for tid in keys:
            for r in auth.runs_for_task(tid):
                key = keys[tid]
                if r.state is state and key is not None:
                    in_flight[key] += 1
    assert all(n <= 1 for n in in_flight.values()), in_flight


def _scenario(
    auth: Any, mix: list[tuple[int, int, str | None, HoldPolicy, int]], seed: int
) -> None:
    rng = random.Random(seed)
    clock = ManualClock(T0)
    engine = Engine(
        auth,
        clock,
        owner="w",
        rng=rng,
        default_lease_ms=1_000,
        durability=DurabilityPolicy.DEFERRED,
    )
    limits: dict[TaskId, int] = {}
    keys: dict[TaskId, str | None] = {}
    runs = 0
    bound = 0
    for count, attempts, key, hold, prio in mix:
        spec = TaskSpec(
            TaskId.new(),
            b"",
            RunPolicy.repeat(count, rng.randint(1, 500)),
            TaskConstraints(
                max_attempts=attempts,
                concurrency_key=key,
                hold_policy=hold,
                retry=Backoff.fixed(rng.randint(0, 300)),
            ),
            TaskMetadata(priority=prio),
        )
        engine.submit(spec)
        limits[spec.task_id] = attempts
        keys[spec.task_id] = key
        runs += count
        bound += count * attempts
    dispatched: Counter[RunId] = Counter()
    suspended: Counter[RunId] = Counter()
    task_of: dict[RunId, TaskId] = {}
    for _ in range(200):
        for d in engine.dispatch_next(limit=rng.randint(1, 4)):
            dispatched[d.run_id] += 1
            task_of[d.run_id] = d.task_id
            _held_keys_ok(auth, keys)
            outcome = rng.choice(OUTCOMES)
            if outcome is None:
                continue
            if outcome is AttemptOutcome.SUSPENDED:
                suspended[d.run_id] += 1
            with contextlib.suppress(CommandRejectedError):  # swept meanwhile: fine
                engine.finish_attempt(d.run_id, d.attempt_id, outcome)
        for rid in list(suspended):
            run = engine.get_run(rid)
            if run is not None and run.state is RunState.SUSPENDED and rng.random() < 0.5:
                engine.retry_now(rid)
        step = rng.choice([0, 1, 50, 300, 1_000, 5_000])
        if rng.random() < 0.05:
            clock.set(max(0, clock.now() - 2_000))  # the clock moves back now and then
        else:
            clock.advance(step)
        _held_keys_ok(auth, keys)
    # Retry cap: counted attempts never exceed max_attempts (Suspended ones are given back).
    for rid, n in dispatched.items():
        assert n - suspended[rid] <= limits[task_of[rid]]
    # dispatches (counted ones) <= runs x max_attempts, over the whole mix.
    assert sum(dispatched.values()) - sum(suspended.values()) <= bound


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks, st.integers(0, 2**32))
def test_retry_cap_and_key_gate_fake(mix: Any, seed: int) -> None:
    _scenario(FakeAuthority(), mix, seed)


@pytest.mark.skipif(not real_available(), reason="the Rust authority is not available yet")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks, st.integers(0, 2**32))
def test_retry_cap_and_key_gate_real(mix: Any, seed: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        auth = open_real(Path(d) / "data")
        try:
            _scenario(auth, mix, seed)
        finally:
            auth.close()
