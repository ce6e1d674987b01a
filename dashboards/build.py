#!/usr/bin/env python3
"""Grafana dashboards as code for serving-exporter.

    python dashboards/build.py          # writes dashboards/grafana/*.json and docs/dashboards.md
    python dashboards/build.py --check  # exit 1 when a committed file differs from the generated one

Built with grafana-foundation-sdk, pinned in pyproject.toml's `dashboards` extra to the newest build
for Grafana 11.6 (the SDK's newest release line with a `<build>!<Grafana version>` version). Pin it
explicitly: the build number is a PEP 440 epoch, so an unpinned install resolves to whichever Grafana
line was built last (a 10.1 build), not the newest Grafana.

Rules every query follows, so the dashboards work on Prometheus, Thanos and Mimir with any number
of exporter replicas:

- Only raw exporter metrics: no recording rules, no job or instance name.
- Every selector is aggregated `by` the labels the panel shows (max for gauges and per-replica
  rates, so two replicas scraping the same workspace are not counted twice; min where any replica
  failing matters), so no result carries a replica label.
- `served_entity=""` is the endpoint as a whole; endpoint rows never mix with entity rows.
- Range windows are `$__rate_interval` (or `$__range` for the error budget): the synthesised
  counters step once per source minute, and Grafana sizes `$__rate_interval` from the scrape interval.
- The data source is the `datasource` variable everywhere, never a fixed uid.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

register_default_plugins()  # panel and query types, for _complete_custom

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TAG = "serving-exporter"
OVERVIEW_UID = "serving-exporter-overview"
ENDPOINT_UID = "serving-exporter-endpoint"
ENDPOINT_URL = f"/d/{ENDPOINT_UID}/serving-endpoint"
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Default for the docs_url variable: where docs/remediation.md and docs/runbooks.md are browsable
# (the same base as the runbook_url of the alerting rules in alerts/).
DOCS_URL = "https://github.com/serving-exporter/serving-exporter/blob/main/docs"
SLO_CHOICES = "0.99,0.995,0.999,0.95,0.9"

# Label selectors on the exporter's serving_endpoint label (never `endpoint`: the Prometheus Operator
# sets that on every target). The Grafana variable keeps the name `endpoint`. Endpoint view: one
# endpoint, and the served-entity variable whose "All" value (^$) selects the endpoint row
# (served_entity=""), never the endpoint and its entities together.
# An endpoint is (workspace, serving_endpoint): two workspaces may each have an endpoint `chat`, so every
# selector names the workspace variable too and every aggregation keeps both labels. A self-hosted endpoint
# has no workspace label, which the All value (.*) matches.
E = 'workspace=~"$workspace", serving_endpoint="$endpoint"'
ES = 'workspace=~"$workspace", serving_endpoint="$endpoint", served_entity=~"$served_entity"'
# Overview: the endpoint rows of the selected endpoints.
O = 'workspace=~"$workspace", serving_endpoint=~"$endpoint"'
OW = 'workspace=~"$workspace", serving_endpoint=~"$endpoint", served_entity=""'

GREEN, ORANGE, RED, BLUE = "green", "orange", "red", "blue"


# --- small helpers -------------------------------------------------------------------------------

def query(expr: str, legend: str | None = None, ref: str = "A", instant: bool = False,
          fmt: PromQueryFormat | None = None) -> Dataquery:
    q = Dataquery().expr(expr).ref_id(ref).datasource(DS)
    q = q.instant() if instant else q.range()
    if legend is not None:
        q = q.legend_format(legend)
    if fmt is not None:
        q = q.format(fmt)
    return q


def table_query(expr: str, ref: str) -> Dataquery:
    return query(expr, ref=ref, instant=True, fmt=PromQueryFormat.TABLE)


def steps(*pairs: tuple[float | None, str]) -> db.ThresholdsConfig:
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=v, color=c) for v, c in pairs])


def value_map(mapping: dict[str, tuple[str, str]]) -> list[dm.ValueMapping]:
    return [dm.ValueMap(options={k: dm.ValueMappingResult(text=t, color=c, index=i)
                                 for i, (k, (t, c)) in enumerate(mapping.items())})]


BREACH = value_map({"0": ("OK", GREEN), "1": ("BREACH", RED)})
UP = value_map({"1": ("up", GREEN), "0": ("DOWN", RED)})
READY = value_map({"1": ("ready", GREEN), "0": ("NOT READY", RED)})
SEVERITY = value_map({"critical": ("critical", RED), "warning": ("warning", ORANGE), "info": ("info", BLUE)})


def prop(id_: str, value: Any) -> dm.DynamicConfigValue:
    if isinstance(value, cogbuilder.Builder):
        value = value.build()
    return dm.DynamicConfigValue(id_val=id_, value=value)


def link(title: str, url: str) -> dict[str, Any]:
    return {"title": title, "url": url, "targetBlank": False}


def legend(mode: cm.LegendDisplayMode = cm.LegendDisplayMode.LIST, calcs: list[str] | None = None) -> cb.VizLegendOptions:
    return (cb.VizLegendOptions().display_mode(mode).placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True).calcs(calcs or []))


def ts(title: str, unit: str, description: str, *targets: Dataquery, w: int = 12, h: int = 8) -> timeseries.Panel:
    p = (timeseries.Panel().title(title).description(description).unit(unit).datasource(DS)
         .span(w).height(h).fill_opacity(10).line_width(1).show_points(cm.VisibilityMode.NEVER)
         .legend(legend(cm.LegendDisplayMode.TABLE, ["lastNotNull", "max"]))
         .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)))
    for t in targets:
        p = p.with_target(t)
    return p


def dashed(p: timeseries.Panel, regexp: str) -> timeseries.Panel:
    """Series whose name matches `regexp` (targets, limits) drawn as dashed lines without fill."""
    return p.override_by_regexp(regexp, [
        prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
        prop("custom.fillOpacity", 0),
        prop("color", {"mode": "fixed", "fixedColor": RED}),
    ])


def stat_panel(title: str, unit: str, description: str, *targets: Dataquery, w: int = 4, h: int = 4,
               color: cm.BigValueColorMode = cm.BigValueColorMode.VALUE) -> stat.Panel:
    p = (stat.Panel().title(title).description(description).unit(unit).datasource(DS).span(w).height(h)
         .graph_mode(cm.BigValueGraphMode.NONE).color_mode(color).text_mode(cm.BigValueTextMode.AUTO)
         .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    for t in targets:
        p = p.with_target(t)
    return p


def bars(title: str, unit: str, description: str, expr: str, thresholds: db.ThresholdsConfig,
         w: int = 6, h: int = 7) -> bargauge.Panel:
    return (bargauge.Panel().title(title).description(description).unit(unit).datasource(DS).span(w).height(h)
            .with_target(query(expr, "{{serving_endpoint}} {{workspace}}", instant=True))
            .display_mode(cm.BarGaugeDisplayMode.GRADIENT).orientation(cm.VizOrientation.HORIZONTAL)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .thresholds(thresholds).min(0))


def organize(exclude: list[str], index: dict[str, int] | None = None) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val="organize", options={
        "excludeByName": {name: True for name in exclude}, "indexByName": index or {}, "renameByName": {}})


def variables_common() -> list[db.DatasourceVariable]:
    return [db.DatasourceVariable("datasource").label("Data source").type("prometheus").description(
        "Prometheus-compatible data source (Prometheus, Thanos, Mimir) holding serving-exporter's metrics.")]


def platform_variable() -> db.QueryVariable:
    """The serving platforms (databricks, ...) on model_serving_endpoint_info; narrows the endpoint variable."""
    return (db.QueryVariable("platform").label("Platform").datasource(DS)
            .description("Serving platform of the endpoints (the platform label of model_serving_endpoint_info); "
                         "narrows the Endpoint list.")
            .query("label_values(model_serving_endpoint_info, platform)")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*")
            .current(dm.VariableOption(selected=True, text="All", value="$__all")))


def workspace_variable() -> db.QueryVariable:
    """The workspaces (the `workspace` label: one per entry of the exporter's `workspaces:`); narrows the
    endpoint variable."""
    return (db.QueryVariable("workspace").label("Workspace").datasource(DS)
            .description("Databricks workspace of the endpoints (the workspace label); self-hosted endpoints have "
                         "none and show under All. Narrows the Endpoint list.")
            .query('label_values(model_serving_endpoint_info{platform=~"$platform"}, workspace)')
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*")
            .current(dm.VariableOption(selected=True, text="All", value="$__all")))


def endpoint_variable() -> db.QueryVariable:
    """The endpoints of the selected platforms. Named `endpoint` (URLs: var-endpoint=...); the label the
    queries select on is the exporter's `serving_endpoint`."""
    return (db.QueryVariable("endpoint").label("Endpoint").datasource(DS)
            .query('label_values(model_serving_endpoint_info{platform=~"$platform", workspace=~"$workspace"}, serving_endpoint)')
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC))


