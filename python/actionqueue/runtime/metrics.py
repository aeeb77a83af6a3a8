"""In-process metrics: counters, gauges, histograms, and a Prometheus text exposition.

Everything is kept in plain Python objects behind one lock (cheap enough for the hot path:
one dict update per event). ``prometheus_text()`` renders them in the Prometheus text format —
through ``prometheus-client`` when it is installed (``pip install actionqueue[prometheus]``),
else with a small built-in renderer of the same format. Series whose value lives elsewhere
(queue depth by state, the WAL's appended bytes and fsyncs) are read at scrape time from
collectors the runtime registers.

>>> m = Metrics()
>>> m.inc("submitted_total", handler="send")
>>> m.observe("attempt_duration_seconds", 0.02, handler="send", outcome="Success")
>>> m.value("submitted_total", handler="send")
1.0
>>> "actionqueue_submitted_total" in m.prometheus_text()
True
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_BUCKETS", "Histogram", "Metrics"]

#: Seconds; from sub-millisecond no-op handlers to minute-long jobs.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 300.0,
)  # fmt: skip

PREFIX = "actionqueue_"

_HELP: dict[str, str] = {
    "submitted_total": "Tasks submitted through the runtime, by handler.",
    "dispatched_total": "Attempts started (handed to an executor), by handler.",
    "outcomes_total": "Attempts finished, by handler and outcome.",
    "attempt_duration_seconds": "Real time from handler start to result, by handler/outcome.",
    "dispatch_latency_seconds": (
        "Clock time from a run being due for an attempt (scheduled time, end of backoff, "
        "made Ready again) to the attempt starting."
    ),
    "heartbeats_total": "Lease heartbeats written for in-flight attempts.",
    "heartbeat_failures_total": "Heartbeats refused (lease already expired or run gone).",
    "errors_total": "Runtime-level errors (not handler failures), by kind.",
    "in_flight": "Attempts running now.",
    "runs": "Runs by state (queue depth).",
    "recovery_seconds": "Time the last open() spent recovering the data directory.",
    "wal_appended_bytes_total": "Bytes appended to the write-ahead log since the queue was opened.",
    "wal_fsyncs_total": "fsync calls made by the write-ahead log since the queue was opened.",
}

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(kw: Mapping[str, object]) -> Labels:
    # The runtime records the same few series over and over (once per batch of attempts):
    # their canonical label tuples are remembered, keyed by the labels as given, when every
    # value is a plain str or None (whose text cannot change, and which never compare equal
    # to a value of another type with another text, as 1 and True do).
    raw = tuple(kw.items())
    for _, v in raw:
        if v is not None and type(v) is not str:
            return _canonical(raw)
    got = _LABELS.get(raw)
    if got is None:
        got = _canonical(raw)
        if len(_LABELS) >= _LABELS_MAX:
            _LABELS.clear()
        _LABELS[raw] = got
    return got


def _canonical(items: tuple[tuple[str, object], ...]) -> Labels:
    return tuple(sorted((k, "" if v is None else str(v)) for k, v in items))


#: canonical label tuples by the raw ``labels`` items (bounded; cleared when full)
_LABELS: dict[tuple[tuple[str, object], ...], Labels] = {}
_LABELS_MAX = 4_096


@dataclass
class Histogram:
    """Cumulative-bucket histogram (Prometheus style)."""

    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def observe_many(self, values: list[float]) -> None:
        """``observe`` each of ``values`` (one call per batch of attempts)."""
        counts, buckets, where = self.counts, self.buckets, bisect.bisect_left
        for v in values:
            counts[where(buckets, v)] += 1
        self.total += sum(values)
        self.n += len(values)

    def cumulative(self) -> list[tuple[float, int]]:
        out = []
        acc = 0
        for b, c in zip((*self.buckets, math.inf), self.counts, strict=True):
            acc += c
            out.append((b, acc))
        return out

    def quantile(self, q: float) -> float | None:
        """Estimated from buckets: the upper bound of the bucket holding the q-th value
        (``q`` in ``[0, 1]``; 0 is the smallest value, 1 the largest)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile q must be in [0, 1], got {q!r}")
        if self.n == 0:
            return None
        # The rank of the q-th value counts from 1: with rank 0, q=0 would stop at the first
        # bucket, empty or not, instead of the one holding the smallest value.
        rank = max(1, math.ceil(q * self.n))
        for b, acc in self.cumulative():
            if acc >= rank:
                return b
        return math.inf  # pragma: no cover - the last bucket's count is n


