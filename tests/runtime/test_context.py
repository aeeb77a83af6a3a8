"""The handler context: facts, cancel signal, heartbeat, progress, logging."""

from __future__ import annotations

import logging
import pickle

import pytest
from rt_helpers import snapshot

from actionqueue.runtime.api import Cancelled
from actionqueue.runtime.context import CancelSignal, HandlerContext, RemoteContext


def test_facts_and_ids() -> None:
    snap = snapshot(attempt=3, max_attempts=3, timeout=2.0)
    ctx = HandlerContext(snap, {"x": 1})
    assert str(ctx.run_id) == snap.run_id
    assert str(ctx.task_id) == snap.task_id
    assert str(ctx.attempt_id) == snap.attempt_id
    assert ctx.is_last_attempt
    assert ctx.payload == {"x": 1}
    left = ctx.time_left()
    assert left is not None
    assert 0 < left <= 2.0
    assert HandlerContext(snapshot()).time_left() is None


def test_cancel_signal_is_one_shot_and_calls_back() -> None:
    sig = CancelSignal()
    seen: list[str] = []
    sig.add_callback(seen.append)
    assert not sig
    assert sig.request("timeout")
    assert not sig.request("canceled")  # first request kept
    assert not sig.set("canceled")
    assert (sig.reason, sig.requested) == ("timeout", "timeout")
    assert seen == ["timeout"]
    sig.add_callback(seen.append)  # already requested: called at once
    assert seen == ["timeout", "timeout"]
    assert sig.wait(0)


def test_a_handler_setting_the_signal_is_not_a_runtime_request() -> None:
    sig = CancelSignal()
    seen: list[str] = []
    sig.add_callback(seen.append)
    assert sig.set("shutdown")  # the handler's own use (stopping helpers it started)
    assert sig.is_set()
    assert sig.wait(0)
    assert (sig.reason, sig.requested, seen) == ("shutdown", None, [])
    assert sig.request("canceled")  # the runtime's request still counts, and calls back
    assert (sig.reason, sig.requested, seen) == ("shutdown", "canceled", ["canceled"])


def test_raise_if_cancelled() -> None:
    ctx = HandlerContext(snapshot())
    ctx.raise_if_cancelled()
    ctx.cancelled.set("canceled")
    with pytest.raises(Cancelled, match="canceled"):
        ctx.raise_if_cancelled()


def test_heartbeat_and_progress_call_back() -> None:
    beats: list[int] = []
    progress: list[object] = []
    ctx = HandlerContext(snapshot(), heartbeat=lambda: beats.append(1), on_progress=progress.append)
    ctx.heartbeat()
    ctx.report_progress(0.5)
    ctx.report_progress("half way")
    assert beats == [1]
    assert progress == [0.5, "half way"]
    assert ctx.progress == "half way"
    with pytest.raises(TypeError):
        ctx.report_progress(True)


def test_logger_carries_run_and_attempt_ids(caplog: pytest.LogCaptureFixture) -> None:
    ctx = HandlerContext(snapshot())
    with caplog.at_level(logging.INFO, logger="actionqueue.handler"):
        ctx.log.info("hello", extra={"custom": 1})
    rec = caplog.records[-1]
    assert rec.run_id == ctx.snapshot.run_id  # type: ignore[attr-defined]
    assert rec.attempt_id == ctx.snapshot.attempt_id  # type: ignore[attr-defined]
    assert rec.custom == 1  # type: ignore[attr-defined]


def test_remote_context_is_built_from_a_picklable_snapshot() -> None:
    snap = pickle.loads(pickle.dumps(snapshot(attempt=2)))
    ctx = RemoteContext(snap, b"p")
    ctx.heartbeat()  # no-op
    ctx.report_progress(0.1)
    assert ctx.attempt == 2
    assert ctx.payload == b"p"


def test_remote_progress_is_checked_like_local_progress() -> None:
    """BUG: a remote context accepted any object as progress (a local one raises TypeError)."""
    ctx = RemoteContext(snapshot())
    for bad in (object(), True, None, [0.5]):
        with pytest.raises(TypeError, match="progress must be"):
            ctx.report_progress(bad)  # type: ignore[arg-type]
    ctx.report_progress(0.5)
    ctx.report_progress("half way")
    assert ctx.progress == "half way"


BAD_TYPES = [True, False, None, object(), [0.5], b"half"]
OUT_OF_RANGE = [1.5, -3, -0.0001, 1.0000001, float("nan"), float("inf"), -float("inf"), 10**30]


@pytest.mark.parametrize("make", [HandlerContext, RemoteContext])
def test_progress_is_a_fraction_in_0_1_or_a_bounded_message(make: type) -> None:
    """BUG: only the type was checked, so 1.5, -3, NaN, inf, 10**30 and a 1 MB "short
    message" were kept and returned by q.progress(). The same rule holds for the local and the
    remote context (one check)."""
    from actionqueue.errors import ValidationError, WrongTypeError
    from actionqueue.runtime.context import PROGRESS_MESSAGE_MAX

    ctx = make(snapshot())
    for bad in BAD_TYPES:
        with pytest.raises(WrongTypeError, match="progress must be a fraction"):
            ctx.report_progress(bad)
    for bad in OUT_OF_RANGE:
        with pytest.raises(ValidationError, match=r"progress must be a fraction in \[0, 1\]"):
            ctx.report_progress(bad)
    with pytest.raises(ValidationError, match=f"at most {PROGRESS_MESSAGE_MAX} characters"):
        ctx.report_progress("m" * (PROGRESS_MESSAGE_MAX + 1))
    with pytest.raises(ValidationError, match="got <int"):
        ctx.report_progress(10**10_000)  # too long for repr(): named by its type instead
    assert ctx.progress is None  # nothing refused was kept
    for good, kept in [(0, 0.0), (1, 1.0), (0.25, 0.25), ("", ""), ("m" * 1000, "m" * 1000)]:
        ctx.report_progress(good)
        assert ctx.progress == kept
        assert type(ctx.progress) is type(kept)
