"""A small pure-Python model of the reducer rules the storage tests drive (DESIGN.md,
"Reducer rules"): enough to predict whether each command is accepted and what every run looks
like afterwards. Adapted from ``tests/engine/engine_model.py`` (copied, not imported)."""

from __future__ import annotations

from dataclasses import dataclass, field

from actionqueue.core.run.state import RunState

S = RunState
HOLDS = {S.LEASED, S.RUNNING, S.RETRY_WAIT, S.SUSPENDED}  # hold_during_retry (the default)
TERMINAL = {S.COMPLETED, S.FAILED, S.CANCELED}


@dataclass
class MRun:
    task: bytes
    state: RunState = S.SCHEDULED
    attempts: int = 0
    open_attempt: bytes | None = None
    lease: tuple[str, int] | None = None


@dataclass
class MTask:
    key: str | None
    max_attempts: int
    runs: list[bytes] = field(default_factory=list)
    canceled: bool = False


class Model:
    def __init__(self) -> None:
        self.tasks: dict[bytes, MTask] = {}
        self.runs: dict[bytes, MRun] = {}
        self.paused = False
        self.seq = 0

    # --- what the reducer would accept ------------------------------------------------------

    def key_holder(self, key: str) -> bytes | None:
        for rid, r in self.runs.items():
            if r.state in HOLDS and self.tasks[r.task].key == key:
                return rid
        return None

    def can_dispatch(self, rid: bytes) -> bool:
        r = self.runs[rid]
        t = self.tasks[r.task]
        if r.state is not S.READY or self.paused or r.attempts >= t.max_attempts:
            return False
        return t.key is None or self.key_holder(t.key) in (None, rid)

    # --- applying accepted commands ---------------------------------------------------------

    def create(self, tid: bytes, key: str | None, max_attempts: int, rids: list[bytes]) -> None:
        self.tasks[tid] = MTask(key, max_attempts, list(rids))
        for rid in rids:
            self.runs[rid] = MRun(tid)
        self.seq += 1 + len(rids)

    def dispatch(self, rid: bytes, attempt: bytes, owner: str, expires: int) -> None:
        r = self.runs[rid]
        r.state, r.lease, r.open_attempt = S.RUNNING, (owner, expires), attempt
        r.attempts += 1
        self.seq += 4

    def cancel(self, tid: bytes) -> None:
        t = self.tasks[tid]
        t.canceled = True
        for rid in t.runs:
            r = self.runs[rid]
            if r.state not in TERMINAL:
                r.state, r.lease, r.open_attempt = S.CANCELED, None, None
        self.seq += 1

    def ended(self) -> dict[RunState, int]:
        counts = dict.fromkeys(RunState, 0)
        for r in self.runs.values():
            counts[r.state] += 1
        return counts
