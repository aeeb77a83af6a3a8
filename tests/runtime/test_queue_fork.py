"""A queue used from a forked child (the adversarial report: the child's Immediate submits were
acknowledged, then overwritten by the parent): refused with ``ForkedProcessError``, nothing
written, ``close()`` in the child writes nothing, the parent's submits all survive."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rt_helpers import needs_real_storage

import actionqueue as aq
from forking import in_forked_child, tree

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    needs_real_storage,
    pytest.mark.timeout(60),
]


def test_forked_child_submits_are_refused_and_the_parent_keeps_every_submit(
    tmp_path: Path,
) -> None:
    d = tmp_path / "q"
    q = aq.ActionQueue.open(d, snapshot_on_close=False)
    q.register("h", lambda ctx, p: p)
    parent = [q.submit("h", 1)]
    before = tree(d)

    def child() -> None:
        for payload in ("x" * 2000, "y" * 2000):
            with pytest.raises(aq.errors.ForkedProcessError) as info:
                q.submit("h", payload)
            assert info.value.owner_pid == os.getppid()
            assert info.value.pid == os.getpid()
        q.close()  # forgets the inherited handles; writes nothing

    in_forked_child(child)
    assert tree(d) == before, "the child changed the data directory"

    parent.append(q.submit("h", 3))
    q.close()
    with aq.ActionQueue.open(d) as q2:
        assert sum(q2.stats()["runs"].values()) == len(parent)
        assert all(q2.get_task(t) is not None for t in parent)


def test_a_forked_child_of_a_busy_queue_never_waits_for_the_parents_threads(
    tmp_path: Path,
) -> None:
    """The parent's loop and workers do not exist in the child, and locks they held at the
    fork stay held there: every call of the copy is refused before taking one, and close()
    forgets it at once (it used to wait for the in-flight attempt for ever)."""
    import threading

    d = tmp_path / "q"
    q = aq.ActionQueue.open(d, snapshot_on_close=False)
    started, release = threading.Event(), threading.Event()

    def busy(ctx: object, p: object) -> int:
        started.set()
        release.wait(30)
        return 1

    q.register("busy", busy)
    q.start()
    tid = q.submit("busy")
    assert started.wait(10)

    def child() -> None:
        for call in (
            lambda: q.submit("busy"),
            lambda: q.wait(tid, timeout=1),
            lambda: q.runs(tid),
            lambda: q.stats(),
        ):
            with pytest.raises(aq.errors.ForkedProcessError):
                call()
        q.close()
        assert q.closed

    in_forked_child(child)
    release.set()
    q.wait(tid, timeout=10)
    assert q.result(tid) == 1
    q.close()
