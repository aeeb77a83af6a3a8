"""Engine fixtures: the same scenarios against the pure-Python fake and the real authority.

``env`` is parametrized over ``fake`` and ``real``; ``real`` is skipped while
``actionqueue.storage.mutation`` cannot be imported. ``env.restart()`` builds a new engine (and,
for the real authority, reopens the data directory — a crash when ``crash=True``: the handle is
dropped without flushing Deferred records).
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_authority import FakeAuthority

from actionqueue.core import DurabilityPolicy
from actionqueue.engine import Engine, ManualClock

T0 = 1_700_000_000_000


def real_available() -> bool:
    try:
        importlib.import_module("actionqueue.storage.mutation")
    except ImportError:
        return False
    return True


def open_real(path: Path) -> Any:
    mod = importlib.import_module("actionqueue.storage.mutation")
    return mod.StorageMutationAuthority.open(str(path))


class Env:
    def __init__(self, kind: str, path: Path, durability: DurabilityPolicy) -> None:
        self.kind = kind
        self.path = path
        self.durability = durability
        self.clock = ManualClock(T0)
        self.auth: Any = FakeAuthority() if kind == "fake" else open_real(path)
        self.engine = self._engine()

    def _engine(self) -> Engine:
        return Engine(
            self.auth,
            self.clock,
            owner="w1",
            rng=random.Random(7),
            default_lease_ms=10_000,
            durability=self.durability,
        )

    def restart(self, *, crash: bool = False) -> Engine:
        """A new engine over the same durable state (the real authority is reopened)."""
        if self.kind == "real":
            if crash:
                drop = getattr(self.auth, "_crash_for_tests", None)
                if drop is not None:
                    drop()
                else:
                    self.auth.close()
            else:
                self.auth.close()
            self.auth = open_real(self.path)
        self.engine = self._engine()
        return self.engine

    def close(self) -> None:
        if self.kind == "real":
            self.auth.close()


@pytest.fixture(params=["fake", "real"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    if request.param == "real" and not real_available():
        pytest.skip("actionqueue.storage.mutation (the Rust authority) is not available yet")
    e = Env(request.param, tmp_path / "data", DurabilityPolicy.IMMEDIATE)
    yield e
    e.close()


@pytest.fixture
def real_env(tmp_path: Path) -> Iterator[Env]:
    """Only the real authority (restart/crash scenarios need durable state)."""
    if not real_available():
        pytest.skip("actionqueue.storage.mutation (the Rust authority) is not available yet")
    e = Env("real", tmp_path / "data", DurabilityPolicy.IMMEDIATE)
    yield e
    e.close()
