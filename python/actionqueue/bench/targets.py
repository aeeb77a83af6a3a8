"""SPEC §10's performance targets, checked against the results of one run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Target:
    """``numerator`` (÷ ``denominator``, when given) must be at least ``minimum``.

    Ratio targets compare two workloads of the same run; absolute ones (no denominator) are
    records/s on this machine and say so in the output.
    """

    label: str
    numerator: str
    denominator: str | None
    minimum: float


TARGETS: tuple[Target, ...] = (
    Target(
        "Immediate, 1 thread >= 0.8x raw write+fdatasync loop",
        "ours-authority-immediate.submit.t1",
        "baseline.fdatasync-per-op.t1",
        0.8,
    ),
    Target(
        "Immediate, 8 threads >= 5x Immediate 1 thread (group commit)",
        "ours-authority-immediate.submit.t8",
        "ours-authority-immediate.submit.t1",
        5.0,
    ),
    Target(
        "Immediate, 32 threads >= 15x Immediate 1 thread (group commit)",
        "ours-authority-immediate.submit.t32",
        "ours-authority-immediate.submit.t1",
        15.0,
    ),
    Target(
        "Immediate, 32 concurrent async submitters >= 15x Immediate 1 thread (group commit)",
        "ours-authority-immediate.submit-async.c32",
        "ours-authority-immediate.submit.t1",
        15.0,
    ),
    Target(
        "Immediate 1000-record batch >= 0.5x one raw write+fdatasync of the same bytes",
        "ours-authority-immediate.submit-batch-1000",
        "baseline.batch-1000.one-fdatasync",
        0.5,
    ),
    Target(
        "Immediate 1000-task batch through the task batch API (submit_uniform) >= 0.5x",
        "ours-authority-immediate.submit-uniform-1000",
        "baseline.batch-1000.one-fdatasync",
        0.5,
    ),
    Target("Deferred single submits >= 300k/s", "ours-authority-deferred.submit.t1", None, 300_000),
    Target(
        "Deferred batched submits >= 1M/s",
        "ours-authority-deferred.submit-batch-1000",
        None,
        1_000_000,
    ),
    Target(
        "Deferred batched submits through the task batch API (submit_uniform) >= 1M/s",
        "ours-authority-deferred.submit-uniform-1000",
        None,
        1_000_000,
    ),
    Target("Replay >= 2M events/s", "ours-recovery.replay", None, 2_000_000),
    Target(
        "Runtime lifecycle Deferred >= 50k runs/s", "ours-runtime-deferred.lifecycle", None, 50_000
    ),
    Target(
        "Runtime lifecycle Immediate >= 10k runs/s",
        "ours-runtime-immediate.lifecycle",
        None,
        10_000,
    ),
    Target(
        "Engine claim-complete Deferred >= 50k runs/s (the runtime lifecycle's engine share)",
        "ours-engine-deferred.claim-complete",
        None,
        50_000,
    ),
    Target(
        ">= 20x persist-queue at equal durability (32 threads)",
        "ours-authority-immediate.submit.t32",
        "persist-queue.submit.t32",
        20.0,
    ),
    Target(
        ">= 20x huey SQLite at equal durability (32 threads)",
        "ours-authority-immediate.submit.t32",
        "huey-default.submit.t32",
        20.0,
    ),
)
