"""Helpers shared by the SQLite-based peers."""

from __future__ import annotations

import sqlite3
from typing import Any

_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def pragmas(conn: Any) -> dict[str, str]:
    """The durability-relevant PRAGMAs of a live connection, as the peer configured it."""
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    return {
        "journal_mode": str(journal),
        "synchronous": f"{sync} ({_SYNCHRONOUS.get(sync, '?')})",
        "sqlite_version": sqlite3.sqlite_version,
    }
