"""stats, tasks, runs, show, why: tables and --json, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import Populated, run_cli


def aq(p: Populated, *args: str):
    return run_cli("--data-dir", str(p.path), *args)


def test_stats_table_and_json(populated: Populated) -> None:
    r = aq(populated, "stats")
    assert r.exit_code == 0, r.output
    assert "Running" in r.output
    assert "tasks: 7" in r.output
    data = json.loads(aq(populated, "stats", "--json").output)
    assert data["tasks"] == 7
    assert data["runs"] == 9
    assert data["runs_by_state"] == {
        "Scheduled": 4,
        "Ready": 1,
        "Leased": 0,
        "Running": 1,
        "RetryWait": 1,
        "Suspended": 0,
        "Completed": 1,
        "Failed": 1,
        "Canceled": 0,
    }
    assert data["paused"] is False
    assert data["snapshot_sequence"] is None


def test_env_var_names_the_data_dir(populated: Populated, monkeypatch) -> None:
    monkeypatch.setenv("ACTIONQUEUE_DATA_DIR", str(populated.path))
    assert json.loads(run_cli("stats", "--json").output)["tasks"] == 7


def test_tasks_filters(populated: Populated) -> None:
    rows = json.loads(aq(populated, "tasks", "--json").output)
    assert len(rows) == 7
    assert rows[0]["task_id"] == str(populated.done_task)  # oldest first
    assert rows[0]["runs_by_state"] == {"Completed": 1}
    mail = json.loads(aq(populated, "tasks", "--tag", "mail", "--json").output)
    assert {t["handler"] for t in mail} == {"email"}
    assert len(mail) == 2
    rep = json.loads(aq(populated, "tasks", "--handler", "tick", "--json").output)
    assert [t["task_id"] for t in rep] == [str(populated.repeat_task)]
    assert rep[0]["spec"]["policy"] == {
        "kind": "repeat",
        "count": 3,
        "interval_ms": 3_600_000,
        "misfire": {"kind": "catch_up", "cap": None, "grace_ms": None},
    }
    assert rep[0]["spec"]["payload"] == {"base64": "eyJuIjogMX0=", "len": 8}
    assert len(json.loads(aq(populated, "tasks", "--limit", "2", "--json").output)) == 2
    table = aq(populated, "tasks").output
    assert "repeat 3 x every 1h 0m" in table
    assert "email" in table


def test_runs_filters(populated: Populated) -> None:
    everything = json.loads(aq(populated, "runs", "--json").output)
    assert len(everything) == 9
    ready = json.loads(aq(populated, "runs", "--state", "ready", "--json").output)
    assert [r["run_id"] for r in ready] == [str(populated.blocked_run)]
    two = json.loads(aq(populated, "runs", "--state", "running,retry-wait", "--json").output)
    assert {r["state"] for r in two} == {"Running", "RetryWait"}
    by_task = json.loads(
        aq(populated, "runs", "--task", str(populated.repeat_task)[:8], "--json").output
    )
    assert [r["ordinal"] for r in by_task] == [0, 1, 2]
    mail = json.loads(aq(populated, "runs", "--tag", "mail", "--json").output)
    assert {r["state"] for r in mail} == {"Completed", "RetryWait"}
    assert all(r["handler"] == "email" for r in mail)
    assert len(json.loads(aq(populated, "runs", "--limit", "3", "--json").output)) == 3
    r = aq(populated, "runs", "--state", "bogus")
    assert r.exit_code == 2
    assert "unknown run state" in r.output


def test_show_run_and_task(populated: Populated) -> None:
    r = aq(populated, "show", str(populated.retry_run))
    assert r.exit_code == 0, r.output
    assert "smtp down" in r.output
    assert "RetryableFailure" in r.output
    assert "1 of 3" in r.output
    data = json.loads(aq(populated, "show", str(populated.retry_run)[:8], "--json").output)
    run = data["run"]
    assert run["run_id"] == str(populated.retry_run)
    assert [h["to"] for h in run["history"]] == [
        "Scheduled",
        "Ready",
        "Leased",
        "Running",
        "RetryWait",
    ]
    assert run["attempts"][0]["error"] == "smtp down"
    assert run["why"]["reason"] == "backoff"
    held = json.loads(aq(populated, "show", str(populated.holder_run), "--json").output)["run"]
    assert held["lease"]["owner"] == "test-worker"
    task = json.loads(aq(populated, "show", str(populated.done_task), "--json").output)["task"]
    assert task["runs"][0]["attempts"][0]["output"] == {"base64": "c2VudA==", "len": 4}
    assert "email" in aq(populated, "show", str(populated.done_task)).output


def test_why_every_reason(populated: Populated) -> None:
    def reason(run_id: object) -> dict:
        r = aq(populated, "why", str(run_id), "--json")
        assert r.exit_code == 0, r.output
        return json.loads(r.output)

    assert reason(populated.retry_run)["reason"] == "backoff"
    blocked = reason(populated.blocked_run)
    assert blocked["reason"] == "key_held"
    assert blocked["details"] == {"key": "db", "holder": str(populated.holder_run)}
    assert reason(populated.holder_run)["reason"] == "leased"
    assert reason(populated.future_run)["reason"] == "scheduled"
    assert reason(populated.done_run)["reason"] == "completed"
    failed = reason(populated.failed_run)
    assert failed["reason"] == "failed"
    assert "bad input" in failed["text"]
    text = aq(populated, "why", str(populated.blocked_run)).output
    assert "concurrency key 'db' is held by run" in text


def test_why_for_a_task_with_one_open_run(populated: Populated) -> None:
    r = aq(populated, "why", str(populated.repeat_task))
    assert r.exit_code == 2
    assert "3 unfinished runs" in r.output
    assert aq(populated, "why", str(populated.future_run)).exit_code == 0


def test_tasks_created_in_the_same_millisecond_list_in_creation_order(tmp_path) -> None:
    """Ties on created_at follow the WAL, not the (random) task id."""
    from actionqueue.core import RunPolicy, TaskConstraints, TaskId, TaskSpec
    from actionqueue.engine import Engine
    from actionqueue.engine.time.clock import ManualClock
    from actionqueue.storage.recovery import bootstrap

    path = tmp_path / "data"
    auth, _ = bootstrap(path, snapshot_on_close=False)
    eng = Engine(auth, ManualClock(1_000_000))
    created = [
        eng.submit(TaskSpec(TaskId.new(), b"", RunPolicy.once(), TaskConstraints(), handler="h"))
        for _ in range(20)
    ]
    auth.close()
    rows = json.loads(run_cli("--data-dir", str(path), "tasks", "--json").output)
    assert [r["task_id"] for r in rows] == [str(t) for t in created]
    assert {r["created_at"] for r in rows} == {1_000_000}


def test_show_gives_the_tasks_priority_for_a_run_that_was_never_ready(tmp_path: Path) -> None:
    """BUG: a run canceled while Scheduled showed ``priority None``."""
    import actionqueue

    d = tmp_path / "q"
    with actionqueue.ActionQueue.open(d) as q:
        q.register("h", lambda ctx, p: p)
        task = q.submit("h", 1, delay=3600, priority=5)
        q.cancel(task)
        (run,) = q.runs(task)
    r = run_cli("--data-dir", str(d), "show", str(run.run_id))
    assert r.exit_code == 0, r.output
    assert "priority         5 (the task's; never Ready yet)" in r.output
    assert "None" not in r.output


def test_times_past_year_9999_are_shown_not_an_unexpected_error(tmp_path: Path) -> None:
    """BUG: a run due after year 9999 (``submit(at=...)`` in epoch seconds) or waiting out a
    backoff of centuries (saturated by the core at 2**63 - 1 ms) made ``runs``, ``show`` and
    ``why`` fail with "unexpected error: ValueError: year ... is out of range"."""
    import actionqueue

    def boom(ctx: object, p: object) -> None:
        raise RuntimeError("x")

    d = tmp_path / "q"
    with actionqueue.ActionQueue.open(d) as q:
        q.register("h", lambda ctx, p: p)
        q.register("boom", boom, max_attempts=2, backoff=actionqueue.fixed((2**63 - 1) // 1000))
        far = q.submit("h", 1, at=300_000_000_000)  # year 11476
        waiting = q.submit("boom", 1)
        q.run_until_idle()
        (far_run,) = q.runs(far)
        (wait_run,) = q.runs(waiting)
    assert wait_run.not_before == 2**63 - 1
    r = run_cli("--data-dir", str(d), "runs")
    assert r.exit_code == 0, r.output
    for run in (far_run, wait_run):
        for cmd in ("show", "why"):
            r = run_cli("--data-dir", str(d), cmd, str(run.run_id))
            assert r.exit_code == 0, r.output
            assert "after year 9999" in r.output, r.output
    rows = json.loads(run_cli("--data-dir", str(d), "runs", "--json").output)
    row = next(x for x in rows if x["run_id"] == str(far_run.run_id))
    assert row["scheduled_at"] == 300_000_000_000_000
    assert row["scheduled_at_iso"] is None


# Text a handler, a caller or a file name can hold: rich markup (an unclosed "[/]" made rich
# raise MarkupError; "[red]" styled), an emoji code, an ANSI escape sequence that recolours or
# clears the terminal, a carriage return that overwrites the line, a bidi override.
HOSTILE = "[/] [red]r[/red] :thumbs_up: \x1b[2J\x1b[31m\r\u202e!"


def _hostile_dir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A closed data directory whose every user-given string is :data:`HOSTILE`-like, in a
    directory whose own name holds markup and an escape. Returns it and ids by role."""
    import random

    from actionqueue.core import AttemptOutcome, RunPolicy, TaskConstraints, TaskId, TaskSpec
    from actionqueue.core.task.metadata import TaskMetadata
    from actionqueue.engine import Engine
    from actionqueue.engine.time.clock import SystemClock
    from actionqueue.storage.recovery import bootstrap

    path = tmp_path / "dir[/]\x1b[31m"
    auth, _ = bootstrap(path, snapshot_on_close=False)
    eng = Engine(auth, SystemClock(), owner=f"w{HOSTILE}", rng=random.Random(1))

    def submit(key: str | None = None, policy: RunPolicy | None = None) -> TaskId:
        spec = TaskSpec(
            TaskId.new(),
            b"x",
            policy or RunPolicy.once(),
            TaskConstraints(concurrency_key=key),
            TaskMetadata(0, (f"t{HOSTILE}",), f"d{HOSTILE}"),
            handler=f"h{HOSTILE}",
            dedupe_key=f"k{HOSTILE}{TaskId.new()}",  # unique: a live one would be returned
        )
        return eng.submit(spec)

    ids: dict[str, str] = {}
    failed = submit()
    (d,) = eng.dispatch_next()
    eng.finish_attempt(d.run_id, d.attempt_id, AttemptOutcome.TERMINAL_FAILURE, error=HOSTILE)
    ids["failed_task"], ids["failed_run"] = str(failed), str(d.run_id)
    canceled = submit(policy=RunPolicy.cron("0 9 * * *"))
    r = eng.runs_for_task(canceled)[0]
    eng.cancel_run(r.run_id, HOSTILE)
    ids["canceled_run"] = str(r.run_id)
    holder, blocked = submit(key=f"c{HOSTILE}"), submit(key=f"c{HOSTILE}")
    (d,) = eng.dispatch_next(limit=5)
    ids["holder_run"] = str(d.run_id)
    ids["blocked_run"] = str(eng.runs_for_task(blocked)[0].run_id)
    assert d.task_id == holder
    auth.close()
    return path, ids


