"""``cancel``, ``pause``, ``resume``, ``retry``: change a queue that is not running.

Each takes the directory lock (refused while a queue has it open: do it from that process, via
``ActionQueue.cancel()`` / ``pause()`` / ...) and writes one durable record through the engine,
exactly as the runtime would.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import click

from actionqueue.cli.context import CliContext, pass_cli
from actionqueue.cli.errors import CliError
from actionqueue.cli.store import open_authority, resolve_id
from actionqueue.core.ids import RunId
from actionqueue.engine.engine import Engine
from actionqueue.engine.time.clock import SystemClock
from actionqueue.storage.mutation import StorageMutationAuthority

__all__ = ["cancel", "pause", "resume", "retry"]


@contextmanager
def _engine(cli: CliContext) -> Iterator[tuple[Engine, StorageMutationAuthority]]:
    with open_authority(cli.data_dir, max_record_size=cli.max_record_size) as auth:
        # cast: the authority's query tuples are narrower than the port's Sequence types.
        yield Engine(cast(Any, auth), SystemClock(), owner="actionqueue-cli"), auth


@click.command()
@click.argument("ident", metavar="ID")
@click.option("--reason", default=None, help="Recorded in the run's history.")
@pass_cli
def cancel(cli: CliContext, ident: str, reason: str | None) -> None:
    """Cancel a task (and all its unfinished runs) or a single run. ID may be a unique prefix."""
    with _engine(cli) as (engine, auth):
        target = resolve_id(auth, ident)
        if isinstance(target, RunId):
            engine.cancel_run(target, reason or "canceled from the CLI")
            what = f"run {target}"
        else:
            engine.cancel_task(target, reason or "canceled from the CLI")
            what = f"task {target} and its unfinished runs"
    cli.console.print(f"canceled {what}", markup=False)


@click.command()
@pass_cli
def pause(cli: CliContext) -> None:
    """Stop handing out work (durable: a queue opened later stays paused)."""
    with _engine(cli) as (engine, _auth):
        changed = engine.pause()
    cli.console.print("paused" if changed else "already paused")


@click.command()
@pass_cli
def resume(cli: CliContext) -> None:
    """Resume after `pause`."""
    with _engine(cli) as (engine, _auth):
        changed = engine.resume()
    cli.console.print("resumed" if changed else "not paused")


@click.command()
@click.argument("run_id", metavar="RUN_ID")
@pass_cli
def retry(cli: CliContext, run_id: str) -> None:
    """Make a RetryWait run Ready now (skip its backoff) or resume a Suspended one.

    Terminal runs cannot be retried: Failed is final — submit a new task instead.
    """
    with _engine(cli) as (engine, auth):
        target = resolve_id(auth, run_id)
        if not isinstance(target, RunId):
            raise CliError(f"{run_id} is a task id; retry takes a run id", None, "usage")
        engine.retry_now(target)
    cli.console.print(f"run {target} is Ready", markup=False)
