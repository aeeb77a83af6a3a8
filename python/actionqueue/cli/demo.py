"""``actionqueue demo``: the README's main job.

Part 1 opens an embedded queue, submits a realistic mix (one-off jobs with priorities, a
repeat, a per-second cron, a flaky call that succeeds on its third attempt with exponential
backoff, a job that never succeeds, three migrations sharing a concurrency key), runs it with a
live progress display and prints a summary table.

Part 2 demonstrates recovery: a child process (``actionqueue _demo-worker``) opens the same
directory, reports every task whose submit returned (acknowledged: on stable storage), finishes
some, and is SIGKILLed while two long jobs are running. The queue is reopened here: every
acknowledged task is there, completed runs stay completed, and the two interrupted runs come
back after their (short) lease expires — attempt 1 recorded as Lost, attempt 2 completes.

Everything runs in real time and finishes in about ten seconds; no terminal is needed.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

import actionqueue as aq
from actionqueue.cli.context import CliContext, pass_cli
from actionqueue.cli.errors import CliError
from actionqueue.cli.render import plain, policy_text, short
from actionqueue.cli.store import looks_like_data_dir, read_view
from actionqueue.storage.wal.lock import hold_lock

__all__ = ["demo", "demo_worker"]

DEMO_TAG = "actionqueue-demo"
#: Lease of the recovery part: short, so interrupted work comes back within a second or two.
RECOVERY_LEASE = 1.0
PHASE_TIMEOUT = 30.0


# --- handlers (module level: plain functions, as a real application would have) -------------


def resize_image(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    time.sleep(0.05)
    return {"image": payload["image"], "size": [payload["width"] // 2, payload["height"] // 2]}


def send_digest(ctx: Any, payload: Any) -> str:
    return f"digest #{ctx.attempt} sent"


def heartbeat(ctx: Any, payload: Any) -> str:
    return "ok"


def call_flaky_api(ctx: Any, payload: Any) -> str:
    # Fails its first two attempts: the run waits out an exponential backoff, then succeeds.
    if ctx.attempt < 3:
        raise ConnectionError(f"upstream returned 503 (attempt {ctx.attempt})")
    return "200 OK"


def import_legacy_csv(ctx: Any, payload: Any) -> None:
    raise ValueError("row 17: unparseable date '31/02/2024'")


def migrate(ctx: Any, payload: dict[str, Any]) -> str:
    time.sleep(0.15)  # long enough that overlapping runs would be visible in the attempt times
    return f"migrated {payload['table']}"


def ledger_entry(ctx: Any, payload: dict[str, Any]) -> str:
    return f"booked {payload['amount']}"


def long_job(ctx: Any, payload: Any) -> str:
    # In the child this sleeps until the SIGKILL; after recovery (see _recovery) it is quick.
    delay = float(os.environ.get("ACTIONQUEUE_DEMO_LONG_JOB_SECONDS", "0.2"))
    time.sleep(delay)
    return f"finished on attempt {ctx.attempt}"


def _register(q: aq.ActionQueue) -> None:
    q.register("resize_image", resize_image)
    q.register("send_digest", send_digest)
    q.register("heartbeat", heartbeat)
    q.register("call_flaky_api", call_flaky_api, max_attempts=4, backoff=aq.exponential(0.2, 1.0))
    q.register("import_legacy_csv", import_legacy_csv, max_attempts=2, backoff=aq.fixed(0.1))
    q.register("migrate", migrate, concurrency_key="db")
    q.register("ledger_entry", ledger_entry)
    q.register("long_job", long_job, max_attempts=3)


# --- part 1: the mix ----------------------------------------------------------------------


@dataclass
class Submitted:
    task_id: aq.TaskId
    handler: str
    expected_runs: int


def _submit_mix(q: aq.ActionQueue) -> list[Submitted]:
    tags = (DEMO_TAG,)
    out: list[Submitted] = []

    def add(handler: str, payload: Any = None, runs: int = 1, **kw: Any) -> None:
        tid = q.submit(handler, payload, tags=tags, **kw)
        out.append(Submitted(tid, handler, runs))

    for i, prio in enumerate((0, 0, 10, 0)):  # one urgent thumbnail jumps the queue
        add(
            "resize_image",
            {"image": f"photo-{i}.jpg", "width": 4000, "height": 3000},
            priority=prio,
        )
    add("send_digest", None, 3, policy=aq.every(0.5, count=3))
    add("heartbeat", None, 3, policy=aq.RunPolicy.cron("* * * * * *", max_occurrences=3))
    add("call_flaky_api", {"url": "https://api.example.com/charge"})
    add("import_legacy_csv", {"file": "legacy.csv"})
    for table in ("users", "orders", "invoices"):
        add("migrate", {"table": table})
    return out


def _task_done(q: aq.ActionQueue, s: Submitted) -> int:
    """Runs of ``s`` that are finished (terminal)."""
    from actionqueue.core.run.state import TERMINAL_STATES

    return sum(1 for r in q.runs(s.task_id) if r.state in TERMINAL_STATES)


def _run_with_progress(q: aq.ActionQueue, items: list[Submitted], console: Console) -> None:
    q.start()
    handlers: dict[str, list[Submitted]] = {}
    for s in items:
        handlers.setdefault(s.handler, []).append(s)
    deadline = time.monotonic() + PHASE_TIMEOUT
    with Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bars = {
            h: progress.add_task(h, total=sum(s.expected_runs for s in ss))
            for h, ss in handlers.items()
        }
        while True:
            finished = 0
            for h, ss in handlers.items():
                n = sum(_task_done(q, s) for s in ss)
                progress.update(bars[h], completed=n)
                finished += n
            if finished == sum(s.expected_runs for s in items):
                break
            if time.monotonic() > deadline:
                raise CliError(f"the demo did not finish within {PHASE_TIMEOUT:.0f} s")
            time.sleep(0.05)
    q.stop()


def _summary(q: aq.ActionQueue, items: list[Submitted], console: Console) -> list[str]:
    """Prints the summary table; returns the checks that failed (none, normally)."""
    table = Table(title="what happened", title_justify="left", header_style="bold")
    for col in ("task", "handler", "policy", "prio", "key", "runs by state", "attempts", "note"):
        table.add_column(col)
    problems: list[str] = []
    migrations: list[tuple[int, int]] = []
    for s in items:
        rec = q.get_task(s.task_id)
        if rec is None:  # a submitted task never disappears unless pruned
            problems.append(f"{s.handler}: task {s.task_id} is missing")
            continue
        runs = q.runs(s.task_id)
        states: dict[str, int] = {}
        for r in runs:
            states[r.state.label] = states.get(r.state.label, 0) + 1
        attempts = sum(len(r.attempts) for r in runs)
        note = ""
        last = runs[-1] if runs else None
        if s.handler == "call_flaky_api" and last is not None:
            errs = [a.error for a in last.attempts if a.error]
            note = f"{len(errs)} failures, then success (backoff 0.2s, 0.4s)"
            if states != {"Completed": 1} or attempts != 3:
                problems.append(f"flaky call: expected Completed after 3 attempts, got {states}")
        elif s.handler == "import_legacy_csv" and last is not None:
            note = (last.attempts[-1].error or "")[:40] if last.attempts else ""
            if states != {"Failed": 1}:
                problems.append(f"legacy import: expected Failed, got {states}")
        elif s.handler == "migrate":
            for r in runs:
                for a in r.attempts:
                    if a.finished_at is not None:
                        migrations.append((a.started_at, a.finished_at))
        elif s.handler == "resize_image" and rec.spec.metadata.priority > 0:
            note = "priority 10: first in the ready queue"
        if (
            s.handler not in ("import_legacy_csv",)
            and states.get("Completed", 0) != s.expected_runs
        ):
            problems.append(f"{s.handler}: expected {s.expected_runs} completed runs, got {states}")
        table.add_row(
            short(s.task_id),
            s.handler,
            policy_text(rec.spec.run_policy),
            str(rec.spec.metadata.priority),
            rec.spec.constraints.concurrency_key or "-",
            ", ".join(f"{n} {k}" for k, n in sorted(states.items())),
            str(attempts),
            note,
        )
    console.print(table)
    migrations.sort()
    overlap = any(b[0] < a[1] for a, b in itertools.pairwise(migrations))
    if overlap:
        problems.append("two migrations sharing key 'db' overlapped")
    else:
        console.print(
            f"concurrency key 'db': {len(migrations)} migrations ran one at a time (no overlap)"
        )
    return problems


# --- part 2: crash and recovery -----------------------------------------------------------


@dataclass
class ChildReport:
    acked: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)


def _spawn_worker(data_dir: str, console: Console) -> ChildReport:
    env = dict(os.environ, ACTIONQUEUE_DEMO_LONG_JOB_SECONDS="60")
    cmd = [sys.executable, "-m", "actionqueue", "--data-dir", data_dir, "_demo-worker"]
    child = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True
    )
    report = ChildReport()
    deadline = time.monotonic() + PHASE_TIMEOUT
    try:
        assert child.stdout is not None
        for line in child.stdout:
            kind, _, value = line.strip().partition(" ")
            if kind == "ACK":
                report.acked.append(value)
            elif kind == "COMPLETED":
                report.completed.append(value)
            elif kind == "RUNNING":
                report.running.append(value)
            elif kind == "READY":
                break
            if time.monotonic() > deadline:
                break
        else:
            raise CliError(f"the demo worker exited early (exit code {child.wait()})")
        console.print(
            f"child pid {child.pid}: {len(report.acked)} tasks acknowledged, "
            f"{len(report.completed)} completed, {len(report.running)} long jobs running "
            "-> [bold red]SIGKILL[/bold red]"
        )
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    return report


def _recovery(data_dir: str, console: Console) -> list[str]:
    report = _spawn_worker(data_dir, console)
    problems: list[str] = []
    t0 = time.monotonic()
    with aq.ActionQueue.open(data_dir, lease=RECOVERY_LEASE) as q:
        _register(q)
        rec = q.recovery
        if rec is not None:
            tail = (
                f", cut a torn tail of {rec.tail_truncated_bytes} bytes"
                if (rec.tail_truncated_bytes)
                else ""
            )
            console.print(
                f"reopened: replayed {rec.events_replayed} events in {rec.duration_ms} ms{tail}"
            )
        missing = [t for t in report.acked if q.get_task(t) is None]
        if missing:
            problems.append(f"acknowledged tasks lost: {missing}")
        for t in report.completed:
            runs = q.runs(t)
            if [r.state.label for r in runs] != ["Completed"] or runs[0].attempt_count != 1:
                problems.append(f"completed task {t} changed after the crash")
        for t in report.running:
            q.wait(t, timeout=PHASE_TIMEOUT)
        took = time.monotonic() - t0
        table = Table(title="after the crash", title_justify="left", header_style="bold")
        for col in ("task", "handler", "state", "attempts"):
            table.add_column(col)
        for t in report.acked:
            runs = q.runs(t)
            rec_t = q.get_task(t)
            attempts = ", ".join(
                "open" if a.outcome is None else a.outcome.label for r in runs for a in r.attempts
            )
            table.add_row(
                short(t),
                rec_t.spec.handler if rec_t else "?",
                ", ".join(r.state.label for r in runs),
                attempts or "-",
            )
            if t in report.running:
                outcomes = [
                    "open" if a.outcome is None else a.outcome.label for a in runs[0].attempts
                ]
                if outcomes != ["Lost", "Success"]:
                    problems.append(
                        f"in-flight task {t}: expected Lost then Success, got {outcomes}"
                    )
        console.print(table)
    console.print(
        f"nothing acknowledged was lost: {len(report.acked) - len(missing)}/{len(report.acked)} "
        f"tasks present, {len(report.completed)} completed runs untouched, "
        f"{len(report.running)} interrupted runs completed on attempt 2 after their lease "
        f"expired ({took:.1f} s)"
    )
    return problems


# --- data directory ---------------------------------------------------------------------------


def _prepare(data_dir: str, fresh: bool, console: Console) -> None:
    """Starts from an empty directory: wipes a previous demo's queue (recognised by its tag),
    or with ``--fresh`` any actionqueue data directory; refuses anything else. The check and
    the wipe hold the directory's lock: a queue that has it open is never wiped (its
    acknowledged tasks would be lost), it is reported as locked."""
    path = Path(data_dir)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    if not looks_like_data_dir(data_dir):
        raise CliError(
            f"{data_dir} exists and is not an actionqueue data directory; not touching it",
            "pass --data-dir with a new or empty directory",
            "no_data_dir",
        )
    with hold_lock(path / "wal"):
        if not fresh:
            view = read_view(data_dir)
            tasks = {r.task_id.bytes for r in _all_runs(view)}
            specs = [view.state.get_task(t) for t in tasks]
            # Only positive evidence: a queue with no tasks (a user's fresh or paused queue)
            # is not the demo's.
            if not specs or any(s is None or DEMO_TAG not in s.spec.metadata.tags for s in specs):
                raise CliError(
                    f"{data_dir} holds a queue that the demo did not create",
                    "use another --data-dir, or --fresh to wipe it (its tasks are lost)",
                    "usage",
                )
        console.print(plain(f"wiping the previous demo queue in {data_dir}"))
        shutil.rmtree(path)


def _all_runs(view: Any) -> list[Any]:
    from actionqueue.cli.store import iter_runs

    return list(iter_runs(view.state))


# --- commands -------------------------------------------------------------------------------


@click.command()
@click.option(
    "--data-dir",
    "local_dir",
    default=None,
    metavar="PATH",
    help="Where the demo queue lives (default: the global --data-dir, ./actionqueue-data).",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Wipe the data directory first even if it holds a queue the demo did not create.",
)
@click.option("--no-crash", is_flag=True, help="Skip the crash-and-recovery part.")
@pass_cli
def demo(cli: CliContext, local_dir: str | None, fresh: bool, no_crash: bool) -> None:
    """Run an embedded queue on a realistic mix of tasks, then crash it and recover.

    Takes about ten seconds. Afterwards, inspect what happened with `actionqueue stats`,
    `tasks`, `runs`, `show ID` and `why ID` on the same data directory.
    """
    data_dir = os.path.normpath(local_dir) if local_dir else cli.data_dir
    cli.data_dir = data_dir  # what an error's message names (the group reports it)
    console = cli.console
    _quiet_runtime_logs()
    _prepare(data_dir, fresh, console)
    console.print(
        Text.assemble(("actionqueue demo", "bold"), plain(f" — data directory: {data_dir}"))
    )
    started = time.monotonic()
    console.print("\n[bold]1. a realistic mix[/bold] (threads executor, Immediate durability)")
    with aq.ActionQueue.open(data_dir) as q:
        _register(q)
        items = _submit_mix(q)
        console.print(f"submitted {len(items)} tasks; running them")
        _run_with_progress(q, items, console)
        problems = _summary(q, items, console)
    if not no_crash:
        console.print(
            "\n[bold]2. crash and recovery[/bold] (a child process is killed mid-run; "
            f"lease {RECOVERY_LEASE:g} s)"
        )
        problems += _recovery(data_dir, console)
    if problems:
        for p in problems:
            console.print(Text.assemble(("check failed:", "red"), " ", plain(p)))
        raise CliError("the demo's checks failed", "please report this", "error")
    console.print()
    console.print(
        Text.assemble(("done", "green"), f" in {time.monotonic() - started:.1f} s. Look around:")
    )
    # The data directory is the user's text: plain, never markup.
    for command in (
        "stats",
        "tasks",
        "runs --state failed",
        "show <id>   (ids and unique prefixes work)",
    ):
        console.print(plain(f"  actionqueue --data-dir {data_dir} {command}"))


@click.command(name="_demo-worker", hidden=True)
@click.option("--quick", default=5, show_default=True)
@click.option("--slow", default=2, show_default=True)
@pass_cli
def demo_worker(cli: CliContext, quick: int, slow: int) -> None:
    """Internal: the child process the demo kills (protocol: ACK/COMPLETED/RUNNING/READY lines)."""

    def say(*words: object) -> None:
        print(*words, flush=True)

    with aq.ActionQueue.open(cli.data_dir, lease=RECOVERY_LEASE) as q:
        _register(q)
        _quiet_runtime_logs()
        quick_ids = []
        for i in range(quick):
            tid = q.submit("ledger_entry", {"amount": 10 * (i + 1)}, tags=(DEMO_TAG,))
            quick_ids.append(tid)
            say("ACK", tid)  # submit returned: the task is on stable storage
        slow_ids = []
        for i in range(slow):
            tid = q.submit("long_job", {"n": i}, tags=(DEMO_TAG,), priority=-1)
            slow_ids.append(tid)
            say("ACK", tid)
        q.start()
        for tid in quick_ids:
            q.wait(tid, timeout=PHASE_TIMEOUT)
            say("COMPLETED", tid)
        _wait_until(lambda: all(_is_running(q, t) for t in slow_ids), PHASE_TIMEOUT)
        for tid in slow_ids:
            say("RUNNING", tid)
        say("READY")
        time.sleep(PHASE_TIMEOUT)  # the parent kills us here
        os._exit(3)  # not reached in the demo; never close cleanly (that is the point)


def _quiet_runtime_logs() -> None:
    """The runtime logs failed runs at WARNING; the demo fails some on purpose and shows them
    in its table, so keep Python's last-resort handler from printing them to stderr."""
    logging.getLogger("actionqueue").addHandler(logging.NullHandler())


def _is_running(q: aq.ActionQueue, tid: aq.TaskId) -> bool:
    runs = q.runs(tid)
    return bool(runs) and runs[0].state.label == "Running"


def _wait_until(pred: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise CliError("the demo worker timed out")
        time.sleep(0.02)
