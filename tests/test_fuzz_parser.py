"""Fuzzing the Databricks metrics parser (`observe`/`parse_metrics`, over exporter/sources/exposition.py):
whatever the body, the answer is an Observation or a FetchError (MetricsParseError, or the source's other
documented refusals of a body) — never another exception, which the poller would count as an
`internal_error` with a traceback on every poll.

Two fuzzers, both reproducible:
- generated corpora with fixed seeds: tests/test_exposition.py's generators (valid Databricks bodies,
  mutations, truncations, odd values, labels and comments) plus the ones below, which aim at what the
  Databricks parser reads on top of the text parser: odd values and timestamps on the metrics it knows,
  duplicated series, many served entities against the entity cap, and bytes that are not UTF-8 text;
- hypothesis, building bodies line by line from the known metric names, label sets and any number text.

`FUZZ_EXAMPLES` sets the corpus size (default 3,000: seconds, for CI); the nightly-size run is
`FUZZ_EXAMPLES=100000` (`make fuzz`), about a minute. Hypothesis runs FUZZ_EXAMPLES // 20 examples.

Asserted is only what the code promises (docstrings of observe/parse_metrics, Observation, Histogram,
FetchError): the error type with a bounded reason, its message never quoting the body, at most `max_entities` entities, an int or None
timestamp, histograms with ascending bounds ending at +Inf, and the same bytes giving back the same
observation, and no figure of an accepted body is negative or non-finite: the parser refuses such bodies as
invalid_data.
"""

from __future__ import annotations

import math
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.model import Histogram, MinuteFigures
from exporter.sources.base import FetchError, MetricsParseError, Observation
from exporter.sources.databricks.metrics import ENTITY_LABELS, GAUGE_FIELDS, HISTOGRAM_FIELDS, PERCENT_FIELDS, observe
from tests.test_exposition import (BUCKETS, CATEGORIES, PLAIN_ODD_NUMBERS, _odd_number, databricks_body,
                                   mutate)

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3000"))
SEED = 20_261_204
# Put in some bodies (as a label value, which the parser reads): an error message must never show it.
CANARY = "dapi-fuzz-canary-0123456789"
CONTENT_TYPES = ("", "text/plain; version=0.0.4; charset=utf-8", "application/openmetrics-text; version=1.0.0",
                 "application/json", "text/html", "OpenMetrics", "\x00garbage")
KNOWN = (*GAUGE_FIELDS, *PERCENT_FIELDS, *(f"{h}_{s}" for h in HISTOGRAM_FIELDS for s in ("bucket", "sum", "count")))


# ---------------------------------------------------------------------------------------------------------
# Generators on top of tests/test_exposition.py's. Each takes a random.Random and returns one body.


def _samples_of(body: str) -> list[int]:
    lines = body.split("\n")
    return [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]


def odd_known_values_body(rng: random.Random) -> str:
    """A Databricks body whose known metrics carry odd values and timestamps: NaN, +-Inf, negative, huge,
    tiny, a 400-digit integer, a timestamp in milliseconds or seconds, far in the past or the future."""
    lines = databricks_body(rng, small=rng.random() < 0.5).split("\n")
    for i in _samples_of("\n".join(lines)):
        if rng.random() > 0.3:
            continue
        close = lines[i].rfind("}")  # the numbers follow the labels, or the name
        head, rest = (lines[i][:close + 1], lines[i][close + 1:]) if close >= 0 else lines[i].partition(" ")[::2]
        numbers = rest.split()
        r = rng.random()
        if r < 0.4 and numbers:
            numbers[0] = _odd_number(rng, 0.9)
        elif r < 0.6 and numbers:
            numbers[0] = "-" + numbers[0].lstrip("+-")  # a negative count or percentage
        elif r < 0.9:  # an odd timestamp
            numbers[1:] = [rng.choice(("NaN", "+Inf", "-Inf", "1e400", "9" * 400, "0", "-1", "1e11", "1e12", "1e18",
                                       "1700000000", "1700000000.5", "1.7e12", _odd_number(rng, 0.9)))]
        else:
            numbers.append(_odd_number(rng, 0.5))  # a third number
        lines[i] = head + " " + " ".join(numbers)
    return "\n".join(lines)


def duplicated_series_body(rng: random.Random) -> str:
    """Sample lines repeated (the whole body, or some lines), as a confused proxy or source might send."""
    body = databricks_body(rng, small=True)
    if rng.random() < 0.3:
        return body + body
    lines = body.split("\n")
    for i in _samples_of(body):
        if rng.random() < 0.3:
            lines.insert(rng.randint(0, len(lines)), lines[i])
    return "\n".join(lines)


