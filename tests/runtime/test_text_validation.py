"""Text the log cannot hold (lone surrogates): a caller's argument is refused with a typed
error naming it; a handler's exception text is kept, escaped."""

from __future__ import annotations

from typing import Any

import pytest
from rt_helpers import MakeQueue

from actionqueue import RunState
from actionqueue.errors import RunFailedError, ValidationError

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"dedupe_key": "\ud800"}, "dedupe_key"),
        ({"tags": ["ok", "\udc00"]}, "tag"),
        ({"concurrency_key": "k\udc00"}, "concurrency_key"),
    ],
)
def test_submit_refuses_a_lone_surrogate_naming_the_argument(
    make_queue: MakeQueue, kw: dict[str, Any], field: str
) -> None:
    q = make_queue()
    q.register("h", lambda ctx, p: p)
    before = q.stats()["runs"]
    with pytest.raises(ValidationError, match=rf"^{field} must be valid Unicode text.*U\+D[8C]00"):
        q.submit("h", "x", **kw)
    assert q.stats()["runs"] == before


def test_a_handler_name_with_a_lone_surrogate_is_refused_at_registration(
    make_queue: MakeQueue,
) -> None:
    q = make_queue()
    with pytest.raises(ValidationError, match=r"handler name .* lone surrogate U\+D800 at index 0"):

        @q.handler("\ud800")
        def h(ctx: Any, p: Any) -> Any:
            return p


def test_an_exception_message_with_a_lone_surrogate_fails_the_run_escaped(
    make_queue: MakeQueue,
) -> None:
    q = make_queue()

    def bad(ctx: Any, p: Any) -> None:
        raise ValueError("bad \ud800 text")

    q.register("bad", bad)
    tid = q.submit("bad", None)
    q.run_until_idle()
    (run,) = q.runs(tid)
    assert run.state is RunState.FAILED
    error = run.attempts[0].error
    assert error is not None
    assert "ValueError: bad \\ud800 text" in error
    with pytest.raises(RunFailedError):
        q.result(tid, timeout=5)
