"""The long-running commands behind the CLI."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import requests

from .config import ConfigError, Settings, parse_listen
from .daemon import Daemon, run_until_signalled
from .model import Snapshot
from .pipeline.poller import Poller
from .pipeline.rules import conditions_now
from .pipeline.workspace import WorkspaceAnalysis
from .sinks import SnapshotSink
from .sinks.http import snapshot_json
from .sinks.webconfig import WebConfig
from .sources import Source
from .sources.composite import CompositeSource
from .sources.databricks import DatabricksSource, client_factory
from .sources.databricks.sdk import SdkClient
from .sources.selfhosted import SelfHostedSource
from .sources.selfhosted.settings import SelfHostedSettings

log = logging.getLogger(__name__)


def databricks_source(settings: Settings, name: str | None = None,
                      auth: Callable[[], Mapping[str, object]] | None = None, **fixed: object) -> DatabricksSource:
    """The Databricks source as `run` builds it: timeouts, retry budget, pool and caps from the settings.
    `name`: the workspace label (default: its host). `auth`: the SDK configuration, read each time the client
    is built (a `workspaces:` entry reads its environment variables then); else `fixed` keyword arguments."""
    def factory() -> SdkClient:
        return client_factory(settings.request_timeout_seconds, settings.retry_budget_seconds,
                              settings.max_concurrent_requests, **(auth() if auth else fixed))()

    return DatabricksSource(factory, timeout_s=settings.request_timeout_seconds,
                            retry_budget_s=settings.retry_budget_seconds, pool_size=settings.max_concurrent_requests,
                            max_entities=settings.max_served_entities, name=name)


def workspace_sources(settings: Settings, environ: Mapping[str, str] = os.environ) -> list[DatabricksSource]:
    """One source per entry of `workspaces:`, each with its own client, credentials and API usage: one failing
    workspace (unreachable, credentials missing or rejected) fails its own listing only."""
    return [databricks_source(settings, name=w.name, auth=functools.partial(w.auth, environ))
            for w in settings.workspaces]


def databricks_configured(settings: Settings, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a Databricks workspace is configured: a host or profile in the settings or the SDK's variables."""
    return bool(settings.databricks.host or settings.databricks.profile or environ.get("DATABRICKS_HOST")
                or environ.get("DATABRICKS_CONFIG_PROFILE"))


def build_source(settings: Settings, environ: Mapping[str, str] = os.environ) -> Source:
    """Databricks only (the default, also with nothing configured: the SDK then says what is missing; one source
    per `workspaces:` entry, or the one workspace of `databricks:`), self-hosted only (self_hosted.endpoints set
    and no workspace configured), or all of them as one source."""
    sources: list[Source] = list(workspace_sources(settings, environ))
    if not sources and (databricks_configured(settings, environ) or not settings.self_hosted.endpoints):
        sources.append(databricks_source(settings, host=settings.databricks.host, profile=settings.databricks.profile))
    if settings.self_hosted.endpoints:
        sources.append(selfhosted_source(settings))
    return sources[0] if len(sources) == 1 else CompositeSource(sources)


def _poll_once(settings: Settings) -> Snapshot | None:
    """One poll of the configured endpoints, or None (reported on stderr) if they could not be listed."""
    source = build_source(settings)
    poller = Poller(source, settings)
    try:
        snap = poller.poll()
    finally:
        poller.close()
    if not snap.ready:
        print(f"serving-exporter: listing endpoints failed: {poller.last_list_error}", file=sys.stderr)
        return None
    return WorkspaceAnalysis(settings).apply(snap, immediate=True)  # one poll: no hysteresis


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.once:
        snap = _poll_once(settings)
        if snap is None:
            return 1
        print(json.dumps(snapshot_json(snap), indent=1))
        return 0
    sinks = _sinks(settings)
    if sinks is None:
        return 2
    daemon = Daemon(settings, build_source(settings), sinks=sinks, **_reloadable(args)).start()
    run_until_signalled(daemon.stop, daemon.reload)
    return 0