def _safe(output: str) -> None:
    """Nothing from the data acted on the terminal; it is shown, escaped."""
    import unicodedata

    acting = [c for c in output if c != "\n" and unicodedata.category(c) in ("Cc", "Cf")]
    assert not acting, output
    assert "\\x1b[31m" in output, output


def test_user_text_is_shown_escaped_never_as_markup_or_terminal_codes(tmp_path: Path) -> None:
    """BUG: `show RUN` passed an attempt's error to rich as markup: "[/]" crashed it with a
    MarkupError (exit 1), "[red]x[/red]" was styled, and ANSI escape sequences in errors,
    reasons, handler names, keys and tags reached the terminal through show, why, runs and
    tasks (and the data directory's name through stats)."""
    path, ids = _hostile_dir(tmp_path)
    commands = [
        ["show", ids["failed_run"]],
        ["show", ids["failed_task"]],
        ["stats"],
        ["tasks"],
        ["runs"],
        ["show", ids["canceled_run"]],
        ["show", ids["holder_run"]],
        ["why", ids["failed_run"]],
        ["why", ids["holder_run"]],
        ["why", ids["blocked_run"]],
        ["why", ids["canceled_run"]],
        ["snapshot"],  # last: it writes; it names the snapshot's path
    ]
    for args in commands:
        r = run_cli("--data-dir", str(path), *args)
        assert r.exit_code == 0, (args, r.output)
        _safe(r.output)
        if args not in (["stats"], ["snapshot"]):  # these show the directory's name only
            # Shown as written: not styled, not an emoji.
            assert "[/] [red]r[/red] :thumbs_up:" in r.output, (args, r.output)
    # --json keeps the exact text.
    run = json.loads(run_cli("--data-dir", str(path), "show", ids["failed_run"], "--json").output)
    assert run["run"]["attempts"][0]["error"] == HOSTILE


