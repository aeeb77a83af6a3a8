"""The seed's first example (actionqueue_storage crate docs), written in Python with the seed's
names, runs as shown; and the ```python blocks of docs/storage.md run."""

from __future__ import annotations

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "storage.md"


def test_seed_example_verbatim() -> None:
    import os
    import tempfile
    import time

    from actionqueue.core.ids import TaskId
    from actionqueue.core.mutation import (
        DurabilityPolicy,
        MutationCommand,
        TaskCreateCommand,
    )
    from actionqueue.core.task.constraints import TaskConstraints
    from actionqueue.core.task.metadata import TaskMetadata
    from actionqueue.core.task.run_policy import RunPolicy
    from actionqueue.core.task.task_spec import TaskPayload, TaskSpec
    from actionqueue.storage.mutation import StorageMutationAuthority
    from actionqueue.storage.recovery.reducer import ReplayReducer
    from actionqueue.storage.wal.fs_writer import WalFsWriter

    # Build a unique temporary WAL path for this process.
    unique = time.time_ns()
    wal_path = os.path.join(tempfile.gettempdir(), f"actionqueue-storage-example-{unique}.wal")

    # Authority lane owns durable ordering: validate -> append -> durability -> apply.
    wal_writer = WalFsWriter(wal_path)
    projection = ReplayReducer()
    authority = StorageMutationAuthority(wal_writer, projection)

    task_id = TaskId.new()
    task_spec = TaskSpec(
        task_id,
        TaskPayload.with_content_type(b"example-payload", "application/octet-stream"),
        RunPolicy.Once,
        TaskConstraints(),
        TaskMetadata(),
    )

    authority.submit_command(
        MutationCommand.TaskCreate(TaskCreateCommand(1, task_spec, 0)),
        DurabilityPolicy.IMMEDIATE,
    )

    # What it did, checked.
    rec = authority.get_task(task_id)
    assert rec is not None
    assert rec.spec == task_spec
    assert authority.latest_sequence == 1
    authority.close()
    import shutil

    shutil.rmtree(wal_path)


def test_storage_page_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 4
    namespace: dict[str, object] = {}
    for i, block in enumerate(blocks):
        # One namespace: later blocks build on earlier ones, like a reader would.
        exec(compile(block, f"{PAGE.name}[block {i}]", "exec"), namespace)


def test_module_doctests() -> None:
    import doctest
    import importlib

    for name in ("actionqueue.storage.mutation", "actionqueue.storage.recovery.reducer"):
        result = doctest.testmod(importlib.import_module(name))
        assert result.attempted > 0, name
        assert result.failed == 0, name
