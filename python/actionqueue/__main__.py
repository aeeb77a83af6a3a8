"""``python -m actionqueue`` runs the command-line interface."""

from __future__ import annotations

from actionqueue.cli import main

main()
