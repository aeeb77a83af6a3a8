"""The asyncio-facing API (``asubmit``, ``asubmit_many``, ``aresult``, ``await_task``) against
its synchronous twins and ``close()``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rt_helpers import MakeQueue

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