def test_error_lines_escape_control_characters(tmp_path: Path) -> None:
    """The one-line error quotes what the user typed (an id, a path): escaped as well."""
    r = run_cli("--data-dir", str(tmp_path / "none\x1b[2J"), "stats")
    assert r.exit_code == 3
    assert "\x1b" not in r.output
    assert "none\\x1b[2J" in r.output


def test_why_names_the_keys_next_run_and_a_holders_own_hold_policy(tmp_path: Path) -> None:
    # A (hold_during_retry, the default) failed once and waits in RetryWait holding key k; B
    # (release_on_retry, priority 10) is Ready behind it. Whether A keeps the key is A's
    # policy, not B's: the hold note must be shown whatever B's policy is. Once A's backoff is
    # over A is Ready again and is the key's next run, ahead of B despite B's priority: `why B`
    # must say so, not "waiting for a worker" (B is not among the runs the engine hands out).
    import actionqueue as aqm

    clock = aqm.ManualClock(1_700_000_000_000)
    path = tmp_path / "data"
    q = aqm.ActionQueue.open(path, clock=clock, snapshot_on_close=False)

    def h(ctx: object, p: str) -> None:
        if p == "A" and ctx.attempt == 1:  # type: ignore[attr-defined]
            raise aqm.Retry(10)

    q.register("h", h)
    a = q.submit("h", "A", concurrency_key="k", max_attempts=2)
    q.run_until_idle()
    b = q.submit("h", "B", concurrency_key="k", hold_policy="release_on_retry", priority=10)
    q.engine.tick()
    q.flush()
    a_run, b_run = q.runs(a)[0].id, q.runs(b)[0].id

    def why(run_id: object) -> dict:
        r = run_cli("--data-dir", str(path), "why", str(run_id), "--json")
        assert r.exit_code == 0, r.output
        return json.loads(r.output)

    held = why(b_run)
    assert held["reason"] == "key_held"
    assert held["details"]["holder"] == str(a_run)
    assert "hold_during_retry" in held["text"]

    clock.advance(10_000)
    q.engine.tick()
    q.flush()
    assert q.runs(a)[0].state.label == "Ready"
    nxt = why(b_run)
    assert nxt["reason"] == "key_next"
    assert nxt["details"] == {"key": "k", "ahead": str(a_run)}
    assert "hold_during_retry" in nxt["text"]
    assert why(a_run)["details"]["position"] == 1
    q.close(drain=False)


