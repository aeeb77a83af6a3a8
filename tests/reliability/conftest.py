from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def fast_tmp() -> Iterator[Path]:
    """A directory on tmpfs when there is one (fsync is free there)."""
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    d = Path(tempfile.mkdtemp(prefix="aq-rel-", dir=base))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
