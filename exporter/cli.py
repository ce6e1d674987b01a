"""Command line: `serving-exporter run | demo | simulate | recommend | loadtest | check | datadog | check-config`."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

import yaml

from . import __version__
from .config import DEFAULT_PORT, ConfigError, Settings, load_settings
from .logs import setup_logging

DESCRIPTION = """\
Polls ML model-serving endpoints (Databricks Model Serving), computes latency
percentiles, QPS, error ratio, queue depth, utilisation and concurrency per
endpoint, checks them against production targets, and exposes the result on
/metrics (Prometheus) and /api/v1/endpoints (JSON).
"""

RUN_EPILOG = f"""\
configuration (lowest to highest priority): built-in defaults, the YAML file
(--config or SERVING_EXPORTER_CONFIG_FILE), environment variables
SERVING_EXPORTER_<KEY> (nested keys joined by '__', e.g.
SERVING_EXPORTER_TARGETS__LATENCY_P99_SECONDS=0.3), then these flags. Unknown
keys are errors. See docs/configuration.md for every key.

credentials (read by the Databricks SDK, never by a flag):
  DATABRICKS_HOST + DATABRICKS_TOKEN                personal access token
  DATABRICKS_HOST + DATABRICKS_CLIENT_ID/SECRET     OAuth M2M service principal
  DATABRICKS_CONFIG_PROFILE                         profile in ~/.databrickscfg

self-hosted model servers (docs/self-hosted.md): the `self_hosted.endpoints` key
(or SERVING_EXPORTER_SELF_HOSTED as JSON) lists vLLM, TGI, Triton, MLServer, KServe,
TorchServe, Ray Serve or BentoML replicas by URL, DNS name or file_sd file. With
no Databricks host or profile configured, only those are polled; with both, both.

endpoints: /metrics, /healthz, /readyz, /api/v1/endpoints (default port {DEFAULT_PORT}),
  and POST /-/reload with --web.enable-lifecycle

reload: SIGHUP (or POST /-/reload) reads the configuration and the web configuration
file again. A valid one applies from the next poll; an invalid one is logged and
the running one stays (model_serving_exporter_config_last_reload_successful 0).
listen, timeouts, pools, window length, shards, series budget, databricks,
self_hosted and datadog need a restart: a reload that changes them is refused.