def test_show_and_why_tell_a_cron_task_derives_nothing_here(
    tmp_path: Path, hide_zones: object
) -> None:
    """A cron task whose time zone this machine lacks (the log was written where it resolves)
    runs the runs it has but derives no new ones: `show` and `why` say so, with the reason."""
    import actionqueue as aqm

    clock = aqm.ManualClock(1_700_000_000_000)
    path = tmp_path / "data"
    q = aqm.ActionQueue.open(path, clock=clock, snapshot_on_close=False)
    q.register("h", lambda ctx, p: None)
    tid = q.submit("h", policy=aqm.RunPolicy.cron("0 9 * * *", timezone="Europe/Paris"))
    first = q.runs(tid)[0].id
    q.close()
    hide_zones("Europe/Paris")  # type: ignore[operator]

    r = run_cli("--data-dir", str(path), "show", str(tid))
    assert r.exit_code == 0, r.output
    assert "cannot be derived on this machine: unknown timezone 'Europe/Paris'" in r.output
    task = json.loads(run_cli("--data-dir", str(path), "show", str(tid), "--json").output)
    policy = task["task"]["spec"]["policy"]
    assert policy["timezone"] == "Europe/Paris"
    assert policy["unresolved"].startswith("unknown timezone 'Europe/Paris'")

    why = json.loads(run_cli("--data-dir", str(path), "why", str(first), "--json").output)
    assert why["reason"] == "due"  # the CLI reads the system clock, past the ManualClock
    assert why["details"]["unresolved"] == policy["unresolved"]
    assert "derives no further runs on this machine" in why["text"]

    hide_zones()  # type: ignore[operator]
    why = json.loads(run_cli("--data-dir", str(path), "why", str(first), "--json").output)
    assert why["details"] == {}
    assert "derives no further" not in why["text"]
    task = json.loads(run_cli("--data-dir", str(path), "show", str(tid), "--json").output)
    assert task["task"]["spec"]["policy"]["unresolved"] is None
