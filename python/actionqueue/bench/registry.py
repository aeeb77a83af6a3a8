"""The workload registry: every known workload, and selection by pattern."""

from __future__ import annotations

import re

from actionqueue.bench import baselines, ours, peers
from actionqueue.bench.workload import Workload


def all_workloads() -> list[Workload]:
    """Baselines, then peers, then ours, in table order; names are unique."""
    found = [*baselines.workloads(), *peers.workloads(), *ours.workloads()]
    names = [w.name for w in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate workload names: {', '.join(duplicates)}")
    return found


def select(workloads: list[Workload], pattern: str | None) -> list[Workload]:
    """Workloads whose name matches the regular expression ``pattern`` (searched, not
    anchored), plus the baselines they are compared against, in registry order.

    Raises ``ValueError`` naming the pattern when it is not a valid expression.
    """
    if pattern is None:
        return list(workloads)
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"--only {pattern!r} is not a valid regular expression: {exc}") from None
    chosen = {w.name for w in workloads if regex.search(w.name)}
    chosen |= {w.baseline for w in workloads if w.name in chosen and w.baseline}
    return [w for w in workloads if w.name in chosen]
