#!/usr/bin/env python3
"""Writes the Prometheus recording and alerting rules in alerts/prometheus/ from one table.

    python alerts/generate.py          # rewrite alerts/prometheus/*.yml
    python alerts/generate.py --check  # exit 1 if the committed files are not current (CI)

The generated files are committed, so Prometheus users need no Python; edit this file, never
the output. Everything a deployment may want to change is in the CONFIGURATION block: the SLO
objective, the runbook URL pattern and the freshness limits. Every `for:` duration is chosen
and explained next to its alert (the reasons are also copied into the output as comments and
into docs/runbooks.md).

`render(scale=...)` multiplies every duration (range windows, `for:`, freshness limits) by
`scale`. The end-to-end test uses scale 1/60 against a simulator where one source minute lasts
one second, so the test-only rules are the production rules on a faster clock, not a copy.

Conventions (monitoring-mixin style):
- Alert names CamelCase with the `ModelServing` prefix; `severity` is `critical` (pages) or
  `warning` (ticket); every alert has `summary`, `description` and `runbook_url`.
- Thresholds come from the exported `model_serving_target{serving_endpoint,check}` series, so a
  per-endpoint target in the exporter's configuration needs no rule edit.
- Value joins (`group_left` against the targets) use `ignoring(<the labels that differ>)`, never
  `on(serving_endpoint)`: every label the scrape adds (job, instance, namespace, pod, cluster, a
  Thanos/Mimir replica label...) stays part of the match, so several exporter replicas, shards or
  Prometheus servers never collide in a join (a duplicate would make the whole rule fail). Set
  operations against info-style series, whose labels may grow, match `on(job, instance[,
  workspace, serving_endpoint])`: labels every scraped series has, and set operations never fail on
  duplicates. An endpoint is (workspace, serving_endpoint): two workspaces may each have a `chat`.
  No rule names a job.
- Figures persist at their last values while fetches fail, so every alert on a window figure
  is gated on `serving_endpoint:model_serving_data:fresh == 1`; staleness itself is an alert.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# ---- CONFIGURATION: the one place to change ---------------------------------------------------
# Share of requests answered without 4xx/5xx (429 included) that the SLO promises. The error
# budget is 1 - SLO_OBJECTIVE; the burn-rate alerts compare error ratios with multiples of it.
SLO_OBJECTIVE = 0.99
# Every alert's runbook_url; {anchor} is the lower-cased alert name (a heading in runbooks.md).
RUNBOOK_URL = "https://github.com/serving-exporter/serving-exporter/blob/main/docs/runbooks.md#{anchor}"
# A figure alert holds only while the endpoint's data is younger than this (last successful
# fetch and newest source minute); past it the figures are the last ones received, not now.
FRESH_LIMIT_S = 15 * 60
# ModelServingMetricsStale: the last successful fetch is older than this (5 polls at the
# default 60 s interval: the whole 5-minute analysis window came and went without data) ...
FETCH_STALE_S = 5 * 60
# ... or the newest source minute is older than this (fetches succeed but the platform stopped
# publishing new minutes; data normally lags its minute by 1-3 minutes).
SOURCE_STALE_S = 8 * 60
# ModelServingExporterDown: the exporter still answers but its last workspace poll completed
# longer ago than this (the poll loop is stuck).
POLL_STALE_S = 10 * 60
# How far back a target counts as a serving-exporter when its scrape fails (it has no series of
# its own then): longer than any outage that should still be reported per instance.
EXPORTER_MEMORY_S = 24 * 3600
# ModelServingExporterBadConfig: the reload outcome is 0 throughout this window (then for: 10m).
RELOAD_WINDOW_S = 5 * 60
# ModelServingExporterThrottled: the share of the exporter's API calls, per call, answered 429 over
# this window (10 polls at the default 60 s interval, so one unlucky poll does not decide) ...
THROTTLE_WINDOW_S = 10 * 60
# ... is above this share. Retries absorb an occasional 429; a lasting share starves the fetches.
THROTTLED_RATIO = 0.05
# The multi-window, multi-burn-rate table (Google SRE workbook, chapter 5; kubernetes-mixin):
# (severity, long window, short window, burn-rate factor, for).
BURN_RATE_WINDOWS = [
    ("critical", 3600, 300, 14.4, 120),          # 2% of a 30-day budget in 1 hour
    ("critical", 6 * 3600, 1800, 6.0, 900),      # 5% in 6 hours
    ("warning", 24 * 3600, 7200, 3.0, 3600),     # 10% in 1 day
    ("warning", 3 * 24 * 3600, 6 * 3600, 1.0, 3 * 3600),  # 10% in 3 days
]
# ModelServingReplicasSaturated: a self-hosted server's running requests at or above this share of its capacity (the
# replicas' concurrency, model_serving_provisioned_concurrency) while requests wait: the remediation rules'
# saturation_ratio default.
LLM_SATURATION_RATIO = 0.9
# ModelServingReplicasDown: long enough for a model server to restart and load its model (a large LLM takes
# several minutes), short enough to catch a crash-looping replica within the quarter hour.
REPLICAS_DOWN_FOR_S = 15 * 60
# -------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent
OUTPUT_DIR = ROOT / "prometheus"
RECORDING_FILE = "recording-rules.yml"
ALERTING_FILE = "alerting-rules.yml"
HEADER = ("# Generated by alerts/generate.py: do not edit. Change the generator, then run\n"
          "# `python alerts/generate.py` (tests/test_alerts.py checks that this file is current).\n")
FRESH = "serving_endpoint:model_serving_data:fresh"


def duration(seconds: float) -> str:
    """A Prometheus duration for `seconds`, in the largest unit that divides it exactly."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ValueError(f"duration must be positive, got {seconds}s")
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    raise AssertionError("unreachable")