def finish(builder: db.Dashboard) -> dm.Dashboard:
    """Build, then number every panel (rows included) in layout order so ids and links are stable."""
    board = builder.build()
    next_id = 1
    for panel in board.panels or []:
        for p in [panel, *(getattr(panel, "panels", None) or [])]:
            p.id_val = next_id
            next_id += 1
            _complete_custom(p)
    return board


def _complete_custom(panel: Any) -> None:
    """Spell out the panel plugin's default field config, as Grafana saves it, so the JSON decodes
    through the SDK model (Dashboard.from_json) to exactly the same document."""
    config = cogruntime.panelcfg_config(panel.type_val)
    fc = getattr(panel, "field_config", None)
    if config is None or config.field_config_from_json_hook is None or fc is None or fc.defaults is None:
        return
    if fc.defaults.custom is None:
        fc.defaults.custom = config.field_config_from_json_hook({})


def base(title: str, uid: str, description: str) -> db.Dashboard:
    return (db.Dashboard(title).uid(uid).description(description).tags([TAG]).editable()
            .timezone("browser").time("now-3h", "now").refresh("1m")
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .link(db.DashboardLink("serving-exporter").type(dm.DashboardLinkType.DASHBOARDS).tags([TAG])
                  .as_dropdown(True).include_vars(False).keep_time(True))
            .with_variable(variables_common()[0]))


# --- overview ------------------------------------------------------------------------------------

# (column, check) for the status columns of the endpoints table, in target order.
STATUS_COLUMNS = [("P50", "latency_p50"), ("P90", "latency_p90"), ("P99", "latency_p99"),
                  ("Errors", "error_ratio"), ("Queue", "queue_depth"), ("CPU", "cpu_utilization"),
                  ("Memory", "memory_utilization")]
