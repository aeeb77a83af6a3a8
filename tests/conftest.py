"""The test suite's root: pytest puts this directory on ``sys.path`` (rootdir-less "prepend"
import mode), so helpers shared by several test packages live here (``forking.py``), and so
do fixtures shared by several of them."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest


@pytest.fixture(autouse=True, scope="session")
def _temp_files_under_pytest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Doc examples and helpers call ``tempfile.mkdtemp()`` and leave the directory behind (a
    queue's preallocated log: ~4 MB each, ~200 MB a run). Point ``tempfile`` — and child
    processes, through ``TMPDIR`` — into pytest's own temporary directory, which pytest prunes
    (it keeps the last three runs)."""
    d = str(tmp_path_factory.mktemp("tempfile"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", d)
        mp.setenv("TMPDIR", d)
        yield


@pytest.fixture
def hide_zones(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``hide_zones("Europe/Paris")`` makes this process's zone lookups fail for those IANA
    names, as on a machine whose zone database lacks them (an older tzdata); ``hide_zones()``
    shows every zone again. Only the lookup changes: the policy code runs as it would there."""
    import actionqueue.core.task.run_policy as rp

    hidden: set[str] = set()

    class _Meta(type):
        def __instancecheck__(cls, obj: Any) -> bool:
            return isinstance(obj, ZoneInfo)

    class HidingZoneInfo(metaclass=_Meta):
        def __new__(cls, key: str) -> Any:
            if key in hidden:
                raise ZoneInfoNotFoundError(f"No time zone found with key {key}")
            return ZoneInfo(key)

    def hide(*names: str) -> None:
        hidden.clear()
        hidden.update(names)
        rp._zone.cache_clear()
        rp._check_fires.cache_clear()

    monkeypatch.setattr(rp, "ZoneInfo", HidingZoneInfo)
    return hide
