"""Inspection commands: ``stats``, ``tasks``, ``runs``, ``show``, ``why``.

All of them read a lock-free view of the data directory (:func:`actionqueue.cli.store.read_view`),
so they work while a queue is running and never change a byte.
"""

from __future__ import annotations

import time
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from actionqueue.cli.context import CliContext, pass_cli
from actionqueue.cli.errors import CliError
from actionqueue.cli.render import (
    ago,
    backoff_text,
    counts_dict,
    duration,
    echo_json,
    fmt_ms,
    fmt_short,
    plain,
    policy_text,
    run_to_dict,
    short,
    task_to_dict,
)
from actionqueue.cli.store import ReadView, iter_runs, list_tasks, read_view, resolve_id
from actionqueue.cli.why import explain
from actionqueue.core.ids import RunId
from actionqueue.core.run.run_instance import RunInstance
from actionqueue.core.run.state import TERMINAL_STATES, RunState
from actionqueue.engine.ports import task_is_finished
from actionqueue.storage._queries import TaskRecord

__all__ = ["runs", "show", "stats", "tasks", "why"]

_STATE_STYLE = {
    RunState.COMPLETED: "green",
    RunState.FAILED: "red",
    RunState.CANCELED: "dim",
    RunState.RUNNING: "cyan",
    RunState.LEASED: "cyan",
    RunState.RETRY_WAIT: "yellow",
    RunState.SUSPENDED: "magenta",
}

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _now() -> int:
    return time.time_ns() // 1_000_000


def _styled(state: RunState) -> str:
    style = _STATE_STYLE.get(state)
    return state.label if style is None else f"[{style}]{state.label}[/{style}]"


def _parse_states(values: tuple[str, ...]) -> list[RunState] | None:
    out: list[RunState] = []
    for v in values:
        for part in v.split(","):
            if part.strip():
                out.append(RunState.parse(part.strip()))
    return list(dict.fromkeys(out)) or None  # a state named twice is listed once


@click.command()
@json_option
@pass_cli
def stats(cli: CliContext, as_json: bool) -> None:
    """Runs per state, tasks, pause state and the log's position."""
    view = read_view(cli.data_dir, max_record_size=cli.max_record_size)
    q = view.state
    counts = q.counts()
    out: dict[str, Any] = {
        "data_dir": cli.data_dir,
        "tasks": q.task_count,
        "runs": q.run_count,
        "runs_by_state": counts_dict(counts),
        "paused": q.is_paused,
        "latest_sequence": q.latest_sequence,
        "next_due": q.next_due(),
        "next_lease_expiry": q.next_lease_expiry(),
        "snapshot_sequence": view.snapshot_sequence,
        "events_replayed": view.events_replayed,
        "torn_tail": view.torn_tail,
        "snapshots_skipped": [{"path": p, "reason": r} for p, r in view.snapshots_skipped],
    }
    if as_json:
        echo_json(out)
        return
    now = _now()
    con = cli.console
    con.print(plain(cli.data_dir, "bold"))
    table = Table(show_header=True, header_style="bold")
    table.add_column("state")
    table.add_column("runs", justify="right")
    for st, n in counts.items():
        table.add_row(_styled(st), str(n))
    table.add_row("[bold]total[/bold]", f"[bold]{q.run_count}[/bold]")
    con.print(table)
    con.print(f"tasks: {q.task_count}    paused: {'yes' if q.is_paused else 'no'}")
    con.print(f"next due: {ago(q.next_due(), now)}")
    con.print(f"next lease expiry: {ago(q.next_lease_expiry(), now)}")
    snap = (
        "none (whole log replayed)"
        if view.snapshot_sequence is None
        else (f"at sequence {view.snapshot_sequence}")
    )
    con.print(
        f"log: latest sequence {q.latest_sequence}; snapshot {snap}; "
        f"{view.events_replayed} events replayed after it"
    )
    for path, reason in view.snapshots_skipped:
        _note(cli, f"snapshot {path} not used: {reason}")
    if view.torn_tail:
        _note(
            cli,
            f"the log ends in an incomplete record "
            f"({view.torn_tail.get('segment')} @ {view.torn_tail.get('offset')}): a crash "
            "tail, or a record being written right now; the next open cuts a crash tail",
        )


