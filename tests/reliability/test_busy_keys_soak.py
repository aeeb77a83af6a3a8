"""Concurrency keys under stopped handlers that go on running: many runs on a few keys, random
handler durations, short timeouts, handlers that honour or ignore ``ctx.cancelled`` (async
ones swallowing their ``CancelledError``), retries under both hold policies, and random
cancels from another thread, on the thread, asyncio and ``concurrent.futures`` executors,
driven by ``run_until_idle``, the background loop or threads in ``wait()``. The handlers
record when their code really starts and ends: no key may ever have two running at once,
every run ends terminal, nothing hangs, and no key is left busy.

Timing decides what each trial covers (its checks hold whatever the timing): one trial per
configuration by default (about 10 s), ``AQ_SOAK=1`` for 20 (about 3 minutes) or
``AQ_BUSY_TRIALS=n``; ``AQ_SEED`` sets the first seed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import actionqueue as aq
from actionqueue import ActionQueue, RunState
from actionqueue.core import TaskId

SOAK = os.environ.get("AQ_SOAK", "0") not in ("", "0")
TRIALS = int(os.environ.get("AQ_BUSY_TRIALS", "20" if SOAK else "1"))
SEED = int(os.environ.get("AQ_SEED", "0"))
TERMINAL = {RunState.COMPLETED, RunState.FAILED, RunState.CANCELED}


class Spans:
    """The handlers of each key running now; a start beside another is a violation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: dict[str, list[str]] = {}
        self.violations: list[tuple[str, list[str], str]] = []
        self.starts = 0

    def enter(self, key: str, who: str) -> None:
        with self.lock:
            self.starts += 1
            running = self.active.setdefault(key, [])
            if running:
                self.violations.append((key, list(running), who))
            running.append(who)

    def leave(self, key: str, who: str) -> None:
        with self.lock:
            self.active[key].remove(who)


def _trial(path: Path, seed: int, executor: str, mode: str) -> None:
    rnd = random.Random(seed)
    spans = Spans()
    pool = None
    if executor == "pool":
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=rnd.choice([2, 4]))
        q = ActionQueue(path, executor=pool)
    elif executor == "asyncio":
        q = ActionQueue(path, executor="asyncio", max_workers=rnd.choice([2, 4, 8]))
    else:
        q = ActionQueue(path, max_workers=rnd.choice([2, 4, 6]))

    def sync_handler(ctx: Any, p: dict[str, Any]) -> str:
        who = f"{p['who']}#{ctx.attempt}"
        spans.enter(p["key"], who)
        try:
            if p["polite"]:
                ctx.cancelled.wait(p["dur"])
            else:
                time.sleep(p["dur"])
            if p["fail"] and ctx.attempt < 2:
                raise RuntimeError("fails once")
            return who
        finally:
            spans.leave(p["key"], who)

    async def async_handler(ctx: Any, p: dict[str, Any]) -> str:
        who = f"{p['who']}#{ctx.attempt}"
        spans.enter(p["key"], who)
        try:
            end = time.monotonic() + p["dur"]
            while (left := end - time.monotonic()) > 0:
                try:
                    await asyncio.sleep(min(left, 0.01))
                except asyncio.CancelledError:
                    if p["polite"]:
                        raise
                    # swallowed: goes on after its outcome was recorded
            if p["fail"] and ctx.attempt < 2:
                raise RuntimeError("fails once")
            return who
        finally:
            spans.leave(p["key"], who)

    q.register("s", sync_handler, backoff=aq.fixed(0.005))
    if executor == "asyncio":
        q.register("a", async_handler, backoff=aq.fixed(0.005))
    tids: list[TaskId] = []

    def submit(n: int) -> None:
        for _ in range(n):
            key = f"k{rnd.randrange(2)}"
            handler = "a" if executor == "asyncio" and rnd.random() < 0.5 else "s"
            payload = {
                "key": key,
                "who": f"r{len(tids)}",
                "dur": rnd.choice([0, 0.001, 0.01, 0.03, 0.06]),
                "polite": rnd.random() < 0.4,
                "fail": rnd.random() < 0.2,
            }
            options: dict[str, Any] = {
                "concurrency_key": key,
                "max_attempts": rnd.choice([1, 2, 3]),
                "hold_policy": rnd.choice(["hold_during_retry", "release_on_retry"]),
            }
            if rnd.random() < 0.6:
                options["timeout"] = rnd.choice([0.005, 0.01, 0.02, 0.05])
            tids.append(q.submit(handler, payload, **options))

    def cancel_some() -> None:
        r = random.Random(seed + 1)
        for _ in range(15):
            time.sleep(r.uniform(0.005, 0.04))
            t = r.choice(tids)
            with contextlib.suppress(aq.errors.ActionQueueError):
                q.cancel(t if r.random() < 0.5 else q.runs(t)[-1].run_id)

    try:
        submit(30)
        canceller = threading.Thread(target=cancel_some)
        canceller.start()
        if mode == "loop":
            q.start()
            submit(30)
            canceller.join()
            for t in tids:
                q.wait(t, timeout=60)
        elif mode == "waiters":
            submit(30)

            def wait_for(some: list[TaskId]) -> None:
                for t in some:
                    q.wait(t, timeout=60)

            waiters = [threading.Thread(target=wait_for, args=(tids[i::3],)) for i in range(3)]
            for w in waiters:
                w.start()
            canceller.join()
            for w in waiters:
                w.join(90)
                assert not w.is_alive()
        else:
            q.run_until_idle(advance_clock=True, timeout=60)
            submit(30)
            canceller.join()
        q.run_until_idle(advance_clock=True, timeout=60)
        deadline = time.monotonic() + 20  # stopped handlers end within their duration
        while q.stats()["busy_keys"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert q.stats()["busy_keys"] == []
        q.run_until_idle(advance_clock=True, timeout=60)
        left = [r for t in tids for r in q.runs(t) if r.state not in TERMINAL]
        assert left == []
        assert spans.violations == [], f"seed {seed}: two handlers of a key at once"
        assert spans.starts >= len(tids) // 4  # the trial did run handlers (not all canceled)
    finally:
        q.close(timeout=20)
        if pool is not None:
            pool.shutdown()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["idle", "loop", "waiters"])
@pytest.mark.parametrize("executor", ["threads", "asyncio", "pool"])
def test_a_key_never_has_two_handlers_running_at_once(
    fast_tmp: Path, executor: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="actionqueue")  # timeouts log warnings
    for i in range(TRIALS):
        _trial(fast_tmp / f"q{i}", SEED + i, executor, mode)
