"""The handler registry and how options become task constraints."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import actionqueue as aq
from actionqueue.core.task.constraints import HoldPolicy, RetryOn
from actionqueue.errors import (
    DuplicateHandlerError,
    UnknownHandlerError,
    ValidationError,
    WrongTypeError,
)
from actionqueue.runtime.handlers import HandlerOptions, HandlerRegistry


def test_decorator_registers_with_defaults_in_seconds() -> None:
    reg = HandlerRegistry()

    @reg.handler(
        "send_email",
        max_attempts=3,
        timeout=30,
        backoff=aq.exponential(1, 60),
        concurrency_key="smtp",
        terminal=(KeyError,),
        priority=5,
    )
    def send_email(ctx: Any, payload: Any) -> None:
        return None

    h = reg.get("send_email")
    assert h.fn is send_email
    assert not h.is_async
    c = h.constraints()
    assert (c.max_attempts, c.timeout_ms, c.concurrency_key) == (3, 30_000, "smtp")
    assert c.retry.to_wire() == (2, 1_000, 60_000, 0)
    assert c.retry_on.terminal_errors == ("builtins.KeyError",)
    assert h.options.priority == 5


def test_submit_overrides_merge_on_top() -> None:
    reg = HandlerRegistry()
    reg.register("h", lambda ctx, p: None, max_attempts=3, timeout=timedelta(seconds=2))
    c = reg.get("h").constraints(max_attempts=5, hold_policy="release_on_retry")
    assert (c.max_attempts, c.timeout_ms, c.hold_policy) == (5, 2_000, HoldPolicy.RELEASE_ON_RETRY)
    with pytest.raises(WrongTypeError, match="unknown option"):
        reg.get("h").constraints(max_attempt=5)


def test_terminal_merges_with_retry_on() -> None:
    opts = HandlerOptions(
        retry_on=RetryOn(timeout=False, terminal_errors=["mypkg.Fatal"]), terminal=(ValueError,)
    )
    ro = opts.constraints().retry_on
    assert ro.timeout is False
    assert ro.terminal_errors == ("mypkg.Fatal", "builtins.ValueError")


@pytest.mark.parametrize("bad", ["", "not an error!", "mod..Name", "Name.", "1Bad"])
def test_terminal_names_must_look_like_class_names(bad: str) -> None:
    """A terminal name is not imported (it may exist only where handlers run), but garbage
    is refused when the handler is registered instead of silently matching nothing."""
    with pytest.raises(ValidationError, match="not an exception class name"):
        HandlerOptions(terminal=(bad,))
    assert HandlerOptions(terminal=("mypkg.errors.Fatal", "Fatal")).terminal == (
        "mypkg.errors.Fatal",
        "Fatal",
    )
    # The shapes RetryOn accepts (what a class's own name can look like) are accepted here too.
    assert HandlerOptions(terminal=("pkg.Ärger", "pkg.f.<locals>.E")).terminal == (
        "pkg.Ärger",
        "pkg.f.<locals>.E",
    )


def test_async_handlers_are_detected() -> None:
    reg = HandlerRegistry()

    async def a(ctx: Any, payload: Any) -> None:
        return None

    reg.register("a", a)
    assert reg.get("a").is_async


def test_bad_options_fail_at_registration() -> None:
    reg = HandlerRegistry()
    f = lambda ctx, p: None  # noqa: E731
    with pytest.raises(ValidationError, match="timeout must be > 0 seconds"):
        reg.register("x", f, timeout=0)
    with pytest.raises(ValidationError, match="max_attempts"):
        reg.register("x", f, max_attempts=0)
    with pytest.raises(WrongTypeError, match=r"aq.exponential"):
        reg.register("x", f, backoff=5)  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match="terminal"):
        reg.register("x", f, terminal=[42])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="non-empty"):
        reg.register("", f)
    with pytest.raises(WrongTypeError, match="callable"):
        reg.register("x", 3)  # type: ignore[arg-type]
    assert "x" not in reg


def test_duplicates_and_unknown_names() -> None:
    reg = HandlerRegistry()
    reg.register("h", print)
    reg.register("h", print)  # same function again: fine
    with pytest.raises(DuplicateHandlerError, match="replace=True"):
        reg.register("h", repr)
    reg.register("h", repr, replace=True)
    assert reg.get("h").fn is repr
    with pytest.raises(UnknownHandlerError, match=r"'nope' \(registered: 'h'\)"):
        reg.get("nope")
    with pytest.raises(UnknownHandlerError, match="names no handler"):
        reg.get(None)
    assert reg.find("nope") is None
    reg.unregister("h")
    assert len(reg) == 0
