"""The object every command receives: the global options, and consoles for output."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click
from rich.console import Console

from actionqueue.storage.wal.fs_writer import DEFAULT_MAX_RECORD_SIZE

__all__ = ["DEFAULT_DATA_DIR", "CliContext", "pass_cli"]

DEFAULT_DATA_DIR = "./actionqueue-data"


@dataclass
class CliContext:
    """Global options (``--data-dir``, ``--debug``, ``--max-record-size``)."""

    data_dir: str
    debug: bool
    max_record_size: int = DEFAULT_MAX_RECORD_SIZE
    """The largest record (payload bytes) the log is read with; a log written with a larger
    ``max_record_size`` needs at least that."""

    @property
    def console(self) -> Console:
        # Created per use: click's CliRunner swaps sys.stdout per invocation.
        # Not a terminal (a pipe, CI, a test): wide enough that tables do not fold ids.
        width = None if sys.stdout.isatty() else 160
        return Console(file=sys.stdout, highlight=False, soft_wrap=False, width=width)

    @property
    def err_console(self) -> Console:
        return Console(file=sys.stderr, highlight=False)


pass_cli = click.make_pass_decorator(CliContext)
