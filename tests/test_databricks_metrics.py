"""The metrics body parser on recorded payload variants."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from exporter.sources.base import InvalidDataError
from exporter.sources.databricks.metrics import ENTITY_LABELS, MetricsParseError, parse_metrics

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_text_with_timestamps_converts_units_and_keeps_minute():
    parsed = parse_metrics(load("text_timestamps.txt"), "text/plain; version=0.0.4; charset=utf-8")
    f = parsed.endpoint
    assert not parsed.openmetrics
    assert parsed.timestamp_ms == 1763820000000
    assert (f.requests, f.errors_4xx, f.errors_5xx) == (6000, 30, 90)
    assert f.cpu_ratio == pytest.approx(0.425)
    assert f.memory_ratio == pytest.approx(0.61)
    assert f.provisioned_concurrency == 8
    assert f.latency.bounds == (0.005, 0.01, 0.025, 0.05, 0.1, math.inf)  # ms -> s
    assert f.latency.counts == (0, 300, 3000, 5400, 5940, 6000)
    assert f.latency.sum == pytest.approx(180.0)
    assert f.gpu_ratio is None and f.queue_time is None
    assert parsed.entities == {}


def test_openmetrics_with_served_entity_label():
    parsed = parse_metrics(load("openmetrics_entities.txt"), "application/openmetrics-text; version=1.0.0")
    assert parsed.openmetrics
    assert parsed.entity_label == "served_model_name"
    assert parsed.timestamp_ms == 1763820060000  # OpenMetrics seconds -> ms
    v3, v4 = parsed.entities["chat-v3"], parsed.entities["chat-v4"]
    assert (v4.requests, v4.errors_4xx, v4.errors_5xx) == (100, 2, 40)
    assert v3.latency.counts == (450, 900)
    # Only per-entity series: the endpoint is their sum (utilisation: mean).
    ep = parsed.endpoint
    assert (ep.requests, ep.errors_5xx, ep.provisioned_concurrency) == (1000, 40, 16)
    assert ep.latency.counts == (460, 1000)
    assert ep.latency.sum == pytest.approx(120.0)
    assert ep.cpu_ratio == pytest.approx(0.6)


def test_openmetrics_body_without_content_type_is_detected_by_eof():
    assert parse_metrics(load("openmetrics_entities.txt")).openmetrics


def test_gpu_metric_alternative_name_queue_histogram_and_no_timestamps():
    parsed = parse_metrics(load("gpu_no_timestamps.txt"))
    f = parsed.endpoint
    assert parsed.timestamp_ms is None
    assert f.gpu_ratio == pytest.approx(0.04)
    assert f.gpu_memory_ratio == pytest.approx(0.20)
    assert f.queue_time.mean == pytest.approx(0.005)


@pytest.mark.parametrize("label", ENTITY_LABELS)
def test_every_candidate_entity_label_is_recognised(label):
    body = f'request_count_total{{{label}="m1"}} 5\nrequest_count_total{{{label}="m2"}} 7\n'
    parsed = parse_metrics(body)
    assert parsed.entity_label == label
    assert {k: v.requests for k, v in parsed.entities.items()} == {"m1": 5, "m2": 7}
    assert parsed.endpoint.requests == 12


def test_unlabelled_endpoint_series_win_over_entity_sums():
    body = 'request_count_total 100\nrequest_count_total{served_entity="a"} 60\nrequest_count_total{served_entity="b"} 30\n'
    parsed = parse_metrics(body)
    assert parsed.endpoint.requests == 100
    assert parsed.entities["a"].requests == 60


def test_entity_cap_bounds_cardinality_but_keeps_the_endpoint_total():
    body = "".join(f'request_count_total{{served_entity="m{i}"}} 1\n' for i in range(10))
    parsed = parse_metrics(body, max_entities=3)
    assert len(parsed.entities) == 3
    assert parsed.endpoint.requests == 10


def test_histogram_without_inf_bucket_is_ignored_not_fatal():
    parsed = parse_metrics(load("no_inf_bucket.txt"))
    assert parsed.endpoint.requests == 10
    assert parsed.endpoint.latency is None


@pytest.mark.parametrize("name", ["garbage_html.txt", "garbage_json.txt"])
def test_garbage_bodies_raise_a_clear_error(name):
    with pytest.raises(MetricsParseError, match="not a Prometheus/OpenMetrics exposition"):
        parse_metrics(load(name), "text/plain")


def test_binary_body_raises():
    with pytest.raises(MetricsParseError, match="not UTF-8"):
        parse_metrics(b"\xff\xfe\x00garbage")


def test_empty_body_is_no_data_not_an_error():
    parsed = parse_metrics(b"")
    assert parsed.endpoint.requests is None and parsed.entities == {}


@pytest.mark.parametrize("timestamp", ["NaN", "+Inf", "-Inf", "1e400"])
def test_a_non_finite_sample_timestamp_is_a_parse_error(timestamp):
    with pytest.raises(MetricsParseError, match="timestamp is not a finite number"):
        parse_metrics(f"request_count_total 5 {timestamp}\n")


BODY = """# TYPE request_count_total gauge
request_count_total{workspaceId="1"} 600
# TYPE request_5xx_count_total gauge
request_5xx_count_total{workspaceId="1"} 6
# TYPE cpu_usage_percentage gauge
cpu_usage_percentage{workspaceId="1"} 40
# TYPE request_latency_ms histogram
request_latency_ms_bucket{workspaceId="1",le="100.0"} 590
request_latency_ms_bucket{workspaceId="1",le="+Inf"} 600
request_latency_ms_sum{workspaceId="1"} 12000
request_latency_ms_count{workspaceId="1"} 600
"""


def test_the_body_used_by_the_invalid_data_tests_is_valid():
    f = parse_metrics(BODY.encode()).endpoint
    assert (f.requests, f.errors_5xx, f.cpu_ratio, f.latency.count) == (600, 6, 0.4, 600)


@pytest.mark.parametrize("line, name", [
    ('request_count_total{workspaceId="1"} 600', "request_count_total"),  # the same line again: QPS would double
    ('request_count_total{workspaceId="1"} 10', "request_count_total"),  # another value for the same series
    ('request_latency_ms_bucket{le="100.0",workspaceId="1"} 590', "request_latency_ms_bucket"),  # labels reordered
])
def test_a_series_given_twice_is_refused_not_summed(line, name):
    with pytest.raises(InvalidDataError) as err:
        parse_metrics((BODY + line + "\n").encode())
    assert err.value.reason == "invalid_data" and name in str(err.value)


def test_a_series_given_twice_in_openmetrics_is_refused_too():
    body = BODY.replace("request_latency_ms", "unused") + 'request_count_total{workspaceId="1"} 5\n# EOF\n'
    with pytest.raises(InvalidDataError):
        parse_metrics(body.encode(), "application/openmetrics-text; version=1.0.0")


@pytest.mark.parametrize("old, new", [
    ('request_count_total{workspaceId="1"} 600', 'request_count_total{workspaceId="1"} -600'),
    ('request_count_total{workspaceId="1"} 600', 'request_count_total{workspaceId="1"} +Inf'),
    ('request_5xx_count_total{workspaceId="1"} 6', 'request_5xx_count_total{workspaceId="1"} -Inf'),
    ('cpu_usage_percentage{workspaceId="1"} 40', 'cpu_usage_percentage{workspaceId="1"} -40'),
    ('request_latency_ms_bucket{workspaceId="1",le="100.0"} 590', 'request_latency_ms_bucket{workspaceId="1",le="100.0"} NaN'),
    ('request_latency_ms_sum{workspaceId="1"} 12000', 'request_latency_ms_sum{workspaceId="1"} 1e400'),
    ('request_latency_ms_count{workspaceId="1"} 600', 'request_latency_ms_count{workspaceId="1"} -1'),
])
def test_impossible_values_refuse_the_body(old, new):
    assert old in BODY
    with pytest.raises(InvalidDataError) as err:
        parse_metrics(BODY.replace(old, new).encode())
    assert err.value.reason == "invalid_data" and "cannot be negative, infinite or NaN" in str(err.value)


def test_a_nan_gauge_is_no_value_not_an_error():
    f = parse_metrics(BODY.replace('cpu_usage_percentage{workspaceId="1"} 40', 'cpu_usage_percentage{workspaceId="1"} NaN').encode()).endpoint
    assert f.cpu_ratio is None and f.requests == 600
