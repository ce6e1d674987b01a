"""Minute de-duplication, window pruning, cumulative-histogram detection and synthesised counters."""

from __future__ import annotations

import math

from exporter.model import Histogram, MinuteFigures
from exporter.pipeline.window import HistogramStream, SeriesWindow, minute_key_of

INF = math.inf


def hist(*counts: float, total: float | None = None) -> Histogram:
    bounds = (0.1, 0.5, INF)[: len(counts)]
    return Histogram(bounds, tuple(counts), total if total is not None else counts[-1] * 0.1, counts[-1])


def minute(requests: float, latency: Histogram | None = None, errors_5xx: float = 0) -> MinuteFigures:
    return MinuteFigures(requests=requests, errors_4xx=0, errors_5xx=errors_5xx, latency=latency)


def test_same_minute_polled_twice_is_counted_once():
    w = SeriesWindow(window_minutes=5)
    assert w.ingest(100, minute(60, hist(30, 50, 60), errors_5xx=3))
    assert not w.ingest(100, minute(60, hist(30, 50, 60), errors_5xx=3))
    assert w.counters.requests == 60
    assert w.counters.errors_5xx == 3
    assert w.counters.duration.counts == (30, 50, 60)
    assert len(w.in_window()) == 1


def test_window_keeps_only_the_newest_minutes_but_counters_keep_everything():
    w = SeriesWindow(window_minutes=3)
    for key in range(10, 16):
        w.ingest(key, minute(10))
    assert [k for k, _ in w.in_window()] == [13, 14, 15]
    assert w.counters.requests == 60
    assert not w.ingest(12, minute(10))  # older than the window: ignored
    assert w.counters.requests == 60


def test_minute_key_prefers_sample_timestamps():
    assert minute_key_of(1763820000000, now_s=0) == 1763820000000 // 60000
    assert minute_key_of(None, now_s=1763820059.9) == 1763820000000 // 60000
    assert minute_key_of(None, now_s=1763820060.0) == 1763820060000 // 60000


def test_per_minute_histogram_is_used_as_is_even_when_it_decreases():
    s = HistogramStream()
    assert s.per_minute(hist(50, 90, 100), requests=100).counts == (50, 90, 100)
    assert s.per_minute(hist(20, 30, 40), requests=40).counts == (20, 30, 40)
    assert not s.cumulative


def test_cumulative_histogram_is_detected_and_differenced():
    s = HistogramStream()
    # A server that started long ago: the first body holds far more than a minute's requests.
    assert s.per_minute(hist(500, 900, 1000), requests=100) is None
    assert s.cumulative
    delta = s.per_minute(hist(550, 980, 1100), requests=100)
    assert delta.counts == (50, 80, 100)
    assert math.isclose(delta.sum, 10.0)


def test_cumulative_with_low_traffic_stays_cumulative_while_growing():
    s = HistogramStream()
    s.per_minute(hist(5, 8, 8), requests=3)  # 8 > 3 x 1.05 + 2: cumulative
    assert s.cumulative
    assert s.per_minute(hist(6, 9, 9), requests=1).counts == (1, 1, 1)


def test_cumulative_reset_uses_the_new_value_as_the_delta():
    s = HistogramStream()
    s.per_minute(hist(500, 900, 1000), requests=100)
    s.per_minute(hist(550, 980, 1100), requests=100)
    after_restart = s.per_minute(hist(10, 20, 30), requests=30)
    assert after_restart.counts == (10, 20, 30)


def test_without_request_counts_a_growing_streak_means_cumulative():
    s = HistogramStream()
    outputs = [s.per_minute(hist(n, n, n), requests=None) for n in (100, 200, 300, 400, 500)]
    assert [o.count for o in outputs[:3]] == [100, 200, 300]  # not yet proven cumulative
    assert s.cumulative
    assert outputs[4].count == 100


def test_cumulative_source_gives_per_minute_counters_and_window():
    w = SeriesWindow(window_minutes=5)
    w.ingest(1, minute(100, hist(500, 900, 1000)), histograms="unknown")
    w.ingest(2, minute(100, hist(550, 980, 1100)), histograms="unknown")
    w.ingest(3, minute(100, hist(600, 1060, 1200)), histograms="unknown")
    latencies = [m.latency for _, m in w.in_window()]
    assert latencies[0] is None  # the first cumulative body has no predecessor
    assert [h.count for h in latencies[1:]] == [100, 100]
    assert w.counters.duration.counts == (100, 160, 200)


def test_bucket_layout_change_restarts_the_duration_histogram():
    w = SeriesWindow(window_minutes=5)
    w.ingest(1, minute(10, hist(5, 8, 10)))
    w.ingest(2, minute(10, Histogram((0.2, INF), (4, 10), 1.0, 10)))
    assert w.counters.duration.bounds == (0.2, INF)
    assert w.counters.duration.count == 10
    assert w.counters.requests == 20


def test_without_request_counts_a_reset_keeps_a_cumulative_series_cumulative():
    s = HistogramStream()
    for n in (100, 200, 300, 400):
        s.per_minute(hist(n, n, n), requests=None)
    assert s.cumulative
    assert s.per_minute(hist(30, 30, 30), requests=None).count == 30  # reset: the new value is the delta
    assert s.per_minute(hist(70, 70, 70), requests=None).count == 40


def test_a_source_that_says_per_minute_is_never_differenced():
    """Only a source that cannot tell ("unknown") gets the detection; per-minute histograms are stored as sent,
    even when they look cumulative."""
    w = SeriesWindow(window_minutes=5)
    w.ingest(1, minute(100, hist(500, 900, 1000)))
    w.ingest(2, minute(100, hist(550, 980, 1100)))
    assert [m.latency.count for _, m in w.in_window()] == [1000, 1100]
    assert w.counters.duration.count == 2100


def test_per_minute_figures_follow_the_window_oldest_first():
    w = SeriesWindow(window_minutes=3)
    for key, requests in zip(range(10, 14), (60, 120, 180, 240)):
        w.ingest(key, minute(requests, errors_5xx=requests / 60))
    minutes = w.per_minute(capacity=None)
    assert [m.latest_minute_ms for m in minutes] == [11 * 60_000, 12 * 60_000, 13 * 60_000]  # minute 10 aged out
    assert [m.qps for m in minutes] == [2.0, 3.0, 4.0]
    assert [m.error_ratio for m in minutes] == [1 / 60] * 3
    w.ingest(14, minute(300))
    assert [m.qps for m in w.per_minute(capacity=None)] == [3.0, 4.0, 5.0]


def test_per_minute_figures_are_analysed_when_read_and_keep_the_minutes_of_their_poll(monkeypatch):
    import exporter.pipeline.window as window_module

    w = SeriesWindow(window_minutes=3)
    for key, requests in zip(range(10, 13), (60, 120, 180)):
        w.ingest(key, minute(requests))
    calls = []
    real = window_module.analyze
    monkeypatch.setattr(window_module, "analyze", lambda rows, cap=None: calls.append(rows) or real(rows, cap))
    minutes = w.per_minute(capacity=None)
    assert calls == [] and len(minutes) == 3  # a poll builds it without analysing anything
    w.ingest(13, minute(240))  # the next poll's minute: what the earlier report holds stays as it was
    assert [m.qps for m in minutes] == [1.0, 2.0, 3.0] and len(calls) == 3
    assert minutes[-1] == real([(12, minute(180))]) and len(calls) == 3  # analysed once, then kept
    assert minutes == (real([(10, minute(60))]), real([(11, minute(120))]), real([(12, minute(180))]))
