"""``submit_many`` builds its specs from a per-call template: the same specs, the same
refusals, as checking each task on its own."""

from __future__ import annotations

from typing import Any

import pytest
from rt_helpers import MakeQueue

from actionqueue.engine import ManualClock
from actionqueue.errors import UnknownHandlerError, ValidationError, WrongTypeError

pytestmark = pytest.mark.timeout(60)


def test_template_specs_match_the_checked_path(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(clock=clock)
    q.register("echo", lambda ctx, payload: payload, max_attempts=2, priority=4)
    fast = q.submit_many("echo", [b"a", b"b"], tags=["t"], content_type="application/octet-stream")
    mixed = q.submit_many("echo", [b"raw", {"json": 1}, bytearray(b"ba")])
    single = q.submit("echo", b"one", dedupe_key="k")
    specs = [q.engine.get_task(t).spec for t in (*fast, *mixed, single)]  # type: ignore[union-attr]
    assert [s.payload.data for s in specs] == [b"a", b"b", b"raw", b'{"json":1}', b"ba", b"one"]
    assert [s.payload.content_type for s in specs] == [
        "application/octet-stream",
        "application/octet-stream",
        None,
        "application/json",
        None,
        None,
    ]
    assert {s.handler for s in specs} == {"echo"}
    assert {s.constraints.max_attempts for s in specs} == {2}
    assert specs[0].metadata.tags == ("t",)
    assert specs[0].metadata.priority == 4
    assert specs[-1].dedupe_key == "k"
    q.run_until_idle()
    assert q.result(fast[0]) == b"a"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"content_type": " "}, ValidationError),
        ({"content_type": 3}, WrongTypeError),
        ({"content_type": "text/plain\nX-Forged: 1"}, ValidationError),
    ],
)
def test_template_refuses_what_each_task_would(
    make_queue: MakeQueue, clock: ManualClock, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    q = make_queue(clock=clock)
    q.register("echo", lambda ctx, payload: payload)
    with pytest.raises(error):
        q.submit_many("echo", [b"a"], **kwargs)
    assert q.submit_many("echo", [], **kwargs) == []  # nothing to refuse, as before
    assert sum(q.stats()["runs"].values()) == 0


def test_plain_submits_reuse_a_template_until_the_handler_is_registered_again(
    make_queue: MakeQueue, clock: ManualClock
) -> None:
    q = make_queue(clock=clock)
    q.register("echo", lambda ctx, payload: payload, max_attempts=2, priority=1)
    a, b = q.submit("echo", b"a"), q.submit("echo", {"b": 1})
    (c,) = q.submit_many("echo", [b"c"])
    specs = [q.engine.get_task(t).spec for t in (a, b, c)]  # type: ignore[union-attr]
    assert {(s.constraints.max_attempts, s.metadata.priority) for s in specs} == {(2, 1)}
    assert specs[1].payload.content_type == "application/json"
    # Options of the call win over the cached template's (which they bypass).
    d = q.submit("echo", b"d", max_attempts=5, priority=9, tags=["x"])
    spec_d = q.engine.get_task(d).spec  # type: ignore[union-attr]
    assert (spec_d.constraints.max_attempts, spec_d.metadata.priority) == (5, 9)
    assert spec_d.metadata.tags == ("x",)
    # A new registration under the name: the next plain submit uses its defaults.
    q.register("echo", lambda ctx, payload: payload, replace=True, max_attempts=7)
    e = q.submit("echo", b"e")
    spec_e = q.engine.get_task(e).spec  # type: ignore[union-attr]
    assert (spec_e.constraints.max_attempts, spec_e.metadata.priority) == (7, 0)
    # Unregistered: refused, or taken with allow_unregistered (not cached either way).
    q.handlers.unregister("echo")
    with pytest.raises(UnknownHandlerError):
        q.submit("echo", b"f")
    f = q.submit("echo", b"f", allow_unregistered=True)
    assert q.engine.get_task(f).spec.constraints.max_attempts == 1  # type: ignore[union-attr]
    # With a task id or a dedupe key the spec is checked in full.
    with pytest.raises(ValidationError):
        q.submit("echo", b"g", dedupe_key="", allow_unregistered=True)


def test_engine_template_cache_survives_prune(make_queue: MakeQueue, clock: ManualClock) -> None:
    q = make_queue(clock=clock)
    q.register("echo", lambda ctx, payload: payload)
    first = q.submit_many("echo", [b"a", b"b"])
    q.run_until_idle()
    clock.advance(10_000)
    q.prune(older_than=1)
    second = q.submit_many("echo", [b"c"])
    q.run_until_idle()
    assert q.result(second[0]) == b"c"
    assert q.engine.get_task(first[0]) is None
