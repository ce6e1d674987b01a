"""LLM and self-hosted figures over the window: TTFT/TPOT, tokens, KV cache, server-measured queues.

Every expectation is worked out by hand in the comment next to it."""

from __future__ import annotations

import math

import pytest

from exporter.model import Histogram, MinuteFigures
from exporter.pipeline.analysis import analyze, checks
from exporter.pipeline.targets import Targets
from exporter.pipeline.window import SeriesWindow

INF = math.inf
TTFT_BOUNDS = (0.1, 0.5, 1.0, 2.5, INF)


def rows(*figures):
    return list(enumerate(figures, start=1000))


def ttft(counts, total):
    return Histogram(TTFT_BOUNDS, tuple(counts), total, counts[-1])


def test_ttft_percentiles_and_mean_from_the_merged_minutes():
    f = analyze(rows(MinuteFigures(requests=100, ttft=ttft((10, 60, 90, 100, 100), 50.0)),
                     MinuteFigures(requests=100, ttft=ttft((0, 20, 70, 100, 100), 80.0))))
    # Merged: (10, 80, 160, 200, 200), sum 130 over 200.
    assert f.ttft_mean == pytest.approx(0.65)
    assert f.ttft_p50 == pytest.approx(0.5 + 0.5 * 20 / 80)   # rank 100 in (0.5, 1]: 20 of its 80
    assert f.ttft_p90 == pytest.approx(1.0 + 1.5 * 20 / 40)   # rank 180 in (1, 2.5]: 20 of its 40
    assert f.ttft_p99 == pytest.approx(1.0 + 1.5 * 38 / 40)   # rank 198: 2.425 s
    result = {c.name: c for c in checks(f, Targets().by_check())}
    assert result["ttft_p99"].target == 2.0 and result["ttft_p99"].breached
    assert not result["tpot_p99"].evaluated  # no TPOT reported


def test_sum_and_count_only_gives_a_mean_and_no_percentiles():
    # Triton and TorchServe publish duration sums and counts: sent as a histogram with the +Inf bound only.
    only_mean = Histogram((INF,), (400,), 100.0, 400)
    f = analyze(rows(MinuteFigures(requests=400, latency=only_mean, ttft=only_mean, tpot=only_mean)))
    for name in ("latency", "ttft", "tpot"):
        assert getattr(f, f"{name}_mean") == pytest.approx(0.25)
        assert (getattr(f, f"{name}_p50"), getattr(f, f"{name}_p90"), getattr(f, f"{name}_p99")) == (None, None, None)
    # No percentile, no check: the P99 targets are not evaluated rather than compared with an invented value.
    assert not {c.name: c for c in checks(f, Targets().by_check())}["latency_p99"].evaluated


def test_a_rank_above_the_highest_finite_bound_reports_that_bound():
    # TGI's time-per-token histogram tops out at a finite bound; 90 of 100 observations are above 0.5 s here.
    tpot = Histogram((0.1, 0.5, INF), (0, 10, 100), 80.0, 100)
    f = analyze(rows(MinuteFigures(tpot=tpot)))
    assert (f.tpot_p50, f.tpot_p90, f.tpot_p99) == (0.5, 0.5, 0.5)
    assert f.tpot_mean == pytest.approx(0.8)


def test_tokens_and_preemptions_per_second_over_the_minutes_that_report_them():
    f = analyze(rows(MinuteFigures(prompt_tokens=6000, generation_tokens=12000, preemptions=30),
                     MinuteFigures(prompt_tokens=3000, preemptions=0),
                     MinuteFigures(requests=10)))
    assert f.prompt_tokens_per_second == pytest.approx(9000 / 120)
    assert f.generation_tokens_per_second == pytest.approx(12000 / 60)
    assert f.preemptions_per_second == pytest.approx(30 / 120)
    assert analyze(rows(MinuteFigures(requests=10))).prompt_tokens_per_second is None


def test_kv_cache_and_running_requests_are_window_means():
    f = analyze(rows(MinuteFigures(kv_cache_ratio=0.85, requests_running=40),
                     MinuteFigures(kv_cache_ratio=0.99, requests_running=60),
                     MinuteFigures(requests=10)))
    assert f.kv_cache_ratio == pytest.approx(0.92)
    assert f.requests_running == pytest.approx(50)
    kv = {c.name: c for c in checks(f, Targets().by_check())}["kv_cache_utilization"]
    assert kv.target == 0.9 and kv.breached


def test_the_servers_waiting_gauge_takes_precedence_over_queue_time_and_the_estimate():
    queue = Histogram((0.1, INF), (0, 600), 120.0, 600)  # Little's law would say 10 req/s x 0.2 s = 2
    latency = Histogram((0.1, 1.0, INF), (0, 600, 600), 300.0, 600)
    f = analyze(rows(MinuteFigures(requests=600, queue_time=queue, latency=latency, queue_depth=4, provisioned_concurrency=1),
                     MinuteFigures(requests=600, queue_time=queue, latency=latency, queue_depth=8, provisioned_concurrency=1)))
    assert f.queue_depth_method == "server"
    assert f.queue_depth == pytest.approx(6)  # (4 + 8) / 2
    assert f.queue_wait_mean == pytest.approx(0.2)  # still from queue time: the service time needs it
    # Without the gauge the same minutes fall back to queue time, as before.
    f = analyze(rows(MinuteFigures(requests=600, queue_time=queue, latency=latency)))
    assert (f.queue_depth_method, f.queue_depth) == ("queue_time", pytest.approx(2))


def test_window_tells_cumulative_ttft_and_tpot_bodies_apart():
    # A scrape of a server's counters: cumulative. TTFT counts one observation per request, TPOT one per token,
    # so TPOT's count is far above the request count in a per-minute body too and is told by its trend alone.
    w = SeriesWindow(window_minutes=10)
    for key, total in enumerate((1000, 2000, 3000, 4000, 5000, 6000), start=100):
        cumulative = Histogram((0.05, INF), (total / 2, total), total * 0.04, total)
        tokens = Histogram((0.05, INF), (total * 10, total * 50), total * 2.0, total * 50)
        w.ingest(key, MinuteFigures(requests=1000, ttft=cumulative, tpot=tokens), histograms="unknown")
    stored = dict(w.in_window())
    assert stored[100].ttft.count == 1000  # 1000 observations in 1000 requests: could be one minute's, taken so
    assert stored[101].ttft.count == 1000  # 2000 > 1000 requests: cumulative, so 2000 - 1000
    assert stored[105].ttft.count == 1000
    # TPOT: taken as per minute until four growing counts in a row (100..103), then differenced.
    assert stored[102].tpot.count == 150_000
    assert stored[103].tpot.count == 50_000  # 200,000 - 150,000
    assert stored[105].tpot.count == 50_000
