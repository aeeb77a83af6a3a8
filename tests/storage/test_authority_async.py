"""Awaitable submits: many Immediate commits in flight from one event loop share syncs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from authority_helpers import T0, spec

from actionqueue.core.mutation import DurabilityPolicy, MutationCommand, TaskCreateCommand
from actionqueue.errors import CommandRejectedError, ValidationError
from actionqueue.storage.recovery import bootstrap

IMM = DurabilityPolicy.IMMEDIATE


def _create(at: int) -> MutationCommand:
    return MutationCommand.TaskCreate(TaskCreateCommand(None, spec(), at))


@pytest.mark.timeout(120)
def test_concurrent_async_immediate_submits_are_durable_and_share_syncs(tmp_path: Path) -> None:
    a, _ = bootstrap(tmp_path / "data", snapshot_every=0, snapshot_on_close=False)
    tasks, per_task = 32, 20

    async def producer() -> list[int]:
        out = []
        for i in range(per_task):
            out.append((await a.submit_command_async(_create(T0 + i), IMM)).sequence)
        return out

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(producer() for _ in range(tasks)))

    before = a.stats()
    seqs = [s for per in asyncio.run(main()) for s in per]
    after = a.stats()
    assert sorted(seqs) == list(range(1, tasks * per_task + 1))
    # Every acknowledged record was durable when its future resolved.
    assert after.synced_sequence >= tasks * per_task
    assert after.wal_syncs - before.wal_syncs < tasks * per_task
    a.close()
    b, report = bootstrap(tmp_path / "data", snapshot_on_close=False)
    assert report.events_replayed == tasks * per_task
    b.close()


def test_async_refusal_raises_before_awaiting_and_changes_nothing(tmp_path: Path) -> None:
    a, _ = bootstrap(tmp_path / "data", snapshot_every=0, snapshot_on_close=False)
    cmd = _create(T0)

    async def main() -> None:
        await a.submit_command_async(cmd, IMM)
        with pytest.raises(CommandRejectedError):
            await a.submit_command_async(cmd, IMM)  # the same task id again
        first, last = await a.submit_wire_async([_create(T0).to_wire()], "deferred")
        assert (first, last) == (2, 2)

    asyncio.run(main())
    assert a.stats().rejected == 1
    a.close()


def test_close_resolves_pending_and_refuses_later_async_submits(tmp_path: Path) -> None:
    a, _ = bootstrap(tmp_path / "data", snapshot_every=0, snapshot_on_close=False)

    async def main() -> None:
        futs = [asyncio.ensure_future(a.submit_command_async(_create(T0), IMM)) for _ in range(8)]
        done = await asyncio.gather(*futs)
        assert len({d.sequence for d in done}) == 8
        a.close()
        with pytest.raises(Exception, match="closed"):
            await a.submit_command_async(_create(T0), IMM)

    asyncio.run(main())


@pytest.mark.timeout(120)
def test_wait_durable_async_covers_deferred_submits_made_anywhere(tmp_path: Path) -> None:
    """Deferred submits (from any thread), then one awaitable wait: everything up to the
    sequence waited for is durable when it returns; waits for what is durable already return
    at once; a sequence never submitted is refused."""
    a, _ = bootstrap(tmp_path / "data", snapshot_every=0, snapshot_on_close=False)

    async def main() -> None:
        await asyncio.gather(
            *(asyncio.to_thread(a.submit_command, _create(T0 + i), "deferred") for i in range(8))
        )
        assert a.stats().synced_sequence < 8
        await asyncio.gather(*(a.wait_durable_async() for _ in range(4)))  # share one sync
        assert a.stats().synced_sequence >= 8
        syncs = a.stats().wal_syncs
        await a.wait_durable_async(5)  # durable already: no sync, no completer
        assert a.stats().wal_syncs == syncs
        with pytest.raises(ValidationError, match="cannot wait for sequence 99"):
            await a.wait_durable_async(99)

    asyncio.run(main())
    a.close()
