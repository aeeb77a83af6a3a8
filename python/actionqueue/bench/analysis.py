"""Ratios between results of one run: against baselines, ours against peers, and targets.

Pure functions over medians, so they are tested with exact numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from actionqueue.bench.durability import Durability
from actionqueue.bench.stats import ratio
from actionqueue.bench.targets import Target
from actionqueue.bench.workload import Workload


@dataclass(frozen=True, slots=True)
class Comparison:
    """``ours`` ÷ ``peer`` records/s, for two workloads at equal durability and shape."""

    ours: str
    peer: str
    peer_system: str
    ratio: float


@dataclass(frozen=True, slots=True)
class TargetResult:
    """A target checked against this run: value, status ("met", "MISSED", "n/a") and why."""

    target: Target
    value: float | None
    status: str
    detail: str


def baseline_ratio(workload: Workload, medians: Mapping[str, float]) -> float | None:
    """This workload's median records/s ÷ its baseline's, or ``None`` if either is missing."""
    if workload.baseline is None:
        return None
    return ratio(medians.get(workload.name), medians.get(workload.baseline))


def comparable(a: Workload, b: Workload) -> bool:
    """Same operation, same durability class, same producer threads and batch size."""
    return (
        a.kind == b.kind
        and a.durability.cls is b.durability.cls
        and a.threads == b.threads
        and a.batch == b.batch
    )


def compare_ours(workloads: Iterable[Workload], medians: Mapping[str, float]) -> list[Comparison]:
    """Every (ours, peer) pair that ran and is comparable, as ours ÷ peer."""
    ran = [w for w in workloads if w.name in medians]
    ours = [w for w in ran if w.system.is_ours]
    peers = [w for w in ran if not w.system.is_ours and not w.system.is_baseline]
    out: list[Comparison] = []
    for mine in ours:
        for peer in peers:
            if comparable(mine, peer):
                value = ratio(medians[mine.name], medians[peer.name])
                if value is not None:
                    out.append(Comparison(mine.name, peer.name, peer.system.name, value))
    return out


def check_targets(targets: Iterable[Target], medians: Mapping[str, float]) -> list[TargetResult]:
    """Evaluate each target; a missing workload makes it "n/a" naming what is missing."""
    results: list[TargetResult] = []
    for t in targets:
        needed = [n for n in (t.numerator, t.denominator) if n is not None]
        missing = [n for n in needed if n not in medians]
        if missing:
            results.append(TargetResult(t, None, "n/a", f"not measured: {', '.join(missing)}"))
            continue
        if t.denominator is None:
            value: float | None = medians[t.numerator]
            detail = "absolute records/s on this machine"
        else:
            value = ratio(medians[t.numerator], medians[t.denominator])
            detail = f"{t.numerator} ÷ {t.denominator}"
        if value is None:
            results.append(TargetResult(t, None, "n/a", "denominator is zero"))
        else:
            status = "met" if value >= t.minimum else "MISSED"
            results.append(TargetResult(t, value, status, detail))
    return results


_EXPECTS_SYNC = (Durability.FSYNC_PER_OP, Durability.GROUP_COMMIT, Durability.FSYNC_PER_BATCH)


def durability_contradictions(observed: Iterable[tuple[Workload, float]]) -> list[str]:
    """Workloads whose durability label disagrees with the sync calls counted under strace.

    A durable label needs at least one sync per call (0.95 allows for rounding of the
    difference method); an os-buffered one must make essentially none.
    """
    out: list[str] = []
    for w, syncs in observed:
        if w.durability in _EXPECTS_SYNC and syncs < 0.95:
            out.append(f"{w.name}: labelled {w.durability.value} but made {syncs:.2f} syncs/call")
        elif w.durability is Durability.OS_BUFFERED and syncs > 0.05:
            out.append(f"{w.name}: labelled os-buffered but made {syncs:.2f} syncs/call")
    return out
