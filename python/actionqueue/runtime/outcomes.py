"""From what a handler did to the attempt outcome the log records.

Executors report an :class:`AttemptResult` (returned a value, raised, timed out, crashed,
interrupted); :func:`interpret` turns it into a :class:`Verdict` — the
:class:`~actionqueue.core.run.attempt.AttemptOutcome`, error text, output bytes and an optional
retry delay — that the runtime hands to ``Engine.finish_attempt``.

==========================================  =================================================
the handler                                 outcome
==========================================  =================================================
returns ``value``                           Success, output = ``value`` framed by the codec
raises ``aq.Retry(delay=...)``              RetryableFailure, retried after ``delay``
raises ``aq.Fail(reason)``                  TerminalFailure
raises ``aq.Suspend()``                     Suspended (the attempt does not count)
raises an exception listed as terminal      TerminalFailure
raises any other exception                  RetryableFailure (retried while attempts remain)
raises a ``BaseException`` (SystemExit...)  as any other exception; the engine keeps going
runs past its timeout                       Timeout
its worker process dies (segfault, kill)    RetryableFailure naming the signal / exit code
a remote executor loses it (worker lost)    Lost (nobody knows whether it ran)
==========================================  =================================================

Exceptions are described by :class:`ErrorInfo` (plain strings), so results cross process and
machine boundaries without pickling arbitrary exception objects.
"""

from __future__ import annotations

import builtins
import enum
import linecache
import traceback
from dataclasses import dataclass, replace
from typing import Any

from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.task.constraints import RetryOn
from actionqueue.runtime.api import Cancelled, Fail, HandlerSignal, Retry, Suspend
from actionqueue.runtime.codecs import Codec, CodecRegistry

__all__ = ["AttemptResult", "ErrorInfo", "ResultKind", "Verdict", "interpret"]

#: Error texts are kept in the log; bound them (a traceback of a deep recursion is huge).
MAX_ERROR_CHARS = 8_192


class ResultKind(enum.Enum):
    RETURNED = "returned"
    RAISED = "raised"
    TIMED_OUT = "timed_out"
    #: the worker process died (segfault, os._exit, killed by someone else)
    CRASHED = "crashed"
    #: the executor lost the attempt (remote worker gone): outcome unknown
    LOST = "lost"
    #: stopped because the runtime asked (cancel / shutdown); see ``detail`` for why
    INTERRUPTED = "interrupted"


#: Exception groups are rendered by the standard library (nested sub-tracebacks).
_GROUPS: tuple[type, ...] = tuple(
    t for t in (getattr(builtins, "BaseExceptionGroup", None),) if isinstance(t, type)
)
#: Chained exceptions rendered at most (a cycle or a very long chain stops there).
_MAX_CHAIN = 16


def format_exception(exc: BaseException) -> str:
    """``traceback.format_exception(exc)``'s text — chained causes and contexts, a frame line
    and its source line per frame, then ``Type: message`` — without its ``os.stat`` of every
    frame's source file on every call (``linecache.checkcache``). A failing handler's
    traceback is formatted on the worker thread; with several workers each stat also handed
    the GIL over, and formatting took ~70% of a failing attempt (5k attempts/s). Source lines
    come from ``linecache`` as it holds them (a file edited since is not re-read: only the
    quoted line could be stale). Exception groups use the standard library."""
    if _GROUPS and isinstance(exc, _GROUPS):
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    out: list[str] = []
    _format_chain(exc, out, set())
    return "".join(out)


def _format_chain(exc: BaseException, out: list[str], seen: set[int]) -> None:
    seen.add(id(exc))
    if len(seen) < _MAX_CHAIN:
        cause = exc.__cause__
        context = None if exc.__suppress_context__ else exc.__context__
        if cause is not None and id(cause) not in seen:
            _format_chain(cause, out, seen)
            out.append("\nThe above exception was the direct cause of the following exception:\n\n")
        elif context is not None and id(context) not in seen:
            _format_chain(context, out, seen)
            out.append("\nDuring handling of the above exception, another exception occurred:\n\n")
    if exc.__traceback__ is not None:
        out.append("Traceback (most recent call last):\n")
        for frame, lineno in traceback.walk_tb(exc.__traceback__):
            code = frame.f_code
            out.append(f'  File "{code.co_filename}", line {lineno}, in {code.co_name}\n')
            line = linecache.getline(code.co_filename, lineno, frame.f_globals).strip()
            if line:
                out.append(f"    {line}\n")
    try:
        out.extend(traceback.format_exception_only(type(exc), exc))
    except Exception:
        # The exception's own description is broken (a SyntaxError whose offset is text, a
        # failing __notes__ property...): keep the frames, name the type.
        out.append(f"{type(exc).__qualname__}: <unprintable>\n")


