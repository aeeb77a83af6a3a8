"""In-process metrics and the Prometheus exposition."""

from __future__ import annotations

from typing import Any

import pytest

from actionqueue.runtime.metrics import Histogram, Metrics


def _filled() -> Metrics:
    m = Metrics()
    m.inc("submitted_total", handler="a")
    m.inc("submitted_total", 2, handler="b")
    m.set_gauge("in_flight", 3)
    for v in (0.001, 0.002, 0.2):
        m.observe("attempt_duration_seconds", v, handler="a", outcome="Success")
    m.add_collector(lambda: [("runs", "gauge", {"state": "Ready"}, 7)])
    return m


def test_counters_gauges_histograms() -> None:
    m = _filled()
    assert m.value("submitted_total", handler="b") == 2
    assert m.total("submitted_total") == 3
    assert m.value("in_flight") == 3
    assert m.value("runs", state="Ready") == 7
    h = m.histogram("attempt_duration_seconds")
    assert h is not None
    assert h.n == 3
    assert h.quantile(0.5) == 0.0025
    snap = m.snapshot()
    assert snap["attempt_duration_seconds"]["handler=a,outcome=Success"]["count"] == 3


def test_broken_collector_does_not_break_scrapes() -> None:
    m = Metrics()

    def broken() -> list[Any]:
        raise RuntimeError("closed")

    m.add_collector(broken)
    assert m.snapshot() == {}
    m.prometheus_text()


def _check_text(text: str) -> None:
    assert 'actionqueue_submitted_total{handler="b"} 2.0' in text
    assert "# TYPE actionqueue_attempt_duration_seconds histogram" in text
    assert 'actionqueue_runs{state="Ready"} 7.0' in text
    assert "actionqueue_in_flight 3.0" in text
    assert 'le="+Inf"' in text


def test_prometheus_text_with_prometheus_client() -> None:
    pytest.importorskip("prometheus_client")
    text = _filled().prometheus_text()
    _check_text(text)
    from prometheus_client.parser import text_string_to_metric_families

    names = {f.name for f in text_string_to_metric_families(text)}
    assert "actionqueue_submitted" in names


def test_builtin_renderer_has_the_same_format() -> None:
    m = _filled()
    m.inc("errors_total", kind='quote"d\n')
    text = m._render_builtin()
    _check_text(text)
    assert 'kind="quote\\"d\\n"' in text
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return
    assert list(text_string_to_metric_families(text))


def test_quantile_zero_is_the_bucket_of_the_smallest_value() -> None:
    """q=0 used to return the first bucket's bound whatever the data (0.0005 for values of
    100 s and more); it is the bucket holding the smallest value, like every other q."""
    h = Histogram()
    for v in (100.0, 200.0, 250.0):
        h.observe(v)
    assert h.quantile(0.0) == 300.0
    assert h.quantile(0.0) == h.quantile(0.01)
    assert h.quantile(1.0) == 300.0
    h.observe(0.003)
    assert h.quantile(0.0) == 0.005
    assert Histogram().quantile(0.0) is None
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        h.quantile(1.5)


def test_total_sums_the_counters_read_at_scrape_time_too() -> None:
    """total() used to sum only the counters recorded directly: a collected counter (the
    WAL's fsyncs) read 0 although value() read it, and an empty total was the int 0."""
    m = Metrics()
    m.add_collector(
        lambda: [
            ("wal_fsyncs_total", "counter", {}, 5),
            ("reads_total", "counter", {"disk": "a"}, 2),
            ("reads_total", "counter", {"disk": "b"}, 3),
            ("runs", "gauge", {"state": "Ready"}, 7),
        ]
    )
    m.inc("reads_total", disk="c")
    assert m.total("wal_fsyncs_total") == m.value("wal_fsyncs_total") == 5.0
    assert m.total("reads_total") == 6.0
    assert m.total("runs") == 0.0  # a gauge is not a counter
    assert type(m.total("never_counted_total")) is float
