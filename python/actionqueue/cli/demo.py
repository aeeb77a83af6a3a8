"""``actionqueue demo``: the README's main job."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from actionqueue import _core


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("actionqueue-data"),
    show_default=True,
    help="Where the demo queue keeps its data.",
)
def demo(data_dir: Path) -> None:
    """Open an embedded queue, run a realistic mix of tasks, show what happened."""
    console = Console()
    console.print(f"[bold]actionqueue demo[/bold] (core format v{_core.FORMAT_VERSION})")
    console.print(f"data directory: {data_dir}")
    console.print("The runtime is not built yet; this demo grows with each layer.")
