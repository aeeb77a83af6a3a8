"""docs/engine.md's examples run (against the fake authority)."""

from __future__ import annotations

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "engine.md"


def test_engine_page_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 6
    namespace: dict[str, object] = {}
    for i, block in enumerate(blocks):
        # One namespace: later blocks build on earlier ones, like a reader would.
        exec(compile(block, f"{PAGE.name}[block {i}]", "exec"), namespace)
