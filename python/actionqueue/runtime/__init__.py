"""The runtime: run user handlers against a durable queue (SPEC §9).

Modules, one job each: :mod:`.units` (plain numbers are seconds at this layer),
:mod:`.api` (``Retry`` / ``Fail`` / ``Suspend``, backoff helpers), :mod:`.codecs`,
:mod:`.handlers`, :mod:`.context`, :mod:`.outcomes`, :mod:`.executors`, :mod:`.metrics`.
"""

from __future__ import annotations

from actionqueue.runtime.api import Cancelled, Fail, Retry, Suspend, every, exponential, fixed
from actionqueue.runtime.codecs import (
    BytesCodec,
    Codec,
    CodecRegistry,
    JsonCodec,
    TextCodec,
)
from actionqueue.runtime.context import CancelSignal, ContextSnapshot, HandlerContext, RemoteContext
from actionqueue.runtime.executors import (
    AsyncioExecutor,
    ExecutorAdapter,
    FuturesExecutor,
    ProcessExecutor,
    ThreadExecutor,
    make_executor,
)
from actionqueue.runtime.handlers import HandlerOptions, HandlerRegistry, RegisteredHandler
from actionqueue.runtime.metrics import Metrics
from actionqueue.runtime.outcomes import AttemptResult, ErrorInfo, ResultKind, Verdict, interpret
from actionqueue.runtime.queue import ActionQueue

__all__ = [
    "ActionQueue",
    "AsyncioExecutor",
    "AttemptResult",
    "BytesCodec",
    "CancelSignal",
    "Cancelled",
    "Codec",
    "CodecRegistry",
    "ContextSnapshot",
    "ErrorInfo",
    "ExecutorAdapter",
    "Fail",
    "FuturesExecutor",
    "HandlerContext",
    "HandlerOptions",
    "HandlerRegistry",
    "JsonCodec",
    "Metrics",
    "ProcessExecutor",
    "RegisteredHandler",
    "RemoteContext",
    "ResultKind",
    "Retry",
    "Suspend",
    "TextCodec",
    "ThreadExecutor",
    "Verdict",
    "every",
    "exponential",
    "fixed",
    "interpret",
    "make_executor",
]