# (column, expression by endpoint, unit) for the value columns.
VALUE_COLUMNS = [
    ("P99 latency", f'max by (workspace, serving_endpoint) (model_serving_latency_seconds{{{OW}, percentile="p99"}})', "s"),
    ("QPS", f"max by (workspace, serving_endpoint) (model_serving_requests_per_second{{{OW}}})", "reqps"),
    ("Error ratio", f"max by (workspace, serving_endpoint) (model_serving_error_ratio{{{OW}}})", "percentunit"),
    ("Queue depth", f"max by (workspace, serving_endpoint) (model_serving_queue_depth{{{OW}}})", "short"),
    ("CPU", f"max by (workspace, serving_endpoint) (model_serving_cpu_utilization_ratio{{{OW}}})", "percentunit"),
    ("Memory", f"max by (workspace, serving_endpoint) (model_serving_memory_utilization_ratio{{{OW}}})", "percentunit"),
    ("Active hints", f"count by (workspace, serving_endpoint) (max by (workspace, serving_endpoint, rule) (model_serving_remediation{{{O}}}))", "none"),
    ("Ready", f"min by (workspace, serving_endpoint) (model_serving_endpoint_ready{{{O}}})", "none"),
    ("Fetch", f"min by (workspace, serving_endpoint) (model_serving_exporter_up{{{O}}})", "none"),
]


def endpoints_table() -> table.Panel:
    refs = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    p = (table.Panel().title("Endpoints").unit("none").datasource(DS).span(24).height(10)
         .description("One row per endpoint (the endpoint as a whole). Status columns: OK / BREACH against the "
                      "endpoint's effective target (model_serving_target_breached); empty when the check is not "
                      "evaluated (no data or no target). Ready: model_serving_endpoint_ready; Fetch: last metrics "
                      "fetch (min over replicas). Click an endpoint for its dashboard.")
         .filterable(True).no_value("-")
         .sort_by([cb.TableSortByFieldState().display_name("Active hints").desc(True)]))
    index = {"serving_endpoint": 0, "workspace": 1}
    for title, check in STATUS_COLUMNS:
        ref = next(refs)
        p = p.with_target(table_query(
            f'max by (workspace, serving_endpoint) (model_serving_target_breached{{{OW}, check="{check}"}})', ref))
        index[f"Value #{ref}"] = len(index)
        p = p.override_by_name(f"Value #{ref}", [
            prop("displayName", title), prop("mappings", BREACH), prop("custom.width", 80),
            prop("custom.cellOptions", {"type": "color-background", "mode": "basic"}),
            prop("description", f"{check} against its target")])
    for title, expr, unit in VALUE_COLUMNS:
        ref = next(refs)
        p = p.with_target(table_query(expr, ref))
        index[f"Value #{ref}"] = len(index)
        props = [prop("displayName", title), prop("unit", unit)]
        if title == "Active hints":
            props += [prop("noValue", "0"), prop("custom.cellOptions", {"type": "color-text"}),
                      prop("thresholds", steps((None, GREEN), (1, ORANGE)))]
        if title in ("Fetch", "Ready"):
            props += [prop("mappings", UP if title == "Fetch" else READY),
                      prop("custom.cellOptions", {"type": "color-text"})]
        p = p.override_by_name(f"Value #{ref}", props)
    p = p.override_by_name("serving_endpoint", [
        prop("displayName", "Endpoint"),
        prop("links", [link("Endpoint dashboard: ${__value.raw}",
                            f"{ENDPOINT_URL}?${{datasource:queryparam}}&var-workspace=${{__data.fields.workspace}}"
                            f"&var-endpoint=${{__value.raw}}&${{__url_time_range}}")]),
    ])
    p = p.override_by_name("workspace", [prop("displayName", "Workspace")])
    return (p.with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(organize(["Time"], index)))