def many_entities_body(rng: random.Random) -> str:
    """Up to 300 served entities: the cap (max_entities) keeps only some; the rest count for the endpoint."""
    label = rng.choice(ENTITY_LABELS)
    lines = ["# TYPE request_count_total gauge", "# TYPE request_latency_ms histogram"]
    for e in range(rng.randint(1, 300)):
        series = f'workspaceId="1",{label}="entity-{e}"'
        lines.append(f"request_count_total{{{series}}} {rng.randint(0, 1000)}")
        n = 0
        for bound in rng.sample(BUCKETS, rng.randint(0, 3)):
            n += rng.randint(0, 10)
            lines.append(f'request_latency_ms_bucket{{{series},le="{bound}"}} {n}')
        lines.append(f'request_latency_ms_bucket{{{series},le="+Inf"}} {n}')
        lines.append(f"request_latency_ms_sum{{{series}}} {n * 12.5}")
        lines.append(f"request_latency_ms_count{{{series}}} {n}")
    return "\n".join(lines) + "\n"


def bytes_body(rng: random.Random) -> bytes:
    """Not quite UTF-8 text: stray high bytes, a BOM, Latin-1, a cut multi-byte character, NULs, gzip."""
    body = databricks_body(rng, small=True)
    r = rng.random()
    if r < 0.15:
        return "\ufeff".encode() + body.encode()
    if r < 0.3:
        return (body + '\nrequest_count_total{served_entity="caf\u00e9"} 1\n').encode("latin-1")
    if r < 0.45:
        data = (body + 'x{a="\u65e5\u672c"} 1\n').encode()
        return data[:len(data) - rng.randint(4, 9)]  # may cut a character in two
    if r < 0.55:
        import gzip
        return gzip.compress(body.encode())  # a compressed body the client did not decode
    data = bytearray(body.encode())
    for _ in range(rng.randint(1, 5)):
        data.insert(rng.randint(0, len(data)), rng.choice((0x00, 0x80, 0xC3, 0xE6, 0xFF, 0xFE, 0x0D)))
    return bytes(data)


def canary_body(rng: random.Random) -> str:
    """A mutated body with a credential-like label value in it."""
    lines = databricks_body(rng, small=True).split("\n")
    lines.insert(rng.randint(0, len(lines)), f'request_count_total{{served_entity="{CANARY}"}} 1')
    return mutate(rng, "\n".join(lines))


# (generator, weight): tests/test_exposition.py's categories, then the ones above.
GENERATORS: dict[str, tuple[Callable[[random.Random], str | bytes], int]] = {
    **{name: (generate, 1) for name, (generate, _) in CATEGORIES.items()},
    "odd_known_values": (odd_known_values_body, 3),
    "duplicated_series": (duplicated_series_body, 1),
    "many_entities": (many_entities_body, 1),
    "bytes": (bytes_body, 1),
    "canary": (canary_body, 1),
}


# ---------------------------------------------------------------------------------------------------------
# The property


def check(body: str | bytes, content_type: str, max_entities: int) -> tuple[str, Observation | None]:
    """Observe one body; return ("ok", observation) or ("refused", None); fail on anything else."""
    data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    try:
        observed = observe(data, content_type, max_entities)
    except FetchError as exc:  # MetricsParseError, or another refusal of the body the source documents
        assert re.fullmatch(r"[a-z_]{1,32}", exc.reason), exc.reason  # a bounded label value
        assert CANARY not in str(exc), "the error quotes the body"
        return "refused", None
    assert isinstance(observed, Observation)
    assert isinstance(observed.endpoint, MinuteFigures)
    assert len(observed.entities) <= max_entities
    assert all(isinstance(k, str) and isinstance(v, MinuteFigures) for k, v in observed.entities.items())
    assert observed.timestamp_ms is None or type(observed.timestamp_ms) is int
    for figures in (observed.endpoint, *observed.entities.values()):
        for value in vars(figures).values():
            if isinstance(value, Histogram):
                assert len(value.bounds) == len(value.counts) >= 1
                assert value.bounds[-1] == math.inf and list(value.bounds) == sorted(set(value.bounds))
    # The same bytes again: the same observation, not parsed twice (the platform serves a minute for a minute).
    assert observe(data, content_type, max_entities, last=observed) is observed
    return "ok", observed


def odd_figures(observed: Observation) -> set[str]:
    """Which of 'negative' and 'non-finite' the observation's plain figures show (none may)."""
    found = set()
    for figures in (observed.endpoint, *observed.entities.values()):
        for value in vars(figures).values():
            if isinstance(value, float):
                if not math.isfinite(value):
                    found.add("non-finite")
                elif value < 0:
                    found.add("negative")
    return found


