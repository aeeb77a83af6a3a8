"""Our authority- and engine-level workloads run against the real Rust core (tiny scale) and
feed SPEC §10's target rows."""

from __future__ import annotations

import json
from pathlib import Path

from actionqueue.bench.harness import run_and_report
from actionqueue.bench.runner import BenchConfig
from actionqueue.bench.workload import Scale


def test_authority_and_engine_workloads_run_and_feed_targets(tmp_path: Path) -> None:
    config = BenchConfig(
        scale=Scale(durable_ops=16, buffered_ops=64, batches=2, repeats=1),
        only=r"^ours-(authority|engine)",
        data_dir=tmp_path / "data",
        count_syncs=False,
    )
    artifacts = run_and_report(config, tmp_path / "out", chart=False)
    data = json.loads(artifacts.json_path.read_text())
    results = {r["name"]: r for r in data["results"]}
    expected = [
        *(f"ours-authority-immediate.submit.t{t}" for t in (1, 8, 32)),
        *(f"ours-authority-deferred.submit.t{t}" for t in (1, 8, 32)),
        "ours-authority-immediate.submit-async.c8",
        "ours-authority-immediate.submit-async.c32",
        "ours-authority-immediate.submit-batch-1000",
        "ours-authority-deferred.submit-batch-1000",
        "ours-authority-immediate.submit-uniform-1000",
        "ours-authority-deferred.submit-uniform-1000",
        "ours-engine-immediate.claim-complete",
        "ours-engine-deferred.claim-complete",
    ]
    for name in expected:
        assert results[name]["status"] == "ok", (name, results[name]["reason"])
        assert results[name]["records_per_s"]["median"] > 0
    targets = {t["target"]: t for t in data["targets"]}
    for label in (
        "Immediate, 32 threads >= 15x Immediate 1 thread (group commit)",
        "Immediate, 32 concurrent async submitters >= 15x Immediate 1 thread (group commit)",
        "Deferred single submits >= 300k/s",
        "Deferred batched submits >= 1M/s",
        "Deferred batched submits through the task batch API (submit_uniform) >= 1M/s",
        "Immediate 1000-task batch through the task batch API (submit_uniform) >= 0.5x",
    ):
        assert targets[label]["status"] in ("met", "MISSED"), targets[label]
