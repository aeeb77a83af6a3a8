"""Command-line entry point built on click, with rich output.

The group holds the global options (``--data-dir``, ``--debug``, ``--max-record-size``) and the
one place where exceptions become a message, a hint and an exit code
(:mod:`actionqueue.cli.errors`).
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import click

from actionqueue import __version__
from actionqueue.cli.bench import bench
from actionqueue.cli.context import DEFAULT_DATA_DIR, CliContext
from actionqueue.cli.errors import describe
from actionqueue.cli.render import printable
from actionqueue.core._validate import U32_MAX
from actionqueue.storage.wal.fs_writer import DEFAULT_MAX_RECORD_SIZE

__all__ = ["CliContext", "cli", "main"]


class ActionQueueGroup(click.Group):
    """A click group that reports library errors as one line + hint and their documented exit
    code (``--debug`` prints the traceback first; the exit code stays the same)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            obj = ctx.obj if isinstance(ctx.obj, CliContext) else None
            debug = obj.debug if obj is not None else "--debug" in sys.argv
            if debug:
                traceback.print_exception(exc, file=sys.stderr)
            data_dir = obj.data_dir if obj is not None else DEFAULT_DATA_DIR
            d = describe(exc, data_dir)
            click.echo(f"error: {_shown(d.message)}", err=True)
            if d.hint:
                click.echo(f"hint: {_shown(d.hint)}", err=True)
            ctx.exit(d.exit_code)


def _shown(message: str) -> str:
    """An error message for the terminal: it may quote a path, an id the user typed or text
    from the data, so control characters are escaped (its own line breaks are kept)."""
    return "\n".join(printable(line) for line in message.split("\n"))


@click.group(
    cls=ActionQueueGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="actionqueue")
@click.option(
    "--data-dir",
    envvar="ACTIONQUEUE_DATA_DIR",
    default=DEFAULT_DATA_DIR,
    show_default=True,
    metavar="PATH",
    help="The queue's data directory (env: ACTIONQUEUE_DATA_DIR).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option(
    "--max-record-size",
    type=click.IntRange(min=1, max=U32_MAX),
    default=DEFAULT_MAX_RECORD_SIZE,
    show_default=True,
    metavar="BYTES",
    help="Largest WAL record read (payload bytes): pass the queue's own max_record_size when "
    "it was opened with a larger one.",
)
@click.pass_context
def cli(ctx: click.Context, data_dir: str, debug: bool, max_record_size: int) -> None:
    """actionqueue: a durable, embedded task queue and scheduler.

    Inspection commands (stats, tasks, runs, show, why, wal verify, wal dump) read the data
    directory without locking it, so they work while a queue is running. Commands that
    change something (cancel, pause, resume, retry, snapshot, compact, wal repair) take the
    directory's lock and refuse while another process holds it.
    """
    ctx.obj = CliContext(
        data_dir=os.path.normpath(data_dir), debug=debug, max_record_size=max_record_size
    )


def _register() -> None:
    # Imported here so that each command group stays in its own small module.
    from actionqueue.cli import control, demo, inspect, maintenance, wal

    cli.add_command(demo.demo)
    cli.add_command(demo.demo_worker)
    for cmd in (inspect.stats, inspect.tasks, inspect.runs, inspect.show, inspect.why):
        cli.add_command(cmd)
    cli.add_command(wal.wal)
    cli.add_command(maintenance.snapshot)
    cli.add_command(maintenance.compact)
    for cmd in (control.cancel, control.pause, control.resume, control.retry):
        cli.add_command(cmd)
    cli.add_command(bench)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="actionqueue")