def number(value: float) -> str:
    """A float as PromQL reads it, without binary noise (1 - 0.99 is 0.010000000000000009)."""
    text = f"{value:.10g}"
    return text if "e" not in text else repr(value)


def budget() -> float:
    return float(number(1 - SLO_OBJECTIVE))


def slo_text() -> str:
    return f"{SLO_OBJECTIVE * 100:.10g}%"


def ratio_record(window_s: float) -> str:
    return f"serving_endpoint:model_serving_request_errors:ratio_rate{duration(window_s)}"


@dataclass
class Recording:
    record: str
    expr: str
    why: str = ""


@dataclass
class Alert:
    alert: str
    expr: str
    for_s: float
    severity: str
    summary: str
    description: str
    why: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def anchor(self) -> str:
        return self.alert.lower()


def target_of(check: str) -> str:
    """Template text opening a block in which `.` is the endpoint's exported target for `check`.

    `check` is a check name, or a template expression such as `$labels.check`. The query also
    matches the alert's `instance` so that each exporter replica reports its own target. The caller
    closes the block with `{{ end }}{{ end }}`; without a target the block renders nothing.
    """
    selector = "check='%s',workspace='%s',serving_endpoint='%s',instance='%s'"
    args = "$labels.workspace $labels.serving_endpoint $labels.instance"
    if check.startswith("$"):
        args = f"{check} {args}"
    else:
        selector = selector.replace("'%s'", f"'{check}'", 1)
    return f'{{{{ with printf "model_serving_target{{{selector}}}" {args} | query }}}}{{{{ with first . }}}}'


WORKSPACE_USAGE = "job:model_serving_workspace_limit_usage_ratio:sum"


def across_shards(metric: str) -> str:
    """`metric` summed over the shards of one exporter deployment (label shard_index), each shard counted once
    however many replicas poll it: the largest value per shard (replicas of one shard see the same endpoints), then
    the sum. Replicas differ by `instance` (and `pod` under the Prometheus Operator); every other label, such as
    job, namespace or cluster, keeps deployments apart."""
    return f"sum without (shard_index) (max without (instance, pod) ({metric}))"


