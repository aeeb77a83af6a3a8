"""Collects the rates measured by the benchmarks and prints them with their ratios."""

from __future__ import annotations

import pytest

RATES: dict[str, float] = {}

# (name, numerator, denominator, target from SPEC §10)
RATIOS = [
    ("Immediate 1 thread / raw write+fdatasync", "immediate_1", "raw_sync", 0.8),
    ("Immediate 8 threads / Immediate 1 thread", "immediate_8", "immediate_1_near_8", 5.0),
    ("Immediate 32 threads / Immediate 1 thread", "immediate_32", "immediate_1_near_32", 15.0),
    (
        "1000-event Immediate batch / raw write+fdatasync of its bytes",
        "batch_1000",
        "raw_batch",
        0.5,
    ),
]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RATES:
        return
    tr = terminalreporter
    tr.section("WAL rates (same run)")
    for name, rate in RATES.items():
        tr.write_line(f"{name:>24}: {rate:>14,.0f} /s")
    tr.section("WAL ratios (target)")
    for label, num, den, target in RATIOS:
        if num in RATES and den in RATES:
            ratio = RATES[num] / RATES[den]
            ok = "ok" if ratio >= target else "BELOW"
            tr.write_line(f"{label}: {ratio:6.2f}x  (>= {target}x: {ok})")
