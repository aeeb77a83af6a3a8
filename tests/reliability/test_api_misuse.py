"""API misuse from Python, through ``actionqueue.ActionQueue`` (issue 9, "hostile input").

Every case checks three things: a typed :class:`~actionqueue.errors.ActionQueueError` (also a
``TypeError`` / ``ValueError`` where natural) whose message names the argument and the
offending value; **nothing written** (the WAL's append and byte counters and the run counts are
unchanged, and a failed ``open`` creates nothing on disk); and the queue keeps working
afterwards. The rules are summarised in ``docs/runtime.md`` ("Misuse and errors").
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import actionqueue as aq
from actionqueue import RunState
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.errors import (
    ActionQueueError,
    ClosedError,
    DataDirError,
    DataDirLockedError,
    DuplicateHandlerError,
    InvalidIdError,
    PayloadError,
    RecordTooLargeError,
    ReentrantCallError,
    UnknownHandlerError,
    ValidationError,
    WrongTypeError,
)

pytestmark = pytest.mark.timeout(60)

Call = Callable[[aq.ActionQueue], object]

SMALL_RECORD = 4096


def case(name: str, call: Call, error: type[BaseException], *fragments: str) -> Any:
    """One misuse: ``call(q)`` must raise ``error`` with every fragment in its message."""
    return pytest.param(call, error, fragments, id=name)


def _ok(ctx: Any, payload: Any) -> Any:
    return payload


@pytest.fixture
def q(fast_tmp: Path) -> Iterator[aq.ActionQueue]:
    queue = aq.ActionQueue.open(fast_tmp / "q", storage_options={"max_record_size": SMALL_RECORD})
    queue.register("ok", _ok)
    try:
        yield queue
    finally:
        queue.close(drain=False, timeout=5)


def footprint(q: aq.ActionQueue) -> tuple[object, ...]:
    """What a write would change: WAL appends and bytes, commands accepted, runs by state."""
    s = q.authority.stats()
    return (s.wal_appends, s.wal_bytes, s.submits, s.events, tuple(q.stats()["runs"].items()))


@contextlib.contextmanager
def nothing_written(q: aq.ActionQueue) -> Iterator[None]:
    before = footprint(q)
    yield
    assert footprint(q) == before, "a refused call wrote something"


def still_works(q: aq.ActionQueue, payload: Any = ("still", "works")) -> None:
    payload = list(payload) if isinstance(payload, tuple) else payload
    tid = q.submit("ok", payload)
    q.run_until_idle(timeout=20)
    assert q.result(tid, timeout=20) == payload


def refused(
    q: aq.ActionQueue,
    call: Call,
    error: type[BaseException],
    *fragments: str,
) -> BaseException:
    """``call(q)`` raises ``error`` naming every fragment, writes nothing; q still works."""
    with nothing_written(q), pytest.raises(error) as info:
        call(q)
    assert isinstance(info.value, ActionQueueError)
    for f in fragments:
        assert f in str(info.value), f"{f!r} not in {str(info.value)!r}"
    still_works(q)
    return info.value


# --- wrong types and values at submit --------------------------------------------------------

NAIVE = datetime(2030, 1, 1)
_circular: list[Any] = []
_circular.append(_circular)

SUBMIT_MISUSE = [
    case("handler-int", lambda q: q.submit(5), WrongTypeError, "handler", "5"),
    case("handler-none", lambda q: q.submit(None), WrongTypeError, "handler", "None"),
    case("handler-bytes", lambda q: q.submit(b"ok"), WrongTypeError, "handler", "b'ok'"),
    case("handler-empty", lambda q: q.submit("  "), ValidationError, "handler", "'  '"),
    case(
        "priority-str",
        lambda q: q.submit("ok", priority="high"),
        WrongTypeError,
        "priority",
        "'high'",
    ),
    case(
        "priority-float", lambda q: q.submit("ok", priority=1.5), WrongTypeError, "priority", "1.5"
    ),
    case(
        "priority-bool", lambda q: q.submit("ok", priority=True), WrongTypeError, "priority", "True"
    ),
    case(
        "priority-over-i32",
        lambda q: q.submit("ok", priority=2**31),
        ValidationError,
        "priority",
        str(2**31),
    ),
    case(
        "priority-under-i32",
        lambda q: q.submit("ok", priority=-(2**31) - 1),
        ValidationError,
        "priority",
        str(-(2**31) - 1),
    ),
    case("delay-str", lambda q: q.submit("ok", delay="5"), WrongTypeError, "delay", "'5'"),
    case("delay-negative", lambda q: q.submit("ok", delay=-1), ValidationError, "delay", "-1"),
    case(
        "delay-negative-td",
        lambda q: q.submit("ok", delay=timedelta(seconds=-3)),
        ValidationError,
        "delay",
        "days=-1",
    ),
    case("delay-nan", lambda q: q.submit("ok", delay=math.nan), ValidationError, "delay", "nan"),
    case(
        "delay-datetime",
        lambda q: q.submit("ok", delay=NAIVE),
        ValidationError,
        "delay",
        "datetime",
    ),
    case("at-naive", lambda q: q.submit("ok", at=NAIVE), ValidationError, "at", "naive", "2030"),
    case("at-str", lambda q: q.submit("ok", at="2030-01-01"), WrongTypeError, "at", "'2030-01-01'"),
    case(
        "at-timedelta", lambda q: q.submit("ok", at=timedelta(1)), WrongTypeError, "at", "timedelta"
    ),
    case("at-before-epoch", lambda q: q.submit("ok", at=-5), ValidationError, "at", "-5"),
    case("at-inf", lambda q: q.submit("ok", at=math.inf), ValidationError, "at", "inf"),
    case(
        "at-and-delay", lambda q: q.submit("ok", at=1e9, delay=1), ValidationError, "at=", "delay="
    ),
    case(
        "policy-str", lambda q: q.submit("ok", policy="daily"), WrongTypeError, "policy", "'daily'"
    ),
    case(
        "policy-class",
        lambda q: q.submit("ok", policy=aq.RunPolicy),
        WrongTypeError,
        "policy",
        "RunPolicy",
    ),
    case(
        "tags-plain-str",
        lambda q: q.submit("ok", tags="urgent"),
        WrongTypeError,
        "tags",
        "'urgent'",
    ),
    case("tags-int", lambda q: q.submit("ok", tags=5), WrongTypeError, "tags", "5"),
    case("tag-int", lambda q: q.submit("ok", tags=["a", 1]), WrongTypeError, "tag", "1"),
    case("tag-empty", lambda q: q.submit("ok", tags=[""]), ValidationError, "tag", "''"),
    case("dedupe-int", lambda q: q.submit("ok", dedupe_key=5), WrongTypeError, "dedupe_key", "5"),
    case(
        "dedupe-empty", lambda q: q.submit("ok", dedupe_key=""), ValidationError, "dedupe_key", "''"
    ),
    case(
        "description-int",
        lambda q: q.submit("ok", description=5),
        WrongTypeError,
        "description",
        "5",
    ),
    case(
        "content-type-int",
        lambda q: q.submit("ok", b"x", content_type=5),
        WrongTypeError,
        "content_type",
        "5",
    ),
    case(
        "content-type-unknown",
        lambda q: q.submit("ok", {"a": 1}, content_type="x/y"),
        PayloadError,
        "'x/y'",
    ),
    case(
        "durability-str",
        lambda q: q.submit("ok", durability="sometimes"),
        ValidationError,
        "durability",
        "'sometimes'",
    ),
    case(
        "durability-int", lambda q: q.submit("ok", durability=1), WrongTypeError, "durability", "1"
    ),
    case(
        "task-id-garbage",
        lambda q: q.submit("ok", task_id="abc"),
        InvalidIdError,
        "task_id",
        "'abc'",
    ),
    case(
        "max-attempts-0",
        lambda q: q.submit("ok", max_attempts=0),
        ValidationError,
        "max_attempts",
        "0",
    ),
    case(
        "max-attempts-str",
        lambda q: q.submit("ok", max_attempts="3"),
        WrongTypeError,
        "max_attempts",
        "'3'",
    ),
    case(
        "max-attempts-float",
        lambda q: q.submit("ok", max_attempts=2.0),
        WrongTypeError,
        "max_attempts",
        "2.0",
    ),
    case("timeout-0", lambda q: q.submit("ok", timeout=0), ValidationError, "timeout", "0"),
    case(
        "timeout-negative", lambda q: q.submit("ok", timeout=-1), ValidationError, "timeout", "-1"
    ),
    case("timeout-str", lambda q: q.submit("ok", timeout="30"), WrongTypeError, "timeout", "'30'"),
    case(
        "concurrency-key-empty",
        lambda q: q.submit("ok", concurrency_key=""),
        ValidationError,
        "concurrency_key",
        "''",
    ),
    case(
        "concurrency-key-int",
        lambda q: q.submit("ok", concurrency_key=7),
        WrongTypeError,
        "concurrency_key",
        "7",
    ),
    case(
        "backoff-number",
        lambda q: q.submit("ok", backoff=5),
        WrongTypeError,
        "backoff",
        "5",
        "aq.exponential",
    ),
    case(
        "retry-on-str",
        lambda q: q.submit("ok", retry_on="always"),
        WrongTypeError,
        "retry_on",
        "'always'",
    ),
    case("terminal-int", lambda q: q.submit("ok", terminal=5), WrongTypeError, "terminal", "5"),
    case(
        "terminal-item",
        lambda q: q.submit("ok", terminal=[KeyError, 5]),
        WrongTypeError,
        "terminal",
        "5",
    ),
    case(
        "hold-policy",
        lambda q: q.submit("ok", hold_policy="never"),
        ValidationError,
        "hold_policy",
        "'never'",
    ),
    case(
        "unknown-override",
        lambda q: q.submit("ok", max_atempts=3),
        WrongTypeError,
        "max_atempts",
        "max_attempts",
    ),
    case("codec-override", lambda q: q.submit("ok", codec="text/plain"), WrongTypeError, "codec"),
    case(
        "allow-unregistered-str",
        lambda q: q.submit("nobody", allow_unregistered="yes"),
        WrongTypeError,
        "allow_unregistered",
        "'yes'",
    ),
    # payloads the JSON codec cannot encode: PayloadError naming the type
    case("payload-object", lambda q: q.submit("ok", object()), PayloadError, "object", "JSON"),
    case("payload-set", lambda q: q.submit("ok", {1, 2}), PayloadError, "set", "{1, 2}"),
    case("payload-nan", lambda q: q.submit("ok", {"x": math.nan}), PayloadError, "dict", "nan"),
    case("payload-inf", lambda q: q.submit("ok", math.inf), PayloadError, "float", "inf"),
    case("payload-huge-int", lambda q: q.submit("ok", 10**5000), PayloadError, "int"),
    case("payload-circular", lambda q: q.submit("ok", _circular), PayloadError, "list", "Circular"),
    case("payload-tuple-key", lambda q: q.submit("ok", {(1, 2): 3}), PayloadError, "dict", "keys"),
    case(
        "payload-surrogate", lambda q: q.submit("ok", "\ud800"), PayloadError, "str", "surrogates"
    ),
    case(
        "payload-text-codec",
        lambda q: q.submit("ok", 5, content_type=aq.runtime.codecs.TEXT_TYPE),
        WrongTypeError,
        "text codec",
        "int",
    ),
    # submit_many: all or nothing
    case("many-str", lambda q: q.submit_many("ok", "abc"), WrongTypeError, "payloads", "'abc'"),
    case("many-bytes", lambda q: q.submit_many("ok", b"abc"), WrongTypeError, "payloads", "b'abc'"),
    case("many-dict", lambda q: q.submit_many("ok", {"a": 1}), WrongTypeError, "payloads", "dict"),
    case("many-int", lambda q: q.submit_many("ok", 5), WrongTypeError, "payloads", "5"),
    case("many-one-bad", lambda q: q.submit_many("ok", [1, 2, object()]), PayloadError, "object"),
    case(
        "many-tags-str", lambda q: q.submit_many("ok", [1], tags="x"), WrongTypeError, "tags", "'x'"
    ),
    case(
        "many-bad-override",
        lambda q: q.submit_many("ok", [1], max_attempts=0),
        ValidationError,
        "max_attempts",
        "0",
    ),
    case(
        "many-unknown-handler",
        lambda q: q.submit_many("nobody", [1, 2]),
        UnknownHandlerError,
        "'nobody'",
    ),
    # asubmit raises the same errors through asyncio
    case(
        "asubmit-priority",
        lambda q: asyncio.run(q.asubmit("ok", priority="x")),
        WrongTypeError,
        "priority",
        "'x'",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "fragments"),
    SUBMIT_MISUSE,
)
def test_submit_misuse_is_refused_and_writes_nothing(
    q: aq.ActionQueue, call: Call, error: type[BaseException], fragments: tuple[str, ...]
) -> None:
    refused(q, call, error, *fragments)


def test_builtin_bases_let_callers_catch_naturally(q: aq.ActionQueue) -> None:
    with pytest.raises(TypeError):
        q.submit("ok", priority="high")
    with pytest.raises(ValueError, match="priority"):
        q.submit("ok", priority=2**40)
    with pytest.raises(LookupError):
        q.submit("nobody")
    with pytest.raises(ValueError, match="JSON"):
        q.submit("ok", {"x": math.nan})
    still_works(q)


# --- other calls with bad arguments ---------------------------------------------------------

OTHER_MISUSE = [
    case("get-task-int", lambda q: q.get_task(5), WrongTypeError, "task_id", "5"),
    case("get-task-garbage", lambda q: q.get_task("zzz"), InvalidIdError, "task_id", "'zzz'"),
    case("get-run-garbage", lambda q: q.get_run("zzz"), InvalidIdError, "run_id", "'zzz'"),
    case("cancel-garbage", lambda q: q.cancel("zzz"), InvalidIdError, "task or run id", "'zzz'"),
    case("cancel-int", lambda q: q.cancel(5), WrongTypeError, "5"),
    case(
        "cancel-unknown",
        lambda q: q.cancel(str(aq.TaskId.new())),
        aq.errors.NotFoundError,
        "no task or run",
    ),
    case("retry-now-garbage", lambda q: q.retry_now("zzz"), InvalidIdError, "run_id", "'zzz'"),
    case(
        "retry-now-unknown",
        lambda q: q.retry_now(aq.RunId.new()),
        aq.errors.NotFoundError,
        "not known",
    ),
    case("wait-garbage", lambda q: q.wait("zzz"), InvalidIdError, "'zzz'"),
    case(
        "wait-timeout-str",
        lambda q: q.wait(q.submit("ok"), timeout="1"),
        WrongTypeError,
        "timeout",
        "'1'",
    ),
    case("result-int", lambda q: q.result(5), WrongTypeError, "5"),
    case(
        "list-runs-state",
        lambda q: q.list_runs(state="Bogus"),
        ValidationError,
        "'Bogus'",
        "Scheduled",
    ),
    case("list-runs-state-int", lambda q: q.list_runs(state=5), WrongTypeError, "state", "5"),
    case("list-runs-limit-neg", lambda q: q.list_runs(limit=-1), ValidationError, "limit", "-1"),
    case("list-runs-limit-str", lambda q: q.list_runs(limit="10"), WrongTypeError, "limit", "'10'"),
    case("list-runs-tag-int", lambda q: q.list_runs(tag=5), WrongTypeError, "tag", "5"),
    case(
        "run-until-idle-timeout",
        lambda q: q.run_until_idle(timeout="1"),
        WrongTypeError,
        "timeout",
        "'1'",
    ),
    case(
        "run-until-idle-timeout-neg",
        lambda q: q.run_until_idle(timeout=-1),
        ValidationError,
        "timeout",
        "-1",
    ),
    case(
        "run-until-idle-max-time",
        lambda q: q.run_until_idle(max_time="1"),
        WrongTypeError,
        "max_time",
        "'1'",
    ),
    case("stop-timeout", lambda q: q.stop(timeout="x"), WrongTypeError, "timeout", "'x'"),
    case("close-timeout", lambda q: q.close(timeout=math.nan), ValidationError, "timeout", "nan"),
    case("prune-str", lambda q: q.prune("old"), WrongTypeError, "older_than", "'old'"),
]


@pytest.mark.parametrize(
    ("call", "error", "fragments"),
    OTHER_MISUSE,
)
def test_other_calls_refuse_bad_arguments(
    q: aq.ActionQueue, call: Call, error: type[BaseException], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(error) as info:
        call(q)
    assert isinstance(info.value, ActionQueueError)
    for f in fragments:
        assert f in str(info.value), f"{f!r} not in {str(info.value)!r}"
    assert not q.closed
    still_works(q)


def test_list_runs_limit_zero_returns_nothing(q: aq.ActionQueue) -> None:
    q.submit_many("ok", [1, 2])
    assert q.list_runs(limit=0) == []
    assert len(q.list_runs(limit=1)) == 1


# --- handler registration -------------------------------------------------------------------

REGISTER_MISUSE = [
    case("name-int", lambda q: q.register(5, _ok), WrongTypeError, "handler name", "5"),
    case("name-empty", lambda q: q.register(" ", _ok), ValidationError, "handler name", "' '"),
    case("not-callable", lambda q: q.register("x", 5), WrongTypeError, "'x'", "callable", "5"),
    case(
        "duplicate",
        lambda q: q.register("ok", lambda c, p: None),
        DuplicateHandlerError,
        "'ok'",
        "replace=True",
    ),
    case(
        "max-attempts-0",
        lambda q: q.register("x", _ok, max_attempts=0),
        ValidationError,
        "max_attempts",
        "0",
    ),
    case(
        "timeout-negative",
        lambda q: q.register("x", _ok, timeout=-1),
        ValidationError,
        "timeout",
        "-1",
    ),
    case(
        "backoff-number", lambda q: q.register("x", _ok, backoff=1), WrongTypeError, "backoff", "1"
    ),
    case(
        "concurrency-key-empty",
        lambda q: q.register("x", _ok, concurrency_key=""),
        ValidationError,
        "concurrency_key",
    ),
    case(
        "priority-str",
        lambda q: q.register("x", _ok, priority="hi"),
        WrongTypeError,
        "priority",
        "'hi'",
    ),
    case(
        "priority-over-i32",
        lambda q: q.register("x", _ok, priority=2**40),
        ValidationError,
        "priority",
        str(2**40),
    ),
    case("codec-int", lambda q: q.register("x", _ok, codec=5), WrongTypeError, "codec", "5"),
    case("codec-unregistered", lambda q: q.register("x", _ok, codec="x/y"), PayloadError, "'x/y'"),
    case(
        "terminal-item",
        lambda q: q.register("x", _ok, terminal=[3]),
        WrongTypeError,
        "terminal",
        "3",
    ),
    case(
        "hold-policy",
        lambda q: q.register("x", _ok, hold_policy="nope"),
        ValidationError,
        "hold_policy",
        "'nope'",
    ),
    case(
        "unknown-option",
        lambda q: q.register("x", _ok, colour="red"),
        WrongTypeError,
        "colour",
        "max_attempts",
    ),
    # the decorator refuses at once, before there is a function to decorate
    case(
        "decorator-unknown-option", lambda q: q.handler("x", retries=3), WrongTypeError, "retries"
    ),
    case(
        "decorator-bad-option", lambda q: q.handler("x", timeout=0)(_ok), ValidationError, "timeout"
    ),
    case(
        "decorator-not-callable", lambda q: q.handler("x")(None), WrongTypeError, "callable", "None"
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "fragments"),
    REGISTER_MISUSE,
)
def test_registration_misuse_is_refused_and_changes_nothing(
    q: aq.ActionQueue, call: Call, error: type[BaseException], fragments: tuple[str, ...]
) -> None:
    before = q.handlers.names()
    entry = q.handlers.get("ok")
    refused(q, call, error, *fragments)
    assert q.handlers.names() == before
    assert q.handlers.get("ok") is entry


def test_replace_true_replaces_a_handler(q: aq.ActionQueue) -> None:
    q.register("ok", lambda ctx, payload: "replaced", replace=True)
    tid = q.submit("ok", 1)
    q.run_until_idle(timeout=20)
    assert q.result(tid) == "replaced"


# --- ActionQueue.open with bad arguments ----------------------------------------------------

OPEN_MISUSE: list[tuple[str, dict[str, Any], type[BaseException], tuple[str, ...]]] = [
    ("durability", {"durability": "sometimes"}, ValidationError, ("durability", "'sometimes'")),
    ("executor-name", {"executor": "fibers"}, ValidationError, ("executor", "'fibers'")),
    ("executor-type", {"executor": 5}, WrongTypeError, ("executor", "5")),
    ("max-workers-0", {"max_workers": 0}, ValidationError, ("max_workers", "0")),
    ("max-workers-negative", {"max_workers": -2}, ValidationError, ("max_workers", "-2")),
    ("max-workers-str", {"max_workers": "4"}, ValidationError, ("max_workers", "'4'")),
    ("max-workers-bool", {"max_workers": True}, ValidationError, ("max_workers", "True")),
    (
        "asyncio-max-workers-0",
        {"executor": "asyncio", "max_workers": 0},
        ValidationError,
        ("max_workers",),
    ),
    ("lease-0", {"lease": 0}, ValidationError, ("lease", "0")),
    ("lease-str", {"lease": "30"}, WrongTypeError, ("lease", "'30'")),
    ("sync-interval-negative", {"sync_interval": -1}, ValidationError, ("sync_interval", "-1")),
    ("sync-interval-str", {"sync_interval": "1"}, WrongTypeError, ("sync_interval", "'1'")),
    (
        "snapshot-on-close-str",
        {"snapshot_on_close": "no"},
        WrongTypeError,
        ("snapshot_on_close", "'no'"),
    ),
    (
        "allow-unregistered-int",
        {"allow_unregistered": 1},
        WrongTypeError,
        ("allow_unregistered", "1"),
    ),
    ("owner-empty", {"owner": ""}, ValidationError, ("owner", "''")),
    ("owner-int", {"owner": 5}, ValidationError, ("owner", "5")),
    ("clock", {"clock": 5}, WrongTypeError, ("clock", "5")),
    ("codecs", {"codecs": {}}, WrongTypeError, ("codecs", "{}")),
    ("handlers", {"handlers": {"ok": _ok}}, WrongTypeError, ("handlers",)),
    ("storage-options-type", {"storage_options": [1]}, WrongTypeError, ("storage_options", "[1]")),
    (
        "storage-option-unknown",
        {"storage_options": {"colour": 1}},
        WrongTypeError,
        ("'colour'", "max_record_size"),
    ),
    (
        "max-record-size-0",
        {"storage_options": {"max_record_size": 0}},
        ValidationError,
        ("max_record_size", "0"),
    ),
    (
        "max-record-size-negative",
        {"storage_options": {"max_record_size": -1}},
        ValidationError,
        ("max_record_size", "-1"),
    ),
    (
        "max-record-size-str",
        {"storage_options": {"max_record_size": "1MB"}},
        WrongTypeError,
        ("max_record_size", "'1MB'"),
    ),
    ("unknown-option", {"colour": "red"}, WrongTypeError, ("colour", "durability")),
]


@pytest.mark.parametrize(
    ("options", "error", "fragments"),
    [pytest.param(o, e, f, id=i) for i, o, e, f in OPEN_MISUSE],
)
def test_open_with_bad_arguments_creates_nothing(
    fast_tmp: Path, options: dict[str, Any], error: type[BaseException], fragments: tuple[str, ...]
) -> None:
    target = fast_tmp / "never-created"
    with pytest.raises(error) as info:
        aq.ActionQueue.open(target, **options)
    assert isinstance(info.value, ActionQueueError)
    for f in fragments:
        assert f in str(info.value), f"{f!r} not in {str(info.value)!r}"
    assert not target.exists(), "a refused open created the data directory"
    # the same directory opens fine with good arguments
    with aq.ActionQueue.open(target) as good:
        good.register("ok", _ok)
        still_works(good)


def test_open_with_a_bad_path_type(fast_tmp: Path) -> None:
    with pytest.raises(WrongTypeError, match=r"path .* got int 5"):
        aq.ActionQueue.open(5)
    assert list(fast_tmp.iterdir()) == []


def test_open_on_a_file_names_it_and_leaves_it_alone(fast_tmp: Path) -> None:
    f = fast_tmp / "data.txt"
    f.write_bytes(b"precious")
    with pytest.raises(DataDirError) as info:
        aq.ActionQueue.open(f)
    assert str(f) in str(info.value)
    assert isinstance(info.value, OSError)
    assert f.read_bytes() == b"precious"
    assert sorted(p.name for p in fast_tmp.iterdir()) == ["data.txt"]


# --- huge payloads --------------------------------------------------------------------------

HUGE: list[tuple[str, Call]] = [
    ("bytes-immediate", lambda q: q.submit("ok", b"x" * (SMALL_RECORD * 3))),
    ("bytes-deferred", lambda q: q.submit("ok", b"x" * (SMALL_RECORD * 3), durability="deferred")),
    ("json", lambda q: q.submit("ok", {"blob": "y" * (SMALL_RECORD * 2)})),
    ("description", lambda q: q.submit("ok", description="d" * SMALL_RECORD * 2)),
    ("tags", lambda q: q.submit("ok", tags=[f"tag-{i}" for i in range(1000)])),
    ("many-small-adding-up", lambda q: q.submit_many("ok", [b"z" * 500] * 20)),
    ("asubmit", lambda q: asyncio.run(q.asubmit("ok", b"x" * (SMALL_RECORD * 3)))),
]


@pytest.mark.parametrize("call", [pytest.param(c, id=i) for i, c in HUGE])
def test_over_the_max_record_size_is_refused_and_writes_nothing(
    q: aq.ActionQueue, call: Call
) -> None:
    err = refused(q, call, RecordTooLargeError, "exceeds the maximum record size", "4096")
    assert isinstance(err, RecordTooLargeError)
    assert err.max_size == SMALL_RECORD
    assert err.size > SMALL_RECORD
    assert isinstance(err, ValueError)


def test_huge_payloads_leave_no_trace_after_reopen(fast_tmp: Path) -> None:
    path = fast_tmp / "q"
    opts: dict[str, Any] = {"storage_options": {"max_record_size": SMALL_RECORD}}
    with aq.ActionQueue.open(path, **opts) as q:
        q.register("ok", _ok)
        good = q.submit("ok", b"small")
        for _ in range(3):
            with pytest.raises(RecordTooLargeError):
                q.submit("ok", os.urandom(SMALL_RECORD * 2))
        q.run_until_idle(timeout=20)
    with aq.ActionQueue.open(path, **opts) as q:
        q.register("ok", _ok)
        assert q.stats()["runs"]["Completed"] == 1
        assert sum(q.stats()["runs"].values()) == 1
        assert q.result(good) == b"small"
        still_works(q)


def test_a_return_value_over_the_max_record_size_fails_the_run_clearly(
    q: aq.ActionQueue,
) -> None:
    q.register("big_out", lambda ctx, payload: "r" * (SMALL_RECORD * 2), max_attempts=3)
    tid = q.submit("big_out")
    q.run_until_idle(timeout=20)
    (run,) = q.runs(tid)
    # Not left Running until the lease expires, not retried into the same wall.
    assert run.state is RunState.FAILED
    (attempt,) = run.attempts
    assert attempt.outcome is AttemptOutcome.TERMINAL_FAILURE
    assert "return value could not be recorded" in (attempt.error or "")
    assert "RecordTooLargeError" in (attempt.error or "")
    with pytest.raises(aq.errors.RunFailedError, match="could not be recorded"):
        q.result(tid)
    still_works(q)


def test_an_error_text_over_the_max_record_size_is_cut_not_lost(q: aq.ActionQueue) -> None:
    def shout(ctx: Any, payload: Any) -> None:
        raise ValueError("é" * 8000)  # ~16 KB of UTF-8 even after the 8k-char cap

    q.register("shout", shout, max_attempts=2)
    tid = q.submit("shout")
    q.run_until_idle(timeout=20)
    (run,) = q.runs(tid)
    assert run.state is RunState.FAILED
    assert [a.outcome for a in run.attempts] == [AttemptOutcome.RETRYABLE_FAILURE] * 2
    for a in run.attempts:
        assert (a.error or "").startswith("ValueError: ééé")
        assert "error text dropped" in (a.error or "")
    still_works(q)


@pytest.mark.parametrize("executor", ["threads", "asyncio"])
def test_results_that_fit_one_by_one_are_recorded_even_when_finished_together(
    fast_tmp: Path, executor: str
) -> None:
    """BUG: attempts finished together are recorded in one record; when that record was over
    the size limit only because of how many there were, every run of the batch failed with
    "return value could not be recorded", and one oversized result failed its batch-mates."""
    q = aq.ActionQueue.open(
        fast_tmp / "q", storage_options={"max_record_size": 16 * SMALL_RECORD}, executor=executor
    )
    try:

        async def async_out(ctx: Any, n: int) -> str:
            return "r" * n

        q.register("ok", _ok)
        if executor == "asyncio":
            q.register("out", async_out)
        else:
            q.register("out", lambda ctx, n: "r" * n)
        sizes = [5 * SMALL_RECORD] * 24 + [32 * SMALL_RECORD] + [10] * 24
        tasks = q.submit_many("out", sizes)
        q.run_until_idle(timeout=60)
        for t, n in zip(tasks, sizes, strict=True):
            (run,) = q.runs(t)
            if n > 16 * SMALL_RECORD:
                assert run.state is RunState.FAILED
                assert "could not be recorded" in (run.attempts[0].error or "")
            else:
                assert run.state is RunState.COMPLETED, run.attempts[0].error
                assert run.attempts[0].error is None
                assert q.result(t) == "r" * n
        still_works(q)
    finally:
        q.close(drain=False, timeout=5)


@pytest.mark.parametrize("signal", [aq.Fail, aq.Suspend])
def test_a_fail_or_suspend_message_is_bounded_like_any_error_text(
    fast_tmp: Path, signal: type[Exception]
) -> None:
    """BUG: other error texts are cut to MAX_ERROR_CHARS, but a Fail or Suspend message was
    stored whole (2 MB per attempt, again at each re-suspend)."""
    from actionqueue.runtime.outcomes import MAX_ERROR_CHARS

    def loud(ctx: Any, payload: Any) -> None:
        raise signal("f" * 100_000)

    q = aq.ActionQueue.open(fast_tmp / "q")  # the default record limit: nothing cut for size
    try:
        q.register("loud", loud)
        tid = q.submit("loud")
        q.run_until_idle(timeout=20)
        (run,) = q.runs(tid)
        err = run.attempts[0].error or ""
        assert err.startswith(f"{signal.__name__}: fff")
        assert len(err) <= MAX_ERROR_CHARS + len(signal.__name__) + 2
    finally:
        q.close(drain=False, timeout=5)


def test_an_unencodable_return_value_fails_the_run_naming_the_type(q: aq.ActionQueue) -> None:
    q.register("nan_out", lambda ctx, payload: {"x": math.nan, "s": {1}}, max_attempts=3)
    tid = q.submit("nan_out")
    q.run_until_idle(timeout=20)
    (run,) = q.runs(tid)
    assert run.state is RunState.FAILED
    assert len(run.attempts) == 1
    err = run.attempts[0].error or ""
    assert "could not be encoded" in err
    assert "dict" in err
    still_works(q)


# --- unknown handler names ------------------------------------------------------------------


def test_submit_refuses_an_unregistered_name_by_default(q: aq.ActionQueue) -> None:
    refused(
        q,
        lambda q: q.submit("sned_email", {"to": "a@example.com"}),
        UnknownHandlerError,
        "'sned_email'",
        "registered: 'ok'",
        "allow_unregistered=True",
    )


def test_allow_unregistered_run_fails_with_a_clear_error_not_a_crash(
    q: aq.ActionQueue,
) -> None:
    tid = q.submit("elsewhere", {"x": 1}, allow_unregistered=True, max_attempts=3)
    other = q.submit("ok", 2)
    q.run_until_idle(timeout=20)
    (run,) = q.runs(tid)
    assert run.state is RunState.FAILED
    (attempt,) = run.attempts  # terminal: retrying cannot make a handler appear
    assert attempt.outcome is AttemptOutcome.TERMINAL_FAILURE
    assert (attempt.error or "").startswith(
        "UnknownHandlerError: no handler is registered under 'elsewhere' (registered: 'ok')"
    )
    assert q.result(other) == 2
    with pytest.raises(aq.errors.RunFailedError, match="UnknownHandlerError"):
        q.result(tid)
    still_works(q)


def test_producer_and_consumer_processes(fast_tmp: Path) -> None:
    """A producer opens with allow_unregistered=True and submits for handlers it does not
    have; the consumer that registers them runs the work; one that does not fails it."""
    path = fast_tmp / "shared"
    with aq.ActionQueue.open(path, allow_unregistered=True) as producer:
        mailed = producer.submit("mail", {"to": "a"})
        billed = producer.submit("bill", {"amount": 3})
        # per-call False overrides the queue default
        with nothing_written(producer), pytest.raises(UnknownHandlerError):
            producer.submit("mail", allow_unregistered=False)
    with aq.ActionQueue.open(path) as consumer:
        consumer.register("mail", lambda ctx, p: f"sent to {p['to']}")
        consumer.run_until_idle(timeout=20)
        assert consumer.result(mailed) == "sent to a"
        (run,) = consumer.runs(billed)
        assert run.state is RunState.FAILED
        assert "no handler is registered under 'bill'" in (run.attempts[0].error or "")


def test_a_handler_unregistered_after_submit_fails_its_run_at_dispatch(
    q: aq.ActionQueue,
) -> None:
    q.register("fleeting", _ok)
    tid = q.submit("fleeting", 1)
    q.handlers.unregister("fleeting")
    q.run_until_idle(timeout=20)
    (run,) = q.runs(tid)
    assert run.state is RunState.FAILED
    assert "UnknownHandlerError" in (run.attempts[0].error or "")
    still_works(q)


# --- reentrant calls from inside handlers ---------------------------------------------------

DRIVERS = ["run_until_idle", "background"]
EXECUTORS = ["threads", "asyncio"]


def _drive(q: aq.ActionQueue, driver: str, *tasks: aq.TaskId) -> None:
    if driver == "background":
        q.start()
        for t in tasks:
            q.wait(t, timeout=20)
        q.run_until_idle(timeout=20)
    else:
        q.run_until_idle(timeout=20)


@pytest.fixture(params=EXECUTORS)
def rq(request: pytest.FixtureRequest, fast_tmp: Path) -> Iterator[aq.ActionQueue]:
    queue = aq.ActionQueue.open(fast_tmp / "rq", executor=request.param, max_workers=4)
    queue.register("ok", _ok)
    try:
        yield queue
    finally:
        queue.close(drain=False, timeout=5)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("driver", DRIVERS)
def test_handler_can_submit_inspect_and_control(rq: aq.ActionQueue, driver: str) -> None:
    q = rq
    seen: dict[str, Any] = {}

    @q.handler("parent")
    def parent(ctx: Any, payload: Any) -> str:
        child = q.submit("ok", "from a handler")
        seen["child"] = child
        run = q.get_run(ctx.run_id)
        assert run is not None
        seen["state"] = run.state
        seen["task"] = q.get_task(ctx.task_id) is not None
        seen["in_flight"] = q.stats()["in_flight"]
        seen["listed"] = any(r.run_id == ctx.run_id for r in q.list_runs(state="Running"))
        assert q.pause() is True
        assert q.resume() is True
        # waiting for *another* task works (the driver keeps running it)
        seen["child_result"] = q.result(child, timeout=20)
        return "parent done"

    tid = q.submit("parent")
    _drive(q, driver, tid)
    assert q.result(tid) == "parent done"
    assert seen["state"] is RunState.RUNNING
    assert seen["task"]
    assert seen["in_flight"] >= 1
    assert seen["listed"]
    assert seen["child_result"] == "from a handler"
    assert q.result(seen["child"]) == "from a handler"
    assert not q.paused


@pytest.mark.timeout(30)
@pytest.mark.parametrize("driver", DRIVERS)
def test_handler_cancelling_its_own_task_ends_canceled(rq: aq.ActionQueue, driver: str) -> None:
    q = rq
    signalled = threading.Event()

    @q.handler("self_cancel", max_attempts=3)
    def self_cancel(ctx: Any, payload: Any) -> str:
        q.cancel(ctx.task_id, "changed my mind")
        if ctx.cancelled.wait(10):
            signalled.set()
        ctx.raise_if_cancelled()
        return "not reached"

    tid = q.submit("self_cancel")
    _drive(q, driver, tid)
    # The thread executor records Canceled as soon as the signal is set (the handler thread
    # may still be on its way out of q.cancel), so wait for the handler to see it.
    assert signalled.wait(10), "the attempt was not signalled"
    (run,) = q.runs(tid)
    assert run.state is RunState.CANCELED
    assert len(run.attempts) == 1  # no retry of a canceled run
    with pytest.raises(aq.errors.RunCanceledError):
        q.result(tid)
    still_works(q)


REENTRANT: list[tuple[str, Callable[[aq.ActionQueue, Any], object]]] = [
    ("run_until_idle()", lambda q, ctx: q.run_until_idle()),
    ("run_until_idle()", lambda q, ctx: q.run_until_idle(advance_clock=True, timeout=5)),
    ("stop()", lambda q, ctx: q.stop()),
    ("stop()", lambda q, ctx: q.stop(drain=False)),
    ("close()", lambda q, ctx: q.close()),
    ("run_forever()", lambda q, ctx: q.run_forever()),
    ("wait(", lambda q, ctx: q.wait(ctx.task_id)),
    ("wait(", lambda q, ctx: q.wait(ctx.run_id)),
    ("result(", lambda q, ctx: q.result(ctx.task_id)),
    ("result(", lambda q, ctx: q.result(str(ctx.run_id))),
    ("wait(", lambda q, ctx: asyncio.run(q.await_task(ctx.task_id))),
    ("close()", lambda q, ctx: q.__exit__(None, None, None)),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("name", "call"), [pytest.param(n, c, id=f"{n}{i}") for i, (n, c) in enumerate(REENTRANT)]
)
def test_blocking_calls_from_inside_a_handler_are_refused_not_deadlocked(
    rq: aq.ActionQueue, driver: str, name: str, call: Callable[[aq.ActionQueue, Any], object]
) -> None:
    q = rq
    caught: list[BaseException] = []

    @q.handler("reenter")
    def reenter(ctx: Any, payload: Any) -> str:
        try:
            call(q, ctx)
        except ReentrantCallError as e:
            caught.append(e)
            return "refused"
        return "allowed"

    tid = q.submit("reenter")
    _drive(q, driver, tid)
    assert q.result(tid) == "refused"
    (err,) = caught
    assert isinstance(err, RuntimeError)
    assert isinstance(err, ActionQueueError)
    msg = str(err)
    assert name in msg
    assert "inside a handler" in msg
    assert "'reenter'" in msg
    assert not q.closed
    if driver == "background":
        assert q.running
    still_works(q)


@pytest.mark.timeout(30)
def test_async_handler_reentrant_call_is_refused(fast_tmp: Path) -> None:
    with aq.ActionQueue.open(fast_tmp / "a", executor="asyncio") as q:

        @q.handler("areenter")
        async def areenter(ctx: Any, payload: Any) -> str:
            try:
                q.stop()
            except ReentrantCallError:
                return "refused"
            return "allowed"

        tid = q.submit("areenter")
        q.run_until_idle(timeout=20)
        assert q.result(tid) == "refused"


@pytest.mark.timeout(30)
def test_a_handler_of_one_queue_may_drive_another(fast_tmp: Path) -> None:
    with aq.ActionQueue.open(fast_tmp / "a") as a, aq.ActionQueue.open(fast_tmp / "b") as b:
        b.register("inner", _ok)

        @a.handler("outer")
        def outer(ctx: Any, payload: Any) -> Any:
            t = b.submit("inner", payload)
            b.run_until_idle(timeout=10)  # not this handler's queue: allowed
            return b.result(t)

        tid = a.submit("outer", [1, 2])
        a.run_until_idle(timeout=20)
        assert a.result(tid) == [1, 2]


# --- calls after close ----------------------------------------------------------------------

AFTER_CLOSE: list[tuple[str, Call]] = [
    ("submit", lambda q: q.submit("ok", 1)),
    ("submit_many", lambda q: q.submit_many("ok", [1])),
    ("asubmit", lambda q: asyncio.run(q.asubmit("ok", 1))),
    ("asubmit_many", lambda q: asyncio.run(q.asubmit_many("ok", [1]))),
    ("get_task", lambda q: q.get_task(aq.TaskId.new())),
    ("get_run", lambda q: q.get_run(aq.RunId.new())),
    ("runs", lambda q: q.runs(aq.TaskId.new())),
    ("list_runs", lambda q: q.list_runs()),
    ("stats", lambda q: q.stats()),
    ("progress", lambda q: q.progress(aq.RunId.new())),
    ("cancel", lambda q: q.cancel(aq.TaskId.new())),
    ("pause", lambda q: q.pause()),
    ("resume", lambda q: q.resume()),
    ("retry_now", lambda q: q.retry_now(aq.RunId.new())),
    ("prune", lambda q: q.prune(0)),
    ("flush", lambda q: q.flush()),
    ("snapshot", lambda q: q.snapshot()),
    ("run_until_idle", lambda q: q.run_until_idle()),
    ("start", lambda q: q.start()),
    ("stop", lambda q: q.stop()),
    ("run_forever", lambda q: q.run_forever()),
    ("wait", lambda q: q.wait(aq.TaskId.new())),
    ("result", lambda q: q.result(aq.TaskId.new())),
    ("await_task", lambda q: asyncio.run(q.await_task(aq.TaskId.new()))),
    ("aresult", lambda q: asyncio.run(q.aresult(aq.TaskId.new()))),
    ("register", lambda q: q.register("late", _ok)),
    ("handler", lambda q: q.handler("late")),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("call", [pytest.param(c, id=i) for i, c in AFTER_CLOSE])
def test_every_public_call_after_close_raises_closed_error(fast_tmp: Path, call: Call) -> None:
    path = fast_tmp / "q"
    q = aq.ActionQueue.open(path)
    q.register("ok", _ok)
    tid = q.submit("ok", 1)
    q.close()
    with pytest.raises(ClosedError, match="is closed") as info:
        call(q)
    assert str(path) in str(info.value)
    assert "late" not in q.handlers
    q.close()  # still idempotent after a refused call
    # nothing was written: the directory reopens with exactly the one task
    with aq.ActionQueue.open(path) as again:
        assert sum(again.stats()["runs"].values()) == 1
        assert again.get_task(tid) is not None


def test_close_twice_and_after_start(fast_tmp: Path) -> None:
    q = aq.ActionQueue.open(fast_tmp / "q")
    q.register("ok", _ok)
    q.start()
    tid = q.submit("ok", 5)
    q.wait(tid, timeout=20)
    q.close()
    q.close()
    q.close(drain=False, timeout=0)
    assert q.closed
    assert not q.running


@pytest.mark.timeout(30)
def test_an_exception_in_the_with_block_is_kept_and_the_queue_closes(fast_tmp: Path) -> None:
    path = fast_tmp / "q"
    started = threading.Event()

    class Boom(Exception):
        pass

    opened: list[aq.ActionQueue] = []
    acked: list[aq.TaskId] = []

    def block() -> None:
        with aq.ActionQueue.open(path) as q:
            opened.append(q)
            q.register("ok", _ok)

            @q.handler("stuck")
            def stuck(ctx: Any, payload: Any) -> None:
                started.set()
                ctx.cancelled.wait(20)
                ctx.raise_if_cancelled()

            acked.append(q.submit("ok", "kept"))
            q.run_until_idle(timeout=20)
            q.start()
            q.submit("stuck")
            assert started.wait(10)
            raise Boom("inside the block")

    with pytest.raises(Boom, match="inside the block"):
        block()
    (q,) = opened
    (done,) = acked
    assert q.closed
    assert not q.running
    # closed cleanly: the lock is released, acknowledged work is there, the stuck run was
    # given back (not lost, not failed)
    with aq.ActionQueue.open(path) as again:
        again.register("ok", _ok)
        assert again.result(done) == "kept"
        runs = again.list_runs(handler="stuck")
        assert len(runs) == 1
        assert runs[0].state in (RunState.READY, RunState.SCHEDULED)
        still_works(again)


# --- a second open of the same directory ----------------------------------------------------


@pytest.mark.timeout(30)
def test_a_second_open_in_the_same_process_is_refused(fast_tmp: Path) -> None:
    path = fast_tmp / "q"
    first = aq.ActionQueue.open(path)
    first.register("ok", _ok)
    first.start()
    t1 = first.submit("ok", 1)
    before = footprint(first)
    for kwargs in ({}, {"durability": "deferred"}, {"executor": "asyncio"}):
        with pytest.raises(DataDirLockedError) as info:
            aq.ActionQueue.open(path, **kwargs)
        assert str(path) in str(info.value)
        assert "locked" in str(info.value)
        assert str(path) in info.value.path
        assert isinstance(info.value, OSError)
    assert first.running
    assert not first.closed
    first.wait(t1, timeout=20)
    assert first.result(t1) == 1
    still_works(first)
    assert footprint(first) != before  # it kept writing normally
    first.close()
    with aq.ActionQueue.open(path) as second:  # released at close
        assert second.get_task(t1) is not None


class _QuotingCodec:
    """A codec whose decode error quotes the whole document (twice), as parsers often do."""

    content_type = "application/x-quoting"

    def encode(self, value: Any) -> bytes:
        return str(value).encode()

    def decode(self, data: bytes) -> Any:
        raise ValueError(f"invalid document: {bytes(data)!r}; expected: {bytes(data).upper()!r}")


@pytest.mark.parametrize(
    ("max_record", "size"),
    [(64 * 1024, 40_000), (SMALL_RECORD, 2_500)],
    ids=["text-capped", "record-still-too-large"],
)
def test_a_decode_error_quoting_a_large_payload_fails_the_run_at_once(
    fast_tmp: Path, max_record: int, size: int
) -> None:
    """BUG: the error text of an undecodable payload was not bounded: quoting a 40 KB payload
    it made a finish record over the size limit, which was refused and dropped; the run sat
    in Running until its lease expired, was recorded Lost twice and ended Failed without the
    real reason. Now the text is capped, and a record still too large is recorded cut."""
    clock = aq.ManualClock(1_700_000_000_000)
    q = aq.ActionQueue.open(
        fast_tmp / "q", clock=clock, lease=10, storage_options={"max_record_size": max_record}
    )
    try:
        q.register("h", lambda ctx, p: p, codec=_QuotingCodec(), max_attempts=2)
        tid = q.submit("h", "d" * size)  # fits a record; the error quoting it twice does not
        q.run_until_idle(timeout=20)
        (run,) = q.runs(tid)
        assert run.state is RunState.FAILED
        (attempt,) = run.attempts
        assert attempt.outcome is AttemptOutcome.TERMINAL_FAILURE
        assert (attempt.error or "").startswith("the payload could not be decoded: ValueError")
    finally:
        q.close(drain=False, timeout=5)
