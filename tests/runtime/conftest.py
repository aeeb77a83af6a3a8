"""Runtime fixtures: queues on a temp directory, with a ManualClock where time matters.

Queues use the real storage authority; while ``actionqueue.storage.recovery`` is not
importable (a partial checkout) they fall back to the engine tests' pure-Python FakeAuthority.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rt_helpers import T0, MakeQueue, real_storage

from actionqueue import ActionQueue
from actionqueue.engine import ManualClock

ENGINE_TESTS = Path(__file__).resolve().parents[1] / "engine"


@pytest.fixture
def make_queue(tmp_path: Path) -> Iterator[MakeQueue]:
    queues: list[ActionQueue] = []

    def make(path: Path | None = None, **kw: Any) -> ActionQueue:
        if not real_storage():
            if str(ENGINE_TESTS) not in sys.path:
                sys.path.insert(0, str(ENGINE_TESTS))
            from fake_authority import FakeAuthority

            kw.setdefault("authority", FakeAuthority())
        q = ActionQueue(path or tmp_path / f"q{len(queues)}", **kw)
        queues.append(q)
        return q

    yield make
    for q in queues:
        q.close(drain=False, timeout=5)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)
