"""Holding a WAL directory's writer lock without opening a writer (FORMAT §7)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from actionqueue import _core as _rs

__all__ = ["hold_lock"]


@contextlib.contextmanager
def hold_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Holds the writer lock of the WAL directory ``path`` for the ``with`` block: no queue,
    writer or ``repair`` can open it meanwhile. Raises
    :class:`~actionqueue.errors.DataDirLockedError` at once if one has it open. For tools that
    change a data directory wholesale (``actionqueue demo`` wiping its previous queue)."""
    lock = _rs.WalLock(os.fspath(path))
    try:
        yield
    finally:
        lock.release()