datadog (docs/datadog.md): DD_API_KEY turns the Datadog sink on; DD_SITE
(default datadoghq.com) or SERVING_EXPORTER_DATADOG_URL say where it sends.
"""


LOADTEST_EPILOG = """\
credentials (the exporter's: read by the Databricks SDK, never by a flag):
  DATABRICKS_HOST + DATABRICKS_TOKEN                personal access token (not for route-optimized endpoints)
  DATABRICKS_HOST + DATABRICKS_CLIENT_ID/SECRET     OAuth M2M, refreshed during the run
  DATABRICKS_CONFIG_PROFILE                         profile in ~/.databrickscfg

exit status: 0 a knee was found; 1 no step met the targets, or the endpoint or the
run failed; 2 bad flags, or the load was not confirmed (--yes).
"""


DATADOG_EPILOG = """\
credentials (environment only, never flags or files):
  DD_API_KEY, DD_APP_KEY     API and application key (both needed; not for --dry-run)
  DD_SITE                    datadoghq.com (default), datadoghq.eu, us3.datadoghq.com, ...
  SERVING_EXPORTER_DATADOG_URL   explicit API base URL (proxy, test API) instead of DD_SITE
"""


CHECK_EPILOG = """\
credentials, without --exporter (read by the Databricks SDK, as for `run`):
  DATABRICKS_HOST + DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID/SECRET, or DATABRICKS_CONFIG_PROFILE

exit status:
  0  no finding at or above --fail-on
  1  findings at or above --fail-on
  2  bad arguments, bad configuration, or the workspace or exporter could not be read

examples:
  serving-exporter check --exporter http://127.0.0.1:9877 --format junit > check.xml
  serving-exporter check recommender --expected-qps 120 --expected-latency-ms 150   # before traffic
"""


def _web(parser: argparse.ArgumentParser, lifecycle: bool = True) -> None:
    parser.add_argument("--web.config.file", dest="web_config_file", metavar="FILE",
                        help="TLS, basic auth and response headers for every HTTP path, in the Prometheus "
                             "exporter-toolkit web configuration format (docs/configuration.md, Web configuration)")
    if lifecycle:
        parser.add_argument("--web.enable-lifecycle", dest="web_enable_lifecycle", action="store_true",
                            help="serve POST /-/reload, which reloads the configuration as SIGHUP does "
                                 "(without it: 403, as Prometheus)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log verbosity (default INFO; env SERVING_EXPORTER_LOG_LEVEL)")
    parser.add_argument("--log-format", choices=["text", "json"],
                        help="log line format (default text; env SERVING_EXPORTER_LOG_FORMAT)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serving-exporter", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    run = sub.add_parser("run", help="run the exporter daemon against a Databricks workspace",
                         description="Run the exporter daemon against a Databricks workspace.",
                         epilog=RUN_EPILOG, formatter_class=raw)
    run.add_argument("--config", metavar="FILE", help="YAML configuration file (env SERVING_EXPORTER_CONFIG_FILE)")
    run.add_argument("--listen", metavar="HOST:PORT", help=f"address for HTTP: the status page at /, /metrics, /api/v1/endpoints (default 0.0.0.0:{DEFAULT_PORT})")
    run.add_argument("--poll-interval", type=float, metavar="SECONDS",
                     help="seconds between polls (default 60; the platform refreshes once a minute)")
    run.add_argument("--shard-index", type=int, metavar="I",
                     help="this replica's share of the endpoints, 0..N-1 (env SERVING_EXPORTER_SHARD_INDEX; default: "
                          "the ordinal ending HOSTNAME, as in a StatefulSet pod name)")
    run.add_argument("--shard-count", type=int, metavar="N",
                     help="number of replicas splitting the endpoints by a stable hash of their names "
                          "(env SERVING_EXPORTER_SHARD_COUNT; default 1)")
    run.add_argument("--once", action="store_true",
                     help="poll once, print /api/v1/endpoints JSON to stdout and exit (no HTTP server)")
    _web(run)
    _common(run)

    demo = sub.add_parser("demo", help="run the built-in demo workspace and the exporter against it (no credentials)",
                          description=textwrap.dedent("""\
                              Start the simulated demo workspace and the exporter polling it, in one process.
                              No credentials needed. Runs until interrupted (Ctrl-C / SIGTERM)."""),
                          formatter_class=raw)
    demo.add_argument("--listen", metavar="HOST:PORT", default=f"127.0.0.1:{DEFAULT_PORT}",
                      help=f"exporter address (default 127.0.0.1:{DEFAULT_PORT})")
    demo.add_argument("--simulator-listen", metavar="HOST:PORT", default="127.0.0.1:0",
                      help="demo workspace address (default 127.0.0.1 on a free port)")
    demo.add_argument("--minute-seconds", type=float, default=5.0, metavar="SECONDS",
                      help="real seconds per simulated minute; the exporter polls at this pace (default 5)")
    demo.add_argument("--config", metavar="FILE", help="optional YAML configuration (targets, filters, ...)")
    _web(demo)
    _common(demo)

    simulate = sub.add_parser("simulate", help="run only the demo workspace (a fake Databricks API) and model servers",
                              description=textwrap.dedent("""\
                                  Serve the simulated demo workspace alone: the Databricks serving-endpoints REST API,
                                  per-endpoint /metrics, OAuth (/oidc/v1/token) and a control API under /simulator/v1/;
                                  and the demo's simulated self-hosted model servers (vLLM, Triton), each replica's
                                  /metrics on its own port. Point `serving-exporter run` at them with
                                  DATABRICKS_HOST=<url>, the printed token and SERVING_EXPORTER_SELF_HOSTED."""),
                              formatter_class=raw)
    simulate.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:9878",
                          help="address (default 127.0.0.1:9878)")
    simulate.add_argument("--minute-seconds", type=float, default=60.0, metavar="SECONDS",
                          help="real seconds per simulated minute (default 60, like the real platform)")
    simulate.add_argument("--endpoints", type=int, default=0, metavar="N",
                          help="serve N synthetic endpoints instead of the demo set (for load tests)")
    _common(simulate)

    rec = sub.add_parser("recommend", help="print recommended provisioned concurrency and active remediation hints",
                         description=textwrap.dedent("""\
                             Print, per endpoint, the provisioned-concurrency settings the data supports (min for the
                             baseline, max for the observed peak with headroom) and the remediation hints.
                             With --exporter, read a running exporter's window and hints (recommended). Without it, poll
                             the workspace once: one source minute, hint conditions shown without hysteresis."""),
                         formatter_class=raw)
    rec.add_argument("endpoint", nargs="?", metavar="ENDPOINT", help="only this endpoint (default: all)")
    rec.add_argument("--exporter", metavar="URL", help="base URL of a running exporter, e.g. http://127.0.0.1:9877")
    rec.add_argument("--config", metavar="FILE", help="YAML configuration for the one-shot poll (targets, thresholds)")
    rec.add_argument("--json", action="store_true", help="print JSON instead of text")
    _common(rec)

    lt = sub.add_parser("loadtest", help="find an endpoint's knee with a stepped load test, and the provisioned concurrency to set",
                        description=textwrap.dedent("""\
                            Send the payload to the endpoint from a stepped ramp of concurrent clients (Locust), measure
                            per step the throughput, P50/P90/P99 latency, error and 429 shares, find the knee (the highest
                            step meeting the latency targets with errors under the error-ratio target) and derive the
                            provisioned concurrency to configure (QPS x service time + the headroom `recommend` uses).
                            Writes report.txt, report.json, steps.csv and chart.png. This is real, billed traffic: it
                            prints the plan first and needs --yes or a confirmation at the terminal. See docs/loadtest.md."""),
                        epilog=LOADTEST_EPILOG, formatter_class=raw)
    lt.add_argument("endpoint", metavar="ENDPOINT",
                    help="a Databricks serving endpoint name, or the http(s) URL to POST to (a self-hosted server)")
    lt.add_argument("--payload", metavar="FILE", required=True, help="JSON request body each client sends (the invocations format)")
    lt.add_argument("--start-users", type=int, default=1, metavar="N", help="concurrent clients of the first step (default 1)")
    lt.add_argument("--step-users", type=int, default=1, metavar="N", help="clients added at each step (default 1)")
    lt.add_argument("--max-users", type=int, default=16, metavar="N",
                    help="clients of the last step (default 16; at most 1024)")
    lt.add_argument("--step-seconds", type=float, default=60.0, metavar="SECONDS",
                    help="length of each step (default 60: one platform minute per step in the endpoint's metrics)")
    lt.add_argument("--max-duration", type=float, default=1800.0, metavar="SECONDS",
                    help="refuse a plan longer than this, and cut the run there (default 1800)")
    lt.add_argument("--stop-error-ratio", type=float, default=0.05, metavar="RATIO",
                    help="stop after the first step whose error share (429 included) is above this (default 0.05)")
    lt.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="timeout of one request (default 60)")
    lt.add_argument("--baseline-qps", type=float, metavar="QPS",
                    help="production baseline traffic, for the recommended minimum (default: the knee's throughput)")
    lt.add_argument("--peak-qps", type=float, metavar="QPS",
                    help="production peak traffic, for the recommended maximum (default: the knee's throughput)")
    lt.add_argument("--auth", choices=["auto", "databricks", "none"], default="auto",
                    help="credentials: auto (default) = Databricks for a name, none for a URL; databricks = the SDK's "
                         "credentials for a URL too")
    lt.add_argument("--out", metavar="DIR", help="directory for the reports (default ./loadtest-ENDPOINT-<time>)")
    lt.add_argument("--yes", action="store_true", help="send the load without asking (needed when there is no terminal)")
    lt.add_argument("--config", metavar="FILE",
                    help="YAML configuration: the latency and error-ratio targets and remediation.thresholds.headroom_ratio "
                         "(env SERVING_EXPORTER_CONFIG_FILE)")
    _common(lt)

    dd = sub.add_parser("datadog", help="create or update the Datadog monitors and dashboard (docs/datadog.md)",
                        description=textwrap.dedent("""\
                            Monitors and the dashboard as code: sync alerts/datadog/monitors.yaml and
                            dashboards/datadog/model-serving.json to Datadog, idempotently."""),
                        epilog=DATADOG_EPILOG, formatter_class=raw)
    dd_sub = dd.add_subparsers(dest="datadog_command", required=True, metavar="ACTION")
    monitors = dd_sub.add_parser("sync-monitors", help="create or update the managed monitors",
                                 description=textwrap.dedent("""\
                                     Create the monitors of the file that are missing in Datadog and update those that
                                     differ, matched by their tag serving-exporter-monitor:<id> (all carry
                                     managed-by:serving-exporter). Prints the plan first; a second run changes nothing."""),
                                 epilog=DATADOG_EPILOG, formatter_class=raw)
    monitors.add_argument("--dry-run", action="store_true",
                          help="print the plan (create / update / unchanged) and change nothing; reads Datadog when the keys are set")
    monitors.add_argument("--prune", action="store_true",
                          help="also delete managed monitors that are no longer in the file (default: report them)")
    monitors.add_argument("--file", metavar="FILE", help="monitor definitions (default alerts/datadog/monitors.yaml)")
    dashboard = dd_sub.add_parser("sync-dashboard", help="create or update the model-serving dashboard",
                                  description=textwrap.dedent("""\
                                      Create the dashboard, or update the one whose description carries the file's
                                      [serving-exporter:dashboard=<id>] marker when it differs. A second run changes nothing."""),
                                  epilog=DATADOG_EPILOG, formatter_class=raw)
    dashboard.add_argument("--dry-run", action="store_true",
                           help="print whether the dashboard would be created, updated or left unchanged; change nothing")
    dashboard.add_argument("--file", metavar="FILE", help="dashboard JSON (default dashboards/datadog/model-serving.json)")
    for action in (monitors, dashboard):
        action.add_argument("--config", metavar="FILE", help="YAML configuration (for datadog_url; env SERVING_EXPORTER_CONFIG_FILE)")
        _common(action)

    check = sub.add_parser("check-config", help="validate the configuration and print the effective settings",
                           description="Validate configuration from file, environment and flags; print it as YAML.")
    check.add_argument("--config", metavar="FILE", help="YAML configuration file")
    _web(check, lifecycle=False)

    chk = sub.add_parser("check", help="production-readiness audit for CI and cron: exit 1 on findings (docs/check.md)",
                         description=textwrap.dedent("""\
                             Audit endpoints against the serving guide's production checklist (docs/check.md): scale-to-zero
                             in production, min/max provisioned concurrency against the traffic, autoscaling, route
                             optimization, the per-entity concurrency limit, GPU/CPU fit, AI Gateway rate limits, latency
                             targets, deployment state, and the workspace's limits on standard endpoints. Each finding has
                             its numbers and the fix. The traffic is a running exporter's window (--exporter), else one
                             poll of the workspace, or what you expect (--expected-*: sizing before traffic)."""),
                         epilog=CHECK_EPILOG, formatter_class=raw)
    chk.add_argument("endpoint", nargs="*", metavar="ENDPOINT", help="only these endpoints (default: all)")
    chk.add_argument("--exporter", metavar="URL", help="base URL of a running exporter, e.g. http://127.0.0.1:9877 "
                                                        "(its analysis window; without it: one poll of the workspace)")
    chk.add_argument("--config", metavar="FILE", help="YAML configuration: thresholds (remediation.thresholds); for the "
                                                     "one-shot poll also the targets, workspace_limits and the workspace "
                                                     "(--exporter brings the exporter's)")
    chk.add_argument("--expected-qps", type=float, metavar="N", help="expected requests per second of the ENDPOINT(s) "
                                                                    "(sizing before traffic; needs --expected-latency-ms)")
    chk.add_argument("--expected-latency-ms", type=float, metavar="M", help="expected mean latency per request in ms")
    chk.add_argument("--expected-peak-qps", type=float, metavar="P", help="expected peak requests per second "
                                                                         "(default: --expected-qps)")
    chk.add_argument("--expected", metavar="FILE", help="YAML of expected traffic per endpoint: "
                                                       "endpoints: {NAME: {qps: N, latency_ms: M, peak_qps: P}}")
    chk.add_argument("--format", choices=["text", "json", "junit"], default="text",
                     help="text (default), json (docs/check.schema.json) or junit (JUnit XML: a test case per endpoint "
                          "and check)")
    chk.add_argument("--fail-on", choices=["critical", "warning", "info"], default="warning",
                     help="exit 1 when a finding has this severity or a higher one (default warning)")
    _common(chk)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.load_settings = lambda: settings_of(args)  # a reload reads them again as here (exporter/daemon.py)
    args.web_config = None
    try:
        settings = settings_of(args)
        if getattr(args, "web_config_file", None):
            from .sinks.webconfig import load_web_config

            args.web_config = load_web_config(args.web_config_file)  # checked completely before anything starts
    except ConfigError as exc:
        print(f"serving-exporter: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        effective = settings.model_dump(mode="json")
        # In an override only the keys written there apply (null disables a check): print just those.
        effective["target_overrides"] = [{"match": o.match.model_dump(mode="json", exclude_defaults=True),
                                          "targets": o.targets.model_dump(mode="json", exclude_unset=True)}
                                         for o in settings.target_overrides]
        effective["remediation"]["overrides"] = [{"match": o.match.model_dump(mode="json", exclude_defaults=True),
                                                  "disabled": o.disabled,
                                                  "thresholds": o.thresholds.model_dump(mode="json", exclude_unset=True)}
                                                 for o in settings.remediation.overrides]
        print(yaml.safe_dump(effective, sort_keys=False), end="")
        return 0
    setup_logging(settings.log_level, settings.log_format)
    from . import commands  # heavy imports only once the configuration is known to be good

    handlers = {"run": commands.run, "demo": commands.demo, "simulate": commands.simulate, "recommend": commands.recommend,
                "loadtest": commands.loadtest, "check": commands.check, "datadog": commands.datadog}
    return handlers[args.command](args, settings)


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings the command line, the environment and the file give (again, on a reload)."""
    import os

    config_file = getattr(args, "config", None) or os.environ.get("SERVING_EXPORTER_CONFIG_FILE")
    overrides: dict[str, Any] = {
        "log_level": getattr(args, "log_level", None),
        "log_format": getattr(args, "log_format", None),
        "poll_interval_seconds": getattr(args, "poll_interval", None),
    }
    if args.command == "run":
        overrides.update(listen=args.listen, shard_index=args.shard_index, shard_count=args.shard_count)
    elif args.command == "demo":
        overrides.update(listen=args.listen, poll_interval_seconds=args.minute_seconds)
    if args.command == "recommend" and args.exporter:
        config_file = None  # the running exporter has its own configuration
    if args.command == "simulate":
        config_file = None  # the simulator has no exporter settings
    return load_settings(config_file, overrides)


if __name__ == "__main__":
    sys.exit(main())
