"""Selection: default order, key skipping without dropping, limits, laziness, custom policies."""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator

import pytest

from actionqueue.core import RunId, TaskId
from actionqueue.engine import Candidate, DefaultSelector, Selector, default_order_key
from actionqueue.errors import ValidationError

TID = TaskId.new()


def cand(priority: int, at: int, seq: int, key: str | None = None) -> Candidate:
    return Candidate(RunId.new(), TID, priority, at, seq, key)


def test_priority_desc_then_scheduled_at_then_creation() -> None:
    a = cand(0, 100, 1)
    b = cand(10, 500, 2)
    c = cand(10, 200, 3)
    d = cand(10, 200, 4)
    e = cand(-5, 0, 5)
    picked = DefaultSelector(presorted=False).select([a, b, c, d, e], 10)
    assert picked == [c, d, b, a, e]
    assert sorted([a, b, c, d, e], key=default_order_key) == picked


def test_held_and_in_round_keys_are_skipped_not_dropped() -> None:
    a = cand(5, 0, 1, "db")
    b = cand(4, 0, 2, "db")  # same key as a: taken earlier this round
    c = cand(3, 0, 3, "mail")  # held by another (running) run
    d = cand(2, 0, 4, None)
    e = cand(1, 0, 5, "other")
    ready = [a, b, c, d, e]
    sel = DefaultSelector()
    assert sel.select(ready, 10, held_keys={"mail"}) == [a, d, e]
    # Next round (a is now leased and holds "db"): b is still a candidate, not lost.
    ready = [b, c, d, e]
    assert sel.select(ready, 10, held_keys={"db"}) == [c, d, e]
    assert sel.select(ready, 10) == [b, c, d, e]


def test_limit_and_laziness() -> None:
    consumed = 0

    def stream() -> Iterator[Candidate]:
        nonlocal consumed
        for i in range(1_000_000):
            consumed += 1
            yield cand(0, i, i)

    picked = DefaultSelector().select(stream(), 3)
    assert [c.scheduled_at for c in picked] == [0, 1, 2]
    assert consumed == 3
    assert DefaultSelector().select(stream(), 0) == []


def test_max_scan_bounds_a_round() -> None:
    ready = [cand(0, i, i, "k") for i in range(100)]
    assert len(DefaultSelector(max_scan=10).select(ready, 5)) == 1
    with pytest.raises(ValidationError, match="max_scan"):
        DefaultSelector(max_scan=0)
    with pytest.raises(ValidationError, match="limit"):
        DefaultSelector().select([], -1)


class OldestFirst:
    """A custom policy: ignore priority, oldest scheduled first — still honouring keys."""

    def select(
        self, candidates: Iterable[Candidate], limit: int, held_keys: Container[str] = ()
    ) -> list[Candidate]:
        out: list[Candidate] = []
        taken: set[str] = set()
        for c in sorted(candidates, key=lambda c: (c.scheduled_at, c.created_seq)):
            k = c.concurrency_key
            if k is not None and (k in held_keys or k in taken):
                continue
            if k is not None:
                taken.add(k)
            out.append(c)
            if len(out) == limit:
                break
        return out


def test_a_custom_selector_is_a_selector() -> None:
    sel: Selector = OldestFirst()
    assert isinstance(sel, Selector)
    assert isinstance(DefaultSelector(), Selector)
    a = cand(100, 500, 1)
    b = cand(0, 100, 2)
    assert sel.select([a, b], 1) == [b]
    assert DefaultSelector(presorted=False).select([a, b], 1) == [a]
