"""Fixtures for the CLI tests (defined in cli_helpers.py, a uniquely named module)."""

from __future__ import annotations

from cli_helpers import populated

__all__ = ["populated"]