def recording_rules(scale: float) -> list[Recording]:
    s = scale
    windows = sorted({w for _, long_w, short_w, _, _ in BURN_RATE_WINDOWS for w in (long_w, short_w)})
    rules = [Recording(
        FRESH,
        f"""(time() - model_serving_exporter_last_success_timestamp_seconds <= bool {number(FRESH_LIMIT_S * s)})
* ignoring (served_entity)
(time() - model_serving_last_minute_timestamp_seconds{{served_entity=""}} <= bool {number(FRESH_LIMIT_S * s)})""",
        f"1 while an endpoint's figures are current: its last successful fetch and its newest source minute\n"
        f"are both at most {duration(FRESH_LIMIT_S)} old; 0 otherwise. Figure alerts are gated on it because the\n"
        f"exporter keeps serving its last figures while fetches fail.")]
    rules += [
        Recording("job:model_serving_workspace_requests_per_second:sum",
                  across_shards("model_serving_workspace_requests_per_second"),
                  "The workspace's standard (not route-optimized) endpoints together: each replica exports the totals of the\n"
                  "endpoints of its shard (shard_index), so shards are summed, and replicas of one shard counted once\n"
                  "(the largest value). The workspace shares about 200 QPS and 192-1,024 concurrent requests among them."),
        Recording("job:model_serving_workspace_concurrent_requests:sum",
                  across_shards("model_serving_workspace_concurrent_requests")),
        Recording(WORKSPACE_USAGE, across_shards("model_serving_workspace_limit_usage_ratio"),
                  "Share of each workspace limit used (label limit): every shard divides by the same limit, so the\n"
                  "shares add up."),
    ]
    for i, w in enumerate(windows):
        rules.append(Recording(
            ratio_record(w * s),
            f"""sum without (class) (rate(model_serving_request_errors_total{{served_entity=""}}[{duration(w * s)}]))
/
rate(model_serving_requests_total{{served_entity=""}}[{duration(w * s)}])""",
            "" if i else "Error ratio (4xx + 5xx, 429 included) of each endpoint from the synthesised counters, one\n"
                         "rule per window of the burn-rate table. No requests in the window: 0/0, no alert."))
    return rules


def llm_at_capacity() -> str:
    """Endpoints whose server counts its own waiting requests while its running ones fill its capacity: queueing
    that more replicas fix (ModelServingReplicasSaturated), kept out of ModelServingQueueing so one queue pages once."""
    return f"""(
    model_serving_queue_depth_method{{served_entity="", method="server"}} == 1
  and ignoring (method)
    model_serving_requests_running{{served_entity=""}}
      >= {number(LLM_SATURATION_RATIO)} * model_serving_provisioned_concurrency{{served_entity=""}}
)"""


