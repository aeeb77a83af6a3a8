"""The workload a kill-loop trial runs until it is SIGKILLed (see test_kill_loop.py).

Run in a forked child (``run``; imports are inherited, so a trial starts in milliseconds) or
as a script (argv: data_dir ack_log seed clock_start). Signals "ready" once the data
directory is open.
Every line of the acknowledgement log is written and fsynced only after the call it records
returned (Immediate durability): ``S task max_attempts`` (submitted), ``D run attempt n``
(dispatched: attempt opened), ``F run attempt state`` (finished, with the run's new state).
"""

from __future__ import annotations

import os
import random
import sys

from actionqueue.core import (
    AttemptOutcome,
    Backoff,
    DurabilityPolicy,
    RunPolicy,
    TaskConstraints,
    TaskId,
    TaskMetadata,
    TaskSpec,
)
from actionqueue.engine import Engine, ManualClock
from actionqueue.storage.mutation import StorageMutationAuthority


def run(data_dir: str, ack_path: str, seed: int, start: int, ready_fd: int | None) -> None:
    rng = random.Random(seed)
    auth = StorageMutationAuthority.open(data_dir, snapshot_every=40, keep_snapshots=2)
    clock = ManualClock(start)
    engine = Engine(
        auth,
        clock,
        owner=f"w{os.getpid()}",
        rng=random.Random(seed),
        default_lease_ms=10_000,
        durability=DurabilityPolicy.IMMEDIATE,
    )
    ack = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def log(line: str) -> None:
        os.write(ack, (line + "\n").encode())
        os.fsync(ack)

    if ready_fd is None:
        print("ready", flush=True)
    else:
        os.write(ready_fd, b"ready\n")
    while True:
        if rng.random() < 0.6:
            attempts = rng.randint(1, 3)
            spec = TaskSpec(
                TaskId.new(),
                b"x" * rng.randint(0, 200),
                RunPolicy.once(),
                TaskConstraints(
                    max_attempts=attempts,
                    concurrency_key=rng.choice([None, None, "k0", "k1"]),
                    retry=Backoff.fixed(5),
                ),
                TaskMetadata(priority=rng.randint(-1, 1)),
            )
            tid = engine.submit(spec)
            log(f"S {tid.bytes.hex()} {attempts}")
        for d in engine.dispatch_next(limit=rng.randint(1, 3)):
            log(f"D {d.run_id.bytes.hex()} {d.attempt_id.bytes.hex()} {d.attempt}")
            outcome = (
                AttemptOutcome.SUCCESS if rng.random() < 0.6 else AttemptOutcome.RETRYABLE_FAILURE
            )
            state = engine.finish_attempt(
                d.run_id, d.attempt_id, outcome, error=None if outcome.name == "SUCCESS" else "e"
            )
            log(f"F {d.run_id.bytes.hex()} {d.attempt_id.bytes.hex()} {int(state)}")
        clock.advance(rng.randint(1, 20))
        if rng.random() < 0.2:
            engine.tick()


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), None)