class Metrics:
    """The runtime's metric store. Thread-safe."""

    def __init__(self, prefix: str = PREFIX) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {}
        self._gauges: dict[str, dict[Labels, float]] = {}
        self._hists: dict[str, dict[Labels, Histogram]] = {}
        self._collectors: list[
            Callable[[], Iterable[tuple[str, str, Mapping[str, object], float]]]
        ] = []

    # --- recording -----------------------------------------------------------------------

    def inc(self, name: str, amount: float = 1.0, **labels: object) -> None:
        key = _labels(labels)
        with self._lock:
            d = self._counters.setdefault(name, {})
            d[key] = d.get(key, 0.0) + amount

    def set_gauge(self, name: str, value: float, **labels: object) -> None:
        with self._lock:
            self._gauges.setdefault(name, {})[_labels(labels)] = float(value)

    def observe(self, name: str, value: float, **labels: object) -> None:
        key = _labels(labels)
        with self._lock:
            d = self._hists.setdefault(name, {})
            h = d.get(key)
            if h is None:
                h = d[key] = Histogram()
            h.observe(value)

    def observe_many(self, name: str, values: Iterable[float], **labels: object) -> None:
        """``observe`` for many values of one series (one lock, one label lookup)."""
        key = _labels(labels)
        with self._lock:
            d = self._hists.setdefault(name, {})
            h = d.get(key)
            if h is None:
                h = d[key] = Histogram()
            h.observe_many(values if type(values) is list else list(values))

    def add_collector(
        self, fn: Callable[[], Iterable[tuple[str, str, Mapping[str, object], float]]]
    ) -> None:
        """Register ``fn() -> [(name, "gauge"|"counter", labels, value), ...]``, read at scrape
        time (for values owned elsewhere: run counts, WAL statistics)."""
        with self._lock:
            self._collectors.append(fn)

    # --- reading -------------------------------------------------------------------------

    def value(self, name: str, **labels: object) -> float:
        """A counter's or gauge's current value (0 if never set)."""
        key = _labels(labels)
        with self._lock:
            for store in (self._counters, self._gauges):
                if name in store and key in store[name]:
                    return store[name][key]
        for n, _kind, lab, v in self._collected():
            if n == name and _labels(lab) == key:
                return v
        return 0.0

    def total(self, name: str) -> float:
        """A counter summed over all label sets, the ones read at scrape time included
        (``wal_fsyncs_total``); 0.0 if never counted."""
        with self._lock:
            recorded = sum(self._counters.get(name, {}).values(), 0.0)
        collected = (v for n, kind, _lab, v in self._collected() if n == name and kind == "counter")
        return recorded + sum(collected, 0.0)

    def histogram(self, name: str, **labels: object) -> Histogram | None:
        """A histogram; with no labels, all label sets merged."""
        with self._lock:
            d = self._hists.get(name)
            if not d:
                return None
            if labels:
                return d.get(_labels(labels))
            merged = Histogram()
            for h in d.values():
                merged.counts = [a + b for a, b in zip(merged.counts, h.counts, strict=True)]
                merged.total += h.total
                merged.n += h.n
            return merged

    def _collected(self) -> list[tuple[str, str, Mapping[str, object], float]]:
        with self._lock:
            collectors = list(self._collectors)
        out: list[tuple[str, str, Mapping[str, object], float]] = []
        for fn in collectors:
            try:
                out.extend(fn())
            except Exception:  # a closed queue or a failed authority must not break scraping
                continue
        return out

    def snapshot(self) -> dict[str, Any]:
        """Everything as plain data: ``{name: {labels-as-str: value}}`` (histograms as
        ``{"count", "sum", "p50", "p99"}``)."""

        def fmt(key: Labels) -> str:
            return ",".join(f"{k}={v}" for k, v in key) or "_"

        out: dict[str, Any] = {}
        with self._lock:
            for store in (self._counters, self._gauges):
                for name, d in store.items():
                    out[name] = {fmt(k): v for k, v in d.items()}
            for name, hd in self._hists.items():
                out[name] = {
                    fmt(k): {
                        "count": h.n,
                        "sum": h.total,
                        "p50": h.quantile(0.5),
                        "p99": h.quantile(0.99),
                    }
                    for k, h in hd.items()
                }
        for name, _kind, lab, v in self._collected():
            out.setdefault(name, {})[fmt(_labels(lab))] = v
        return out

    # --- exposition ----------------------------------------------------------------------

    def _families(self) -> list[tuple[str, str, list[tuple[Labels, Any]]]]:
        fams: dict[str, tuple[str, list[tuple[Labels, Any]]]] = {}
        with self._lock:
            for name, d in self._counters.items():
                fams[name] = ("counter", list(d.items()))
            for name, d in self._gauges.items():
                fams[name] = ("gauge", list(d.items()))
            for name, hd in self._hists.items():
                fams[name] = (
                    "histogram",
                    [(k, (h.cumulative(), h.total, h.n)) for k, h in hd.items()],
                )
        for name, kind, lab, v in self._collected():
            fams.setdefault(name, (kind, []))[1].append((_labels(lab), v))
        return [(n, k, s) for n, (k, s) in sorted(fams.items())]

    def prometheus_text(self) -> str:
        """The Prometheus text exposition (version 0.0.4) of every metric."""
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            return self._render_builtin()
        return self._render_prometheus_client()

    def _render_prometheus_client(self) -> str:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        families = self._families()
        prefix = self.prefix

        class _Collector:
            def collect(self) -> Iterable[Any]:
                for name, kind, samples in families:
                    full = prefix + name
                    doc = _HELP.get(name, name)
                    label_names = sorted({k for key, _ in samples for k, _v in key})
                    fam: Any
                    if kind == "counter":
                        fam = CounterMetricFamily(
                            full.removesuffix("_total"), doc, labels=label_names
                        )
                    elif kind == "histogram":
                        fam = HistogramMetricFamily(full, doc, labels=label_names)
                    else:
                        fam = GaugeMetricFamily(full, doc, labels=label_names)
                    for key, v in samples:
                        d = dict(key)
                        values = [d.get(k, "") for k in label_names]
                        if kind == "histogram":
                            cum, total, _n = v
                            buckets = [
                                ("+Inf" if math.isinf(b) else repr(float(b)), c) for b, c in cum
                            ]
                            fam.add_metric(values, buckets, total)
                        else:
                            fam.add_metric(values, v)
                    yield fam

        reg = CollectorRegistry(auto_describe=False)
        reg.register(_Collector())
        return generate_latest(reg).decode()

    def _render_builtin(self) -> str:
        lines: list[str] = []

        def lab(key: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
            items = (*key, *extra)
            if not items:
                return ""
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in items)
            return "{" + inner + "}"

        for name, kind, samples in self._families():
            full = self.prefix + name
            lines.append(f"# HELP {full} {_HELP.get(name, name)}")
            lines.append(f"# TYPE {full} {kind}")
            for key, v in samples:
                if kind == "histogram":
                    cum, total, n = v
                    for b, c in cum:
                        le = "+Inf" if math.isinf(b) else repr(float(b))
                        lines.append(f"{full}_bucket{lab(key, (('le', le),))} {float(c)!r}")
                    lines.append(f"{full}_sum{lab(key)} {float(total)!r}")
                    lines.append(f"{full}_count{lab(key)} {float(n)!r}")
                else:
                    lines.append(f"{full}{lab(key)} {float(v)!r}")
        return "\n".join(lines) + "\n"