def overview() -> dm.Dashboard:
    b = base("Serving fleet overview", OVERVIEW_UID,
             "Every model-serving endpoint against its targets, fleet totals, the worst endpoints and the "
             "exporter's own health. Generated by dashboards/build.py; do not edit in Grafana.")
    # No custom All value for the endpoints: All stands for the listed endpoints (those of the selected
    # platforms), so picking a platform narrows every panel, not only the list.
    b = b.with_variable(platform_variable()).with_variable(workspace_variable()).with_variable(
        endpoint_variable().multi(True).include_all(True)
        .current(dm.VariableOption(selected=True, text="All", value="$__all")))

    b = b.with_row(db.Row("Fleet"))
    b = b.with_panel(stat_panel(
        "Endpoints polled", "none", "Endpoints the exporters poll.",
        query(f"count(max by (workspace, serving_endpoint) (model_serving_exporter_up{{{O}}}))", "endpoints", instant=True)))
    b = b.with_panel(stat_panel(
        "Total QPS", "reqps", "Requests per second over all endpoints (analysis window).",
        query(f"sum(max by (workspace, serving_endpoint) (model_serving_requests_per_second{{{OW}}}))", "QPS", instant=True)))
    b = b.with_panel(stat_panel(
        "Fleet error ratio", "percentunit",
        "4xx + 5xx over all requests, from the synthesised counters over $__rate_interval.",
        query(f"sum(max by (workspace, serving_endpoint, class) (rate(model_serving_request_errors_total{{{OW}}}[$__rate_interval])))"
              f" / sum(max by (workspace, serving_endpoint) (rate(model_serving_requests_total{{{OW}}}[$__rate_interval])))",
              "error ratio", instant=True)).thresholds(steps((None, GREEN), (0.01, RED))))
    b = b.with_panel(stat_panel(
        "Endpoints breaching a target", "none", "Endpoints (as a whole) with at least one breached check.",
        query(f"sum(max by (workspace, serving_endpoint) (model_serving_target_breached{{{OW}}}))", "breaching", instant=True),
        color=cm.BigValueColorMode.BACKGROUND).thresholds(steps((None, GREEN), (1, RED))))
    b = b.with_panel(stat_panel(
        "Active hints", "none", "Active remediation hints by severity (rules: docs/remediation.md).",
        query(f"count by (severity) (max by (workspace, serving_endpoint, rule, severity) (model_serving_remediation{{{O}}}))",
              "{{severity}}", instant=True)).no_value("0").override_by_name("critical", [
                  prop("color", {"mode": "fixed", "fixedColor": RED})]).override_by_name("warning", [
                  prop("color", {"mode": "fixed", "fixedColor": ORANGE})]).override_by_name("info", [
                  prop("color", {"mode": "fixed", "fixedColor": BLUE})]))
    b = b.with_panel(stat_panel(
        "Endpoints not fetched", "none", "Endpoints whose last metrics fetch failed on every exporter replica.",
        query(f"sum(1 - max by (workspace, serving_endpoint) (model_serving_exporter_up{{{O}}}))", "down", instant=True),
        color=cm.BigValueColorMode.BACKGROUND).thresholds(steps((None, GREEN), (1, RED))))

    b = b.with_panel(dashed(ts(
        "Workspace limits (standard endpoints)", "percentunit",
        "Share of the workspace's limits that its standard (not route-optimized) endpoints use together: about 200 QPS "
        "and 192-1,024 concurrent requests (by region; workspace_limits in the exporter's configuration). Shards "
        "summed, each shard once (max over its replicas). Dashed: the threshold of the workspace_limit_near hint and "
        "ModelServingWorkspaceLimitNear. Whole workspace: the endpoint variable does not apply.",
        query("sum by (workspace, limit) (max by (workspace, limit, shard_index) (model_serving_workspace_limit_usage_ratio))",
              "{{workspace}} {{limit}}"),
        query("max(model_serving_workspace_limit_usage_ratio_threshold)", "threshold", ref="B"), w=24, h=7), "threshold")
        .min(0))

    b = b.with_row(db.Row("Per endpoint"))
    b = b.with_panel(endpoints_table())

    b = b.with_row(db.Row("Worst endpoints"))
    b = b.with_panel(bars("Highest P99 latency", "s", "Top 5 endpoints by P99 latency over the analysis window.",
                          f'topk(5, max by (workspace, serving_endpoint) (model_serving_latency_seconds{{{OW}, percentile="p99"}}))',
                          steps((None, GREEN), (0.5, RED))))
    b = b.with_panel(bars("Highest error ratio", "percentunit", "Top 5 endpoints by error ratio (4xx + 5xx).",
                          f"topk(5, max by (workspace, serving_endpoint) (model_serving_error_ratio{{{OW}}}))",
                          steps((None, GREEN), (0.01, RED))))
    b = b.with_panel(bars("Deepest queues", "short", "Top 5 endpoints by queue depth (requests waiting).",
                          f"topk(5, max by (workspace, serving_endpoint) (model_serving_queue_depth{{{OW}}}))",
                          steps((None, GREEN), (0.5, RED))))
    b = b.with_panel(bars("Highest CPU", "percentunit", "Top 5 endpoints by CPU utilisation.",
                          f"topk(5, max by (workspace, serving_endpoint) (model_serving_cpu_utilization_ratio{{{OW}}}))",
                          steps((None, GREEN), (0.8, RED))).max(1))
    b = b.with_panel(ts("P99 latency by endpoint", "s", "P99 latency of each endpoint over the analysis window.",
                        query(f'max by (workspace, serving_endpoint) (model_serving_latency_seconds{{{OW}, percentile="p99"}})',
                              "{{serving_endpoint}} {{workspace}}")))
    b = b.with_panel(ts("QPS by endpoint", "reqps", "Requests per second of each endpoint over the analysis window.",
                        query(f"max by (workspace, serving_endpoint) (model_serving_requests_per_second{{{OW}}})", "{{serving_endpoint}} {{workspace}}")))

    b = b.with_row(db.Row("Exporter health"))
    b = b.with_panel(
        statetimeline.Panel().title("Metrics fetch by endpoint").unit("none").datasource(DS).span(12).height(8)
        .description("1 (up) while the endpoint's last metrics fetch succeeded. min over replicas: any failing "
                     "replica shows DOWN.")
        .with_target(query(f"min by (workspace, serving_endpoint) (model_serving_exporter_up{{{O}}})", "{{serving_endpoint}} {{workspace}}"))
        .mappings(UP).thresholds(steps((None, RED), (1, GREEN))).show_value(cm.VisibilityMode.NEVER))
    b = b.with_panel(ts(
        "Data age by endpoint", "s",
        "Seconds since the last successful metrics fetch (freshest replica). Above 300 s (dashed) the figures "
        "are stale.",
        query(f"time() - max by (workspace, serving_endpoint) (model_serving_exporter_last_success_timestamp_seconds{{{O}}})",
              "{{serving_endpoint}} {{workspace}}"), w=12).thresholds(steps((None, GREEN), (300, RED)))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)))
    b = b.with_panel(ts(
        "Poll success ratio", "percentunit",
        "Share of workspace polls whose endpoint listing succeeded, over all replicas.",
        query('sum(rate(model_serving_exporter_polls_total{result="success"}[$__rate_interval]))'
              " / sum(rate(model_serving_exporter_polls_total[$__rate_interval]))", "success"), w=8)
        .min(0).max(1))
    b = b.with_panel(ts(
        "Fetch errors by reason", "ops",
        "Failed calls per second by endpoint, call (detail, metrics, poll) and reason, summed over replicas.",
        query(f"sum by (workspace, serving_endpoint, call, reason) (rate(model_serving_exporter_fetch_errors_total{{{O}}}[$__rate_interval]))",
              "{{serving_endpoint}} {{workspace}} {{call}} {{reason}}"), w=8))
    b = b.with_panel(ts(
        "Poll duration", "s", "Duration of the last complete workspace poll (slowest replica).",
        query("max(model_serving_exporter_poll_duration_seconds)", "poll"), w=8))
    return finish(b)


