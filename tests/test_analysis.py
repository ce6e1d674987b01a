"""Window figures and target checks."""

from __future__ import annotations

import math

import pytest

from exporter.pipeline.analysis import analyze, checks
from exporter.pipeline.targets import Targets
from exporter.model import Histogram, MinuteFigures, reported_fields

INF = math.inf


def lat(counts, total):
    return Histogram((0.05, 0.1, 0.25, INF), tuple(counts), total, counts[-1])


def rows(*figures):
    return list(enumerate(figures, start=1000))


def test_qps_error_ratios_percentiles_and_required_concurrency():
    m1 = MinuteFigures(requests=6000, errors_4xx=60, errors_5xx=30, latency=lat((3000, 5400, 6000, 6000), 360.0),
                       cpu_ratio=0.5, memory_ratio=0.4, provisioned_concurrency=8)
    m2 = MinuteFigures(requests=3000, errors_4xx=0, errors_5xx=0, latency=lat((1500, 2700, 3000, 3000), 180.0),
                       cpu_ratio=0.7, memory_ratio=0.4, provisioned_concurrency=10)
    f = analyze(rows(m1, m2))
    assert f.minutes == 2
    assert f.qps == pytest.approx(9000 / 120)
    assert f.error_ratio == pytest.approx(90 / 9000)
    assert f.error_ratio_4xx == pytest.approx(60 / 9000)
    assert f.error_ratio_5xx == pytest.approx(30 / 9000)
    assert f.latency_mean == pytest.approx(0.06)
    assert f.latency_p50 == pytest.approx(0.05)
    assert f.latency_p90 == pytest.approx(0.1)
    assert f.latency_p99 == pytest.approx(0.1 + 0.15 * (8910 - 8100) / 900)
    assert f.cpu_ratio == pytest.approx(0.6)
    assert f.provisioned_concurrency == 10  # the latest value, not an average
    assert f.required_concurrency == pytest.approx(75 * 0.06)
    assert f.latest_minute_ms == 1001 * 60000


def test_queue_depth_measured_from_queue_time_by_littles_law():
    queue = Histogram((0.1, INF), (0, 600), 120.0, 600)  # 600 requests waited 0.2 s on average
    f = analyze(rows(MinuteFigures(requests=600, queue_time=queue, latency=lat((0, 0, 600, 600), 150.0))))
    assert f.queue_depth_method == "queue_time"
    assert f.queue_depth == pytest.approx(10 * 0.2)  # 10 req/s x 0.2 s


def test_queue_depth_estimated_from_load_against_capacity():
    m = MinuteFigures(requests=6000, latency=lat((0, 0, 6000, 6000), 1200.0), provisioned_concurrency=8)
    f = analyze(rows(m))
    assert f.queue_depth_method == "estimated"
    assert f.required_concurrency == pytest.approx(100 * 0.2)
    assert f.queue_depth == pytest.approx(20 - 8)
    healthy = analyze(rows(MinuteFigures(requests=600, latency=lat((600, 600, 600, 600), 18.0), provisioned_concurrency=8)))
    assert healthy.queue_depth == 0.0


def test_configured_capacity_is_used_when_the_platform_reports_none():
    m = MinuteFigures(requests=6000, latency=lat((0, 0, 6000, 6000), 1200.0))
    assert analyze(rows(m), configured_capacity=16).queue_depth == pytest.approx(4)
    assert analyze(rows(m)).queue_depth is None  # no capacity known: no estimate


def test_no_requests_means_zero_error_ratio_and_no_latency():
    f = analyze(rows(MinuteFigures(requests=0, errors_4xx=0, errors_5xx=0)))
    assert f.qps == 0 and f.error_ratio == 0
    assert f.latency_p99 is None


def test_missing_data_yields_none_not_zero():
    f = analyze(rows(MinuteFigures(cpu_ratio=0.3)))
    assert f.qps is None and f.error_ratio is None and f.queue_depth is None
    assert analyze([]).minutes == 0


def test_checks_compare_against_targets_and_skip_missing_data():
    f = analyze(rows(MinuteFigures(requests=1000, errors_5xx=20, cpu_ratio=0.81, latency=lat((1000, 1000, 1000, 1000), 10.0))))
    result = {c.name: c for c in checks(f, Targets().by_check())}
    assert result["error_ratio"].breached and result["error_ratio"].target == 0.01
    assert result["cpu_utilization"].breached
    assert not result["latency_p99"].breached
    assert not result["memory_utilization"].evaluated and not result["memory_utilization"].breached
    assert result["gpu_utilization"].target is None and not result["gpu_utilization"].breached


def test_value_equal_to_target_is_not_a_breach():
    f = analyze(rows(MinuteFigures(requests=1000, errors_5xx=10)))
    (error,) = [c for c in checks(f, {"error_ratio": 0.01}) if c.name == "error_ratio"]
    assert error.value == pytest.approx(0.01) and not error.breached


def test_error_ratio_uses_only_minutes_with_a_request_count():
    f = analyze(rows(MinuteFigures(requests=100, errors_5xx=1), MinuteFigures(errors_5xx=50)))
    assert f.error_ratio == pytest.approx(0.01)


def test_minutes_share_one_set_of_reported_fields_and_unreported_figures_stay_none():
    a, b = MinuteFigures(requests=60.0, cpu_ratio=0.2), MinuteFigures(requests=120.0, cpu_ratio=0.4)
    assert reported_fields(a) == {"requests", "cpu_ratio"} and reported_fields(a) is reported_fields(b)
    f = analyze([(1, a), (2, b)])
    assert f.qps == 1.5 and f.cpu_ratio == pytest.approx(0.3)
    assert (f.error_ratio, f.latency_p99, f.memory_ratio, f.ttft_p99, f.kv_cache_ratio, f.queue_depth) == (None,) * 6