def alerting_rules(scale: float) -> list[Alert]:
    s = scale
    fresh = f"and ignoring (served_entity) ({FRESH} == 1)"
    b = number(budget())
    alerts = [
        Alert(
            "ModelServingErrorRateHigh",
            f"""model_serving_error_ratio{{served_entity=""}}
  > ignoring (served_entity, check) group_left
model_serving_target{{check="error_ratio"}}
{fresh}""",
            10 * 60, "critical",
            "{{ $labels.serving_endpoint }}: error ratio above target",
            "{{ $value | humanizePercentage }} of the requests to {{ $labels.serving_endpoint }} were answered 4xx or 5xx "
            "(429 included) over the exporter's analysis window"
            + target_of("error_ratio") + ", above its target of {{ . | value | humanizePercentage }}{{ end }}{{ end }}. "
            "model_serving_error_ratio_by_class tells server errors (5xx) from throttling (4xx/429).",
            "The ratio is already an average over the exporter's 5-minute window, so one bad source minute keeps\n"
            "it high for up to 5 minutes: `for` must be longer than the window to ignore a one-minute blip. 10m\n"
            "pages on roughly 12 minutes of sustained errors; severe outages page sooner through the\n"
            "ModelServingErrorBudgetBurn fast-burn page."),
    ]
    for severity, long_w, short_w, factor, for_s in BURN_RATE_WINDOWS:
        alerts.append(Alert(
            "ModelServingErrorBudgetBurn",
            f"""{ratio_record(long_w * s)} / {b} > {number(factor)}
and
{ratio_record(short_w * s)} / {b} > {number(factor)}""",
            for_s, severity,
            "{{ $labels.serving_endpoint }}: error budget burning over " + number(factor) + "x the sustainable rate",
            "{{ $labels.serving_endpoint }} used its error budget (" + slo_text() + " success SLO) at "
            "{{ $value | printf \"%.1f\" }}x the sustainable rate over the last " + duration(long_w * s) + ", "
            "and is still above " + number(factor) + "x over the last " + duration(short_w * s)
            + (" (at this rate a 30-day budget lasts about " + _budget_days(factor) + ")." if factor > 1 else "."),
            f"Burn rate {number(factor)}x over {duration(long_w)} and {duration(short_w)}: the long window proves the burn is\n"
            f"significant, the short one that it is still happening, so the alert resolves within minutes of\n"
            f"recovery. `for: {duration(for_s)}` (as in kubernetes-mixin) rides out the synthesised counters stepping\n"
            f"once per source minute.",
            {"long_window": duration(long_w * s), "short_window": duration(short_w * s)}))
    alerts += [
        Alert(
            "ModelServingQueueing",
            f"""model_serving_queue_depth{{served_entity=""}}
  > ignoring (served_entity, check) group_left
model_serving_target{{check="queue_depth"}}
{fresh}
unless ignoring (method) {llm_at_capacity()}""",
            10 * 60, "critical",
            "{{ $labels.serving_endpoint }}: requests are queueing",
            "On average {{ $value | printf \"%.1f\" }} requests to {{ $labels.serving_endpoint }} waited for a free slot "
            "over the exporter's analysis window"
            "{{ with printf \"model_serving_queue_depth_method{workspace='%s',serving_endpoint='%s',instance='%s',served_entity=''}\" "
            "$labels.workspace $labels.serving_endpoint $labels.instance | query }}{{ with first . }} ({{ .Labels.method }}){{ end }}{{ end }}"
            + target_of("queue_depth") + ", above its queue-depth target of {{ . | value }}{{ end }}{{ end }}. "
            "Latency rises and the platform answers 429 once the queue is full.",
            "Queue depth is a 5-minute window average, and autoscaling takes minutes to add capacity: 10m\n"
            "(longer than the window) ignores a one-minute spike and a scale-up that fixes itself, and pages\n"
            "when the endpoint cannot catch up. A self-hosted server queueing at capacity pages through\n"
            "ModelServingReplicasSaturated instead (one page per queue)."),
        Alert(
            "ModelServingReplicasSaturated",
            f"""model_serving_queue_depth{{served_entity=""}}
  > ignoring (served_entity, check) group_left
model_serving_target{{check="queue_depth"}}
{fresh}
and ignoring (method) {llm_at_capacity()}""",
            10 * 60, "critical",
            "{{ $labels.serving_endpoint }}: requests wait with the model server at capacity",
            "On average {{ $value | printf \"%.1f\" }} requests to {{ $labels.serving_endpoint }} waited (the server's own "
            "count) over the exporter's analysis window while its running requests filled at least "
            + f"{LLM_SATURATION_RATIO:.0%}" + " of its replicas' concurrency"
            "{{ with printf \"model_serving_recommended_replicas{workspace='%s',serving_endpoint='%s',instance='%s',bound='max'}\" "
            "$labels.workspace $labels.serving_endpoint $labels.instance | query }}{{ with first . }}; the window supports "
            "{{ . | value }} replicas at the busiest minute{{ end }}{{ end }}. Add replicas.",
            "The same 10m as ModelServingQueueing (a window average; a horizontal autoscaler adds replicas\n"
            "within minutes), but the server says why: it runs all it can, so only more replicas help."),
        Alert(
            "ModelServingKvCacheSaturated",
            f"""model_serving_kv_cache_utilization_ratio{{served_entity=""}}
  > ignoring (served_entity, check) group_left
model_serving_target{{check="kv_cache_utilization"}}
{fresh}""",
            15 * 60, "warning",
            "{{ $labels.serving_endpoint }}: LLM KV cache near full",
            "The fullest replica of {{ $labels.serving_endpoint }} used {{ $value | humanizePercentage }} of its KV cache "
            "on average over the exporter's analysis window" + target_of("kv_cache_utilization")
            + ", above its target of {{ . | value | humanizePercentage }}{{ end }}{{ end }}. The server admits fewer "
            "sequences and preempts running ones (model_serving_preemptions_per_second).",
            "A capacity ticket like ModelServingSaturation: 15m of a 5-minute mean. A full cache that\n"
            "hurts users pages through ModelServingReplicasSaturated."),
        Alert(
            "ModelServingReplicasDown",
            """model_serving_replicas_answering_ratio < 1
and model_serving_exporter_up == 1""",
            REPLICAS_DOWN_FOR_S, "warning",
            "{{ $labels.serving_endpoint }}: replicas of the model server do not answer",
            "Only {{ $value | humanizePercentage }} of the replicas of {{ $labels.serving_endpoint }} answered the "
            "exporter's last fetches; model_serving_replica_up == 0 names them. The others carry their load.",
            "Long enough for a replica to restart and load its model (a large LLM takes minutes), short\n"
            "enough to catch one crash-looping within the quarter hour. While no replica answers,\n"
            "ModelServingMetricsStale reports the endpoint instead (the exporter_up guard)."),
        Alert(
            "ModelServingLatencyHigh",
            f"""label_replace(model_serving_latency_seconds{{served_entity=""}}, "check", "latency_$1", "percentile", "(.+)")
  > ignoring (served_entity, percentile) group_left
model_serving_target{{check=~"latency_p50|latency_p90|latency_p99"}}
and ignoring (served_entity, percentile, check) ({FRESH} == 1)""",
            15 * 60, "warning",
            "{{ $labels.serving_endpoint }}: {{ $labels.percentile }} latency above target",
            "The {{ $labels.percentile }} latency of {{ $labels.serving_endpoint }} is {{ $value | humanizeDuration }} over "
            "the exporter's analysis window" + target_of("$labels.check")
            + ", above its target of {{ . | value | humanizeDuration }}{{ end }}{{ end }}.",
            "A ticket, not a page: 15m (three windows) keeps cold starts, deployments and one slow minute out of\n"
            "the queue while a lasting regression still opens a ticket the same hour. Latency caused by\n"
            "queueing pages through ModelServingQueueing."),
        Alert(
            "ModelServingSaturation",
            f"""(
    label_replace(model_serving_cpu_utilization_ratio{{served_entity=""}}, "check", "cpu_utilization", "", "")
  or
    label_replace(model_serving_memory_utilization_ratio{{served_entity=""}}, "check", "memory_utilization", "", "")
  or
    label_replace(model_serving_gpu_utilization_ratio{{served_entity=""}}, "check", "gpu_utilization", "", "")
)
  > ignoring (served_entity) group_left
model_serving_target{{check=~"cpu_utilization|memory_utilization|gpu_utilization"}}
and ignoring (served_entity, check) ({FRESH} == 1)""",
            15 * 60, "warning",
            "{{ $labels.serving_endpoint }}: {{ $labels.check }} above target",
            "The {{ $labels.check }} ratio of {{ $labels.serving_endpoint }} averaged {{ $value | humanizePercentage }} over "
            "the exporter's analysis window" + target_of("$labels.check")
            + ", above its target of {{ . | value | humanizePercentage }}{{ end }}{{ end }}.",
            "Utilisation is a capacity-planning signal, not an outage: 15m of a 5-minute average ignores\n"
            "bursts and batch spikes and opens a ticket for sustained saturation. When saturation hurts users it\n"
            "pages through ModelServingQueueing or ModelServingErrorRateHigh."),
        Alert(
            "ModelServingEndpointNotReady",
            """label_replace(model_serving_endpoint_ready == 0, "reason", "not_ready", "", "")
or ignoring (reason)
label_replace(
  max without (rule, severity) (model_serving_remediation{rule="endpoint_not_ready"}),
  "reason", "update_failed", "", ""
)""",
            30 * 60, "warning",
            "{{ $labels.serving_endpoint }}: endpoint not serving its intended configuration ({{ $labels.reason }})",
            '{{ if eq $labels.reason "not_ready" }}{{ $labels.serving_endpoint }} is not ready: its state is not READY or a '
            "served entity is not DEPLOYMENT_READY (model_serving_endpoint_ready {{ $value }})"
            "{{ else }}{{ $labels.serving_endpoint }} is ready, but the exporter's endpoint_not_ready hint is active: its last "
            "configuration update failed or was canceled, so the old configuration still serves{{ end }}. "
            "/api/v1/endpoints has the endpoint's state and the hint's detail.",
            "First deployments and updates legitimately pass through not-ready states, and a GPU model can take "
            "20 minutes or more to deploy; 30m avoids a ticket per rollout. A not-ready endpoint that users call "
            "pages much sooner through its errors or queue. config_update is not on /metrics, so a failed or "
            "canceled update is read from the exporter's endpoint_not_ready remediation hint (a rule disabled in "
            "the exporter's configuration silences that branch)."),
        Alert(
            "ModelServingExporterDown",
            f"""label_replace(
  up == 0
  and on (job, instance)
  max_over_time(model_serving_exporter_build_info[{duration(EXPORTER_MEMORY_S * s)}]),
  "reason", "scrape_failed", "", ""
)
or ignoring (reason)
label_replace(absent(model_serving_exporter_build_info), "reason", "not_scraped", "", "")
or ignoring (reason)
label_replace(
  time() - model_serving_exporter_last_poll_timestamp_seconds > {number(POLL_STALE_S * s)},
  "reason", "poll_stalled", "", ""
)""",
            5 * 60, "warning",
            "serving-exporter{{ with $labels.instance }} {{ . }}{{ end }} is down or not polling ({{ $labels.reason }})",
            '{{ if eq $labels.reason "not_scraped" }}This Prometheus scrapes no serving-exporter at all'
            '{{ else if eq $labels.reason "scrape_failed" }}Prometheus cannot scrape serving-exporter '
            "{{ $labels.instance }} (job {{ $labels.job }})"
            "{{ else }}serving-exporter {{ $labels.instance }} answers scrapes, but its last workspace poll completed "
            "{{ $value | humanizeDuration }} ago{{ end }}. Every ModelServing alert that depends on it is silent, "
            "which does not mean healthy.",
            "5m rides out a restart or a rolling update of the exporter (seconds to a minute or two) and still "
            "reports the blind spot before a 10-minute page could have been missed. The scrape_failed branch needs "
            "no job name: a target counts as a serving-exporter if it exposed model_serving_exporter_build_info "
            f"during the last {duration(EXPORTER_MEMORY_S)}. not_scraped (absent()) covers a Prometheus that scrapes no "
            "exporter at all, so load these rules only where an exporter is meant to be scraped. poll_stalled: "
            f"/metrics answers but no poll completed for {duration(POLL_STALE_S)}."),
        Alert(
            "ModelServingExporterBadConfig",
            "max_over_time(model_serving_exporter_config_last_reload_successful"
            f"[{duration(RELOAD_WINDOW_S * s)}]) == 0",
            10 * 60, "warning",
            "serving-exporter{{ with $labels.instance }} {{ . }}{{ end }} refused its new configuration",
            "The last configuration reload of serving-exporter {{ $labels.instance }} (job {{ $labels.job }}) failed "
            "(model_serving_exporter_config_last_reload_successful {{ $value }}): it still runs the previous "
            "configuration. Its log names the problems: an invalid file, which a restart would fail on too, or a "
            "setting only a restart applies.",
            f"As Prometheus's own PrometheusBadConfig: the series must stay 0 for {duration(RELOAD_WINDOW_S)} plus 10m, "
            "so a mistake fixed and reloaded within minutes opens no ticket. A ticket, not a page: the exporter "
            "keeps working with the configuration it had; but the edit someone made is not in force, and an invalid "
            "file makes the next restart (a rollout, a rescheduled pod) fail."),
        Alert(
            "ModelServingMetricsStale",
            f"""label_replace(
  time() - model_serving_exporter_last_success_timestamp_seconds > {number(FETCH_STALE_S * s)},
  "reason", "fetch_failing", "", ""
)
or ignoring (reason)
label_replace(
  model_serving_exporter_up == 0 unless model_serving_exporter_last_success_timestamp_seconds,
  "reason", "never_fetched", "", ""
)
or ignoring (reason, served_entity)
label_replace(
  time() - model_serving_last_minute_timestamp_seconds{{served_entity=""}} > {number(SOURCE_STALE_S * s)}
  unless on (job, instance, workspace, serving_endpoint) model_serving_endpoint_info{{scale_to_zero="true"}},
  "reason", "source_stale", "", ""
)""",
            5 * 60, "warning",
            "{{ $labels.serving_endpoint }}: figures are stale ({{ $labels.reason }})",
            '{{ if eq $labels.reason "fetch_failing" }}The last successful metrics fetch for {{ $labels.serving_endpoint }} '
            "was {{ $value | humanizeDuration }} ago"
            '{{ else if eq $labels.reason "never_fetched" }}No metrics fetch for {{ $labels.serving_endpoint }} has '
            "succeeded since the exporter started"
            "{{ else }}Fetches for {{ $labels.serving_endpoint }} succeed, but its newest source minute is "
            "{{ $value | humanizeDuration }} old: the platform publishes no new metrics{{ end }}. The exporter keeps "
            f"serving its last figures; the alerts on them stop once the data is {duration(FRESH_LIMIT_S * s)} old, "
            "so their silence says nothing until this resolves.",
            f"Fires {duration(FETCH_STALE_S + 300)} after the last good fetch ({duration(FETCH_STALE_S)} threshold + 5m) "
            f"and {duration(SOURCE_STALE_S + 300)} after the newest source minute, before the figure alerts give up at "
            f"{duration(FRESH_LIMIT_S)}: there is never a gap in which stale data looks healthy. The 5m also keeps an "
            "exporter restart (no fetch yet) from opening a ticket. source_stale skips scale-to-zero endpoints: "
            "an idle endpoint whose body repeats byte for byte stores no new minute (docs/metrics.md), which is "
            "expected, not stale."),
        Alert(
            "ModelServingExporterThrottled",
            f"""sum without (outcome) (rate(model_serving_exporter_api_requests_total{{outcome="429"}}[{duration(THROTTLE_WINDOW_S * s)}]))
/
(sum without (outcome) (rate(model_serving_exporter_api_requests_total[{duration(THROTTLE_WINDOW_S * s)}])) > 0)
> {number(THROTTLED_RATIO)}""",
            15 * 60, "warning",
            "serving-exporter{{ with $labels.instance }} {{ . }}{{ end }}: the workspace throttles its {{ $labels.call }} calls",
            "{{ $value | humanizePercentage }} of the {{ $labels.call }} calls that serving-exporter "
            "{{ $labels.instance }} made to the platform's API over the last " + duration(THROTTLE_WINDOW_S * s)
            + " were answered 429 (retries included), above " + f"{THROTTLED_RATIO * 100:.10g}%" + ". Retries absorb "
            "an occasional 429; lasting throttling makes metrics fetches fail with reason too_many_requests, and the "
            "endpoints' figures go stale.",
            f"Retries honouring Retry-After absorb brief throttling, such as a burst of calls from another client "
            f"sharing the workspace's rate limits: the share over {duration(THROTTLE_WINDOW_S)} must stay above "
            f"{THROTTLED_RATIO * 100:.10g}% for 15m, which takes roughly 18 minutes of heavy throttling (20% of the calls) "
            "and up to 25 of light throttling. Throttling that lasts exhausts the retries within the poll "
            "deadline, so metrics fetches fail with too_many_requests and the figures go stale; "
            "ModelServingMetricsStale reports the stale endpoints, this names the cause. A ticket, not a page: the "
            "remedy is fewer calls, in the exporter's configuration. Per call (list, detail, metrics, token), keeping "
            "job and instance, so each replica reports its own calls. No calls in the window (an idle or stopped "
            "exporter): the `> 0` on the denominator drops the series instead of dividing 0 by 0."),
        Alert(
            "ModelServingWorkspaceLimitNear",
            f"""{WORKSPACE_USAGE}
  >= ignoring (limit) group_left
max without (instance, pod, shard_index) (model_serving_workspace_limit_usage_ratio_threshold)""",
            15 * 60, "warning",
            "Standard endpoints use {{ $value | humanizePercentage }} of the workspace's {{ $labels.limit }} limit",
            "The standard (not route-optimized) endpoints polled by {{ $labels.job }} use {{ $value | humanizePercentage }} "
            "of the {{ $labels.limit }} limit the workspace sets on them together"
            "{{ with printf \"max(model_serving_workspace_limit{job='%s',limit='%s'})\" $labels.job $labels.limit | query }}"
            "{{ with first . }} ({{ . | value }}){{ end }}{{ end }}, shards summed. Past the limit the workspace throttles "
            "every standard endpoint. Move the largest custom-model endpoints to route optimization first: the "
            "exporter's workspace_limit_near hint names them (one replica), the runbook's query across shards.",
            "A capacity-planning ticket, not a page: the figures are 5-minute window averages, and 15m (three windows)\n"
            "keeps a burst or a deployment's replay out while a lasting approach to the limit opens a ticket well before\n"
            "traffic growth hits it. When the limit is reached, the endpoints' own 429s and queueing page.\n"
            "The threshold is the exporters' workspace_limits.usage_ratio_threshold (exported), so configuration and\n"
            "alert agree; at or above it fires."),
    ]
    for a in alerts:
        a.for_s *= s
    return alerts


