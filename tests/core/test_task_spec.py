from __future__ import annotations

import copy
import doctest
import importlib
import pickle
import uuid
from typing import Any

import pytest
from core_strategies import metadatas, specs
from hypothesis import given

import actionqueue.core as core
from actionqueue.core.ids import RunId, TaskId
from actionqueue.core.task.constraints import Backoff, TaskConstraints
from actionqueue.core.task.metadata import TaskMetadata
from actionqueue.core.task.run_policy import RunPolicy
from actionqueue.core.task.task_spec import TaskPayload, TaskSpec
from actionqueue.errors import InvalidIdError, ValidationError, WrongTypeError


def _spec(**kw: Any) -> TaskSpec:
    return TaskSpec(TaskId.new(), TaskPayload(b"x"), RunPolicy.Once, **kw)


# --- the seed example -----------------------------------------------------------------------


def test_seed_example() -> None:
    task_id = TaskId.new()
    spec = TaskSpec(
        task_id,
        TaskPayload.with_content_type(bytes([1, 2, 3]), "application/octet-stream"),
        RunPolicy.Once,
        TaskConstraints.default(),
        TaskMetadata.default(),
    )
    assert spec.task_id == task_id
    assert spec.id == task_id
    assert spec.run_policy.total_runs() == 1
    assert spec.payload.data == b"\x01\x02\x03"
    assert spec.payload.content_type == "application/octet-stream"
    assert spec.constraints == TaskConstraints()
    assert spec.metadata == TaskMetadata()
    assert spec.handler is None
    assert spec.dedupe_key is None
    assert TaskSpec.new(task_id, spec.payload, RunPolicy.Once, None, None) == spec


def test_defaults_and_coercions() -> None:
    u = uuid.uuid4()
    s = TaskSpec(str(u), b"raw", RunPolicy.repeat(2, 10))  # type: ignore[arg-type]
    assert s.task_id == TaskId(u)
    assert s.payload == TaskPayload(b"raw")
    assert s.constraints is TaskConstraints.default()
    assert s.metadata is TaskMetadata.default()
    s2 = TaskSpec(u, bytearray(b"raw"), RunPolicy.repeat(2, 10))  # type: ignore[arg-type]
    assert s2 == s


def test_wire_layout() -> None:
    tid = TaskId.new()
    s = TaskSpec(
        tid,
        TaskPayload(b"p", "text/plain"),
        RunPolicy.repeat(3, 1000),
        TaskConstraints(max_attempts=2, concurrency_key="k", retry=Backoff.fixed(5)),
        TaskMetadata(priority=-3, tags=["a", "b"], description="d"),
        handler="send_email",
        dedupe_key="order-17",
    )
    assert s.to_wire() == (
        tid.bytes,
        "send_email",
        b"p",
        "text/plain",
        ((1, 3, 1000), (0, None, None)),
        (2, None, "k", 0, (1, 5), (True, True, [])),
        (-3, ["a", "b"], "d"),
        "order-17",
    )
    assert TaskSpec.from_wire(s.to_wire()) == s


def test_frozen_hashable_picklable() -> None:
    s = _spec(handler="h")
    with pytest.raises(AttributeError):
        s.handler = "other"  # type: ignore[misc]
    assert not hasattr(s, "__dict__")
    assert hash(s) == hash(TaskSpec.from_wire(s.to_wire()))
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(s, protocol=proto)) == s
    assert copy.deepcopy(s) == s


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((None, b"", RunPolicy.Once), {}, WrongTypeError, r"task_id must be a TaskId.*NoneType"),
        ((bytes(16), b"", RunPolicy.Once), {}, InvalidIdError, r"task_id must not be the nil"),
        (("nope", b"", RunPolicy.Once), {}, InvalidIdError, r"task_id must be a UUID.*'nope'"),
        ((RunId.new(), b"", RunPolicy.Once), {}, WrongTypeError, r"task_id .* got RunId"),
        (
            (TaskId.new(), "text", RunPolicy.Once),
            {},
            WrongTypeError,
            r"payload must be a TaskPayload or bytes, got str 'text'",
        ),
        (
            (TaskId.new(), b"", "once"),
            {},
            WrongTypeError,
            r"run_policy must be a RunPolicy .* got str 'once'",
        ),
        (
            (TaskId.new(), b"", RunPolicy),
            {},
            WrongTypeError,
            r"run_policy must be a RunPolicy",
        ),
        (
            (TaskId.new(), b"", RunPolicy.Once, {"max_attempts": 2}),
            {},
            WrongTypeError,
            r"constraints must be a TaskConstraints, got dict",
        ),
        (
            (TaskId.new(), b"", RunPolicy.Once, None, 5),
            {},
            WrongTypeError,
            r"metadata must be a TaskMetadata, got int 5",
        ),
        (
            (TaskId.new(), b"", RunPolicy.Once),
            {"handler": ""},
            ValidationError,
            r"handler must be a non-empty string, got ''",
        ),
        (
            (TaskId.new(), b"", RunPolicy.Once),
            {"handler": 3},
            WrongTypeError,
            r"handler must be a str, got int 3",
        ),
        (
            (TaskId.new(), b"", RunPolicy.Once),
            {"dedupe_key": " "},
            ValidationError,
            r"dedupe_key must be a non-empty string, got ' '",
        ),
    ],
)
def test_spec_validation(
    args: tuple[Any, ...], kwargs: dict[str, Any], exc: type[Exception], match: str
) -> None:
    with pytest.raises(exc, match=match):
        TaskSpec(*args, **kwargs)


