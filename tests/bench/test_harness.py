"""End-to-end runs of the harness with tiny op counts in temporary directories.

No assertion here is about speed: only that the harness runs, writes valid output, computes
what it says, and reports missing systems as skipped instead of crashing.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from actionqueue.bench import ours, syncprobe
from actionqueue.bench.analysis import durability_contradictions
from actionqueue.bench.durability import Durability
from actionqueue.bench.harness import run_and_report
from actionqueue.bench.runner import BenchConfig, make_payload
from actionqueue.bench.workload import (
    FULL,
    QUICK,
    RunContext,
    Sample,
    Scale,
    SizeClass,
    System,
    Unavailable,
    Workload,
)
from actionqueue.cli.app import cli

TINY = Scale(durable_ops=4, buffered_ops=40, batches=2, repeats=2)


def _run(
    tmp_path: Path, only: str, chart: bool = False, count_syncs: bool = False
) -> dict[str, object]:
    config = BenchConfig(scale=TINY, only=only, data_dir=tmp_path / "data", count_syncs=count_syncs)
    artifacts = run_and_report(config, tmp_path / "out", chart=chart)
    data = json.loads(artifacts.json_path.read_text())
    assert data == json.loads(json.dumps(artifacts.data))
    return data


def _by_name(data: dict[str, object]) -> dict[str, dict[str, object]]:
    results = data["results"]
    assert isinstance(results, list)
    return {r["name"]: r for r in results}


def test_payload_is_ascii_of_the_requested_size() -> None:
    assert len(make_payload(100)) == 100
    assert make_payload(100).isascii()
    assert len(make_payload(7)) == 7


def test_end_to_end_baselines_and_sqlite(tmp_path: Path) -> None:
    only = r"^baseline\.|^sqlite3-wal-(full|normal)\.(submit\.t(1|8)|submit-batch|claim)"
    data = _run(tmp_path, only)
    assert data["schema"] == "actionqueue-bench/1"
    machine = data["machine"]
    assert isinstance(machine, dict)
    assert machine["cpu_cores"]
    assert machine["filesystem"]["mounts_type"]
    results = _by_name(data)
    assert results.keys() >= {
        "baseline.fdatasync-per-op.t1",
        "baseline.no-sync.t1",
        "baseline.batch-1000.one-fdatasync",
        "sqlite3-wal-full.submit.t1",
        "sqlite3-wal-full.submit.t8",
        "sqlite3-wal-normal.submit-batch-1000",
        "sqlite3-wal-normal.claim-complete",
    }
    for name, r in results.items():
        assert r["status"] == "ok", (name, r["reason"])
        rate = r["records_per_s"]
        assert len(rate["runs"]) == TINY.repeats
        assert rate["min"] <= rate["median"] <= rate["max"]
        lat = r["latency_us_per_call"]
        assert lat["p50"] <= lat["p99"]
    full = results["sqlite3-wal-full.submit.t1"]
    base = results["baseline.fdatasync-per-op.t1"]
    assert full["durability"] == "fsync-per-op"
    assert full["ratio_to_baseline"] == pytest.approx(
        full["records_per_s"]["median"] / base["records_per_s"]["median"]
    )
    batch = results["sqlite3-wal-full.submit-batch-1000"]
    assert batch["batch"] == 1000
    assert batch["latency_us_per_call"]["calls"] == TINY.batches * TINY.repeats
    assert results["sqlite3-wal-normal.submit.t1"]["baseline"] == "baseline.no-sync.t1"
    systems = data["systems"]
    assert isinstance(systems, dict)
    assert systems["sqlite3 WAL FULL"]["observed"]["synchronous"] == "2 (FULL)"
    assert systems["sqlite3 WAL NORMAL"]["observed"]["synchronous"] == "1 (NORMAL)"
    assert data["comparisons"] == []
    targets = data["targets"]
    assert isinstance(targets, list)
    assert all(t["status"] == "n/a" for t in targets)  # ours did not run
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| `sqlite3-wal-full.submit.t1` | fsync-per-op | - | 1 | 1 |" in md
    assert "None of actionqueue's workloads ran" in md
    # The data directory is left for the caller when given, but emptied of workload dirs.
    assert not any(p.name.startswith("wl-") for p in (tmp_path / "data").iterdir())


def test_chart_is_written_or_skipped_with_a_note(tmp_path: Path) -> None:
    config = BenchConfig(
        scale=TINY, only=r"^sqlite3-wal-normal\.submit\.t1$", probe=False, count_syncs=False
    )
    artifacts = run_and_report(config, tmp_path, chart=True)
    if importlib.util.find_spec("matplotlib") is None:
        assert artifacts.chart_path is None
        assert "matplotlib is not installed" in (artifacts.chart_note or "")
    else:
        assert artifacts.chart_path is not None
        assert artifacts.chart_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # With no --data-dir the temporary data directory inside --out is removed.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["results.json", "results.md"]
        + ([] if artifacts.chart_path is None else [artifacts.chart_path.name])
    )


def test_missing_peer_is_skipped_with_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes "import huey.storage" raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, "huey", None)
    monkeypatch.setitem(sys.modules, "huey.storage", None)
    data = _run(tmp_path, r"^huey-default\.submit\.t1$")
    r = _by_name(data)["huey-default.submit.t1"]
    assert r["status"] == "skipped"
    assert r["reason"] == "huey is not installed (pip install 'actionqueue[bench]')"
    assert r["records_per_s"] is None
    assert _by_name(data)["baseline.fdatasync-per-op.t1"]["status"] == "ok"
    md = (tmp_path / "out" / "results.md").read_text()
    assert "`huey-default.submit.t1` — skipped: huey is not installed" in md


def test_our_workloads_skip_cleanly_when_the_wal_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, ours.WAL_WRITER_MODULE, None)
    data = _run(tmp_path, r"^ours-wal-immediate\.submit\.t1$")
    r = _by_name(data)["ours-wal-immediate.submit.t1"]
    assert r["status"] == "skipped"
    assert "not importable yet (issue 3)" in r["reason"]


def test_registered_workload_is_compared_with_peers_and_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ours, "_registered", [])
    fake = System("actionqueue fake", "test double", is_ours=True)

    def run(ctx: RunContext) -> Sample:
        return Sample(ctx.ops, 0.001, [1000] * ctx.ops)

    ours.register_ours(
        Workload(
            "ours-fake.submit.t1",
            fake,
            "submit",
            Durability.OS_BUFFERED,
            run,
            SizeClass.BUFFERED,
            baseline="baseline.no-sync.t1",
        )
    )
    with pytest.raises(ValueError, match="already registered"):
        ours.register_ours(ours._registered[0])
    data = _run(tmp_path, r"^ours-fake|^sqlite3-wal-normal\.submit\.t1$")
    comparisons = data["comparisons"]
    assert isinstance(comparisons, list)
    assert [(c["ours"], c["peer"]) for c in comparisons] == [
        ("ours-fake.submit.t1", "sqlite3-wal-normal.submit.t1")
    ]
    results = _by_name(data)
    assert comparisons[0]["ratio"] == pytest.approx(
        40_000 / results["sqlite3-wal-normal.submit.t1"]["records_per_s"]["median"]
    )
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| `ours-fake.submit.t1` | `sqlite3-wal-normal.submit.t1` |" in md


def test_failing_and_unavailable_workloads_do_not_sink_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ours, "_registered", [])
    fake = System("actionqueue fake", "test double", is_ours=True)

    def broken(_ctx: RunContext) -> Sample:
        raise RuntimeError("disk on fire")

    def absent(_ctx: RunContext) -> Sample:
        raise Unavailable("API not there yet")

    for name, fn in (("ours-broken.x", broken), ("ours-absent.x", absent)):
        ours.register_ours(
            Workload(name, fake, "submit", Durability.OS_BUFFERED, fn, SizeClass.BUFFERED)
        )
    data = _run(tmp_path, r"^ours-(broken|absent)\.x$|^baseline\.no-sync")
    results = _by_name(data)
    assert results["ours-broken.x"]["status"] == "error"
    assert results["ours-broken.x"]["reason"] == "RuntimeError: disk on fire"
    assert results["ours-absent.x"]["status"] == "skipped"
    assert results["ours-absent.x"]["reason"] == "API not there yet"
    assert results["baseline.no-sync.t1"]["status"] == "ok"


def test_cli_list_run_and_bad_pattern(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["bench", "--list", "--only", "persist-queue"])
    assert listed.exit_code == 0, listed.output
    assert "persist-queue.submit.t32" in listed.output
    assert "baseline.fdatasync-per-op.t1" in listed.output

    out = tmp_path / "res"
    args = ["bench", "--only", r"^baseline\.no-sync", "--repeats", "1", "--out", str(out)]
    ran = runner.invoke(cli, [*args, "--no-chart", "--no-strace", "--quiet"])
    assert ran.exit_code == 0, ran.output
    assert "| `baseline.no-sync.t1` | os-buffered |" in ran.output
    assert json.loads((out / "results.json").read_text())["config"]["repeats"] == 1

    bad = runner.invoke(cli, ["bench", "--only", "("])
    assert bad.exit_code == 2
    assert "not a valid regular expression" in bad.output

    none = runner.invoke(cli, ["bench", "--only", "no-such-workload", "--out", str(out)])
    assert none.exit_code == 1
    assert "matches no workload" in none.output


@pytest.mark.skipif(syncprobe.probe_reason() is not None, reason="needs strace on Linux")
def test_strace_counts_syncs_and_checks_labels(tmp_path: Path) -> None:
    data = _run(tmp_path, r"^baseline\.(fdatasync-per-op|no-sync)\.t1$", count_syncs=True)
    results = _by_name(data)
    assert results["baseline.fdatasync-per-op.t1"]["syncs_per_call"] == 1.0
    assert results["baseline.no-sync.t1"]["syncs_per_call"] == 0.0
    assert data["durability_contradictions"] == []
    assert "strace" in str(data["sync_note"])


def test_durability_contradictions_are_reported() -> None:
    def never(_ctx: RunContext) -> Sample:
        raise AssertionError

    fake = System("x", "test")
    liar = Workload("liar", fake, "submit", Durability.FSYNC_PER_OP, never, SizeClass.DURABLE)
    leaky = Workload("leaky", fake, "submit", Durability.OS_BUFFERED, never, SizeClass.BUFFERED)
    honest = Workload("ok", fake, "submit", Durability.FSYNC_PER_OP, never, SizeClass.DURABLE)
    assert durability_contradictions([(liar, 0.0), (leaky, 1.0), (honest, 2.0)]) == [
        "liar: labelled fsync-per-op but made 0.00 syncs/call",
        "leaky: labelled os-buffered but made 1.00 syncs/call",
    ]


def test_durable_thread_rows_get_enough_calls_per_thread() -> None:
    # Group-commit rows measure a steady state only with several commits per producer: the
    # durable op count grows with the thread count (single-thread rows are unchanged).
    assert QUICK.ops(SizeClass.DURABLE) == 300
    assert QUICK.ops(SizeClass.DURABLE, 8) == 400
    assert QUICK.ops(SizeClass.DURABLE, 32) == 32 * 50
    assert FULL.ops(SizeClass.DURABLE, 32) == 32 * 200
    assert QUICK.ops(SizeClass.BUFFERED, 32) == QUICK.buffered_ops