def _budget_days(factor: float) -> str:
    days = 30 / factor
    return f"{days:.0f} days" if days >= 2 else f"{days * 24:.0f} hours"


# ---- YAML output (hand-written so that it can carry comments) ---------------------------------

def _scalar(text: str) -> str:
    out = yaml.safe_dump(text, width=math.inf, allow_unicode=True, default_flow_style=True)
    return out.removesuffix("\n").removesuffix("\n...").rstrip("\n")


def _comment(text: str, indent: str) -> list[str]:
    width = 100 - len(indent) - 2
    return [f"{indent}# {line}" for line in textwrap.wrap(" ".join(text.split()), width)]


def _block(key: str, text: str, indent: str) -> list[str]:
    return [f"{indent}{key}: |"] + [f"{indent}  {line}".rstrip() for line in text.splitlines()]


def render_recording(scale: float = 1.0) -> str:
    lines = [HEADER.rstrip("\n"), "groups:", "  - name: serving-exporter.rules", "    rules:"]
    for r in recording_rules(scale):
        lines += _comment(r.why, "      ") if r.why else []
        lines.append(f"      - record: {r.record}")
        lines += _block("expr", r.expr, "        ")
    return "\n".join(lines) + "\n"


def render_alerting(scale: float = 1.0) -> str:
    lines = [HEADER.rstrip("\n"),
             f"# SLO objective {slo_text()} (error budget {number(budget())}); runbooks: {RUNBOOK_URL.split('#')[0]}",
             "groups:", "  - name: serving-exporter.alerts", "    rules:"]
    for a in alerting_rules(scale):
        lines += _comment(f"for: {duration(a.for_s)}. " + a.why, "      ")
        lines.append(f"      - alert: {a.alert}")
        lines += _block("expr", a.expr, "        ")
        lines.append(f"        for: {duration(a.for_s)}")
        lines.append("        labels:")
        lines.append(f"          severity: {a.severity}")
        lines += [f"          {k}: {_scalar(v)}" for k, v in a.labels.items()]
        lines.append("        annotations:")
        lines.append(f"          summary: {_scalar(a.summary)}")
        lines.append(f"          description: {_scalar(a.description)}")
        lines.append(f"          runbook_url: {_scalar(RUNBOOK_URL.format(anchor=a.anchor))}")
    return "\n".join(lines) + "\n"


def render(scale: float = 1.0) -> dict[str, str]:
    """File name -> content. scale < 1 gives the test-only rules (every duration multiplied)."""
    return {RECORDING_FILE: render_recording(scale), ALERTING_FILE: render_alerting(scale)}


def write(directory: Path = OUTPUT_DIR, scale: float = 1.0) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render(scale).items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed rules are not current")
    args = parser.parse_args(argv)
    if args.check:
        stale = [n for n, text in render().items()
                 if not (OUTPUT_DIR / n).exists() or (OUTPUT_DIR / n).read_text() != text]
        if stale:
            print(f"not current: {', '.join(stale)}; run: python alerts/generate.py", file=sys.stderr)
            return 1
        return 0
    for path in write():
        print(path.relative_to(ROOT.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
