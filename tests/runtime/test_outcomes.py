"""Exception -> outcome mapping."""

from __future__ import annotations

import builtins
import pickle
import sys

import pytest

import actionqueue as aq
from actionqueue.core.run.attempt import AttemptOutcome as O
from actionqueue.core.task.constraints import RetryOn
from actionqueue.runtime.codecs import CodecRegistry
from actionqueue.runtime.outcomes import AttemptResult, ErrorInfo, ResultKind, interpret

REG = CodecRegistry()
DEFAULT = RetryOn()


def _raise(exc: BaseException) -> AttemptResult:
    try:
        raise exc
    except BaseException as e:
        return AttemptResult.raised(e)


class Outer:
    class Inner(Exception):
        pass


def test_return_is_success_with_framed_output() -> None:
    v = interpret(AttemptResult.returned({"a": 1}), DEFAULT, REG)
    assert v.outcome is O.SUCCESS
    assert v.output == b'application/json\n{"a":1}'
    assert interpret(AttemptResult.returned(None), DEFAULT, REG).output is None


def test_unencodable_return_is_terminal() -> None:
    v = interpret(AttemptResult.returned(object()), DEFAULT, REG)
    assert v.outcome is O.TERMINAL_FAILURE
    assert "could not be encoded" in (v.error or "")


def test_exceptions_are_retryable_by_default_with_type_message_and_traceback() -> None:
    v = interpret(_raise(ValueError("bad value 42")), DEFAULT, REG)
    assert v.outcome is O.RETRYABLE_FAILURE
    assert v.error is not None
    assert v.error.startswith("ValueError: bad value 42")
    assert "Traceback" in v.error


@pytest.mark.parametrize(
    ("listed", "exc"),
    [
        ([KeyError], KeyError("k")),
        ([LookupError], KeyError("k")),  # a base class
        (["builtins.KeyError"], KeyError("k")),
        (["KeyError"], KeyError("k")),  # bare name
        ([Outer.Inner], Outer.Inner("x")),
    ],
)
def test_terminal_exceptions(listed: list[object], exc: BaseException) -> None:
    ro = RetryOn(terminal_errors=listed)  # type: ignore[arg-type]
    assert interpret(_raise(exc), ro, REG).outcome is O.TERMINAL_FAILURE
    # ...and the same rule as the core's RetryOn.is_terminal
    assert ro.is_terminal(exc)


def test_control_signals() -> None:
    v = interpret(_raise(aq.Retry(delay=2)), DEFAULT, REG)
    assert (v.outcome, v.retry_delay_ms) == (O.RETRYABLE_FAILURE, 2_000)
    v = interpret(_raise(aq.Fail("bad input")), DEFAULT, REG)
    assert (v.outcome, v.error) == (O.TERMINAL_FAILURE, "Fail: bad input")
    assert interpret(_raise(aq.Suspend()), DEFAULT, REG).outcome is O.SUSPENDED
    assert interpret(_raise(aq.Cancelled("timeout")), DEFAULT, REG).outcome is O.TIMEOUT
    shut = interpret(_raise(aq.Cancelled("shutdown")), DEFAULT, REG)
    assert shut.release


def test_returned_control_signals_mean_what_raising_them_means() -> None:
    v = interpret(AttemptResult.returned(aq.Retry(delay=2), 0.5), DEFAULT, REG)
    assert (v.outcome, v.retry_delay_ms) == (O.RETRYABLE_FAILURE, 2_000)
    v = interpret(AttemptResult.returned(aq.Fail("bad input")), DEFAULT, REG)
    assert (v.outcome, v.error) == (O.TERMINAL_FAILURE, "Fail: bad input")
    assert interpret(AttemptResult.returned(aq.Suspend()), DEFAULT, REG).outcome is O.SUSPENDED
    # Any other exception object returned is a value like any other (here: not encodable).
    v = interpret(AttemptResult.returned(ValueError("x")), DEFAULT, REG)
    assert v.outcome is O.TERMINAL_FAILURE
    assert "could not be encoded" in (v.error or "")


def test_base_exceptions_are_failures_not_crashes() -> None:
    for exc in (SystemExit(3), KeyboardInterrupt(), GeneratorExit()):
        r = _raise(exc)
        assert r.error is not None
        assert r.error.base_exception
        assert interpret(r, DEFAULT, REG).outcome is O.RETRYABLE_FAILURE


def test_executor_level_results() -> None:
    v = interpret(AttemptResult(ResultKind.TIMED_OUT), DEFAULT, REG, timeout_s=1.5)
    assert (v.outcome, v.error) == (O.TIMEOUT, "attempt timed out after 1.5 s")
    v = interpret(AttemptResult(ResultKind.CRASHED, detail="killed by SIGSEGV"), DEFAULT, REG)
    assert v.outcome is O.RETRYABLE_FAILURE
    assert "SIGSEGV" in (v.error or "")
    assert interpret(AttemptResult(ResultKind.LOST, detail="x"), DEFAULT, REG).outcome is O.LOST
    v = interpret(AttemptResult(ResultKind.INTERRUPTED, detail="shutdown"), DEFAULT, REG)
    assert v.release


