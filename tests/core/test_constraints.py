from __future__ import annotations

import copy
import pickle
import random
from datetime import timedelta
from typing import Any

import pytest
from core_strategies import backoffs, constraints
from hypothesis import given
from hypothesis import strategies as st

from actionqueue.core.task.constraints import (
    Backoff,
    ExponentialBackoff,
    FixedBackoff,
    HoldPolicy,
    NoBackoff,
    RetryOn,
    TaskConstraints,
)
from actionqueue.errors import ValidationError, WrongTypeError


class AppError(Exception):
    class Inner(Exception):
        pass


class SubAppError(AppError):
    pass


# --- TaskConstraints ------------------------------------------------------------------------


def test_defaults() -> None:
    c = TaskConstraints()
    assert c.max_attempts == 1
    assert c.timeout_ms is None
    assert c.timeout is None
    assert c.concurrency_key is None
    assert c.hold_policy is HoldPolicy.HOLD_DURING_RETRY
    assert c.retry == Backoff.none()
    assert c.backoff is c.retry
    assert c.retry_on == RetryOn()
    assert TaskConstraints.default() == c
    assert c.to_wire() == (1, None, None, 0, (0,), (True, True, []))


def test_full() -> None:
    c = TaskConstraints(
        max_attempts=5,
        timeout=timedelta(seconds=30),
        concurrency_key="billing",
        hold_policy=HoldPolicy.RELEASE_ON_RETRY,
        retry=Backoff.exponential(0.5, 60.0, jitter=0.25),
        retry_on=RetryOn(timeout=False, terminal_errors=[KeyError]),
    )
    assert c.timeout_ms == 30_000
    assert c.timeout == timedelta(seconds=30)
    assert c.to_wire() == (
        5,
        30_000,
        "billing",
        1,
        (2, 500, 60_000, 250_000),
        (False, True, ["builtins.KeyError"]),
    )


def test_timeout_forms() -> None:
    assert TaskConstraints(timeout=1500).timeout_ms == 1500
    assert TaskConstraints(timeout=0.05).timeout_ms == 50
    assert TaskConstraints(timeout=timedelta(milliseconds=1)).timeout_ms == 1


