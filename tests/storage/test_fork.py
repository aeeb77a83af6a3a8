"""An authority or WAL writer used from a forked child: every call is refused with
``ForkedProcessError``, ``close()`` there writes nothing, and the parent goes on (BUG: the
child's appends went to the parent's offset, were acknowledged, then overwritten)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from authority_helpers import T0, create, spec

from actionqueue.core.ids import TaskId
from actionqueue.core.mutation import DurabilityPolicy, TaskCreateCommand
from actionqueue.errors import DataDirLockedError, ForkedProcessError, StorageError
from actionqueue.storage.mutation import StorageMutationAuthority
from actionqueue.storage.wal import WalFsReader, WalFsWriter
from forking import in_forked_child, tree

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.timeout(60),
]


def submit_task(a: StorageMutationAuthority, tid: TaskId) -> None:
    cmds, _ = create(spec(task_id=tid))
    a.submit_batch(cmds, DurabilityPolicy.IMMEDIATE)


def test_child_is_refused_its_close_writes_nothing_and_the_parent_goes_on(
    data_dir: Path,
) -> None:
    opts = {"snapshot_every": 2, "keep_snapshots": 1, "sync_interval": 0.001}
    a = StorageMutationAuthority.open(data_dir, **opts)
    parent = [TaskId.new() for _ in range(6)]
    for t in parent[:3]:
        submit_task(a, t)
    child_task = TaskId.new()
    before = tree(data_dir)
    me = os.getpid()

    def child() -> None:
        with pytest.raises(ForkedProcessError) as info:
            submit_task(a, child_task)
        e = info.value
        assert isinstance(e, StorageError)
        assert (e.owner_pid, e.pid, e.path) == (me, os.getpid(), str(data_dir / "wal"))
        assert f"this queue (WAL directory {data_dir / 'wal'}) was opened by process {me}" in str(e)
        assert "fork before opening" in str(e)
        for call in (a.flush, a.snapshot, lambda: a.get_task(parent[0])):
            with pytest.raises(ForkedProcessError):
                call()
        assert a.failed is not None
        assert "forked" in a.failed
        a.close()  # forgets the handles: no flush, snapshot, sync mark or unlock
        a.close()
        with pytest.raises(ForkedProcessError):
            submit_task(a, child_task)

    in_forked_child(child)
    assert tree(data_dir) == before, "the child changed the data directory"

    for t in parent[3:]:
        submit_task(a, t)
    with pytest.raises(DataDirLockedError):  # the child did not release the parent's lock
        StorageMutationAuthority.open(data_dir, **opts)
    a.close()
    with StorageMutationAuthority.open(data_dir) as b:
        assert all(b.get_task(t) is not None for t in parent)
        assert b.get_task(child_task) is None


def test_child_close_does_not_wait_for_the_parents_completer_thread(data_dir: Path) -> None:
    a = StorageMutationAuthority.open(data_dir)

    async def submit_async() -> None:
        await a.submit_command_async(
            TaskCreateCommand(None, spec(), T0), DurabilityPolicy.IMMEDIATE
        )

    asyncio.run(submit_async())  # the completer thread now lingers (it exists in the parent)
    before = tree(data_dir)

    def child() -> None:
        with pytest.raises(ForkedProcessError):
            asyncio.run(submit_async())
        with pytest.raises(ForkedProcessError):
            asyncio.run(a.wait_durable_async())
        a.close()  # must not join the completer: the test's timeout would fire

    in_forked_child(child)
    assert tree(data_dir) == before
    asyncio.run(submit_async())
    a.close()


def test_child_cannot_append_through_an_inherited_wal_writer(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    w = WalFsWriter(path, sync_interval=0.001)
    w.append((12, 1, 1), "immediate")
    before = tree(path)

    def child() -> None:
        for call in (
            lambda: w.append((12, 2, 2), "immediate"),
            lambda: w.append((12, 2, 2), "deferred"),
            w.flush,
        ):
            with pytest.raises(ForkedProcessError, match="WAL writer"):
                call()
        w.close()  # no sync mark, no unlock, the sync thread (parent only) not joined

    in_forked_child(child)
    assert tree(path) == before, "the child changed the WAL directory"
    w.append((12, 3, 3), "immediate")
    with pytest.raises(DataDirLockedError):
        WalFsWriter(path)
    w.close()
    assert [(e.sequence, e.event) for e in WalFsReader(path)] == [(1, (12, 1, 1)), (2, (12, 3, 3))]
