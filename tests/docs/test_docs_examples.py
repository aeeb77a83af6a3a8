"""Every ```python block of README.md and docs/*.md is executed here.

Blocks of one page run in order in one namespace (pages build on earlier blocks, as a reader
does), in a fresh temporary working directory, under the per-test timeout. A block opts out
only with a ``# doctest: skip`` line that says why (e.g. it needs a Dask cluster). Pages that
use the runtime facade are skipped while ``actionqueue.runtime`` is absent.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SKIP = re.compile(r"^#\s*doctest:\s*skip\b\s*\S", re.MULTILINE)
# Pages whose examples import helpers that live next to other test suites.
EXTRA_PATHS = {"engine.md": ROOT / "tests" / "engine"}


def blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text())


def test_there_are_examples() -> None:
    assert sum(len(blocks(p)) for p in PAGES) >= 20


def test_skips_give_a_reason() -> None:
    for page in PAGES:
        for block in blocks(page):
            if "doctest: skip" in block:
                assert SKIP.search(block), f"{page.name}: '# doctest: skip' needs a reason"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=lambda p: p.name)
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = blocks(page)
    if any("ActionQueue" in b or "import actionqueue as aq" in b for b in code):
        pytest.importorskip("actionqueue.runtime", reason="the runtime facade is not merged")
    monkeypatch.chdir(tmp_path)
    extra = EXTRA_PATHS.get(page.name)
    if extra is not None:
        monkeypatch.syspath_prepend(str(extra))
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(code, 1):
        if SKIP.search(block):
            continue
        try:
            exec(compile(block, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page.name}, python block {i} failed: {exc!r}") from exc