def test_hold_policy_by_name() -> None:
    assert TaskConstraints(hold_policy="release_on_retry").hold_policy is (
        HoldPolicy.RELEASE_ON_RETRY
    )


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"max_attempts": 0}, ValidationError, r"max_attempts must be >= 1, got 0"),
        ({"max_attempts": -1}, ValidationError, r"max_attempts must be >= 1, got -1"),
        ({"max_attempts": 2**32}, ValidationError, r"max_attempts must be <= 4294967295"),
        ({"max_attempts": 2.0}, WrongTypeError, r"max_attempts must be an int, got float 2.0"),
        ({"max_attempts": True}, WrongTypeError, r"max_attempts must be an int, got bool True"),
        ({"timeout": 0}, ValidationError, r"timeout must be > 0, got 0 \(0 ms\)"),
        ({"timeout": -5}, ValidationError, r"timeout must be > 0, got -5 \(-5 ms\)"),
        ({"timeout": 0.0001}, ValidationError, r"timeout must be > 0, got 0.0001 \(0 ms\)"),
        ({"timeout": timedelta(0)}, ValidationError, r"timeout must be > 0, got datetime"),
        ({"timeout": "5s"}, WrongTypeError, r"timeout must be int milliseconds, .* got str '5s'"),
        ({"timeout": False}, WrongTypeError, r"timeout must be int milliseconds, .* got bool"),
        ({"concurrency_key": ""}, ValidationError, r"concurrency_key must be a non-empty .*''"),
        ({"concurrency_key": "  "}, ValidationError, r"concurrency_key must be a non-empty"),
        ({"concurrency_key": 7}, WrongTypeError, r"concurrency_key must be a str, got int 7"),
        ({"hold_policy": "sometimes"}, ValidationError, r"hold_policy must be .* 'sometimes'"),
        ({"hold_policy": 5}, ValidationError, r"hold_policy must be .* got 5"),
        ({"hold_policy": None}, WrongTypeError, r"hold_policy must be a HoldPolicy, got None"),
        ({"retry": 3}, WrongTypeError, r"retry must be a Backoff .* got int 3"),
        ({"retry_on": True}, WrongTypeError, r"retry_on must be a RetryOn, got bool True"),
    ],
)
def test_constraints_validation(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        TaskConstraints(**kwargs)


def test_frozen_hashable_picklable() -> None:
    c = TaskConstraints(max_attempts=3, concurrency_key="k", retry=Backoff.fixed(10))
    with pytest.raises(AttributeError):
        c.max_attempts = 4  # type: ignore[misc]
    assert hash(c) == hash(
        TaskConstraints(max_attempts=3, concurrency_key="k", retry=Backoff.fixed(10))
    )
    assert pickle.loads(pickle.dumps(c)) == c
    assert copy.deepcopy(c) == c


# --- Backoff --------------------------------------------------------------------------------


def test_backoff_none_and_fixed() -> None:
    assert isinstance(Backoff.none(), NoBackoff)
    assert Backoff.none().delay_for(5) == 0
    f = Backoff.fixed(0.25)
    assert isinstance(f, FixedBackoff)
    assert [f.delay_for(n) for n in (1, 2, 10)] == [250, 250, 250]
    assert Backoff.fixed(0).delay_for(1) == 0
    assert Backoff.fixed(timedelta(minutes=1)).to_wire() == (1, 60_000)


def test_backoff_exponential_without_jitter() -> None:
    b = Backoff.exponential(100, 1000)
    assert isinstance(b, ExponentialBackoff)
    assert [b.delay_for(n) for n in range(1, 7)] == [100, 200, 400, 800, 1000, 1000]
    assert b.delay_for(10_000) == 1000  # huge attempt numbers do not overflow
    assert b.jitter == 0.0
    assert b.to_wire() == (2, 100, 1000, 0)
    assert Backoff.exponential(0.1, 2.0).to_wire() == (2, 100, 2000, 0)


def test_backoff_exponential_jitter_is_deterministic_and_bounded() -> None:
    b = Backoff.exponential(1000, 60_000, jitter=0.2)
    assert b.jitter_ppm == 200_000
    assert b.jitter == 0.2
    a = [b.delay_for(3, rng=random.Random(42)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    for seed in range(200):
        d = b.delay_for(3, rng=random.Random(seed))
        assert 3200 <= d <= 4800
    # without an rng: the random module, still within bounds
    assert 3200 <= b.delay_for(3) <= 4800


class _FixedRng:
    def __init__(self, r: float) -> None:
        self.r = r

    def random(self) -> float:
        return self.r


def test_backoff_jitter_extremes() -> None:
    b = Backoff.exponential(1000, 1000, jitter=1.0)
    assert b.delay_for(1, rng=_FixedRng(0.0)) == 0
    assert b.delay_for(1, rng=_FixedRng(0.5)) == 1000
    assert b.delay_for(1, rng=_FixedRng(0.999999)) == 2000


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: Backoff.fixed(-1), ValidationError, r"backoff delay must be >= 0, got -1"),
        (lambda: Backoff.fixed(None), WrongTypeError, r"backoff delay must be int milliseconds"),
        (lambda: Backoff.exponential(0, 10), ValidationError, r"backoff base must be > 0, got 0"),
        (lambda: Backoff.exponential(-1, 10), ValidationError, r"backoff base must be > 0, got -1"),
        (lambda: Backoff.exponential(10, 0), ValidationError, r"backoff cap must be > 0, got 0"),
        (
            lambda: Backoff.exponential(100, 10),
            ValidationError,
            r"backoff cap must be >= base, got cap=10 ms < base=100 ms",
        ),
        (
            lambda: Backoff.exponential(1, 10, jitter=1.5),
            ValidationError,
            r"backoff jitter must be a fraction between 0.0 and 1.0, got 1.5",
        ),
        (
            lambda: Backoff.exponential(1, 10, jitter=-0.1),
            ValidationError,
            r"backoff jitter must be a fraction between 0.0 and 1.0, got -0.1",
        ),
        (
            lambda: Backoff.exponential(1, 10, jitter=float("nan")),
            ValidationError,
            r"backoff jitter must be a fraction .* got nan",
        ),
        (
            lambda: Backoff.exponential(1, 10, jitter="10%"),
            WrongTypeError,
            r"backoff jitter must be a float fraction .* got str '10%'",
        ),
        (
            lambda: ExponentialBackoff(1, 10, 1_000_001),
            ValidationError,
            r"backoff jitter_ppm must be <= 1000000, got 1000001",
        ),
        (lambda: FixedBackoff(1.5), WrongTypeError, r"backoff delay_ms must be an int"),
        (lambda: Backoff.none().delay_for(0), ValidationError, r"attempt_number must be >= 1"),
        (lambda: Backoff(), WrongTypeError, r"Backoff is abstract"),
    ],
)
def test_backoff_validation(call: Any, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


@given(backoffs)
def test_backoff_wire_roundtrip(b: Backoff) -> None:
    assert Backoff.from_wire(b.to_wire()) == b
    assert Backoff.from_wire(list(b.to_wire())) == b
    assert pickle.loads(pickle.dumps(b)) == b


@given(backoffs, st.integers(1, 200), st.integers(0, 2**32))
def test_backoff_delay_bounds(b: Backoff, n: int, seed: int) -> None:
    d = b.delay_for(n, rng=random.Random(seed))
    assert d >= 0
    if isinstance(b, ExponentialBackoff):
        nominal = min(b.cap_ms, b.base_ms * 2 ** (n - 1))
        assert abs(d - nominal) <= nominal * b.jitter_ppm / 1_000_000 + 1


def test_backoff_from_wire_garbage() -> None:
    with pytest.raises(ValidationError, match="backoff kind tag must be 0, 1 or 2, got 5"):
        Backoff.from_wire((5,))
    with pytest.raises(WrongTypeError, match="backoff wire value"):
        Backoff.from_wire(())
    with pytest.raises(ValidationError, match="fixed backoff wire value must have 2 items"):
        Backoff.from_wire((1,))


# --- RetryOn --------------------------------------------------------------------------------


def test_retry_on_names() -> None:
    r = RetryOn(terminal_errors=[ValueError, "ValueError", "mypkg.errors.Fatal", AppError.Inner])
    assert r.terminal_errors == (
        "builtins.ValueError",
        "mypkg.errors.Fatal",
        f"{__name__}.AppError.Inner",
    )
    assert RetryOn(terminal_errors="KeyError").terminal_errors == ("builtins.KeyError",)
    assert RetryOn(terminal_errors=AppError).terminal_errors == (f"{__name__}.AppError",)
    assert RetryOn(terminal_errors=["NotABuiltin"]).terminal_errors == ("NotABuiltin",)


def test_retry_on_is_terminal() -> None:
    r = RetryOn(terminal_errors=[LookupError, AppError])
    assert r.is_terminal(KeyError("k"))
    assert r.is_terminal(SubAppError())
    assert r.is_terminal(SubAppError)
    assert not r.is_terminal(ValueError())
    assert not RetryOn().is_terminal(ValueError())
    assert RetryOn(terminal_errors=["SubAppError"]).is_terminal(SubAppError())  # bare name


class Ärger(Exception):
    pass


def _local_error() -> type[Exception]:
    class Local(Exception):
        pass

    return Local


def test_retry_on_names_of_any_class_survive_the_wire() -> None:
    """The name a class is stored under must come back from the log: a non-ASCII class name
    (a valid identifier) or a class made in a function was accepted at submit, and reading
    the task back after a restart raised ValidationError (every dispatch that met it too)."""
    local = _local_error()
    odd = type("Odd Name", (Exception,), {"__module__": "1generated"})
    r = RetryOn(terminal_errors=[Ärger, local, odd, "pkg.Ärger", "pkg.make.<locals>.Local"])
    assert r.terminal_errors == (
        f"{__name__}.Ärger",
        f"{__name__}._local_error.<locals>.Local",
        "1generated.Odd Name",
        "pkg.Ärger",
        "pkg.make.<locals>.Local",
    )
    back = RetryOn.from_wire(r.to_wire())
    assert back == r
    assert pickle.loads(pickle.dumps(r)) == r
    assert all(back.is_terminal(cls()) for cls in (Ärger, local, odd))
    assert RetryOn(terminal_errors=["Ärger"]).is_terminal(Ärger())  # bare name
    c = TaskConstraints(retry_on=r)
    assert TaskConstraints.from_wire(c.to_wire()) == c
    # Typed names keep their shape check; stored ones are only required to be text.
    for bad in ("<locals>.X", "mod.<>", "mod.<1x>", "mod..X"):
        with pytest.raises(ValidationError, match="qualified exception name"):
            RetryOn(terminal_errors=[bad])
    with pytest.raises(ValidationError, match="lone surrogate"):
        RetryOn.from_wire((True, True, ["mod.\ud800 x"]))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"timeout": 1}, WrongTypeError, r"retry_on timeout must be a bool, got int 1"),
        ({"lost": "no"}, WrongTypeError, r"retry_on lost must be a bool, got str 'no'"),
        ({"terminal_errors": [int]}, WrongTypeError, r"terminal_errors item must be an exc"),
        ({"terminal_errors": [3]}, WrongTypeError, r"terminal_errors item must be .* got int 3"),
        ({"terminal_errors": ["not a name"]}, ValidationError, r"got 'not a name'"),
        ({"terminal_errors": [""]}, ValidationError, r"qualified exception name .* got ''"),
        ({"terminal_errors": 5}, WrongTypeError, r"terminal_errors must be a list"),
    ],
)
def test_retry_on_validation(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        RetryOn(**kwargs)


@given(constraints)
def test_constraints_wire_roundtrip(c: TaskConstraints) -> None:
    w = c.to_wire()
    assert TaskConstraints.from_wire(w) == c
    assert TaskConstraints.from_wire(list(w)).to_wire() == w
    assert pickle.loads(pickle.dumps(c)) == c


def test_constraints_from_wire_garbage() -> None:
    good = TaskConstraints().to_wire()
    with pytest.raises(ValidationError, match="constraints wire value must have 6 items, got 5"):
        TaskConstraints.from_wire(good[:5])
    with pytest.raises(ValidationError, match="max_attempts must be >= 1, got 0"):
        TaskConstraints.from_wire((0, *good[1:]))
    with pytest.raises(WrongTypeError, match="timeout_ms wire value must be an int, got float"):
        TaskConstraints.from_wire((1, 1.5, *good[2:]))
    with pytest.raises(WrongTypeError, match="hold wire value must be an int, got str"):
        TaskConstraints.from_wire((1, None, None, "hold_during_retry", *good[4:]))


def test_a_jittered_backoff_refuses_an_rng_it_cannot_draw_from() -> None:
    import random

    from actionqueue.core.task.constraints import ExponentialBackoff
    from actionqueue.errors import ValidationError, WrongTypeError

    b = ExponentialBackoff(1000, 60_000, 100_000)
    assert 900 <= b.delay_for(1, random.Random(7)) <= 1100
    with pytest.raises(WrongTypeError, match="random"):
        b.delay_for(1, 5)  # type: ignore[arg-type]

    class Broken:
        def random(self) -> float:
            return 2.5

    with pytest.raises(ValidationError, match=r"\[0, 1\)"):
        b.delay_for(1, Broken())
