"""The test suite's root: pytest puts this directory on ``sys.path`` (rootdir-less "prepend"
import mode), so helpers shared by several test packages live here (``forking.py``), and so
do fixtures shared by several of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest


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
