"""Strings the log cannot hold (lone surrogates, which UTF-8 cannot encode) are refused where a
spec or command is built, with a ValidationError naming the field: an invalid spec cannot
exist."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actionqueue.core._validate import check_str, check_text
from actionqueue.core.ids import AttemptId, RunId, TaskId
from actionqueue.core.mutation import (
    AttemptFinishCommand,
    LeaseAcquireCommand,
    LeaseReleaseCommand,
    RunStateTransitionCommand,
    TaskCancelCommand,
)
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.run.state import RunState
from actionqueue.core.task.constraints import TaskConstraints
from actionqueue.core.task.metadata import TaskMetadata
from actionqueue.core.task.run_policy import RunPolicy
from actionqueue.core.task.task_spec import TaskPayload, TaskSpec
from actionqueue.errors import ValidationError

T0 = 1_700_000_000_000


def _spec(**kw: object) -> TaskSpec:
    return TaskSpec(TaskId.new(), TaskPayload(b""), RunPolicy.once(), **kw)  # type: ignore[arg-type]


CASES: list[tuple[str, Callable[[], object]]] = [
    ("dedupe_key", lambda: _spec(dedupe_key="\ud800")),
    ("handler", lambda: _spec(handler="h\udfff")),
    ("content_type", lambda: TaskPayload(b"", "text/\ud800")),
    ("tag", lambda: TaskMetadata(tags=("ok", "\udc00"))),
    ("description", lambda: TaskMetadata(description="d\ud800")),
    ("concurrency_key", lambda: TaskConstraints(concurrency_key="\udc00")),
    (
        "TaskCancelCommand.reason",
        lambda: TaskCancelCommand(None, TaskId.new(), T0, reason="\udc80"),
    ),
    (
        "RunStateTransitionCommand.reason",
        lambda: RunStateTransitionCommand(
            None, RunId.new(), RunState.READY, RunState.CANCELED, T0, reason="\ud800"
        ),
    ),
    (
        "AttemptFinishCommand.error",
        lambda: AttemptFinishCommand(
            None, RunId.new(), AttemptId.new(), AttemptOutcome.SUCCESS, T0, error="e\ud800"
        ),
    ),
    (
        "LeaseAcquireCommand.owner",
        lambda: LeaseAcquireCommand(None, RunId.new(), "\ud800", T0 + 1, T0),
    ),
    ("LeaseReleaseCommand.owner", lambda: LeaseReleaseCommand(None, RunId.new(), "w\udc00", T0)),
]


@pytest.mark.parametrize(("field", "build"), CASES, ids=[c[0] for c in CASES])
def test_a_lone_surrogate_is_refused_naming_the_field(
    field: str, build: Callable[[], object]
) -> None:
    with pytest.raises(ValidationError, match=rf"^{field} must be valid Unicode text") as e:
        build()
    assert "lone surrogate U+D" in str(e.value)


def test_the_message_shows_the_value_the_code_point_and_where() -> None:
    with pytest.raises(ValidationError) as e:
        check_str("ab\udc80c", "dedupe_key")
    assert str(e.value) == (
        "dedupe_key must be valid Unicode text (encodable as UTF-8), got 'ab\\udc80c': "
        "lone surrogate U+DC80 at index 2"
    )
    # A long value is shown cut short.
    with pytest.raises(ValidationError, match=r"\.\.\.: lone surrogate U\+D800 at index 200$"):
        check_text("x" * 200 + "\ud800", "reason")


@given(st.text())
def test_any_encodable_text_passes_unchanged(s: str) -> None:
    # st.text() excludes surrogates: everything it makes is valid UTF-8.
    assert check_text(s, "f") is s


@given(st.text(), st.integers(0xD800, 0xDFFF), st.text())
def test_any_lone_surrogate_is_found(a: str, cp: int, b: str) -> None:
    with pytest.raises(ValidationError, match=rf"U\+{cp:04X} at index {len(a)}$"):
        check_text(a + chr(cp) + b, "f")


def test_non_ascii_text_is_fine() -> None:
    s = _spec(dedupe_key="clé-日本", handler="envoyer")
    assert s.dedupe_key == "clé-日本"
    assert TaskMetadata(tags=("été",), description="🙂").description == "🙂"
