"""Selection of Ready runs for leasing (SPEC §8): replaceable policy, fixed constraints.

A :class:`Candidate` is what selection needs to know about a Ready run. The default order is
effective **priority descending**, then ``scheduled_at`` ascending, then creation sequence
ascending (:func:`default_order_key`). Whatever the policy, a candidate whose concurrency key
is held by another run — or was already taken by an earlier pick of the same round — is
**skipped, not dropped**: it stays Ready and is considered again next round.

The Rust index yields Ready runs already in the default order, lazily; :class:`DefaultSelector`
relies on that (``presorted=True``) and stops as soon as it has ``limit`` runs, so selecting 10
out of a million Ready runs touches ~10 candidates. A custom :class:`Selector` may consume and
reorder everything it is given.

>>> from actionqueue.core import RunId, TaskId
>>> t = TaskId.new()
>>> a = Candidate(RunId.new(), t, 5, 1_000, 1, "db")
>>> b = Candidate(RunId.new(), t, 5, 2_000, 2, "db")     # same key: skipped this round
>>> c = Candidate(RunId.new(), t, 0, 500, 3, None)
>>> [x is y for x, y in zip(DefaultSelector().select([a, b, c], 3), [a, c])]
[True, True]
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import NamedTuple, Protocol, runtime_checkable

from actionqueue.core.ids import RunId, TaskId
from actionqueue.errors import ValidationError

__all__ = ["Candidate", "DefaultSelector", "Selector", "default_order_key", "select_ready"]

_NO_KEYS: frozenset[str] = frozenset()


class Candidate(NamedTuple):
    """A Ready run as selection sees it (a tuple: cheap to build from the index's output).

    ``priority`` is the run's effective priority; ``created_seq`` the WAL sequence of its
    creation (the final tie-break); ``concurrency_key`` its task's key or ``None``.
    """

    run_id: RunId
    task_id: TaskId
    priority: int
    scheduled_at: int
    created_seq: int
    concurrency_key: str | None = None


def default_order_key(c: Candidate) -> tuple[int, int, int]:
    """Sort key of the default order: priority desc, scheduled_at asc, created_seq asc."""
    return (-c.priority, c.scheduled_at, c.created_seq)


@runtime_checkable
class Selector(Protocol):
    """A selection policy: pick up to ``limit`` candidates to lease now.

    Implementations must skip (not return) candidates whose key is in ``held_keys`` or taken by
    an earlier pick of the same call, and must return each candidate at most once. The
    engine re-checks the key gate when leasing, so a faulty selector cannot break the
    constraint — it only wastes a round.
    """

    def select(
        self, candidates: Iterable[Candidate], limit: int, held_keys: Container[str] = ...
    ) -> list[Candidate]: ...


class DefaultSelector:
    """Priority desc, then ``scheduled_at`` asc, then creation order; keys skipped, not dropped.

    Args:
        presorted: candidates arrive in the default order (as the Rust index yields them); the
            selector then streams them and stops at ``limit``. With ``False`` it sorts first
            (materializing the input).
        max_scan: stop after looking at this many candidates (``None``: no bound) — caps the
            cost of a round when most Ready runs wait on held keys.
    """

    __slots__ = ("max_scan", "presorted")

    def __init__(self, *, presorted: bool = True, max_scan: int | None = None) -> None:
        if max_scan is not None and (type(max_scan) is not int or max_scan < 1):
            raise ValidationError(f"max_scan must be an int >= 1 or None, got {max_scan!r}")
        self.presorted = presorted
        self.max_scan = max_scan

    def select(
        self,
        candidates: Iterable[Candidate],
        limit: int,
        held_keys: Container[str] = _NO_KEYS,
    ) -> list[Candidate]:
        if type(limit) is not int or limit < 0:
            raise ValidationError(f"limit must be an int >= 0, got {limit!r}")
        if not self.presorted:
            candidates = sorted(candidates, key=default_order_key)
        return select_ready(candidates, limit, held_keys, self.max_scan)

    def __repr__(self) -> str:
        return f"DefaultSelector(presorted={self.presorted}, max_scan={self.max_scan})"


def select_ready(
    candidates: Iterable[Candidate],
    limit: int,
    held_keys: Container[str] = _NO_KEYS,
    max_scan: int | None = None,
) -> list[Candidate]:
    """Take candidates in the order given, skipping held or already-taken keys, up to ``limit``.

    This is the default selector's loop; it never looks past the ``limit``-th pick.
    """
    picked: list[Candidate] = []
    if limit <= 0:
        return picked
    taken: set[str] = set()
    scanned = 0
    for c in candidates:
        key = c[5]
        if key is not None:
            if key in taken or key in held_keys:
                scanned += 1
                if max_scan is not None and scanned >= max_scan:
                    break
                continue
            taken.add(key)
        picked.append(c)
        if len(picked) >= limit:
            break
        scanned += 1
        if max_scan is not None and scanned >= max_scan:
            break
    return picked