def test_generated_bodies_give_figures_or_a_fetch_error():
    started = time.perf_counter()
    names = list(GENERATORS)
    weights = [GENERATORS[n][1] for n in names]
    rng = random.Random(SEED)
    outcomes: Counter[tuple[str, str]] = Counter()
    odd: Counter[str] = Counter()
    for index in range(FUZZ_EXAMPLES):
        category = rng.choices(names, weights)[0]
        body_rng = random.Random(SEED * 1_000_003 + index)  # each body reproducible alone from its index
        body = GENERATORS[category][0](body_rng)
        content_type, max_entities = body_rng.choice(CONTENT_TYPES), body_rng.choice((1, 2, 5, 50))
        try:
            result, observed = check(body, content_type, max_entities)
        except Exception as exc:  # noqa: BLE001 -- any other exception fails the test with the body that caused it
            pytest.fail(f"body #{index} ({category}, content type {content_type!r}, max_entities {max_entities}) "
                        f"raised {type(exc).__name__}: {exc}\n{body!r}", pytrace=False)
        outcomes[(category, result)] += 1
        if observed is not None:
            odd.update(odd_figures(observed))
    total = sum(outcomes.values())
    print(f"\n{total} bodies in {time.perf_counter() - started:.1f} s: "
          + ", ".join(f"{c} {outcomes[(c, 'ok')]} ok/{outcomes[(c, 'refused')]} refused" for c in names)
          + f"; figures with negative values: {odd['negative']}, non-finite: {odd['non-finite']}")
    assert total == FUZZ_EXAMPLES
    assert not odd, f"accepted bodies gave negative or non-finite figures: {dict(odd)}"
    # Non-vacuity: the corpus reaches both outcomes, and the new generators produce both too.
    for category in ("valid", "odd_known_values", "bytes"):
        assert outcomes[(category, "ok")] and (category == "valid" or outcomes[(category, "refused")]), category


# ---------------------------------------------------------------------------------------------------------
# Hypothesis: bodies built line by line, shrunk to the smallest failing one.

NUMBER_TEXT = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(PLAIN_ODD_NUMBERS),
    st.text(alphabet="0123456789.eE+-_xINFnaf", max_size=12),
)
LABEL_VALUE = st.one_of(st.sampled_from(("", "a", "champion", "+Inf", "1000.0", CANARY)), st.text(max_size=8))
LABELS = st.dictionaries(st.sampled_from(("workspaceId", "le", *ENTITY_LABELS, "quantile", "x")), LABEL_VALUE,
                         max_size=3)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@st.composite
def sample_line(draw: st.DrawFn) -> str:
    name = draw(st.one_of(st.sampled_from(KNOWN), st.text(alphabet="abcdefghijklmnopqrstuvwxyz_:", min_size=1,
                                                           max_size=10)))
    labels = draw(LABELS)
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    line = f"{name}{{{inner}}}" if labels or draw(st.booleans()) else name
    line += " " + draw(NUMBER_TEXT)
    if draw(st.booleans()):
        line += " " + draw(NUMBER_TEXT)
    return line


COMMENT = st.sampled_from(("# HELP request_count_total x", "# TYPE request_count_total gauge",
                           "# TYPE request_latency_ms histogram", "# TYPE request_count_total counter", "# EOF",
                           "# UNIT request_latency_ms milliseconds", "#", ""))
BODY = st.lists(st.one_of(sample_line(), COMMENT), max_size=25).map("\n".join)


@settings(max_examples=max(100, FUZZ_EXAMPLES // 20), deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(body=BODY, content_type=st.sampled_from(CONTENT_TYPES), max_entities=st.integers(1, 5),
       trailer=st.sampled_from(("", "\n", "\n# EOF\n", "\r\n")))
def test_hypothesis_bodies_give_figures_or_a_fetch_error(body: str, content_type: str, max_entities: int,
                                                         trailer: str):
    check(body + trailer, content_type, max_entities)


@settings(max_examples=max(100, FUZZ_EXAMPLES // 20), deadline=None, database=None, derandomize=True)
@given(data=st.binary(max_size=300), content_type=st.sampled_from(CONTENT_TYPES))
def test_arbitrary_bytes_give_figures_or_a_fetch_error(data: bytes, content_type: str):
    check(data, content_type, 50)


# Found by the fuzzers above, kept as plain regression cases.
OUT_OF_RANGE = {  # escaped as OverflowError (an internal_error every poll): now a parse error
    "value of 400 digits": "request_count_total " + "9" * 400 + "\n",
    "bucket of 400 digits": ('request_latency_ms_bucket{le="5.0"} ' + "9" * 400
                             + '\nrequest_latency_ms_bucket{le="+Inf"} 1\n'),
    "percentage of 400 digits": "cpu_usage_percentage " + "9" * 400 + "\n",
}
REGRESSIONS = {
    **OUT_OF_RANGE,
    "timestamp NaN": "request_count_total 1 NaN\n",
    "timestamp +Inf": "request_count_total 1 +Inf\n",
    "timestamp 1e400": "request_count_total 1 1e400\n",
    "timestamp of 400 digits": "request_count_total 1 " + "9" * 400 + "\n",
    "openmetrics timestamp NaN": "# TYPE request_count gauge\nrequest_count_total 1 NaN\n# EOF\n",
}


@pytest.mark.parametrize("body", list(REGRESSIONS.values()), ids=list(REGRESSIONS))
def test_regressions(body: str):
    for content_type in ("", "application/openmetrics-text; version=1.0.0"):
        check(body, content_type, 50)


@pytest.mark.parametrize("body", list(OUT_OF_RANGE.values()), ids=list(OUT_OF_RANGE))
def test_numbers_no_float_holds_are_a_parse_error(body: str):
    with pytest.raises(MetricsParseError, match="out of range"):
        observe(body.encode(), "", 50)
