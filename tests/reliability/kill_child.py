"""The workload a kill-loop trial runs until it is SIGKILLed (see test_kill_loop.py).

Run in a forked child (``run``; imports are inherited, so a trial starts in milliseconds) or
as a script (argv: data_dir ack_log seed clock_start [small]). Signals "ready" once the data
directory is open.

The workload mixes Once, Repeat and Cron tasks (some with dedupe keys), dispatches and finishes
attempts (success, retryable and terminal failures, attempts abandoned to expire), cancels
tasks and runs, prunes, ticks, and moves the manual clock by milliseconds or by up to a minute
(so cron occurrences fall due and leases expire). The storage options of a trial come from
its seed (:func:`storage_options`): automatic snapshots every few events, one or two kept,
and (in half the trials) small segments, so checkpoints delete segments mid-stream.

Every line of the acknowledgement log is written and fsynced only after the call it records
returned (Immediate durability), except ``P`` which is written *before* its call:

* ``S task max_attempts kind`` submitted (kind ``o`` once, ``r`` repeat, ``c`` cron);
* ``K key task`` a submit with dedupe key ``key`` returned ``task`` (new or the live holder);
* ``D run attempt n`` dispatched (attempt opened); ``F run attempt state`` finished, with the
  run's new state;
* ``C task`` task canceled; ``X run`` run canceled;
* ``P before`` a prune of terminal runs last changed before ``before`` is about to be written
  (anything acknowledged earlier may be gone once it is).
"""

from __future__ import annotations

import os
import random
import sys
import traceback
from typing import Any

from actionqueue.core import (
    AttemptOutcome,
    Backoff,
    DurabilityPolicy,
    RunPolicy,
    RunState,
    TaskConstraints,
    TaskId,
    TaskMetadata,
    TaskSpec,
)
from actionqueue.core.task.run_policy import MisfirePolicy
from actionqueue.engine import Engine, ManualClock
from actionqueue.errors import InvalidTransitionError, NotFoundError
from actionqueue.storage.mutation import StorageMutationAuthority

#: The child's clock stays below ``start + CLOCK_SPAN`` (the auditor works at
#: ``start + TRIAL_SPAN // 2``, past every lease of the trial).
CLOCK_SPAN = 300_000
LEASE_MS = 10_000
DEDUPE_KEYS = ("d0", "d1", "d2", "c0")
_TERMINAL = (RunState.COMPLETED, RunState.FAILED, RunState.CANCELED)


def storage_options(seed: int, *, small_segments: bool) -> dict[str, Any]:
    """The storage options of the trial with this seed (the auditor opens with the same).
    With ``small_segments`` checkpoints delete segments; without, the log stays whole (and a
    full replay can be compared with snapshot + tail)."""
    rng = random.Random(seed ^ 0x5EED)
    options: dict[str, Any] = {
        "snapshot_every": rng.choice([8, 25, 60]),
        "keep_snapshots": rng.choice([1, 2]),
    }
    if small_segments:
        options["segment_size"] = rng.choice([4096, 4096, 16_384])
    return options


def _spec(rng: random.Random) -> tuple[TaskSpec, int, str]:
    attempts = rng.randint(1, 3)
    r = rng.random()
    key: str | None = None
    if r < 0.7:
        kind, policy = "o", RunPolicy.once()
        if rng.random() < 0.15:
            key = rng.choice(DEDUPE_KEYS[:3])
    elif r < 0.85:
        kind = "r"
        policy = RunPolicy.repeat(rng.randint(2, 4), rng.randint(1, 30))
    else:
        kind = "c"
        misfire = rng.choice(
            [MisfirePolicy.catch_up(cap=2), MisfirePolicy.coalesce(), MisfirePolicy.skip()]
        )
        policy = RunPolicy.cron(
            "* * * * *",
            max_occurrences=rng.choice([None, None, 3, 8]),
            window=rng.randint(1, 3),
            misfire=misfire,
        )
        if rng.random() < 0.3:
            key = "c0"
    spec = TaskSpec(
        TaskId.new(),
        b"x" * rng.randint(0, 200),
        policy,
        TaskConstraints(
            max_attempts=attempts,
            concurrency_key=rng.choice([None, None, "k0", "k1"]),
            retry=Backoff.fixed(5),
        ),
        TaskMetadata(priority=rng.randint(-1, 1)),
        dedupe_key=key,
    )
    return spec, attempts, kind


