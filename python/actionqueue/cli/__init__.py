"""The ``actionqueue`` command (also ``python -m actionqueue``)."""

from __future__ import annotations

from actionqueue.cli.app import main

__all__ = ["main"]
