"""Sample wire tuples of every event kind, for the WAL tests."""

from __future__ import annotations

import random
import uuid
from typing import Any

Wire = tuple[Any, ...]


def uid(n: int) -> bytes:
    return uuid.UUID(int=n).bytes


SPEC: Wire = (
    uid(1),
    "send_email",
    b"payload \x00\xff",
    "text/plain",
    ((2, "*/5 * * * *", "Europe/Paris", 10, 5), (0, 3, None)),
    (3, 30_000, "key-1", 1, (2, 100, 10_000, 50_000), (True, False, ["ValueError", "x.Y"])),
    (-5, ["a", "b"], "a description"),
    "dedupe-1",
)

SPEC_MINIMAL: Wire = (
    uid(9),
    None,
    b"",
    None,
    ((0,), (2, None, 500)),
    (1, None, None, 0, (0,), (False, True, [])),
    (0, [], None),
    None,
)

EVERY_EVENT: list[Wire] = [
    (0, SPEC, 1_700_000_000_000, 1_700_000_000_001),
    (0, SPEC_MINIMAL, 0, -1),
    (
        0,
        (
            *SPEC[:4],
            ((1, 7, 60_000), (1, None, None)),
            (1, None, None, 0, (1, 250), (False, False, [])),
            *SPEC[6:],
        ),
        5,
        6,
    ),
    (1, uid(2), uid(1), 0, 5, 6),
    (2, uid(2), 3, 4, 99, "boom", 7),
    (2, uid(2), 0, 1, None, None, 8),
    (3, uid(2), uid(3), 8),
    (4, uid(2), uid(3), 1, "oops", b"\x00\x01", 9),
    (4, uid(2), uid(3), 0, None, None, 9),
    (5, uid(2), "worker-1", 100, 10),
    (6, uid(2), "worker-1", 200, 11),
    (7, uid(2), "worker-1", 12),
    (8, uid(2), "worker-1", 13),
    (9, uid(1), None, -14),
    (9, uid(1), "canceled by user ✓", 14),
    (10, 15),
    (11, 16),
    (12, 1, 17),
]


def random_event(rng: random.Random) -> Wire:
    """A random event of a random kind (valid for the codec, not necessarily for the reducer)."""
    kind = rng.randrange(13)
    i64 = lambda: rng.randrange(-(2**63), 2**63)  # noqa: E731
    rid = uid(rng.randrange(1, 2**128))
    text = "".join(rng.choice("abcé✓ ") for _ in range(rng.randrange(0, 12)))
    if kind == 0:
        return (0, (rid, *SPEC[1:]), i64(), i64())
    if kind == 1:
        return (1, rid, uid(rng.randrange(1, 2**64)), rng.randrange(2**32), i64(), i64())
    if kind == 2:
        return (
            2,
            rid,
            rng.randrange(9),
            rng.randrange(9),
            rng.choice([None, i64()]),
            rng.choice([None, text]),
            i64(),
        )
    if kind == 3:
        return (3, rid, uid(rng.randrange(1, 2**64)), i64())
    if kind == 4:
        return (
            4,
            rid,
            uid(7),
            rng.randrange(7),
            rng.choice([None, text]),
            rng.choice([None, rng.randbytes(rng.randrange(0, 300))]),
            i64(),
        )
    if kind in (5, 6):
        return (kind, rid, text, i64(), i64())
    if kind in (7, 8):
        return (kind, rid, text, i64())
    if kind == 9:
        return (9, rid, rng.choice([None, text]), i64())
    if kind in (10, 11):
        return (kind, i64())
    return (12, i64(), i64())