def run(
    data_dir: str,
    ack_path: str,
    seed: int,
    start: int,
    ready_fd: int | None,
    options: dict[str, Any] | None = None,
) -> None:
    try:
        _run(data_dir, ack_path, seed, start, ready_fd, options or {})
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        raise


def _run(
    data_dir: str,
    ack_path: str,
    seed: int,
    start: int,
    ready_fd: int | None,
    options: dict[str, Any],
) -> None:
    rng = random.Random(seed)
    auth = StorageMutationAuthority.open(data_dir, **options)
    clock = ManualClock(start)
    engine = Engine(
        auth,
        clock,
        owner=f"w{os.getpid()}",
        rng=random.Random(seed),
        default_lease_ms=LEASE_MS,
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
    recent: list[TaskId] = []  # tasks of this process, newest last
    while True:
        if rng.random() < 0.6:
            spec, attempts, kind = _spec(rng)
            tid = engine.submit(spec)
            if tid == spec.task_id:
                log(f"S {tid.bytes.hex()} {attempts} {kind}")
                recent.append(tid)
                del recent[:-30]
            if spec.dedupe_key is not None:
                log(f"K {spec.dedupe_key} {tid.bytes.hex()}")
        for d in engine.dispatch_next(limit=rng.randint(1, 3)):
            log(f"D {d.run_id.bytes.hex()} {d.attempt_id.bytes.hex()} {d.attempt}")
            r = rng.random()
            if r < 0.05:
                continue  # abandoned: its lease expires, the sweep finishes it as Lost
            if r < 0.6:
                outcome = AttemptOutcome.SUCCESS
            elif r < 0.93:
                outcome = AttemptOutcome.RETRYABLE_FAILURE
            else:
                outcome = AttemptOutcome.TERMINAL_FAILURE
            state = engine.finish_attempt(
                d.run_id, d.attempt_id, outcome, error=None if outcome.name == "SUCCESS" else "e"
            )
            log(f"F {d.run_id.bytes.hex()} {d.attempt_id.bytes.hex()} {int(state)}")
        r = rng.random()
        if recent and r < 0.03:
            tid = rng.choice(recent)
            try:
                engine.cancel_task(tid, "kill loop")
            except (InvalidTransitionError, NotFoundError):
                pass
            else:
                log(f"C {tid.bytes.hex()}")
        elif recent and r < 0.07:
            live = [x for x in engine.runs_for_task(rng.choice(recent)) if x.state not in _TERMINAL]
            if live:
                run_id = rng.choice(live).run_id
                engine.cancel_run(run_id, "kill loop")
                log(f"X {run_id.bytes.hex()}")
        elif r < 0.09:
            before = clock.now() - rng.randint(0, 2_000)
            log(f"P {before}")
            engine.prune(before)
        if rng.random() < 0.04:
            step = rng.randint(5_000, 61_000)  # cron occurrences fall due, leases expire
        else:
            step = rng.randint(1, 20)
        clock.advance(max(0, min(step, start + CLOCK_SPAN - clock.now())))
        if rng.random() < 0.2:
            engine.tick()


if __name__ == "__main__":
    seed = int(sys.argv[3])
    opts = storage_options(seed, small_segments=len(sys.argv) > 5 and sys.argv[5] == "small")
    run(sys.argv[1], sys.argv[2], seed, int(sys.argv[4]), None, opts)
