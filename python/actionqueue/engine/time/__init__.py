"""Clocks for the engine: integer milliseconds since the Unix epoch (UTC)."""

from __future__ import annotations

from actionqueue.engine.time.clock import Clock, ManualClock, SystemClock

__all__ = ["Clock", "ManualClock", "SystemClock"]