def test_spec_from_wire_garbage() -> None:
    w = _spec().to_wire()
    with pytest.raises(ValidationError, match="task spec wire value must have 8 items, got 7"):
        TaskSpec.from_wire(w[:7])
    with pytest.raises(WrongTypeError, match="task spec id wire value must be 16 bytes"):
        TaskSpec.from_wire((str(uuid.uuid4()), *w[1:]))
    with pytest.raises(InvalidIdError, match="nil"):
        TaskSpec.from_wire((bytes(16), *w[1:]))
    with pytest.raises(WrongTypeError, match="task spec payload wire value must be bytes"):
        TaskSpec.from_wire((w[0], w[1], "p", *w[3:]))
    with pytest.raises(WrongTypeError, match="task spec wire value must be a tuple"):
        TaskSpec.from_wire(None)


# --- TaskPayload ----------------------------------------------------------------------------


def test_payload() -> None:
    p = TaskPayload(memoryview(b"abc"))
    assert type(p.data) is bytes
    assert p.data == b"abc"
    assert len(p) == 3
    assert p.content_type is None
    assert TaskPayload.with_content_type(b"{}", "application/json").content_type == (
        "application/json"
    )
    assert TaskPayload(b"") == TaskPayload(bytearray())
    big = TaskPayload(b"z" * 10_000)
    assert "10000 bytes" in repr(big)
    assert len(repr(big)) < 200
    with pytest.raises(AttributeError):
        p.data = b"x"  # type: ignore[misc]


def test_payload_validation() -> None:
    with pytest.raises(WrongTypeError, match=r"payload data must be bytes.*encode text first"):
        TaskPayload("hello")  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match=r"payload data must be bytes.* got list"):
        TaskPayload([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"content_type must be a non-empty string, got ''"):
        TaskPayload(b"", "")
    with pytest.raises(WrongTypeError, match=r"content_type must be a str, got bytes"):
        TaskPayload(b"", b"text/plain")  # type: ignore[arg-type]


# --- TaskMetadata ---------------------------------------------------------------------------


def test_metadata() -> None:
    m = TaskMetadata(priority=2**31 - 1, tags=["b", "a", "b"], description="")
    assert m.tags == ("b", "a")  # order kept, duplicates dropped
    assert m.to_wire() == (2**31 - 1, ["b", "a"], "")
    assert TaskMetadata(priority=-(2**31)).priority == -(2**31)
    assert TaskMetadata(tags=(t for t in ["x"])).tags == ("x",)
    assert TaskMetadata.default() == TaskMetadata()


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"priority": 2**31}, ValidationError, r"priority must be <= 2147483647, got 2147483648"),
        ({"priority": -(2**31) - 1}, ValidationError, r"priority must be >= -2147483648, got"),
        ({"priority": 1.0}, WrongTypeError, r"priority must be an int, got float 1.0"),
        ({"priority": "high"}, WrongTypeError, r"priority must be an int, got str 'high'"),
        ({"tags": "urgent"}, WrongTypeError, r"tags must be a list or tuple of str, got str"),
        ({"tags": 5}, WrongTypeError, r"tags must be a list or tuple of str, got int 5"),
        ({"tags": ["ok", ""]}, ValidationError, r"tag must be a non-empty string, got ''"),
        ({"tags": [1]}, WrongTypeError, r"tag must be a str, got int 1"),
        ({"description": 5}, WrongTypeError, r"description must be a str or None, got int 5"),
    ],
)
def test_metadata_validation(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        TaskMetadata(**kwargs)


@given(metadatas)
def test_metadata_wire_roundtrip(m: TaskMetadata) -> None:
    assert TaskMetadata.from_wire(m.to_wire()) == m
    assert pickle.loads(pickle.dumps(m)) == m


@given(specs)
def test_spec_wire_roundtrip(s: TaskSpec) -> None:
    w = s.to_wire()
    back = TaskSpec.from_wire(w)
    assert back == s
    assert back.to_wire() == w
    assert pickle.loads(pickle.dumps(s)) == s


# --- package surface and docs ---------------------------------------------------------------


def test_core_reexports() -> None:
    for name in [
        "TaskId",
        "RunId",
        "AttemptId",
        "TaskSpec",
        "TaskPayload",
        "RunPolicy",
        "MisfirePolicy",
        "TaskConstraints",
        "Backoff",
        "RetryOn",
        "HoldPolicy",
        "TaskMetadata",
        "to_millis",
        "to_duration_ms",
        "now_ms",
        "from_millis",
    ]:
        assert name in core.__all__
        assert getattr(core, name) is not None


@pytest.mark.parametrize(
    "module",
    [
        "actionqueue.core.ids",
        "actionqueue.core.time",
        "actionqueue.core.task.task_spec",
        "actionqueue.core.task.run_policy",
        "actionqueue.core.task.constraints",
        "actionqueue.core.task.metadata",
    ],
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
