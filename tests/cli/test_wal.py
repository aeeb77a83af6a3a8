"""wal verify / dump / repair, including a corrupt log and a crash tail."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from cli_helpers import Populated, flip_byte, run_cli

from actionqueue.cli import wal as wal_cmd


def aq(p: Populated, *args: str, input: str | None = None):
    return run_cli("--data-dir", str(p.path), *args, input=input)


def segment(p: Populated) -> Path:
    (seg,) = sorted((p.path / "wal").glob("*.wal"))
    return seg


def corrupt_second_record(p: Populated) -> None:
    """Flip a byte inside record 2: valid records follow, so this is corruption, not a tail."""
    lines = aq(p, "wal", "dump").output.splitlines()
    offsets = sorted({json.loads(line)["offset"] for line in lines})
    flip_byte(segment(p), offsets[1] + 30)


def test_verify_sound(populated: Populated) -> None:
    r = aq(populated, "wal", "verify")
    assert r.exit_code == 0
    assert "OK:" in r.output
    data = json.loads(aq(populated, "wal", "verify", "--json").output)
    assert data["ok"] is True
    assert data["last_sequence"] == data["events"] > 20
    assert data["torn_tail"] is None
    # The progress-bar path reads every record too.
    assert aq(populated, "wal", "verify", "--progress").exit_code == 0


def test_dump_json_lines(populated: Populated) -> None:
    lines = aq(populated, "wal", "dump").output.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    first = events[0]
    assert first["kind"] == "TaskCreate"
    assert first["segment"].endswith(".wal")
    assert first["spec"]["task_id"] == str(populated.done_task)
    assert base64.b64decode(first["spec"]["payload"]["base64"]) == b'{"n": 1}'
    finish = next(e for e in events if e["kind"] == "AttemptFinish" and e["output"])
    assert finish["outcome"] == "Success"
    assert finish["output"]["len"] == 4
    assert str(populated.done_run) == finish["run_id"]
    moves = [e for e in events if e["kind"] == "RunTransition"]
    assert moves[0]["from_state"] == "Scheduled"
    assert moves[0]["to_state"] == "Ready"
    some = aq(populated, "wal", "dump", "--from", "5", "--limit", "3", "--bytes", "hex")
    assert [json.loads(x)["sequence"] for x in some.output.splitlines()] == [5, 6, 7]
    hexed = json.loads(aq(populated, "wal", "dump", "--limit", "1", "--bytes", "hex").output)
    assert bytes.fromhex(hexed["spec"]["payload"]["hex"]) == b'{"n": 1}'


def test_corrupt_log(populated: Populated) -> None:
    corrupt_second_record(populated)
    r = aq(populated, "wal", "verify")
    assert r.exit_code == 5
    assert "CORRUPT" in r.output
    assert "wal repair" in r.output
    data = json.loads(aq(populated, "wal", "verify", "--json").output)
    assert data["ok"] is False
    assert data["segment"] == segment(populated).name
    # Inspection and writes both refuse with one line (no traceback) and the same exit code.
    for cmd in (("stats",), ("pause",)):
        out = aq(populated, *cmd)
        assert out.exit_code == 5, out.output
        assert out.output.startswith("error: the data in")
        assert "Traceback" not in out.output


def test_repair_needs_confirmation(populated: Populated, monkeypatch: pytest.MonkeyPatch) -> None:
    corrupt_second_record(populated)
    dry = aq(populated, "wal", "repair", "--dry-run")
    assert dry.exit_code == 0
    assert "drops" in dry.output
    # No terminal, no --yes: refused, nothing changed.
    size = os.path.getsize(segment(populated))
    r = aq(populated, "wal", "repair")
    assert r.exit_code == 8
    assert "--yes" in r.output
    assert os.path.getsize(segment(populated)) == size
    # A person who says no.
    monkeypatch.setattr(wal_cmd, "_interactive", lambda: True)
    no = aq(populated, "wal", "repair", input="n\n")
    assert no.exit_code == 8
    assert "nothing changed" in no.output
    yes = aq(populated, "wal", "repair", input="y\n")
    assert yes.exit_code == 0
    assert "repaired" in yes.output
    assert aq(populated, "wal", "verify").exit_code == 0
    assert aq(populated, "wal", "repair", "--yes").output.strip().endswith("nothing to repair")


def test_repair_with_yes_and_crash_tail(populated: Populated) -> None:
    # A torn last record: the normal result of a crash. verify reports it, exit code 0.
    seg = segment(populated)
    lines = aq(populated, "wal", "dump").output.splitlines()
    last_offset = json.loads(lines[-1])["offset"]
    os.truncate(seg, last_offset + 20)  # the last record cut short, as a crash leaves it
    r = aq(populated, "wal", "verify")
    assert r.exit_code == 0
    assert "crash tail" in r.output
    assert "crash tail" in aq(populated, "wal", "dump").output  # note on stderr (mixed here)
    fix = aq(populated, "wal", "repair", "--yes")
    assert fix.exit_code == 0
    assert "crash tail" in fix.output
    assert "repaired" in fix.output
    assert json.loads(aq(populated, "wal", "verify", "--json").output)["torn_tail"] is None
