"""``submit_many`` builds its specs from a per-call template: the same specs, the same
refusals, as checking each task on its own."""

from __future__ import annotations

from typing import Any

import pytest
from rt_helpers import MakeQueue

from actionqueue.engine import ManualClock
from actionqueue.errors import ValidationError, WrongTypeError

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
