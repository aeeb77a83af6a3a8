"""The docs' examples run: ```python blocks of docs/policies.md and the engine's doctests."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "policies.md"


def test_policies_page_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 5
    namespace: dict[str, object] = {}
    for i, block in enumerate(blocks):
        # One namespace: later blocks build on earlier ones, like a reader would.
        exec(compile(block, f"{PAGE.name}[block {i}]", "exec"), namespace)


@pytest.mark.parametrize(
    "module",
    [
        "actionqueue.engine",
        "actionqueue.engine.derive",
        "actionqueue.engine.scheduler",
        "actionqueue.engine.selection",
        "actionqueue.engine.lease",
        "actionqueue.engine.concurrency",
        "actionqueue.engine.dispatch",
    ],
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
