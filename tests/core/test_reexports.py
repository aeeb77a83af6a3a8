"""Short re-exports from ``actionqueue`` and ``actionqueue.core`` name the seed-path objects."""

from __future__ import annotations

import importlib

import actionqueue
import actionqueue.core

SEED_PATHS = {
    "TaskId": "actionqueue.core.ids",
    "RunId": "actionqueue.core.ids",
    "AttemptId": "actionqueue.core.ids",
    "TaskSpec": "actionqueue.core.task.task_spec",
    "TaskPayload": "actionqueue.core.task.task_spec",
    "RunPolicy": "actionqueue.core.task.run_policy",
    "MisfirePolicy": "actionqueue.core.task.run_policy",
    "TaskConstraints": "actionqueue.core.task.constraints",
    "Backoff": "actionqueue.core.task.constraints",
    "RetryOn": "actionqueue.core.task.constraints",
    "HoldPolicy": "actionqueue.core.task.constraints",
    "TaskMetadata": "actionqueue.core.task.metadata",
    "RunState": "actionqueue.core.run.state",
    "AttemptOutcome": "actionqueue.core.run.attempt",
    "DurabilityPolicy": "actionqueue.core.mutation",
}


def test_every_public_name_resolves() -> None:
    for module in (actionqueue, actionqueue.core):
        assert len(set(module.__all__)) == len(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_top_level_names_are_the_seed_path_objects() -> None:
    for name, path in SEED_PATHS.items():
        assert name in actionqueue.__all__
        assert getattr(actionqueue, name) is getattr(importlib.import_module(path), name)
        assert getattr(actionqueue.core, name) is getattr(actionqueue, name)


def test_seed_imports_of_the_core_model() -> None:
    from actionqueue.core.mutation import DurabilityPolicy, MutationCommand, TaskCreateCommand
    from actionqueue.core.run import run_instance, state, transitions

    assert issubclass(TaskCreateCommand, MutationCommand)
    assert DurabilityPolicy.Immediate is DurabilityPolicy.IMMEDIATE
    assert state.RunState.Ready is state.RunState.READY
    assert transitions.is_valid_transition(state.RunState.READY, state.RunState.LEASED)
    assert run_instance.RunInstance.__slots__
