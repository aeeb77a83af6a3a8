"""actionqueue: a durable, embedded task queue and scheduler with a Rust write-ahead-log core."""

from __future__ import annotations

from actionqueue import errors
from actionqueue.errors import ActionQueueError

__version__ = "0.1.0"

__all__ = ["ActionQueueError", "__version__", "errors"]