def exception_message(exc: BaseException) -> str:
    """``str(exc)``, loggable and bounded like a traceback (a Fail / Suspend message, or a
    codec's error quoting a whole payload, is recorded as it is), and never raising: a broken
    ``__str__`` (even one raising a BaseException) gives ``<unprintable Type>``."""
    try:
        return _loggable(str(exc))[:MAX_ERROR_CHARS]
    except BaseException:
        return f"<unprintable {type(exc).__name__}>"


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` for an error text, bounded and never raising (see
    :func:`exception_message`)."""
    return f"{type(exc).__name__}: {exception_message(exc)}"


def _loggable(text: str) -> str:
    """``text`` with lone surrogates (which UTF-8, the log's text encoding, cannot hold) written
    as ``\\udXXX`` escapes: an exception message is the handler's text, not the caller's
    argument, so it is kept readable rather than refused."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A picklable description of an exception.

    ``classes``: ``(module, qualname)`` of the class and its bases (most derived first), used to
    match the task's terminal exception list exactly as
    :meth:`~actionqueue.core.task.constraints.RetryOn.is_terminal` does; ``control``:
    ``"retry"`` / ``"fail"`` / ``"suspend"`` / ``"cancelled"`` for the runtime's own signals,
    with ``retry_delay_ms`` / ``cancel_reason`` as their arguments.
    """

    type_name: str
    classes: tuple[tuple[str, str], ...]
    message: str
    traceback: str = ""
    control: str | None = None
    retry_delay_ms: int | None = None
    cancel_reason: str | None = None
    base_exception: bool = False

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        classes = tuple((k.__module__, k.__qualname__) for k in type(exc).__mro__)
        control: str | None = None
        delay: int | None = None
        cancel_reason: str | None = None
        if isinstance(exc, Retry):
            control, delay = "retry", exc.delay_ms
        elif isinstance(exc, Fail):
            control = "fail"
        elif isinstance(exc, Suspend):
            control = "suspend"
        elif isinstance(exc, Cancelled):
            control, cancel_reason = "cancelled", exc.reason
        # A handler's exception is described on the worker that ran it: nothing it does in its
        # __str__ or __notes__ (even raising a BaseException) may end that worker, which would
        # leave the attempt unrecorded and the run Running for good.
        message = exception_message(exc)
        try:
            tb = _loggable(format_exception(exc))
        except BaseException as e:
            tb = f"<traceback unavailable: formatting it raised {type(e).__name__}>"
        if isinstance(cancel_reason, str):
            cancel_reason = _loggable(cancel_reason)
        return cls(
            type_name=type(exc).__qualname__,
            classes=classes,
            message=message,
            traceback=tb[-MAX_ERROR_CHARS:],
            control=control,
            retry_delay_ms=delay,
            cancel_reason=cancel_reason,
            base_exception=not isinstance(exc, Exception),
        )

    @property
    def type_names(self) -> tuple[str, ...]:
        """``module.QualName`` of the class and its bases."""
        return tuple(f"{m}.{q}" for m, q in self.classes)

    def matches(self, retry_on: RetryOn) -> bool:
        """Whether the task's :class:`RetryOn` lists this exception (or a base) as terminal."""
        listed = retry_on.terminal_errors
        if not listed:
            return False
        names = set(listed)
        return any(f"{m}.{q}" in names or q in names for m, q in self.classes)

    def text(self) -> str:
        """The error text recorded in the attempt: ``Type: message`` then the traceback."""
        head = f"{self.type_name}: {self.message}" if self.message else self.type_name
        if self.traceback:
            return f"{head}\n\n{self.traceback}"[:MAX_ERROR_CHARS]
        return head[:MAX_ERROR_CHARS]


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What an executor observed. ``value`` for RETURNED, ``error`` for RAISED, ``detail``
    (free text) for the others; ``duration`` in seconds of real time."""

    kind: ResultKind
    value: Any = None
    error: ErrorInfo | None = None
    detail: str | None = None
    duration: float = 0.0

    @classmethod
    def returned(cls, value: Any, duration: float = 0.0) -> AttemptResult:
        # Once per attempt: filled through the slots, without the frozen dataclass's
        # keyword ``__init__`` (one ``object.__setattr__`` call per field).
        r = _new(cls)
        _SET_KIND(r, _RETURNED)
        _SET_VALUE(r, value)
        _SET_ERROR(r, None)
        _SET_DETAIL(r, None)
        _SET_DURATION(r, duration)
        return r

    @classmethod
    def raised(cls, exc: BaseException, duration: float = 0.0) -> AttemptResult:
        return cls(ResultKind.RAISED, error=ErrorInfo.from_exception(exc), duration=duration)

    def as_stopped_by(self, request: str | None) -> AttemptResult:
        """This result judged against the runtime's stop request for the attempt (``None``: none
        was made). A raised :class:`~actionqueue.runtime.api.Cancelled` only means "I stopped
        because you asked" when the runtime did ask, and then for the reason it asked: raised on
        its own (or with another reason) it is an ordinary failure, else a handler raising
        ``Cancelled("shutdown")`` would give its run back without using an attempt, be
        dispatched again at once, and loop for ever."""
        err = self.error
        if err is None or err.control != "cancelled" or err.cancel_reason == request:
            return self
        if request is None:
            err = replace(err, control=None, cancel_reason=None)
        else:
            err = replace(err, cancel_reason=request)
        return replace(self, error=err)


_new = object.__new__
_RETURNED = ResultKind.RETURNED
_SET_KIND, _SET_VALUE, _SET_ERROR, _SET_DETAIL, _SET_DURATION = (
    AttemptResult.__dict__[f].__set__ for f in ("kind", "value", "error", "detail", "duration")
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to record: the outcome, error text, output bytes, and a retry delay (ms) if the
    handler asked for one. ``release`` means "give the run back without using an attempt"
    (the handler stopped because the runtime is shutting down)."""

    outcome: AttemptOutcome
    error: str | None = None
    output: bytes | None = None
    retry_delay_ms: int | None = None
    release: bool = False


def interpret(
    result: AttemptResult,
    retry_on: RetryOn,
    codecs: CodecRegistry,
    codec: Codec | str | None = None,
    *,
    timeout_s: float | None = None,
) -> Verdict:
    """Map an executor's :class:`AttemptResult` to the :class:`Verdict` to record.

    ``retry_on`` is the task's (durable) classification; ``codec`` the handler's output codec.
    A return value the codec cannot encode is a TerminalFailure (retrying cannot fix it).
    """
    kind = result.kind
    if kind is ResultKind.RETURNED and isinstance(result.value, HandlerSignal):
        # `return aq.Retry(delay=5)` means what `raise aq.Retry(delay=5)` means: a handler
        # signal is never a result to store.
        result = AttemptResult(
            ResultKind.RAISED,
            error=ErrorInfo.from_exception(result.value),
            duration=result.duration,
        )
        kind = result.kind
    if kind is ResultKind.RETURNED:
        try:
            output = codecs.encode_output(result.value, codec)
        except Exception as e:
            return Verdict(
                AttemptOutcome.TERMINAL_FAILURE,
                error=f"the handler's return value could not be encoded: {e}",
            )
        return Verdict(AttemptOutcome.SUCCESS, output=output)
    if kind is ResultKind.TIMED_OUT:
        limit = "" if timeout_s is None else f" after {timeout_s:g} s"
        extra = f" ({result.detail})" if result.detail else ""
        return Verdict(AttemptOutcome.TIMEOUT, error=f"attempt timed out{limit}{extra}")
    if kind is ResultKind.CRASHED:
        return Verdict(
            AttemptOutcome.RETRYABLE_FAILURE,
            error=f"worker process died: {result.detail or 'unknown cause'}",
        )
    if kind is ResultKind.LOST:
        return Verdict(
            AttemptOutcome.LOST, error=f"attempt lost by the executor: {result.detail or '?'}"
        )
    if kind is ResultKind.INTERRUPTED:
        return _interrupted(result.detail)
    err = result.error
    if err is None:  # pragma: no cover - executors always attach one
        return Verdict(AttemptOutcome.RETRYABLE_FAILURE, error="handler failed (no details)")
    control = err.control
    if control == "retry":
        return Verdict(
            AttemptOutcome.RETRYABLE_FAILURE, error=err.text(), retry_delay_ms=err.retry_delay_ms
        )
    if control == "fail":
        return Verdict(AttemptOutcome.TERMINAL_FAILURE, error=f"Fail: {err.message}")
    if control == "suspend":
        return Verdict(AttemptOutcome.SUSPENDED, error=f"Suspend: {err.message}")
    if control == "cancelled":
        # The handler noticed a stop request. The request's reason decides the outcome.
        return _interrupted(err.cancel_reason)
    if err.matches(retry_on):
        return Verdict(AttemptOutcome.TERMINAL_FAILURE, error=err.text())
    return Verdict(AttemptOutcome.RETRYABLE_FAILURE, error=err.text())


def _interrupted(reason: str | None) -> Verdict:
    if reason == "timeout":
        return Verdict(AttemptOutcome.TIMEOUT, error="attempt timed out (handler stopped)")
    if reason == "shutdown":
        # Not the handler's fault: give the run back instead of using an attempt.
        return Verdict(AttemptOutcome.SUSPENDED, error="interrupted by shutdown", release=True)
    if reason == "lost":
        return Verdict(
            AttemptOutcome.LOST,
            error="the lease expired while the handler ran (the clock jumped or the process "
            "stalled for longer than the lease); the handler was asked to stop",
        )
    # "canceled": the run is already Canceled in the log; the engine ignores what we send.
    return Verdict(AttemptOutcome.TERMINAL_FAILURE, error="canceled while running")
