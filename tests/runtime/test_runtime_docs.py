"""docs/runtime.md's python blocks run, and the runtime modules' doctests pass."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest
from rt_helpers import needs_real_storage

PAGE = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)


def test_the_page_has_examples() -> None:
    assert len(_blocks()) >= 7


@needs_real_storage
@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(len(_blocks())))
def test_runtime_page_example_runs(index: int) -> None:
    namespace: dict[str, object] = {}
    # Every block starts from `import actionqueue as aq`, as the page's first block does.
    exec("import actionqueue as aq", namespace)
    block = _blocks()[index]
    exec(compile(block, f"{PAGE.name}[block {index}]", "exec"), namespace)


@pytest.mark.parametrize(
    "module",
    [
        "actionqueue.runtime.units",
        "actionqueue.runtime.api",
        "actionqueue.runtime.codecs",
        "actionqueue.runtime.handlers",
        "actionqueue.runtime.context",
        "actionqueue.runtime.metrics",
    ],
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


@needs_real_storage
def test_queue_docstring_example() -> None:
    result = doctest.testmod(importlib.import_module("actionqueue.runtime.queue"))
    assert result.attempted > 0
    assert result.failed == 0