def _note(cli: CliContext, text: str) -> None:
    """A yellow ``note:`` and ``text``, which may quote paths and error text (plain)."""
    cli.console.print(Text.assemble(("note:", "yellow"), " ", plain(text)))


def _runs_by_task(view: ReadView) -> dict[bytes, list[RunInstance]]:
    out: dict[bytes, list[RunInstance]] = {}
    for r in iter_runs(view.state):
        out.setdefault(r.task_id.bytes, []).append(r)
    return out


def _task_matches(rec: TaskRecord, handler: str | None, tag: str | None) -> bool:
    if handler is not None and rec.spec.handler != handler:
        return False
    return tag is None or tag in rec.spec.metadata.tags


@click.command()
@click.option("--handler", help="Only tasks routed to this handler.")
@click.option("--tag", help="Only tasks carrying this tag.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
@pass_cli
def tasks(cli: CliContext, handler: str | None, tag: str | None, limit: int, as_json: bool) -> None:
    """List tasks (oldest first) with their runs by state."""
    view = read_view(cli.data_dir, max_record_size=cli.max_record_size)
    by_task = _runs_by_task(view)
    chosen = [t for t in list_tasks(view) if _task_matches(t, handler, tag)][:limit]
    if as_json:
        echo_json([task_to_dict(t, by_task.get(t.task_id.bytes, [])) for t in chosen])
        return
    table = Table(show_header=True, header_style="bold")
    for col in ("task", "handler", "policy", "prio", "key", "runs", "attempts", "created (UTC)"):
        table.add_column(col, no_wrap=col in ("task", "created"))
    for t in chosen:
        rs = by_task.get(t.task_id.bytes, [])
        parts: dict[RunState, int] = {}
        for r in rs:
            parts[r.state] = parts.get(r.state, 0) + 1
        runs_text = ", ".join(f"{n} {_styled(s)}" for s, n in sorted(parts.items())) or "-"
        if t.canceled_at is not None:
            runs_text += " (task canceled)"
        table.add_row(
            short(t.task_id),
            plain(t.spec.handler or "-"),
            plain(policy_text(t.spec.run_policy)),  # a cron expression and time zone
            str(t.spec.metadata.priority),
            plain(t.spec.constraints.concurrency_key or "-"),
            runs_text,
            str(sum(len(r.attempts) for r in rs)),
            fmt_short(t.created_at),
        )
    cli.console.print(table)
    if not chosen:
        cli.console.print("no tasks" + (" match" if handler or tag else ""))


@click.command()
@click.option(
    "--state",
    "states",
    multiple=True,
    help="Only runs in this state (repeat or comma-separate: --state ready,running).",
)
@click.option("--handler", help="Only runs of tasks routed to this handler.")
@click.option("--tag", help="Only runs of tasks carrying this tag.")
@click.option("--task", "task_id", metavar="TASK_ID", help="Only runs of this task.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
@pass_cli
def runs(
    cli: CliContext,
    states: tuple[str, ...],
    handler: str | None,
    tag: str | None,
    task_id: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List runs, state by state (each in its queue order: Ready in dispatch order, ...)."""
    view = read_view(cli.data_dir, max_record_size=cli.max_record_size)
    q = view.state
    wanted = _parse_states(states)
    tid = None
    if task_id is not None:
        target = resolve_id(q, task_id, view)
        if isinstance(target, RunId):
            raise CliError(f"{task_id} is a run id, not a task id", None, "usage")
        tid = target
    specs: dict[bytes, TaskRecord | None] = {}
    out: list[RunInstance] = []
    source = (
        q.runs_for_task(tid)
        if tid is not None
        else iter_runs(q, wanted, tag=tag or None, handler=handler or None)
    )
    for r in source:
        if wanted and r.state not in wanted:
            continue
        key = r.task_id.bytes
        if key not in specs:
            specs[key] = q.get_task(r.task_id)
        rec = specs[key]
        if (handler or tag) and (rec is None or not _task_matches(rec, handler, tag)):
            continue
        out.append(r)
        if len(out) >= limit:
            break
    if as_json:
        rows = []
        for r in out:
            d = run_to_dict(r)
            rec = specs.get(r.task_id.bytes)
            d["handler"] = None if rec is None else rec.spec.handler
            rows.append(d)
        echo_json(rows)
        return
    now = _now()
    table = Table(show_header=True, header_style="bold")
    for col in ("run", "task", "handler", "#", "state", "scheduled (UTC)", "attempts", "in state"):
        table.add_column(col, no_wrap=True)
    for r in out:
        rec = specs.get(r.task_id.bytes)
        table.add_row(
            short(r.run_id),
            short(r.task_id),
            plain((rec.spec.handler if rec else None) or "-"),
            str(r.ordinal),
            _styled(r.state),
            fmt_short(r.scheduled_at),
            str(r.attempt_count),
            duration(now - r.last_state_change_at) + " ago",
        )
    cli.console.print(table)
    if not out:
        cli.console.print("no runs match")


def _show_task(cli: CliContext, view: ReadView, rec: TaskRecord, as_json: bool) -> None:
    rs = sorted(view.state.runs_for_task(rec.task_id), key=lambda r: r.ordinal)
    if as_json:
        d = task_to_dict(rec, rs)
        d["runs"] = [run_to_dict(r) for r in rs]
        echo_json({"task": d})
        return
    con = cli.console
    s = rec.spec
    c = s.constraints
    con.print(f"[bold]task {rec.task_id}[/bold]")
    rows = [
        ("handler", s.handler or "-"),
        (
            "policy",
            policy_text(s.run_policy) + f" (misfire: {s.run_policy.misfire.kind.name.lower()})",
        ),
        ("payload", f"{len(s.payload.data)} bytes, {s.payload.content_type or 'no content type'}"),
        ("max attempts", str(c.max_attempts)),
        ("timeout", "-" if c.timeout_ms is None else duration(c.timeout_ms)),
        ("backoff", backoff_text(s)),
        ("concurrency key", c.concurrency_key or "-"),
        ("priority", str(s.metadata.priority)),
        ("tags", ", ".join(s.metadata.tags) or "-"),
        ("dedupe key", s.dedupe_key or "-"),
        ("created", fmt_ms(rec.created_at)),
        ("canceled", fmt_ms(rec.canceled_at)),
        ("runs derived", f"{rec.derived} ({rec.non_terminal} unfinished)"),
    ]
    unresolved = s.run_policy.unresolved
    if unresolved is not None and rec.canceled_at is None and not task_is_finished(rec):
        rows.append(("next runs", f"cannot be derived on this machine: {unresolved}"))
    for k, v in rows:
        con.print(plain(f"  {k:16} {v}"))
    table = Table(show_header=True, header_style="bold", title="runs", title_justify="left")
    for col in ("run", "#", "state", "scheduled", "attempts", "last error"):
        table.add_column(col, no_wrap=col == "run")
    for r in rs:
        err = next((a.error for a in reversed(r.attempts) if a.error), None)
        table.add_row(
            str(r.run_id),
            str(r.ordinal),
            _styled(r.state),
            fmt_ms(r.scheduled_at),
            str(r.attempt_count),
            plain((err or "").split("\n", 1)[0][:60]),
        )
    con.print(table)


def _show_run(cli: CliContext, view: ReadView, run: RunInstance, as_json: bool) -> None:
    rec = view.state.get_task(run.task_id)
    now = _now()
    if as_json:
        d = run_to_dict(run)
        d["task"] = None if rec is None else task_to_dict(rec)
        d["why"] = explain(view, run, now).to_dict()
        echo_json({"run": d})
        return
    con = cli.console
    con.print(f"[bold]run {run.run_id}[/bold]  {_styled(run.state)}")
    handler = rec.spec.handler if rec else None
    con.print(plain(f"  task             {run.task_id} (handler {handler or '-'})"))
    con.print(f"  ordinal          {run.ordinal}", markup=False)
    con.print(f"  scheduled        {ago(run.scheduled_at, now)}", markup=False)
    # A run records its priority when it becomes Ready; before that (or if it never did, e.g.
    # canceled while Scheduled) the task's is what selection would use.
    if run.effective_priority is not None:
        priority = str(run.effective_priority)
    elif rec is not None:
        priority = f"{rec.spec.metadata.priority} (the task's; never Ready yet)"
    else:
        priority = "-"
    con.print(f"  priority         {priority}", markup=False)
    max_att = rec.spec.constraints.max_attempts if rec else "?"
    con.print(f"  attempts         {run.attempt_count} of {max_att}", markup=False)
    if run.not_before is not None and run.state is RunState.RETRY_WAIT:
        con.print(f"  retry at         {ago(run.not_before, now)}", markup=False)
    if run.lease is not None:
        lease = run.lease
        con.print(plain(f"  lease            {lease.owner} until {ago(lease.expires_at, now)}"))
    con.print(plain(f"  why              {explain(view, run, now).text}"))
    hist = Table(show_header=True, header_style="bold", title="state history", title_justify="left")
    for col in ("at", "from", "to", "reason"):
        hist.add_column(col)
    for h in run.history:
        hist.add_row(
            fmt_ms(h.at),
            "-" if h.from_state is None else h.from_state.label,
            _styled(h.to_state),
            plain(h.reason or ""),
        )
    con.print(hist)
    if run.attempts:
        att = Table(show_header=True, header_style="bold", title="attempts", title_justify="left")
        for col in ("#", "attempt", "started", "took", "outcome", "error"):
            att.add_column(col)
        for i, a in enumerate(run.attempts, 1):
            took = "-" if a.finished_at is None else duration(a.finished_at - a.started_at)
            att.add_row(
                str(i),
                short(a.attempt_id),
                fmt_ms(a.started_at),
                took,
                "(open)" if a.outcome is None else a.outcome.label,
                plain((a.error or "").split("\n", 1)[0][:70]),
            )
        con.print(att)


@click.command()
@click.argument("ident", metavar="ID")
@json_option
@pass_cli
def show(cli: CliContext, ident: str, as_json: bool) -> None:
    """Show a task (spec, runs) or a run (state history, attempts with errors, lease).

    ID is a task or run id, or a unique prefix of one (4+ hex digits).
    """
    view = read_view(cli.data_dir, max_record_size=cli.max_record_size)
    target = resolve_id(view.state, ident, view)
    if isinstance(target, RunId):
        run = view.state.get_run(target)
        assert run is not None  # resolve_id found it in this same view
        _show_run(cli, view, run, as_json)
    else:
        rec = view.state.get_task(target)
        assert rec is not None
        _show_task(cli, view, rec, as_json)


@click.command()
@click.argument("run_id", metavar="RUN_ID")
@json_option
@pass_cli
def why(cli: CliContext, run_id: str, as_json: bool) -> None:
    """Why a run is not running now (scheduled, backoff, key held, paused, leased, done...)."""
    view = read_view(cli.data_dir, max_record_size=cli.max_record_size)
    target = resolve_id(view.state, run_id, view)
    if not isinstance(target, RunId):
        rs = [r for r in view.state.runs_for_task(target) if r.state not in TERMINAL_STATES]
        if len(rs) != 1:
            raise CliError(
                f"{run_id} is a task with {len(rs)} unfinished runs; `why` explains one run",
                f"pick one with `actionqueue runs --task {short(target)}`",
                "usage",
            )
        run = rs[0]
    else:
        found = view.state.get_run(target)
        assert found is not None
        run = found
    answer = explain(view, run, _now())
    if as_json:
        echo_json(answer.to_dict())
        return
    cli.console.print(f"run {run.run_id}: [bold]{answer.state}[/bold]")
    cli.console.print(plain(answer.text))
