"""The asyncio-facing API (``asubmit``, ``asubmit_many``, ``aresult``, ``await_task``) against
its synchronous twins and ``close()``."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rt_helpers import MakeQueue, needs_real_storage

from actionqueue.errors import ClosedError, WrongTypeError

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    "payloads",
    ["abc", b"xy", bytearray(b"xy"), {"a": 1, "b": 2}, 5, None],
    ids=["str", "bytes", "bytearray", "dict", "int", "None"],
)
def test_asubmit_many_refuses_what_submit_many_refuses(
    make_queue: MakeQueue, payloads: Any
) -> None:
    """``asubmit_many`` turned ``payloads`` into a list before ``submit_many`` could check it:
    a str became one task per character, a dict one per key, and a non-iterable raised a
    plain ``TypeError`` instead of ``WrongTypeError``."""
    q = make_queue()
    q.register("h", lambda ctx, p: p)
    with pytest.raises(WrongTypeError, match="payloads must be an iterable"):
        q.submit_many("h", payloads)
    with pytest.raises(WrongTypeError, match="payloads must be an iterable"):
        asyncio.run(asyncio.wait_for(q.asubmit_many("h", payloads), 10))
    assert q.stats()["total_runs"] == 0  # nothing written
    q.close()
    with pytest.raises(ClosedError):  # checked first, as by submit_many
        asyncio.run(asyncio.wait_for(q.asubmit_many("h", payloads), 10))


@needs_real_storage
@pytest.mark.parametrize("close_done", [False, True], ids=["closing", "closed"])
def test_an_asubmit_written_before_close_returns_its_durable_task(
    make_queue: MakeQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, close_done: bool
) -> None:
    """An Immediate ``asubmit`` whose record was written before a ``close()`` in another
    thread, but whose durability wait came after the close had stopped the authority's
    group-sync thread, raised ``ClosedError`` — although the close flushed the record: the
    caller saw a refusal for a task that exists (a retry submits it twice). It returns the
    task now. (The race is simulated: the wait is refused as the authority refuses it
    between stopping that thread and closing its log; "closed": the close is over by then.)"""
    path = tmp_path / "q"
    q = make_queue(path, durability="immediate")
    q.register("h", lambda ctx, p: p)
    cls = type(q.authority)  # slotted: patched on the class
    real_wait = cls.wait_durable_async
    refused: list[bool] = []

    async def wait_refused_once(self: Any, sequence: int | None = None) -> None:
        if not refused:
            refused.append(True)
            if close_done:
                closer = threading.Thread(target=q.close)
                closer.start()
                closer.join(10)
            raise ClosedError("mutation authority is closed")
        await real_wait(self, sequence)

    monkeypatch.setattr(cls, "wait_durable_async", wait_refused_once)

    async def main() -> Any:
        # a dedupe key: written on a worker thread, the wait then comes back to the loop
        return await q.asubmit("h", 1, dedupe_key="once")

    tid = asyncio.run(asyncio.wait_for(main(), 10))
    assert refused == [True]
    if not close_done:
        assert q.authority.stats().synced_sequence >= q.authority.latest_sequence
    q.close()
    again = make_queue(path)
    assert again.get_task(tid) is not None


@pytest.mark.timeout(30)
@pytest.mark.parametrize("waiter", ["result", "aresult", "aresult-run"])
@pytest.mark.parametrize("looping", [False, True], ids=["no-loop", "loop"])
def test_a_result_whose_run_finishes_during_close_s_drain_is_returned(
    make_queue: MakeQueue, waiter: str, looping: bool
) -> None:
    """``close()`` drains in-flight attempts, and a wait whose target finishes meanwhile
    returns (runtime.md). ``wait`` / ``await_task`` did, but ``result`` / ``aresult`` then
    read the run through ``runs()``, which the closing queue refused: ``ClosedError`` for a
    run that completed. A target that cannot finish in the drain still raises it."""
    q = make_queue()
    running = threading.Event()

    @q.handler("slow")
    def slow(ctx: Any, p: Any) -> Any:
        running.set()
        time.sleep(0.3)
        return p

    if looping:
        q.start()
    finishing = q.submit("slow", {"v": 1})
    later = q.submit("slow", 2, delay=3600)
    got: dict[str, Any] = {}

    def wait_for(name: str, ident: Any) -> None:
        try:
            if waiter == "result":
                got[name] = q.result(ident, timeout=20)
            else:
                got[name] = asyncio.run(asyncio.wait_for(q.aresult(ident, timeout=20), 20))
        except Exception as e:
            got[name] = e

    if waiter == "aresult-run":
        finishing_ident: Any = q.runs(finishing)[0].run_id
    else:
        finishing_ident = finishing
    # close() must begin once both waiters wait (a call made after it is refused, as any):
    # each thread's first look at its target says it is in the wait loop.
    waiting = threading.Semaphore(0)
    looked: set[int] = set()
    is_done = q._is_done

    def first_look_counted(target: Any) -> bool:
        if threading.get_ident() not in looked:
            looked.add(threading.get_ident())
            waiting.release()
        return is_done(target)

    q._is_done = first_look_counted  # type: ignore[method-assign]
    waiters = [
        threading.Thread(target=wait_for, args=("finishing", finishing_ident)),
        threading.Thread(target=wait_for, args=("later", later)),
    ]
    for w in waiters:
        w.start()
    assert running.wait(10)
    assert waiting.acquire(timeout=10)
    assert waiting.acquire(timeout=10)
    q.close()
    for w in waiters:
        w.join(10)
    assert got["finishing"] == {"v": 1}
    assert isinstance(got["later"], ClosedError)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("waiter", ["result", "aresult"])
def test_a_result_read_while_close_finishes_still_gets_the_output(
    make_queue: MakeQueue, waiter: str
) -> None:
    """Between ``result()`` seeing its run finished and reading the run, a concurrent
    ``close()`` could close the log: the caller got ``ClosedError`` for a run that completed.
    close() now keeps the log open for a waiter's read (``Dispatcher.reading``). The waiter
    here holds that window open until close() has started closing the log."""
    q = make_queue()

    @q.handler("h")
    def h(ctx: Any, p: Any) -> Any:
        return p

    tid = q.submit("h", {"v": 7})
    q.wait(tid, timeout=10)
    d = q._dispatcher
    waited = threading.Event()
    real_wait = q._wait

    def wait_then_hold(*args: Any, **kwargs: Any) -> None:
        real_wait(*args, **kwargs)
        waited.set()
        # Old code: close() ran to its end here (`closed`); new: it stops at `final`.
        deadline = time.monotonic() + 10
        while not (getattr(d, "final", False) or d.closed) and time.monotonic() < deadline:
            time.sleep(0.001)

    q._wait = wait_then_hold  # type: ignore[method-assign]
    got: list[Any] = []

    def read() -> None:
        try:
            if waiter == "result":
                got.append(q.result(tid, timeout=10))
            else:
                got.append(asyncio.run(q.aresult(tid, timeout=10)))
        except Exception as e:
            got.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    assert waited.wait(10)
    q.close()
    reader.join(10)
    assert got == [{"v": 7}]


@pytest.mark.parametrize("call", ["submit", "asubmit", "submit_many", "asubmit_many"])
def test_an_internal_parameter_name_is_refused_as_an_unknown_option(
    make_queue: MakeQueue, call: str
) -> None:
    """``submit`` / ``asubmit`` pass their options to an internal ``_submit(...,
    nonblocking=...)``: a caller's ``nonblocking=`` keyword collided with it and raised a
    plain ``TypeError`` ("got multiple values for keyword argument") instead of the
    ``WrongTypeError`` every other unknown option gets (``submit_many`` gave that already)."""
    q = make_queue()
    q.register("h", lambda ctx, p: p)

    def submit(value: bool) -> object:
        if call == "submit":
            return q.submit("h", 1, nonblocking=value)
        if call == "submit_many":
            return q.submit_many("h", [1], nonblocking=value)
        fn = q.asubmit if call == "asubmit" else q.asubmit_many
        arg: Any = 1 if call == "asubmit" else [1]
        return asyncio.run(asyncio.wait_for(fn("h", arg, nonblocking=value), 10))

    for value in (True, False):
        with pytest.raises(WrongTypeError, match=r"unknown option.*nonblocking"):
            submit(value)
    assert q.stats()["total_runs"] == 0
