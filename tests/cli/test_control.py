"""cancel, pause, resume, retry, snapshot, compact: they take the lock and write durably."""

from __future__ import annotations

import json

from cli_helpers import Populated, run_cli

from actionqueue.storage.recovery import bootstrap


def aq(p: Populated, *args: str):
    return run_cli("--data-dir", str(p.path), *args)


def state(p: Populated, run_id: object) -> str:
    return json.loads(aq(p, "show", str(run_id), "--json").output)["run"]["state"]


def test_pause_resume_is_durable(populated: Populated) -> None:
    assert aq(populated, "pause").output.strip() == "paused"
    assert aq(populated, "pause").output.strip() == "already paused"
    auth, _ = bootstrap(populated.path)
    assert auth.is_paused
    auth.close()
    assert (
        json.loads(aq(populated, "why", str(populated.blocked_run), "--json").output)["reason"]
        == "paused"
    )
    assert aq(populated, "resume").output.strip() == "resumed"
    assert aq(populated, "resume").output.strip() == "not paused"
    assert json.loads(aq(populated, "stats", "--json").output)["paused"] is False


def test_retry_skips_the_backoff(populated: Populated) -> None:
    r = aq(populated, "retry", str(populated.retry_run)[:8])
    assert r.exit_code == 0, r.output
    assert state(populated, populated.retry_run) == "Ready"
    # Not waiting any more: refused with a clear line.
    again = aq(populated, "retry", str(populated.retry_run))
    assert again.exit_code == 7
    assert "refused" in again.output
    final = aq(populated, "retry", str(populated.failed_run))
    assert final.exit_code == 7
    assert "submit a new task" in final.output
    task = aq(populated, "retry", str(populated.done_task))
    assert task.exit_code == 2
    assert "task id" in task.output


def test_cancel_run_and_task(populated: Populated) -> None:
    r = aq(populated, "cancel", str(populated.holder_run), "--reason", "maintenance")
    assert r.exit_code == 0, r.output
    run = json.loads(aq(populated, "show", str(populated.holder_run), "--json").output)["run"]
    assert run["state"] == "Canceled"
    assert run["history"][-1]["reason"] == "maintenance"
    # The key is free now: the blocked run is just waiting for a worker.
    why = json.loads(aq(populated, "why", str(populated.blocked_run), "--json").output)
    assert why["reason"] == "ready"
    t = aq(populated, "cancel", str(populated.repeat_task))
    assert t.exit_code == 0
    assert "unfinished runs" in t.output
    runs = json.loads(aq(populated, "runs", "--task", str(populated.repeat_task), "--json").output)
    assert {r["state"] for r in runs} == {"Canceled"}
    again = aq(populated, "cancel", str(populated.repeat_task))
    assert again.exit_code == 7
    assert "already canceled" in again.output


def test_snapshot_then_read_view_uses_it(populated: Populated) -> None:
    r = aq(populated, "snapshot", "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["sequence"] > 0
    assert info["path"].startswith(str(populated.path))
    stats = json.loads(aq(populated, "stats", "--json").output)
    assert stats["snapshot_sequence"] == info["sequence"]
    assert stats["events_replayed"] == 0
    assert stats["runs"] == 9
    assert "snapshot at sequence" in aq(populated, "snapshot").output


def test_compact_prunes_and_checkpoints(populated: Populated) -> None:
    r = aq(populated, "compact", "--keep", "0", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["pruned"][0]["runs_removed"] == 2  # the Completed and the Failed run
    assert out["snapshot"]["sequence"] > 0
    stats = json.loads(aq(populated, "stats", "--json").output)
    assert stats["runs_by_state"]["Completed"] == 0
    assert stats["runs"] == 7
    aged = aq(populated, "compact", "--prune-before", "30d")
    assert aged.exit_code == 0
    assert "pruned 0 terminal run(s)" in aged.output
    iso = aq(populated, "compact", "--prune-before", "2020-01-01T00:00:00Z", "--json")
    assert iso.exit_code == 0
    bad = aq(populated, "compact", "--prune-before", "yesterday")
    assert bad.exit_code == 2
    assert "cannot read" in bad.output


def test_compact_limits_name_their_option(populated: Populated) -> None:
    """BUG: ``--keep`` above 2**64 stopped with 'unexpected error: OverflowError' (exit 1),
    and a ``--prune-before`` reaching back past 1970 with 'before must be >= 0, got -8638...'
    (naming no option). Nothing is older than the epoch: such a cutoff prunes nothing."""
    huge = aq(populated, "compact", "--keep", str(10**23))
    assert huge.exit_code == 2, huge.output
    assert "--keep" in huge.output
    assert "unexpected" not in huge.output
    for old in ("100000000d", "1969-07-20T20:17:00Z", "0001-01-01"):
        r = aq(populated, "compact", "--prune-before", old, "--json")
        assert r.exit_code == 0, r.output
        nothing = {"before": 0, "runs_removed": 0, "tasks_removed": 0}
        assert json.loads(r.output)["pruned"] == [nothing]
    stats = json.loads(aq(populated, "stats", "--json").output)
    assert stats["runs_by_state"]["Completed"] == 1
