"""``Engine.submit_uniform`` (one template, many payloads, no spec per task) creates what
``submit_many`` creates from one spec per payload and the tick at the same instant then
promotes (``submit_uniform`` creates due, on-time runs Ready in its own record): the same specs
but for the ids, the same runs, and the same states after the same dispatches — for random
templates and payloads."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from fake_authority import FakeAuthority
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actionqueue.core import (
    AttemptOutcome,
    RunPolicy,
    TaskConstraints,
    TaskId,
    TaskMetadata,
    TaskPayload,
    TaskSpec,
)
from actionqueue.engine import Engine, ManualClock
from conftest import T0, open_real, real_available

policies = st.one_of(
    st.just(RunPolicy.once()),
    st.builds(RunPolicy.repeat, st.integers(1, 4), st.integers(1, 60_000)),
    st.sampled_from(["*/5 * * * *", "0 9 * * MON"]).map(RunPolicy.cron),
)
templates = st.builds(
    lambda policy, attempts, key, priority, tags, handler: TaskSpec(
        TaskId.new(),
        b"",
        policy,
        TaskConstraints(max_attempts=attempts, concurrency_key=key),
        TaskMetadata(priority=priority, tags=tags),
        handler=handler,
    ),
    policies,
    st.integers(1, 3),
    st.sampled_from([None, "k"]),
    st.integers(-3, 3),
    st.sampled_from([(), ("a",), ("a", "b")]),
    st.sampled_from([None, "h"]),
)
payloads = st.lists(
    st.tuples(st.binary(max_size=40), st.sampled_from([None, "application/json", "text/plain"])),
    max_size=6,
)


def _engine(real: bool, tmp: Path) -> tuple[Engine, ManualClock, Any]:
    clock = ManualClock(T0)
    auth: Any = open_real(tmp) if real else FakeAuthority()
    return Engine(auth, clock, owner="w1", rng=random.Random(1)), clock, auth


def _picture(e: Engine, ids: list[TaskId]) -> list[Any]:
    out = []
    for tid in ids:
        rec = e.get_task(tid)
        assert rec is not None
        s = rec.spec
        runs = sorted(e.runs_for_task(tid), key=lambda r: r.ordinal)
        out.append(
            (
                s.payload,
                s.run_policy,
                s.constraints,
                s.metadata,
                s.handler,
                s.dedupe_key,
                rec.origin,
                [(r.ordinal, r.scheduled_at, r.state) for r in runs],
            )
        )
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(templates, payloads, st.integers(0, 3_600_000), st.booleans())
def test_uniform_equals_one_spec_per_payload(
    template: TaskSpec, items: list[tuple[bytes, str | None]], delay: int, real: bool
) -> None:
    real = real and real_available()
    with tempfile.TemporaryDirectory() as a_dir, tempfile.TemporaryDirectory() as b_dir:
        a, a_clock, a_auth = _engine(real, Path(a_dir) / "a")
        b, b_clock, b_auth = _engine(real, Path(b_dir) / "b")
        try:
            origin = T0 + delay
            got = a.submit_uniform(template, items, origin=origin)
            specs = [
                TaskSpec(
                    TaskId.new(),
                    TaskPayload(d, ct),
                    template.run_policy,
                    template.constraints,
                    template.metadata,
                    handler=template.handler,
                )
                for d, ct in items
            ]
            want = b.submit_many(specs, origin=origin)
            a.tick()  # nothing left to promote at T0 but cron windows
            b.tick()
            assert len(got) == len(want) == len(items)
            assert _picture(a, got) == _picture(b, want)
            # The same dispatches and outcomes leave the same states.
            for clock in (a_clock, b_clock):
                clock.set(origin + 10 * 60_000)
            for e in (a, b):
                for _ in range(3):
                    for d in e.dispatch_next(limit=100):
                        e.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.SUCCESS)
            assert _picture(a, got) == _picture(b, want)
        finally:
            for auth in (a_auth, b_auth):
                close = getattr(auth, "close", None)
                if callable(close):
                    close()
