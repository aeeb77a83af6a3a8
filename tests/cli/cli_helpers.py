"""Helpers and the `populated` fixture (re-exported by conftest.py).

`populated` is a data directory with a known mix of tasks and runs, built through the engine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from actionqueue.cli.app import cli
from actionqueue.core import AttemptOutcome, Backoff, RunPolicy, TaskConstraints, TaskId, TaskSpec
from actionqueue.core.ids import RunId
from actionqueue.core.task.metadata import TaskMetadata
from actionqueue.engine import Engine
from actionqueue.engine.time.clock import SystemClock
from actionqueue.storage.recovery import bootstrap


@dataclass
class Populated:
    """Ids of what :func:`populated` wrote (see there)."""

    path: Path
    done_task: TaskId
    done_run: RunId
    retry_run: RunId
    holder_run: RunId
    blocked_run: RunId
    future_run: RunId
    failed_run: RunId
    repeat_task: TaskId


def run_cli(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def flip_byte(path: Path, offset: int) -> None:
    """Inverts the byte at ``offset`` of the file ``path`` (damage a checksum will catch)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


@pytest.fixture
def populated(tmp_path: Path) -> Populated:
    """A closed data directory holding:

    * a completed ``email`` task (tag ``mail``);
    * a run in RetryWait (failed once with "smtp down", 1 h backoff);
    * two ``db``-keyed runs: one Running (the key holder, lease 1 h), one Ready behind it;
    * a run scheduled an hour from now; a Failed run; a 3-run repeat task (priority 5).
    """
    path = tmp_path / "data"
    # No snapshot at close: the read view then replays the whole log (snapshots are tested
    # through the `snapshot` command).
    auth, _ = bootstrap(path, snapshot_on_close=False)
    eng = Engine(
        auth, SystemClock(), owner="test-worker", rng=random.Random(1), default_lease_ms=3_600_000
    )

    def spec(
        handler: str,
        policy: RunPolicy | None = None,
        tags: tuple[str, ...] = (),
        priority: int = 0,
        **c: object,
    ) -> TaskSpec:
        return TaskSpec(
            TaskId.new(),
            b'{"n": 1}',
            policy or RunPolicy.once(),
            TaskConstraints(**c),
            TaskMetadata(priority, tags),
            handler=handler,
        )

    def only(tid: TaskId) -> RunId:
        (r,) = eng.runs_for_task(tid)
        return r.run_id

    done = eng.submit(spec("email", tags=("mail",)))
    (d,) = eng.dispatch_next()
    eng.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.SUCCESS, output=b"sent")

    retry = eng.submit(
        spec("email", tags=("mail",), max_attempts=3, retry=Backoff.fixed(3_600_000))
    )
    (d,) = eng.dispatch_next()
    eng.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.RETRYABLE_FAILURE, error="smtp down")

    holder = eng.submit(spec("report", concurrency_key="db"))
    blocked = eng.submit(spec("report", concurrency_key="db"))
    (d,) = eng.dispatch_next(limit=5)
    assert d.task_id == holder

    future = eng.submit(spec("later"), origin=SystemClock().now() + 3_600_000)

    failed = eng.submit(spec("broken"))
    (d,) = eng.dispatch_next()
    eng.finish_attempt(
        d.run_id, d.attempt_id, AttemptOutcome.TERMINAL_FAILURE, error="ValueError: bad input"
    )

    repeat = eng.submit(spec("tick", RunPolicy.repeat(3, 3_600_000), priority=5))
    ids = Populated(
        path,
        done,
        only(done),
        only(retry),
        only(holder),
        only(blocked),
        only(future),
        only(failed),
        repeat,
    )
    auth.close()
    return ids
