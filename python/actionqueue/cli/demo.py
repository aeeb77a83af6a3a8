"""``actionqueue demo``: the README's main job (placeholder until the runtime lands)."""

from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Open an embedded queue, run a realistic mix of tasks, show what happened."""


@click.command(name="_demo-worker", hidden=True)
def demo_worker() -> None:
    """Internal: the child process the demo kills."""