def selfhosted_source(settings: Settings, clock: Callable[[], float] = time.time) -> SelfHostedSource:
    """The self-hosted source as `run` builds it: timeouts, pool and entity cap from the settings."""
    return SelfHostedSource(settings.self_hosted, timeout_s=settings.request_timeout_seconds,
                            pool_size=settings.max_concurrent_requests, max_entities=settings.max_served_entities,
                            clock=clock)


def _reloadable(args: argparse.Namespace) -> dict:
    """The Daemon's web configuration and how it reads its settings again (both from the CLI: exporter/cli.py)."""
    return {"web": args.web_config, "load": args.load_settings, "lifecycle": args.web_enable_lifecycle}


def build_sinks(settings: Settings, environ: Mapping[str, str] = os.environ) -> list[SnapshotSink]:
    """The push sinks the environment turns on (Datadog: DD_API_KEY). Raises ConfigError for unusable settings."""
    from .sinks.datadog.sink import build  # imports datadog-api-client only when asked for

    sink = build(settings, environ)
    return [sink] if sink is not None else []


def _sinks(settings: Settings) -> list[SnapshotSink] | None:
    """The push sinks the environment turns on, or None after reporting a problem."""
    try:
        return build_sinks(settings)
    except ConfigError as exc:
        print(f"serving-exporter: {exc}", file=sys.stderr)
        return None


