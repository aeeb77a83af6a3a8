"""Failure semantics seen from Python: a failed write puts the authority into a sticky failed
state (queries included) naming the cause, and reopening recovers from the log.

The write failure is real: the child process lowers ``RLIMIT_FSIZE`` so the next append past it
fails with EFBIG (SIGXFSZ ignored), the way a full disk fails a write.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from actionqueue.storage.recovery import bootstrap

CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    from actionqueue.core.mutation import EnginePauseCommand, EngineResumeCommand
    from actionqueue.errors import StorageFailedError, StorageIOError
    from actionqueue.storage.recovery import bootstrap

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    a, _ = bootstrap(sys.argv[1], preallocate=0, snapshot_every=0, snapshot_on_close=False)
    a.submit_command(EnginePauseCommand(None, 1), "immediate")
    a.submit_command(EngineResumeCommand(None, 2), "immediate")
    seg = sorted((__import__("pathlib").Path(sys.argv[1]) / "wal").glob("*.wal"))[-1]
    size = seg.stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, resource.RLIM_INFINITY))
    try:
        a.submit_command(EnginePauseCommand(None, 3), "immediate")
    except StorageIOError as e:
        print("first:", type(e).__name__, e)
    else:
        sys.exit("the append past RLIMIT_FSIZE succeeded")
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    for call in (
        lambda: a.submit_command(EnginePauseCommand(None, 4), "deferred"),
        lambda: a.is_paused,
        lambda: a.counts(),
        lambda: a.flush(),
    ):
        try:
            call()
        except StorageFailedError as e:
            assert "write" in str(e), e
        else:
            sys.exit("a failed authority answered")
    print("failed:", a.failed)
    a.close()
    """
)


@pytest.mark.timeout(60)
def test_failed_write_is_sticky_and_reopen_recovers(data_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "first: StorageIOError" in out.stdout
    assert "failed: write failed" in out.stdout
    # Memory never ran ahead of the log: the reopened state is the last good one.
    a, report = bootstrap(data_dir)
    with a:
        assert a.latest_sequence == 2
        assert not a.is_paused
        assert report.final_sequence == 2
