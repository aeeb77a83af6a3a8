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