def datadog(args: argparse.Namespace, settings: Settings) -> int:
    """`datadog sync-monitors | sync-dashboard` (exporter/datadog_sync.py)."""
    from pathlib import Path

    from .sinks.datadog.sync import DEFAULT_DASHBOARD, DEFAULT_MONITORS, SyncError, api_client, sync_dashboard, sync_monitors

    try:
        api = api_client(settings, required=not args.dry_run)
        if args.datadog_command == "sync-monitors":
            return sync_monitors(api, Path(args.file) if args.file else DEFAULT_MONITORS, args.dry_run, args.prune)
        return sync_dashboard(api, Path(args.file) if args.file else DEFAULT_DASHBOARD, args.dry_run)
    except SyncError as exc:
        print(f"serving-exporter: {exc}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"serving-exporter: {exc}", file=sys.stderr)
        return 2


def loadtest(args: argparse.Namespace, settings: Settings) -> int:
    """`loadtest` (exporter/loadtest/): Locust runs in a child process, never in this one."""
    from .loadtest.command import run as run_loadtest

    return run_loadtest(args, settings)


def recommend(args: argparse.Namespace, settings: Settings) -> int:
    if args.exporter:
        doc = _exporter_document(args.exporter, settings)
        if doc is None:
            return 1
        endpoints = doc["endpoints"]
    else:
        snap = _poll_once(settings)
        if snap is None:
            return 1
        endpoints = snapshot_json(snap)["endpoints"]
        by_name = {r.info.name: r for r in snap.endpoints}
        for entry in endpoints:  # one poll is too short for hysteresis: show the conditions that hold now
            r = by_name[entry["name"]]
            held = conditions_now(settings.remediation, r.info, r.endpoint.figures, r.endpoint.checks,
                                  settings.targets_for(r.info), r.replicas)
            entry["hints"] = [{"id": rule.id, "severity": rule.severity, "summary": rule.summary, "detail": detail,
                               "since": None} for rule, detail in held]
    if args.endpoint:
        endpoints = [e for e in endpoints if e["name"] == args.endpoint]
        if not endpoints:
            print(f"serving-exporter: no endpoint named {args.endpoint!r}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps([{k: e[k] for k in ("name", "recommendation", "hints")} for e in endpoints], indent=1))
    else:
        print(format_recommendations(endpoints), end="")
    return 0


def _exporter_document(url: str, settings: Settings) -> dict | None:
    """A running exporter's /api/v1/endpoints, or None (reported on stderr) if it cannot be read."""
    try:
        resp = requests.get(url.rstrip("/") + "/api/v1/endpoints", timeout=settings.request_timeout_seconds)
        resp.raise_for_status()
        doc = resp.json()
        doc["endpoints"]  # noqa: B018 - the one key every reader needs
        return doc
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        print(f"serving-exporter: cannot read {url}/api/v1/endpoints: {exc}", file=sys.stderr)
        return None


def check(args: argparse.Namespace, settings: Settings) -> int:
    """`check`: the production-readiness audit (exporter/check.py). Exit 0 clean, 1 findings at or above
    --fail-on, 2 bad arguments or the workspace (or exporter) could not be read."""
    from .check import FORMATS, Expected, audit, exporter_limits, read_expected

    expected: dict[str, Expected] = {}
    try:
        if args.expected:
            expected.update(read_expected(args.expected))
        if args.expected_qps is not None or args.expected_latency_ms is not None or args.expected_peak_qps is not None:
            if args.expected_qps is None or args.expected_latency_ms is None or not args.endpoint:
                raise ConfigError(["--expected-qps and --expected-latency-ms go together, with the ENDPOINT(s) they "
                                   "describe (for several endpoints with different traffic: --expected FILE)"])
            for name in args.endpoint:
                expected[name] = Expected(qps=args.expected_qps, latency_ms=args.expected_latency_ms,
                                          peak_qps=args.expected_peak_qps)
    except ValueError as exc:  # pydantic's ValidationError included
        print(f"serving-exporter: invalid expected traffic: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"serving-exporter: {exc}", file=sys.stderr)
        return 2
    if args.exporter:
        doc = _exporter_document(args.exporter, settings)
        source = f"{args.exporter} (the exporter's window)"
    else:
        snap = _poll_once(settings)
        doc = snapshot_json(snap) if snap is not None else None
        source = f"{doc['workspace'] or 'the workspace'} (one poll)" if doc else ""
    if doc is None:
        return 2
    shard = doc.get("shard") or {}
    try:
        # A running exporter's limits, like its targets, are the ones that apply.
        limits = exporter_limits(doc) if args.exporter else None
        result = audit(doc["endpoints"], settings, only=args.endpoint, expected=expected, fail_on=args.fail_on,
                       source=source, shard=(shard.get("index", 0), shard.get("count", 1)), limits=limits)
    except (LookupError, KeyError, ValueError) as exc:  # unknown endpoint; an exporter's document of another shape
        print(f"serving-exporter: {exc.args[0]}", file=sys.stderr)
        return 2
    sys.stdout.write(FORMATS[args.format](result))
    return result.exit_code


def format_recommendations(endpoints: list[dict]) -> str:
    lines = []
    for e in endpoints:
        entities = e["config"]["served_entities"]
        now = e["figures"].get("provisioned_concurrency")
        configured = ", ".join(f"{s['name']} min {s['min_provisioned_concurrency']} / max {s['max_provisioned_concurrency']}"
                               for s in entities if s.get("max_provisioned_concurrency") is not None)
        lines.append(f"{e['name']}  (provisioned now {now if now is not None else '?'}; configured {configured or 'by workload size'})")
        rec = e.get("recommendation")
        if rec:
            lines.append(f"  recommended provisioned concurrency: min {rec['min_concurrency']}, max {rec['max_concurrency']}"
                         f"  [{rec['basis']}]")
        else:
            lines.append("  recommended provisioned concurrency: not enough data yet")
        for h in e["hints"]:
            lines.append(f"  {h['severity']:<8} {h['id']}: {h['detail']}")
        if not e["hints"]:
            lines.append("  no active hints")
        lines.append("")
    return "\n".join(lines)


class Demo:
    """The demo's pieces, running: the simulated workspace and self-hosted model servers, and the exporter
    polling both (a composite source) on the simulated clock. `load` reads the settings again for a reload;
    the demo's self-hosted endpoints are added to whatever it returns."""

    def __init__(self, settings: Settings, minute_seconds: float, simulator_listen: str = "127.0.0.1:0",
                 sinks: Sequence[SnapshotSink] = (), load: Callable[[], Settings] | None = None,
                 web: WebConfig | None = None, lifecycle: bool = False) -> None:
        from .simulator import DEMO_TOKEN, ModelServerHTTP, SimulatorServer, build_demo_model_servers, build_demo_workspace

        self.workspace = build_demo_workspace(minute_seconds=minute_seconds)
        self.simulator = SimulatorServer(self.workspace, *parse_listen(simulator_listen)).start()
        self.model_servers = [ModelServerHTTP(s).start() for s in build_demo_model_servers(
            minute_seconds=minute_seconds, start=self.workspace.start)]
        settings = self.with_model_servers(settings)
        # Simulated time throughout: the self-hosted source differences counters over simulated seconds, and
        # bodies without sample timestamps are keyed by the published simulated minute.
        source = CompositeSource([
            databricks_source(settings, host=self.simulator.url, token=DEMO_TOKEN, auth_type="pat"),
            selfhosted_source(settings, clock=self.workspace.simulated_time)])
        self.daemon = Daemon(settings, source,
                             minute_clock=lambda: self.workspace.timestamp_ms(self.workspace.current_minute) / 1000,
                             sinks=sinks, web=web, lifecycle=lifecycle,
                             load=(lambda: self.with_model_servers(load())) if load else None).start()

    def with_model_servers(self, settings: Settings) -> Settings:
        """`settings` with the demo's model servers added to its self-hosted endpoints."""
        endpoints = [e.model_dump() for e in settings.self_hosted.endpoints] + [
            m.self_hosted_endpoint() for m in self.model_servers]
        return settings.model_copy(update={"self_hosted": SelfHostedSettings.model_validate({"endpoints": endpoints})})

    def stop(self) -> None:
        self.daemon.stop()
        for front in self.model_servers:
            front.stop()
        self.simulator.stop()


def demo(args: argparse.Namespace, settings: Settings) -> int:
    from .simulator import DEMO_TOKEN

    sinks = _sinks(settings)
    if sinks is None:
        return 2
    running = Demo(settings, args.minute_seconds, args.simulator_listen, sinks, **_reloadable(args))
    daemon, simulator = running.daemon, running.simulator
    servers = "\n".join(f"  {m.model_server.name:<19} {m.model_server.kind}: {' '.join(m.targets)}" for m in running.model_servers)
    print(f"""serving-exporter demo: {len(running.workspace.names())} simulated Databricks endpoints and {len(running.model_servers)} self-hosted ones, one simulated minute every {args.minute_seconds:g} s
  status page         {daemon.url}/
  exporter metrics    {daemon.url}/metrics
  endpoint health     {daemon.url}/api/v1/endpoints
  demo workspace      {simulator.url}/api/2.0/serving-endpoints  (token {DEMO_TOKEN})
  scenario control    {simulator.url}/simulator/v1/endpoints
{servers}
Press Ctrl-C to stop.""", flush=True)
    run_until_signalled(running.stop, daemon.reload)
    return 0


def simulate(args: argparse.Namespace, settings: Settings) -> int:
    from .simulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TOKEN, ModelServerHTTP, SimulatorServer
    from .simulator import build_demo_model_servers, build_demo_workspace, build_synthetic_workspace

    fronts: list[ModelServerHTTP] = []
    if args.endpoints > 0:
        workspace = build_synthetic_workspace(args.endpoints, minute_seconds=args.minute_seconds)
    else:
        workspace = build_demo_workspace(minute_seconds=args.minute_seconds)
        fronts = [ModelServerHTTP(s).start() for s in build_demo_model_servers(
            minute_seconds=args.minute_seconds, start=workspace.start)]
    host, port = parse_listen(args.listen)
    simulator = SimulatorServer(workspace, host, port).start()
    self_hosted = json.dumps({"endpoints": [f.self_hosted_endpoint() for f in fronts]})
    print(f"""demo workspace with {len(workspace.names())} endpoints at {simulator.url}
  DATABRICKS_HOST={simulator.url} DATABRICKS_TOKEN={DEMO_TOKEN}
  or OAuth M2M: DATABRICKS_CLIENT_ID={DEMO_CLIENT_ID} DATABRICKS_CLIENT_SECRET={DEMO_CLIENT_SECRET}
  control API: {simulator.url}/simulator/v1/endpoints""", flush=True)
    if fronts:
        print(f"""self-hosted model servers (their counters run on the simulated clock: rates are right for `run` only
with the default --minute-seconds 60):
  SERVING_EXPORTER_SELF_HOSTED='{self_hosted}'""", flush=True)
    print("Press Ctrl-C to stop.", flush=True)

    def stop() -> None:
        for front in fronts:
            front.stop()
        simulator.stop()

    run_until_signalled(stop)
    return 0