# --- endpoint ------------------------------------------------------------------------------------

def endpoint() -> dm.Dashboard:
    b = base("Serving endpoint", ENDPOINT_UID,
             "One model-serving endpoint (or one of its served entities): latency, traffic, errors, queueing, "
             "saturation, concurrency, error budget and remediation hints. Generated by dashboards/build.py.")
    b = (b.with_variable(platform_variable())
         .with_variable(workspace_variable())
         .with_variable(endpoint_variable())
         .with_variable(
            db.QueryVariable("served_entity").label("Served entity").datasource(DS)
            .description('All = the endpoint as a whole (served_entity=""); pick an entity to see only it.')
            .query('label_values(model_serving_requests_per_second{workspace=~"$workspace", serving_endpoint="$endpoint", served_entity!=""}, served_entity)')
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .include_all(True).all_value("^$")
            .current(dm.VariableOption(selected=True, text="All", value="$__all")))
         .with_variable(
            db.CustomVariable("slo").label("SLO objective").values(SLO_CHOICES)
            .description("Success-ratio objective for the error budget (0.99 = 99 % of requests without 4xx/5xx).")
            .current(dm.VariableOption(selected=True, text="0.99", value="0.99")))
         .with_variable(
            db.TextBoxVariable("docs_url").label("Docs URL").default_value(DOCS_URL)
            .description("Base URL of serving-exporter's docs/ directory, for the hint links.")
            .hide(dm.VariableHide.HIDE_VARIABLE)))

    b = b.with_row(db.Row("Status"))
    b = b.with_panel(stat_panel(
        "Targets", "none", "Each check against the endpoint's effective target (docs/metrics.md, Targets and breaches).",
        query(f"max by (check) (model_serving_target_breached{{{ES}}})", "{{check}}", instant=True),
        w=8, color=cm.BigValueColorMode.BACKGROUND).mappings(BREACH).thresholds(steps((None, GREEN), (1, RED))))
    b = b.with_panel(stat_panel(
        "Ready", "none", "model_serving_endpoint_ready: READY and every served entity deployed.",
        query(f"min(model_serving_endpoint_ready{{{E}}})", "ready", instant=True),
        color=cm.BigValueColorMode.BACKGROUND).mappings(READY).thresholds(steps((None, RED), (1, GREEN))))
    b = b.with_panel(stat_panel(
        "Metrics fetch", "none", "Last metrics fetch of this endpoint; min over replicas.",
        query(f"min(model_serving_exporter_up{{{E}}})", "fetch", instant=True),
        color=cm.BigValueColorMode.BACKGROUND).mappings(UP).thresholds(steps((None, RED), (1, GREEN))))
    b = b.with_panel(stat_panel(
        "Data age", "s", "Seconds since the last successful metrics fetch (freshest replica).",
        query(f"time() - max(model_serving_exporter_last_success_timestamp_seconds{{{E}}})", "age", instant=True))
        .thresholds(steps((None, GREEN), (180, ORANGE), (300, RED))))
    b = b.with_panel(stat_panel(
        "Active hints", "none", "Remediation hints active for this endpoint (table below).",
        query(f"count(max by (rule) (model_serving_remediation{{{E}}}))", "hints", instant=True))
        .no_value("0").thresholds(steps((None, GREEN), (1, ORANGE))))

    b = b.with_row(db.Row("Latency and traffic"))
    b = b.with_panel(dashed(ts(
        "Latency", "s",
        "P50/P90/P99 and the mean over the exporter's analysis window (model_serving_latency_seconds, "
        "model_serving_latency_mean_seconds: a server that publishes only sums and counts, such as Triton or "
        "TorchServe, has the mean alone); P99 of the synthesised histogram over $__rate_interval; the endpoint's "
        "latency targets (model_serving_target), dashed.",
        query(f"max by (percentile) (model_serving_latency_seconds{{{ES}}})", "{{percentile}}", "A"),
        query(f"histogram_quantile(0.99, max by (le) "
              f"(rate(model_serving_request_duration_seconds_bucket{{{ES}}}[$__rate_interval])))",
              "p99 (histogram, $__rate_interval)", "B"),
        query(f'max by (check) (model_serving_target{{{E}, check=~"latency_p50|latency_p90|latency_p99"}})',
              "target {{check}}", "C"),
        query(f"max(model_serving_latency_mean_seconds{{{ES}}})", "mean", "D")), "^target .*"))
    b = b.with_panel(ts(
        "Requests per second", "reqps", "QPS over the exporter's analysis window.",
        query(f"max(model_serving_requests_per_second{{{ES}}})", "QPS", "A")))

    b = b.with_row(db.Row("Errors"))
    b = b.with_panel(dashed(ts(
        "Error ratio", "percentunit",
        "Share of requests answered 4xx or 5xx (429 included), split by class; dashed: the endpoint's "
        "error_ratio target; red line: 1 %.",
        query(f"max(model_serving_error_ratio{{{ES}}})", "all errors", "A"),
        query(f"max by (class) (model_serving_error_ratio_by_class{{{ES}}})", "{{class}}", "B"),
        query(f'max(model_serving_target{{{E}, check="error_ratio"}})', "target", "C"))
        .thresholds(steps((None, GREEN), (0.01, RED)))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)), "^target$"))
    b = b.with_panel(dashed(ts(
        "Error ratio by served entity", "percentunit",
        "Each served entity of the endpoint side by side (a failing canary stands out), whatever the "
        "Served entity variable; empty when the platform does not label metrics by entity. Dashed: target.",
        query(f'max by (served_entity) (model_serving_error_ratio{{{E}, served_entity!=""}})', "{{served_entity}}", "A"),
        query(f'max(model_serving_target{{{E}, check="error_ratio"}})', "target", "B")), "^target$"))

    b = b.with_row(db.Row("Saturation"))
    b = b.with_panel(dashed(ts(
        "Queue depth", "short",
        "Requests waiting, labelled with the method behind it (model_serving_queue_depth_method): queue_time "
        "is measured from the platform's queue time, estimated comes from required vs provisioned "
        "concurrency. Dashed: the queue_depth target.",
        query(f"max by (method) (model_serving_queue_depth_method{{{ES}}} * on (workspace, serving_endpoint, served_entity) "
              f"group_left () max by (workspace, serving_endpoint, served_entity) (model_serving_queue_depth{{{ES}}}))",
              "{{method}}", "A"),
        query(f'max(model_serving_target{{{E}, check="queue_depth"}})', "target", "B"), w=8), "^target$"))
    b = b.with_panel(ts(
        "Utilisation", "percentunit", "CPU, memory, GPU and GPU memory (GPU only on GPU workloads); red line: 80 %.",
        query(f"max(model_serving_cpu_utilization_ratio{{{ES}}})", "CPU", "A"),
        query(f"max(model_serving_memory_utilization_ratio{{{ES}}})", "memory", "B"),
        query(f"max(model_serving_gpu_utilization_ratio{{{ES}}})", "GPU", "C"),
        query(f"max(model_serving_gpu_memory_utilization_ratio{{{ES}}})", "GPU memory", "D"), w=8)
        .min(0).max(1).thresholds(steps((None, GREEN), (0.8, RED)))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)))
    b = b.with_panel(dashed(ts(
        "Concurrency", "short",
        "Provisioned concurrency vs required (QPS x mean latency); dashed: the recommended min/max for the "
        "whole endpoint.",
        query(f"max(model_serving_provisioned_concurrency{{{ES}}})", "provisioned", "A"),
        query(f"max(model_serving_required_concurrency{{{ES}}})", "required", "B"),
        query(f"max by (bound) (model_serving_recommended_concurrency{{{E}}})", "recommended {{bound}}", "C"),
        w=8), "^recommended .*"))

    b = b.with_row(db.Row("LLM server"))  # self-hosted model servers; empty for endpoints whose server has none
    b = b.with_panel(dashed(ts(
        "Time to first token", "s",
        "P50/P90/P99 and mean time to first token over the exporter's analysis window (LLM servers; a server "
        "that publishes only sum and count has the mean only). Dashed: the ttft_p99 target.",
        query(f"max by (percentile) (model_serving_time_to_first_token_seconds{{{ES}}})", "{{percentile}}", "A"),
        query(f"max(model_serving_time_to_first_token_mean_seconds{{{ES}}})", "mean", "B"),
        query(f'max(model_serving_target{{{E}, check="ttft_p99"}})', "target", "C"), w=8), "^target$"))
    b = b.with_panel(dashed(ts(
        "Time per output token", "s",
        "P50/P90/P99 and mean time per output token (inter-token latency): the streaming speed. Dashed: the "
        "tpot_p99 target.",
        query(f"max by (percentile) (model_serving_time_per_output_token_seconds{{{ES}}})", "{{percentile}}", "A"),
        query(f"max(model_serving_time_per_output_token_mean_seconds{{{ES}}})", "mean", "B"),
        query(f'max(model_serving_target{{{E}, check="tpot_p99"}})', "target", "C"), w=8), "^target$"))
    b = b.with_panel(ts(
        "Tokens per second", "short", "Prompt (prefill) and generated tokens per second over the window.",
        query(f"max(model_serving_prompt_tokens_per_second{{{ES}}})", "prompt", "A"),
        query(f"max(model_serving_generation_tokens_per_second{{{ES}}})", "generated", "B"), w=8))
    b = b.with_panel(dashed(ts(
        "KV cache and preemptions", "percentunit",
        "KV-cache use of the fullest replica (window mean) and preemptions per second (right axis): a full cache "
        "preempts running sequences. Dashed: the kv_cache_utilization target.",
        query(f"max(model_serving_kv_cache_utilization_ratio{{{ES}}})", "KV cache", "A"),
        query(f'max(model_serving_target{{{E}, check="kv_cache_utilization"}})', "target", "B"),
        query(f"max(model_serving_preemptions_per_second{{{ES}}})", "preemptions/s", "C"), w=8)
        .min(0).override_by_name("preemptions/s", [prop("custom.axisPlacement", "right"), prop("unit", "short")]),
        "^target$"))
    b = b.with_panel(ts(
        "Running and waiting requests", "short",
        "Requests the model server runs and those waiting (its own counts, summed over replicas, window means), "
        "against the replicas' concurrency (provisioned).",
        query(f"max(model_serving_requests_running{{{ES}}})", "running", "A"),
        query(f'max(model_serving_queue_depth{{{ES}}} and on (workspace, serving_endpoint, served_entity) '
              f'max by (workspace, serving_endpoint, served_entity) (model_serving_queue_depth_method{{{ES}, method="server"}}))',
              "waiting", "B"),
        query(f"max(model_serving_provisioned_concurrency{{{ES}}})", "provisioned", "C"), w=8))
    b = b.with_panel(dashed(ts(
        "Replicas up", "short",
        "Each replica's last fetch (1 up, 0 down; label replica: its metrics URL) and the recommended replicas "
        "(dashed) for the busiest and quietest minute.",
        query(f"max by (replica) (model_serving_replica_up{{{E}}})", "{{replica}}", "A"),
        query(f"max by (bound) (model_serving_recommended_replicas{{{E}}})", "recommended {{bound}}", "B"), w=8),
        "^recommended .*"))

    b = b.with_row(db.Row("Error budget"))
    errors = f"sum(max by (class) (increase(model_serving_request_errors_total{{{ES}}}[$__range])))"
    requests = f"max(increase(model_serving_requests_total{{{ES}}}[$__range]))"
    b = b.with_panel(stat_panel(
        "Error budget remaining", "percentunit",
        "1 - (error ratio over the dashboard's time range) / (1 - SLO). Set the time range to the SLO period "
        "(e.g. 30 days). Below 0: budget spent.",
        query(f"1 - ({errors} / {requests}) / (1 - $slo)", "remaining", instant=True), w=6, h=8,
        color=cm.BigValueColorMode.BACKGROUND).thresholds(steps((None, RED), (0, ORANGE), (0.25, GREEN))))

    def burn(window: str) -> str:
        return (f"(sum(max by (class) (rate(model_serving_request_errors_total{{{ES}}}[{window}])))"
                f" / max(rate(model_serving_requests_total{{{ES}}}[{window}]))) / (1 - $slo)")

    b = b.with_panel(ts(
        "Error budget burn rate", "suffix:x",
        "Error ratio divided by the budget (1 - SLO): 1 spends the budget exactly over the SLO period. "
        "Lines: 1, 6 and 14.4 (the multi-window alert thresholds).",
        query(burn("$__rate_interval"), "burn rate ($__rate_interval)", "A"),
        query(burn("1h"), "burn rate (1h)", "B"), w=18, h=8)
        .thresholds(steps((None, GREEN), (1, ORANGE), (6, "dark-orange"), (14.4, RED)))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)))

    b = b.with_row(db.Row("Remediation and configuration"))
    b = b.with_panel(
        table.Panel().title("Active remediation hints").unit("none").datasource(DS).span(24).height(7)
        .description("Hints active now (model_serving_remediation). Click a rule for what to do "
                     "(docs/remediation.md#<rule>) or the alert runbooks (docs/runbooks.md); the details with "
                     "this endpoint's numbers: /api/v1/endpoints or `serving-exporter recommend`.")
        .with_target(table_query(f"max by (rule, severity) (model_serving_remediation{{{E}}})", "A"))
        .with_transformation(organize(["Time", "Value"], {"rule": 0, "severity": 1}))
        .no_value("no active hints")
        .override_by_name("rule", [prop("displayName", "Rule"), prop("links", [
            link("What to do: ${__value.raw}", "${docs_url}/remediation.md#${__value.raw}"),
            link("Runbooks (alerts)", "${docs_url}/runbooks.md")])])
        .override_by_name("severity", [prop("displayName", "Severity"), prop("mappings", SEVERITY),
                                       prop("custom.cellOptions", {"type": "color-text"})]))
    b = b.with_panel(
        table.Panel().title("Endpoint configuration").unit("none").datasource(DS).span(12).height(6)
        .description("model_serving_endpoint_info: platform, id, workload type, route optimization, "
                     "scale-to-zero, task and kind.")
        .with_target(table_query(
            "max by (platform, endpoint_id, workload_type, route_optimized, scale_to_zero, task, kind) "
            f"(model_serving_endpoint_info{{{E}}})", "A"))
        .with_transformation(organize(["Time", "Value"])))
    b = b.with_panel(
        table.Panel().title("Served entities").unit("none").datasource(DS).span(12).height(6)
        .description("model_serving_served_entity_info: each served entity's model, version, workload and "
                     "deployment state.")
        .with_target(table_query(
            "max by (served_entity, entity_name, entity_version, workload_type, workload_size, deployment_state) "
            f"(model_serving_served_entity_info{{{E}}})", "A"))
        .with_transformation(organize(["Time", "Value"])))
    return finish(b)


