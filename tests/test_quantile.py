"""histogram_quantile must agree with PromQL's.

Two independent references: a direct inversion of the piecewise-linear CDF written
here from the definition, and Prometheus itself (`promtool test rules` evaluates
`histogram_quantile` on the same buckets and checks our numbers).
"""

from __future__ import annotations

import math
import random
import subprocess
from pathlib import Path

import pytest
import yaml

from exporter.pipeline.quantile import histogram_quantile

INF = math.inf


def reference_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Inverse of the CDF that is linear between (previous bound, previous count) and (bound, count),
    for well-formed input (sorted, distinct, monotonic, positive bounds, +Inf last, observations > 0)."""
    total = buckets[-1][1]
    target = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets[:-1]:
        if count >= target:
            if count == lower_count:  # an empty bucket reached only at q == 0: 0/0 in PromQL
                return math.nan
            return lower_bound + (bound - lower_bound) * (target - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return buckets[-2][0]


def random_histogram(rng: random.Random) -> list[tuple[float, float]]:
    bounds = sorted(rng.sample([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], rng.randint(1, 10)))
    cumulative, out = 0.0, []
    for b in bounds:
        cumulative += rng.choice([0, rng.randint(1, 500)])
        out.append((b, cumulative))
    out.append((INF, cumulative + rng.choice([0, 0, rng.randint(1, 50)])))
    return out


def cases() -> list[tuple[float, list[tuple[float, float]]]]:
    rng = random.Random(20261122)
    found = []
    while len(found) < 200:
        h = random_histogram(rng)
        if h[-1][1] > 0:
            found.append((rng.choice([0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0, rng.random()]), h))
    return found


@pytest.mark.parametrize("q,buckets", cases()[:60])
def test_matches_independent_cdf_inversion(q, buckets):
    expected = reference_quantile(q, buckets)
    got = histogram_quantile(q, buckets)
    assert math.isnan(got) if math.isnan(expected) else got == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_interpolates_linearly_inside_bucket():
    # 100 observations: 50 up to 0.1 s, 40 up to 0.2 s, 10 beyond.
    buckets = [(0.1, 50), (0.2, 90), (INF, 100)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.05)  # lowest bucket starts at 0


def test_rank_in_inf_bucket_returns_highest_finite_bound():
    assert histogram_quantile(0.99, [(0.1, 50), (0.2, 90), (INF, 100)]) == 0.2


@pytest.mark.parametrize("q,buckets,expected", [
    (math.nan, [(1, 1), (INF, 2)], math.nan),
    (-0.1, [(1, 1), (INF, 2)], -INF),
    (1.1, [(1, 1), (INF, 2)], INF),
    (0.5, [(1, 1), (2, 2)], math.nan),            # no +Inf bucket
    (0.5, [(INF, 5)], math.nan),                  # fewer than two buckets
    (0.5, [(1, 0), (INF, 0)], math.nan),          # no observations
    (0.5, [(-1, 5), (INF, 10)], -1),              # lowest bound <= 0 is returned as is
    (0.5, [], math.nan),
])
def test_edge_cases(q, buckets, expected):
    got = histogram_quantile(q, buckets)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected


def test_unsorted_duplicate_and_non_monotonic_buckets_are_repaired_like_promql():
    # Duplicate bounds are summed; a dip (0.2 -> 40 after 0.1 -> 50) is raised to the envelope.
    messy = [(INF, 100), (0.2, 40), (0.1, 30), (0.1, 20)]
    assert histogram_quantile(0.5, messy) == pytest.approx(0.1)
    assert histogram_quantile(0.75, messy) == 0.2  # 0.2 raised to 50: rank 75 lies in +Inf


def test_float_noise_does_not_break_monotonicity():
    noisy = [(0.1, 10.0), (0.2, 10.000000000000002), (0.4, 20.0), (INF, 20.0)]
    assert histogram_quantile(0.5, noisy) == pytest.approx(0.1)


@pytest.mark.integration
def test_agrees_with_prometheus(tmp_path: Path, promtool: str):
    """Prometheus evaluates histogram_quantile on the same buckets and must get our numbers."""
    series, tests = [], []
    for i, (q, buckets) in enumerate(cases()):
        for bound, count in buckets:
            le = "+Inf" if math.isinf(bound) else repr(float(bound))
            series.append({"series": f'h_bucket{{case="{i}",le="{le}"}}', "values": f"{count:g}"})
        ours = histogram_quantile(q, buckets)
        expr = f'histogram_quantile({q!r}, h_bucket{{case="{i}"}})'
        if math.isnan(ours):  # NaN never equals NaN, so ask Prometheus whether its result is NaN too
            tests.append({"expr": f"count({expr} == {expr}) or vector(0)", "eval_time": "0m",
                          "exp_samples": [{"labels": "{}", "value": 0}]})
        else:
            tests.append({"expr": expr, "eval_time": "0m", "exp_samples": [{"labels": f'{{case="{i}"}}', "value": ours}]})
    doc = {"rule_files": [], "evaluation_interval": "1m",
           "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}]}
    path = tmp_path / "quantile_test.yml"
    path.write_text(yaml.safe_dump(doc))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
