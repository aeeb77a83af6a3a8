from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def fast_dir() -> Iterator[Path]:
    """A directory on tmpfs when there is one: for tests that reopen a log thousands of times
    to check recovery logic (fsync is free there; durability is tested elsewhere)."""
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    d = Path(tempfile.mkdtemp(prefix="aq-wal-", dir=base))
    try:
        yield d / "wal"
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh data directory path (not yet created) on tmpfs when there is one."""
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    d = Path(tempfile.mkdtemp(prefix="aq-data-", dir=base))
    try:
        yield d / "data"
    finally:
        shutil.rmtree(d, ignore_errors=True)