# --- output --------------------------------------------------------------------------------------

DASHBOARDS = {"overview.json": overview, "endpoint.json": endpoint}


def to_json(board: dm.Dashboard) -> str:
    return json.dumps(board, cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def iter_panels(board: dict[str, Any]):
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def docs(boards: dict[str, dict[str, Any]]) -> str:
    out = [DOC_HEAD]
    for name, board in boards.items():
        out.append(f"### {board['title']} (`dashboards/grafana/{name}`, uid `{board['uid']}`)\n\n{board['description']}\n")
        out.append("Variables:\n")
        for var in board["templating"]["list"]:
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            detail = f" `{q}`" if var["type"] == "query" else f" ({var['type']}"
            detail += "" if var["type"] == "query" else (f": `{q}`)" if q else ")")
            if var.get("allValue"):
                detail += f", All = `{var['allValue']}`"
            out.append(f"- `{var['name']}`{detail}. {var.get('description', '')}".rstrip())
        out.append("")
        for panel in iter_panels(board):
            if panel["type"] == "row":
                out.append(f"#### Row: {panel['title']}\n")
                continue
            unit = panel["fieldConfig"]["defaults"]["unit"]
            out.append(f"**{panel['title']}** ({panel['type']}, unit `{unit}`). {panel.get('description', '')}\n")
            overrides = {o["matcher"]["options"]: o["properties"] for o in panel["fieldConfig"].get("overrides", [])}
            for target in panel.get("targets", []):
                label = target.get("legendFormat") or next(
                    (p["value"] for p in overrides.get(f"Value #{target['refId']}", []) if p["id"] == "displayName"),
                    target["refId"])
                out.append(f"- {label}: `{target['expr']}`")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


DOC_HEAD = """# Dashboards

<!-- Generated by `python dashboards/build.py` from dashboards/build.py; tests check it is current. -->

Two Grafana dashboards, written in Python with
[grafana-foundation-sdk](https://github.com/grafana/grafana-foundation-sdk) (the `dashboards` extra in
pyproject.toml pins the build) and committed as JSON under `dashboards/grafana/`:

- **Serving fleet overview** (`overview.json`): every endpoint in one table with its status against each
  target, P99, QPS, error ratio, queue depth, CPU and memory and its active hint count; fleet totals; the
  worst endpoints; the exporter's own health. Each endpoint name links to the endpoint dashboard.
- **Serving endpoint** (`endpoint.json`): one endpoint or served entity in detail, with the error budget
  and the active remediation hints.

## Importing

Import both JSON files in Grafana (Dashboards > New > Import), or provision them from
`dashboards/grafana/` with a file provider. Pick the Prometheus-compatible data source in the
`Data source` variable; nothing refers to a fixed data source. Set the hidden `docs_url` variable (or
the `DOCS_URL` constant in build.py) to where this repository's `docs/` is browsable, so the hint
links resolve. To change a dashboard, edit `dashboards/build.py` and run it; do not edit the JSON.

```sh
pip install -e '.[dashboards]'
python dashboards/build.py           # regenerate the JSON and this page
python dashboards/build.py --check   # what CI checks: the committed files are current
```

## How the queries are written

- **Raw exporter metrics only.** No recording rules are needed (docs/metrics.md lists the families).
- **Replicas and long-term stores.** Every query aggregates `by` the labels it shows: `max` for
  gauges and for rates of the synthesised counters, so two exporter replicas polling the same
  workspace are not counted twice and an endpoint served by one shard of several is still found;
  `min` for `model_serving_exporter_up` where one failing replica should show. No query names a
  `job` or `instance`, and no result carries one, so the dashboards work unchanged on Prometheus,
  Thanos and Mimir.
- **Platform and endpoint variables.** Both dashboards have a `platform` variable (the `platform`
  label of `model_serving_endpoint_info`: `databricks` today) and an `endpoint` variable listing the
  endpoints of the selected platforms. Queries select on the exporter's `serving_endpoint` label;
  the variable keeps the shorter name, so links use `var-endpoint=<name>`. On the overview, the
  endpoint variable's *All* stands for the listed endpoints (no `.*` shortcut), so picking a platform
  narrows every panel.
- **Workspace variable.** An endpoint is its `workspace` and `serving_endpoint` labels together: two
  Databricks workspaces in one exporter may each have an endpoint `chat`. Both dashboards have a
  `workspace` variable (All: `.*`, which also matches the self-hosted endpoints, which have none);
  every query selects on it and every aggregation keeps `workspace` beside `serving_endpoint`, so
  namesakes never merge. The overview's endpoint links carry `var-workspace`.
- **Endpoint versus served entity.** `served_entity=""` is the endpoint as a whole. The overview
  always selects it. On the endpoint dashboard the `served_entity` variable's *All* value is the regex
  `^$`, which selects exactly that row; picking an entity selects only that entity. The two are never
  summed together.
- **Range windows.** The synthesised counters step once per source minute, so a rate needs a window
  of several minutes. Rates use Grafana's `$__rate_interval`, which is at least four times the data
  source's *Scrape interval* setting: set that to the real scrape interval (60 s suits this exporter)
  and the windows are at least 4 minutes. The error budget uses `$__range`, the dashboard's time
  range, which should be the SLO period; the burn-rate panel adds a fixed 1 h window.
- **Error budget.** The objective is the `slo` variable (default 0.99). Burn rate = error ratio /
  (1 - objective); budget remaining = 1 - burn rate over the time range. Errors are 4xx (429
  included) and 5xx, as in `model_serving_error_ratio`.

## Tests

`tests/test_dashboards.py` checks that `build.py` reproduces the committed JSON and this page, that
the JSON round-trips through the SDK's own model (`Dashboard.from_json`), that every panel has a
title and a unit and uses the `datasource` variable, and, against a real Prometheus scraping the
demo (twice, as two replicas), that every panel and variable query, with the variables substituted,
parses and returns at least one series, that every metric selector matches data, that every label a
query groups by, joins on, matches or shows in a legend exists on its metrics, and that no result
carries a replica label.

## Panels and queries
"""


def render() -> dict[Path, str]:
    boards = {name: build() for name, build in DASHBOARDS.items()}
    files = {HERE / "grafana" / name: to_json(board) for name, board in boards.items()}
    files[REPO / "docs" / "dashboards.md"] = docs({name: json.loads(text) for name, text in
                                                   zip(boards, files.values())})
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file is not current")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.relative_to(REPO))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        print("stale (run python dashboards/build.py): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
