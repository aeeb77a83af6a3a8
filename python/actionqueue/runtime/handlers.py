"""The handler registry: user functions by routing name, with their task defaults.

A handler is called as ``fn(ctx, payload)`` — ``ctx`` is the
:class:`~actionqueue.runtime.context.HandlerContext`, ``payload`` the decoded payload. It may be
a plain function or an ``async def``. The options given at registration are the **defaults for
tasks submitted to that name** (a submit can override each of them); durations are **seconds**
(see :mod:`actionqueue.runtime.units`).

>>> reg = HandlerRegistry()
>>> @reg.handler("send_email", max_attempts=3, timeout=30)
... def send_email(ctx, payload):
...     return "sent"
>>> reg.get("send_email").constraints().timeout_ms
30000
>>> reg.get("nope")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
actionqueue.errors.UnknownHandlerError: no handler is registered under 'nope' (registered: ...
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from actionqueue.core._validate import I32_MAX, I32_MIN, check_int, check_text
from actionqueue.core.task.constraints import (
    Backoff,
    HoldPolicy,
    RetryOn,
    TaskConstraints,
    is_exception_name,
)
from actionqueue.errors import (
    DuplicateHandlerError,
    UnknownHandlerError,
    ValidationError,
    WrongTypeError,
)
from actionqueue.runtime.codecs import Codec
from actionqueue.runtime.units import Seconds, positive_seconds_to_ms

__all__ = [
    "HandlerFn",
    "HandlerOptions",
    "HandlerRegistry",
    "RegisteredHandler",
    "check_option_names",
]

HandlerFn = Callable[..., Any]
F = TypeVar("F", bound=HandlerFn)

#: The constraint names a submit may override (``submit(..., max_attempts=5)``).
CONSTRAINT_OPTIONS = frozenset(
    {
        "max_attempts",
        "timeout",
        "backoff",
        "concurrency_key",
        "retry_on",
        "terminal",
        "hold_policy",
    }
)


#: Everything ``register`` / ``handler`` accept besides the name and the function.
REGISTER_OPTIONS = CONSTRAINT_OPTIONS | {"priority", "codec", "replace"}


def check_option_names(options: Iterable[str]) -> None:
    """:class:`WrongTypeError` naming any option ``register`` / ``handler`` do not know."""
    unknown = set(options) - REGISTER_OPTIONS
    if unknown:
        raise WrongTypeError(
            f"unknown handler option(s) {', '.join(sorted(unknown))}; "
            f"expected one of {', '.join(sorted(REGISTER_OPTIONS))}"
        )


def _exc_names(
    terminal: Iterable[type[BaseException] | str],
) -> tuple[type[BaseException] | str, ...]:
    if isinstance(terminal, (str, type)):
        return (terminal,)
    try:
        items = tuple(terminal)
    except TypeError:
        raise WrongTypeError(
            f"terminal must be a list of exception classes or names, got {terminal!r}"
        ) from None
    for t in items:
        if not (isinstance(t, str) or (isinstance(t, type) and issubclass(t, BaseException))):
            raise WrongTypeError(
                f"terminal must list exception classes or 'module.Name' strings, got {t!r}"
            )
        # A name is not imported (the class may exist only where the handler runs: a worker
        # process, a Dask worker), so only its shape can be checked here.
        if isinstance(t, str) and not is_exception_name(t):
            raise ValidationError(
                f"terminal: {t!r} is not an exception class name ('Name' or 'module.Name')"
            )
    return items


@dataclass(frozen=True, slots=True)
class HandlerOptions:
    """Task defaults of a handler (all optional; ``None`` = the core default).

    ``timeout`` is seconds (or a timedelta); ``backoff`` a :class:`Backoff` (build it with
    ``aq.exponential`` / ``aq.fixed``, which take seconds); ``terminal`` lists exception
    classes (or ``"module.Name"`` strings) that fail the run at once; ``retry_on`` a full
    :class:`RetryOn` (its ``terminal_errors`` are merged with ``terminal``).
    """

    max_attempts: int | None = None
    timeout: Seconds | None = None
    backoff: Backoff | None = None
    concurrency_key: str | None = None
    priority: int | None = None
    retry_on: RetryOn | None = None
    terminal: tuple[type[BaseException] | str, ...] = ()
    hold_policy: HoldPolicy | str | None = None
    codec: Codec | str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "terminal", _exc_names(self.terminal))
        # Validate eagerly: a bad option should fail at registration, not at the first submit.
        self.constraints()
        if self.priority is not None:
            check_int(self.priority, "priority", minimum=I32_MIN, maximum=I32_MAX)
        if self.codec is not None and not isinstance(self.codec, (str, Codec)):
            raise WrongTypeError(
                f"codec must be a Codec or a content type str, got {type(self.codec).__name__} "
                f"{self.codec!r:.80}"
            )

    def merged(self, overrides: dict[str, Any]) -> HandlerOptions:
        """These options with ``overrides`` (constraint names) applied on top."""
        unknown = set(overrides) - CONSTRAINT_OPTIONS
        if unknown:
            raise WrongTypeError(
                f"unknown option(s) {', '.join(sorted(unknown))}; "
                f"expected one of {', '.join(sorted(CONSTRAINT_OPTIONS))}"
            )
        if not overrides:
            return self
        vals = {k: getattr(self, k) for k in self.__dataclass_fields__}
        vals.update(overrides)
        return HandlerOptions(**vals)

    def constraints(self) -> TaskConstraints:
        """The :class:`TaskConstraints` these options mean (seconds converted to ms here)."""
        timeout_ms = (
            None if self.timeout is None else positive_seconds_to_ms(self.timeout, "timeout")
        )
        retry_on = self.retry_on
        if retry_on is not None and not isinstance(retry_on, RetryOn):
            raise WrongTypeError(f"retry_on must be a RetryOn, got {retry_on!r}")
        if self.terminal:
            base = retry_on or RetryOn()
            retry_on = RetryOn(
                timeout=base.timeout,
                lost=base.lost,
                terminal_errors=[*base.terminal_errors, *self.terminal],
            )
        if self.backoff is not None and not isinstance(self.backoff, Backoff):
            raise WrongTypeError(
                f"backoff must be a Backoff (use aq.exponential(base, cap) or aq.fixed(delay), "
                f"in seconds), got {self.backoff!r}"
            )
        return TaskConstraints(
            max_attempts=1 if self.max_attempts is None else self.max_attempts,
            timeout=timeout_ms,
            concurrency_key=self.concurrency_key,
            hold_policy=HoldPolicy.HOLD_DURING_RETRY
            if self.hold_policy is None
            else self.hold_policy,
            retry=self.backoff,
            retry_on=retry_on,
        )


@dataclass(frozen=True, slots=True)
class RegisteredHandler:
    """A handler function, its name and its options."""

    name: str
    fn: HandlerFn
    options: HandlerOptions = field(default_factory=HandlerOptions)
    is_async: bool = False

    def constraints(self, **overrides: Any) -> TaskConstraints:
        return self.options.merged(overrides).constraints()


def _is_async(fn: HandlerFn) -> bool:
    target: Any = fn
    while isinstance(target, functools.partial):
        target = target.func
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - an async __call__ on an object
    )


class HandlerRegistry:
    """Handlers by name. Thread-safe; registering the same name twice needs ``replace=True``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[str, RegisteredHandler] = {}

    def register(
        self,
        name: str,
        fn: HandlerFn,
        *,
        replace: bool = False,
        max_attempts: int | None = None,
        timeout: Seconds | None = None,
        backoff: Backoff | None = None,
        concurrency_key: str | None = None,
        priority: int | None = None,
        retry_on: RetryOn | None = None,
        terminal: Iterable[type[BaseException] | str] = (),
        codec: Codec | str | None = None,
        hold_policy: HoldPolicy | str | None = None,
    ) -> RegisteredHandler:
        """Register ``fn`` under ``name`` with these task defaults; returns the entry."""
        if not isinstance(name, str):
            raise WrongTypeError(
                f"a handler name must be a str, got {type(name).__name__} {name!r:.80}"
            )
        if not name.strip():
            raise ValidationError(f"a handler name must be a non-empty str, got {name!r}")
        check_text(name, "handler name")
        if not callable(fn):
            raise WrongTypeError(f"handler {name!r} must be callable, got {fn!r}")
        options = HandlerOptions(
            max_attempts=max_attempts,
            timeout=timeout,
            backoff=backoff,
            concurrency_key=concurrency_key,
            priority=priority,
            retry_on=retry_on,
            terminal=tuple(_exc_names(terminal)),
            hold_policy=hold_policy,
            codec=codec,
        )
        entry = RegisteredHandler(name, fn, options, _is_async(fn))
        with self._lock:
            old = self._handlers.get(name)
            if old is not None and not replace and old.fn is not fn:
                raise DuplicateHandlerError(
                    f"a handler is already registered under {name!r} ({old.fn!r}); "
                    "pass replace=True to replace it"
                )
            self._handlers[name] = entry
        return entry

    def handler(self, name: str, **options: Any) -> Callable[[F], F]:
        """Decorator form of :meth:`register`; returns the function unchanged. Unknown options
        raise here, before the decorated function exists."""
        check_option_names(options)

        def deco(fn: F) -> F:
            self.register(name, fn, **options)
            return fn

        return deco

    def unregister(self, name: str) -> None:
        with self._lock:
            if self._handlers.pop(name, None) is None:
                raise UnknownHandlerError(self._unknown_message(name))

    def get(self, name: str | None) -> RegisteredHandler:
        """The handler registered under ``name``; :class:`UnknownHandlerError` if none."""
        h = self._handlers.get(name) if name is not None else None
        if h is None:
            raise UnknownHandlerError(self._unknown_message(name))
        return h

    def find(self, name: str | None) -> RegisteredHandler | None:
        return None if name is None else self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)

    def _unknown_message(self, name: str | None) -> str:
        known = ", ".join(repr(n) for n in sorted(self._handlers)) or "none"
        if name is None:
            return f"the task names no handler (registered: {known})"
        return (
            f"no handler is registered under {name!r} (registered: {known}); "
            f"register one with @queue.handler({name!r})"
        )