def test_error_info_pickles_and_survives_broken_str() -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    info = ErrorInfo.from_exception(Weird())
    assert "unprintable" in info.message
    info2 = pickle.loads(pickle.dumps(ErrorInfo.from_exception(KeyError("x"))))
    assert "builtins.LookupError" in info2.type_names


class _BrokenNotes(Exception):
    @property
    def __notes__(self) -> list[str]:
        raise ValueError("notes property broke")


class _StrRaisesKeyboardInterrupt(Exception):
    def __str__(self) -> str:
        raise KeyboardInterrupt


def _bad_syntax_error() -> BaseException:
    # A config parser reporting a column it read as text: the standard formatting fails on it.
    return SyntaxError("bad config", ("app.cfg", 3, "7", "key = = value"))


BROKEN_EXCEPTIONS = [_BrokenNotes("x"), _StrRaisesKeyboardInterrupt(), _bad_syntax_error()]


@pytest.mark.parametrize("exc", BROKEN_EXCEPTIONS, ids=["notes", "str-interrupt", "syntax"])
def test_an_exception_that_cannot_be_described_is_still_a_failure(exc: BaseException) -> None:
    """BUG: describing these raised inside the runtime (on the worker thread), which killed
    the worker: the attempt was never recorded and the run stayed Running for good."""
    r = _raise(exc)
    assert r.kind is ResultKind.RAISED
    assert r.error is not None
    assert r.error.type_name == type(exc).__qualname__
    assert "_raise" in r.error.traceback or "unavailable" in r.error.traceback
    assert r.error.text()


def _stdlib(exc: BaseException) -> list[str]:
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    # 3.11 adds caret lines under some source lines; everything else must be the same.
    return [line for line in text.splitlines() if line.strip() and set(line.strip()) - {"^", "~"}]


def _inner() -> None:
    raise KeyError("inner")


def _chained(how: str) -> BaseException:
    try:
        try:
            _inner()
        except KeyError as e:
            if how == "cause":
                raise ValueError("outer") from e
            if how == "suppressed":
                raise ValueError("outer") from None
            raise ValueError("outer")  # noqa: B904 - the implicit context is the case tested
    except ValueError as outer:
        return outer
    raise AssertionError("unreachable")


@pytest.mark.parametrize("how", ["cause", "context", "suppressed"])
def test_traceback_text_matches_the_standard_library(how: str) -> None:
    from actionqueue.runtime.outcomes import format_exception

    exc = _chained(how)
    ours = [line for line in format_exception(exc).splitlines() if line.strip()]
    assert ours == _stdlib(exc)
    assert ours[-1] == "ValueError: outer"
    assert any("_inner()" in line for line in ours) is (how != "suppressed")
    info = ErrorInfo.from_exception(exc)
    assert info.traceback.endswith("ValueError: outer\n")


def test_traceback_of_an_exception_never_raised_and_a_cycle() -> None:
    from actionqueue.runtime.outcomes import format_exception

    assert format_exception(RuntimeError("never raised")) == "RuntimeError: never raised\n"
    a, b = KeyError("a"), KeyError("b")
    a.__context__, b.__context__ = b, a  # a cycle: rendered once each, no recursion error
    text = format_exception(a)
    assert text.count("KeyError: 'a'") == 1
    assert text.count("KeyError: 'b'") == 1


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are 3.11+")
def test_exception_groups_use_the_standard_rendering() -> None:
    from actionqueue.runtime.outcomes import format_exception

    group_type = getattr(builtins, "ExceptionGroup")  # noqa: B009 - 3.11+, and ruff targets 3.10
    group = group_type("two failures", [ValueError("x"), KeyError("y")])
    text = format_exception(group)
    assert "two failures" in text
    assert "ValueError: x" in text
    assert "KeyError: 'y'" in text


def test_a_raised_cancelled_is_judged_by_the_runtimes_actual_stop_request() -> None:
    # No request: an ordinary failure (not a shutdown that gives the run back for ever).
    alone = _raise(aq.Cancelled("shutdown")).as_stopped_by(None)
    v = interpret(alone, DEFAULT, REG)
    assert (v.outcome, v.release) == (O.RETRYABLE_FAILURE, False)
    # A request: its reason decides, whatever reason the handler's exception names.
    v = interpret(_raise(aq.Cancelled("shutdown")).as_stopped_by("timeout"), DEFAULT, REG)
    assert v.outcome is O.TIMEOUT
    v = interpret(_raise(aq.Cancelled()).as_stopped_by("shutdown"), DEFAULT, REG)
    assert v.release
    other = _raise(ValueError("x"))
    assert other.as_stopped_by(None) is other
