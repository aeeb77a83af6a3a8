"""Executors: where handlers run. See :mod:`.base` for the interface.

============  ==================================  =========================================
name          runs handlers                       timeout / cancel
============  ==================================  =========================================
threads       on a bounded thread pool (default)  cooperative signal; outcome recorded at once
asyncio       as tasks on a private event loop    ``task.cancel()``
processes     in worker processes                 the worker is killed
Executor      any concurrent.futures executor     cooperative (``future.cancel()``)
Dask Client   on a Dask cluster                   cooperative (``future.cancel()``)
============  ==================================  =========================================
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

from actionqueue.errors import ValidationError, WrongTypeError
from actionqueue.runtime.executors.aio import AsyncioExecutor
from actionqueue.runtime.executors.base import ExecutorAdapter, Job
from actionqueue.runtime.executors.futures import FuturesExecutor, is_dask_client
from actionqueue.runtime.executors.processes import ProcessExecutor
from actionqueue.runtime.executors.threads import ThreadExecutor

__all__ = [
    "AsyncioExecutor",
    "ExecutorAdapter",
    "FuturesExecutor",
    "Job",
    "ProcessExecutor",
    "ThreadExecutor",
    "is_dask_client",
    "make_executor",
]


def make_executor(spec: Any, max_workers: int | None = None) -> ExecutorAdapter:
    """An executor from ``"threads"`` / ``"asyncio"`` / ``"processes"``, an
    :class:`ExecutorAdapter`, a ``concurrent.futures.Executor`` or a Dask ``Client``."""
    if isinstance(spec, ExecutorAdapter):
        return spec
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name in ("threads", "thread"):
            return ThreadExecutor(8 if max_workers is None else max_workers)
        if name == "asyncio":
            return AsyncioExecutor(100 if max_workers is None else max_workers)
        if name in ("processes", "process"):
            return ProcessExecutor(4 if max_workers is None else max_workers)
        raise ValidationError(
            f"executor must be 'threads', 'asyncio', 'processes', a concurrent.futures "
            f"Executor or a Dask Client, got {spec!r}"
        )
    if isinstance(spec, concurrent.futures.Executor) or is_dask_client(spec):
        return FuturesExecutor(spec, max_workers=max_workers)
    if callable(getattr(spec, "submit", None)):
        return FuturesExecutor(spec, max_workers=max_workers)
    raise WrongTypeError(
        f"executor must be 'threads', 'asyncio', 'processes', a concurrent.futures Executor or "
        f"a Dask Client, got {type(spec).__name__} {spec!r:.80}"
    )
