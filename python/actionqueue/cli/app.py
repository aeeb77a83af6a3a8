"""Command-line entry point built on click, with rich output."""

from __future__ import annotations

import click

from actionqueue import __version__
from actionqueue.cli.bench import bench
from actionqueue.cli.demo import demo


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="actionqueue")
def cli() -> None:
    """actionqueue: a durable, embedded task queue and scheduler."""


cli.add_command(demo)
cli.add_command(bench)


def main() -> None:
    """Console-script entry point."""
    cli()
