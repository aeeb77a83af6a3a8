"""Running a test body in a ``fork()``ed child (shared by the storage and runtime fork tests)."""

from __future__ import annotations

import os
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path


def in_forked_child(body: Callable[[], None]) -> None:
    """Runs ``body`` in a forked child; fails with the child's traceback unless it returned.
    The child leaves with ``os._exit`` (no atexit, no pytest teardown)."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a multi-threaded process (the WAL's sync thread,
        # the runtime's threads): exactly the misuse under test.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 3
        try:
            os.close(r)
            try:
                body()
                code = 0
            except BaseException:
                os.write(w, traceback.format_exc().encode())
                code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        report = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"child died: status {status}"
    assert os.WEXITSTATUS(status) == 0, report


def tree(d: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``d``: bytes and mtime (ns), to show that nothing was written."""
    return {
        str(p.relative_to(d)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }
