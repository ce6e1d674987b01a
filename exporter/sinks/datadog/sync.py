"""`serving-exporter datadog sync-monitors | sync-dashboard`: monitors and the dashboard as code.

* Monitors come from alerts/datadog/monitors.yaml. Each is tagged `managed-by:serving-exporter` and
  `serving-exporter-monitor:<id>`; a sync lists the managed monitors, matches them by that id tag,
  creates the missing ones and updates those whose definition differs. Running it twice changes
  nothing the second time. Managed monitors no longer in the file are reported and left alone unless
  `--prune` is given.
* The dashboard comes from dashboards/datadog/model-serving.json. Its description carries a marker
  `[serving-exporter:dashboard=<id>]`; a sync finds the dashboard with that marker and updates it when
  it differs, or creates it.

A definition "differs" when a field of the file is missing or different in Datadog: fields Datadog adds
(ids, defaults, timestamps) are ignored, so an unchanged definition is never rewritten. Both files are
checked against datadog-api-client's own models before anything is sent. The keys come from the
environment only (DD_API_KEY and DD_APP_KEY), the site from DD_SITE or SERVING_EXPORTER_DATADOG_URL.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from datadog_api_client import ApiClient
from datadog_api_client.exceptions import ApiException
from datadog_api_client.model_utils import data_to_dict
from datadog_api_client.v1.api.dashboards_api import DashboardsApi
from datadog_api_client.v1.api.monitors_api import MonitorsApi
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.monitor import Monitor
from datadog_api_client.v1.model.monitor_update_request import MonitorUpdateRequest

from .schema import parse, schema_errors
from .sink import DatadogTarget, api_url

if TYPE_CHECKING:
    from ...config import Settings

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_MONITORS = ROOT / "alerts" / "datadog" / "monitors.yaml"
DEFAULT_DASHBOARD = ROOT / "dashboards" / "datadog" / "model-serving.json"
MANAGED_TAG = "managed-by:serving-exporter"
ID_TAG = "serving-exporter-monitor"
DASHBOARD_MARKER = re.compile(r"\[serving-exporter:dashboard=([a-z0-9-]+)\]")
OUR_KEYS = ("id", "prometheus_alert")  # keys of monitors.yaml entries that are not API fields
COMPARED = ("name", "type", "query", "message", "tags", "priority", "options")
REQUEST_TIMEOUT_S = 30.0


class SyncError(Exception):
    """A problem that stops a sync before or while it talks to Datadog; the message is for the user.
    `code` is the exit status: 2 for unusable input (files, missing keys), 1 for a failed API call."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


# -- monitors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonitorSpec:
    id: str
    prometheus_alert: str | None
    body: dict[str, Any]  # the Monitors API body, with the managed tags added


def load_monitors(path: Path = DEFAULT_MONITORS) -> list[MonitorSpec]:
    """The monitors of `path`, each checked against the client's Monitor model; SyncError lists every problem."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SyncError(f"{path}: cannot read: {exc}") from None
    entries = data.get("monitors") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise SyncError(f"{path}: expected a mapping with a non-empty list `monitors`")
    specs, problems, seen = [], [], set()
    for i, entry in enumerate(entries):
        where = f"{path}: monitors[{i}]"
        if not isinstance(entry, dict) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", str(entry.get("id", ""))):
            problems.append(f"{where}: needs an `id` of lower-case letters, digits and dashes")
            continue
        if entry["id"] in seen:
            problems.append(f"{where}: duplicate id {entry['id']!r}")
        seen.add(entry["id"])
        body = {k: v for k, v in entry.items() if k not in OUR_KEYS}
        tags = [t for t in body.get("tags", []) if not t.startswith((MANAGED_TAG, ID_TAG + ":"))]
        body["tags"] = tags + [MANAGED_TAG, f"{ID_TAG}:{entry['id']}"]
        problems += [f"{where} ({entry['id']}): {p}" for p in schema_errors(body, Monitor)]
        specs.append(MonitorSpec(entry["id"], entry.get("prometheus_alert"), body))
    if problems:
        raise SyncError("invalid monitor definitions:\n  " + "\n  ".join(problems))
    return specs


@dataclass
class Change:
    action: str  # create | update | unchanged | orphan | delete
    id: str
    name: str
    remote_id: Any = None
    fields: list[str] = field(default_factory=list)

    def line(self) -> str:
        remote = f" (#{self.remote_id})" if self.remote_id is not None else ""
        detail = {"update": "changes: " + ", ".join(self.fields), "orphan": "managed, but not in the file: kept (--prune deletes it)",
                  "delete": "managed, but not in the file: deleted"}.get(self.action, "")
        return f"  {self.action:<9} {self.id + remote:<28} {self.name}" + (f"\n            {detail}" if detail else "")


def plan_monitors(specs: list[MonitorSpec], existing: list[dict], prune: bool = False) -> list[Change]:
    """What a sync does, given the managed monitors in Datadog (API dicts)."""
    by_id: dict[str, dict] = {}
    for monitor in existing:
        ident = _monitor_id(monitor)
        if ident is not None and ident not in by_id:  # a duplicate (made by hand) is left alone
            by_id[ident] = monitor
    changes = []
    for spec in specs:
        current = by_id.pop(spec.id, None)
        if current is None:
            changes.append(Change("create", spec.id, spec.body["name"]))
            continue
        diff = differences(spec.body, current)
        changes.append(Change("update" if diff else "unchanged", spec.id, spec.body["name"], current.get("id"), diff))
    for ident, monitor in sorted(by_id.items()):
        changes.append(Change("delete" if prune else "orphan", ident, monitor.get("name", ""), monitor.get("id")))
    return changes


def _monitor_id(monitor: dict) -> str | None:
    for tag in monitor.get("tags") or []:
        if tag.startswith(ID_TAG + ":"):
            return tag.split(":", 1)[1]
    return None


def differences(desired: dict, current: dict) -> list[str]:
    """Fields of `desired` that `current` lacks or has otherwise (tags as a set, options as a subset)."""
    out = []
    for key in COMPARED:
        if key not in desired:
            continue
        want, have = desired[key], current.get(key)
        if key == "tags":
            same = set(want) == set(have or [])
        elif key == "type":
            same = _monitor_type(want) == _monitor_type(have)
        elif key == "message":
            same = str(want).strip() == str(have or "").strip()
        elif key == "options":
            out += [f"options.{k}" for k in sorted(want) if not _contains(want[k], (have or {}).get(k))]
            continue
        else:
            same = _contains(want, have)
        if not same:
            out.append(key)
    return out


def _monitor_type(value: Any) -> str:
    return "query alert" if value in ("metric alert", "query alert") else str(value)  # Datadog stores either


def _contains(want: Any, have: Any) -> bool:
    """`have` has everything `want` has (extra keys in dicts are defaults Datadog added)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_contains(v, have.get(k)) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(_contains(a, b) for a, b in zip(want, have))
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have
    if isinstance(want, (int, float)) and isinstance(have, (int, float)):
        return math.isclose(want, have, rel_tol=1e-9, abs_tol=1e-12)
    return want == have


def sync_monitors(api: ApiClient | None, path: Path = DEFAULT_MONITORS, dry_run: bool = False, prune: bool = False,
                  out: Callable[[str], None] = print) -> int:
    """Plan, print and (unless dry_run) apply. `api` None (no keys) is allowed only in a dry run."""
    specs = load_monitors(path)
    monitors = MonitorsApi(api) if api is not None else None
    if monitors is None:
        existing: list[dict] = []
        out("Datadog not read (DD_API_KEY and DD_APP_KEY are not both set): planning against no existing monitors")
    else:
        existing = [data_to_dict(m) for m in _call(lambda: monitors.list_monitors(monitor_tags=MANAGED_TAG), "list monitors")]
    changes = plan_monitors(specs, existing, prune)
    counts = {a: sum(c.action == a for c in changes) for a in ("create", "update", "unchanged", "orphan", "delete")}
    out(f"monitors in {_display(path)}: {len(specs)}; managed in Datadog ({MANAGED_TAG}): {len(existing)}")
    for change in changes:
        out(change.line())
    out(", ".join(f"{n} {a}" for a, n in counts.items() if n) + (" (dry run: nothing changed)" if dry_run else ""))
    if dry_run:
        return 0
    assert monitors is not None
    bodies = {s.id: s.body for s in specs}
    for change in changes:
        if change.action == "create":
            made = _call(lambda: monitors.create_monitor(body=parse(bodies[change.id], Monitor)), f"create {change.id}")
            out(f"created {change.id} (#{made.id})")
        elif change.action == "update":
            update = {k: v for k, v in bodies[change.id].items() if k in COMPARED}
            _call(lambda: monitors.update_monitor(change.remote_id, body=parse(update, MonitorUpdateRequest)), f"update {change.id}")
            out(f"updated {change.id} (#{change.remote_id})")
        elif change.action == "delete":
            _call(lambda: monitors.delete_monitor(change.remote_id), f"delete {change.id}")
            out(f"deleted {change.id} (#{change.remote_id})")
    return 0


# -- dashboard -----------------------------------------------------------------------------------


def load_dashboard(path: Path = DEFAULT_DASHBOARD) -> tuple[str, dict]:
    """(marker id, dashboard body) of `path`, checked against the client's Dashboard model."""
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SyncError(f"{path}: cannot read: {exc}") from None
    marker = DASHBOARD_MARKER.search(body.get("description") or "") if isinstance(body, dict) else None
    if marker is None:
        raise SyncError(f"{path}: the description must contain a marker like [serving-exporter:dashboard=<id>]")
    problems = schema_errors(body, Dashboard)
    if problems:
        raise SyncError(f"{path}: not a valid dashboard:\n  " + "\n  ".join(problems))
    return marker.group(1), body


def sync_dashboard(api: ApiClient | None, path: Path = DEFAULT_DASHBOARD, dry_run: bool = False,
                   out: Callable[[str], None] = print) -> int:
    ident, body = load_dashboard(path)
    dashboards = DashboardsApi(api) if api is not None else None
    current, remote_id = None, None
    if dashboards is None:
        out("Datadog not read (DD_API_KEY and DD_APP_KEY are not both set): planning against no existing dashboard")
    else:
        listing = data_to_dict(_call(lambda: dashboards.list_dashboards(filter_shared=False), "list dashboards"))
        found = [d for d in listing.get("dashboards") or []
                 if (m := DASHBOARD_MARKER.search(d.get("description") or "")) and m.group(1) == ident]
        if len(found) > 1:
            out(f"warning: {len(found)} dashboards carry the marker for {ident}; syncing {found[0]['id']}")
        if found:
            remote_id = found[0]["id"]
            current = data_to_dict(_call(lambda: dashboards.get_dashboard(remote_id), "get dashboard"))
    if current is None:
        action, diff = "create", []
    else:
        diff = [k for k in sorted(body) if not _contains(body[k], current.get(k))]
        action = "update" if diff else "unchanged"
    out(f"dashboard {ident} ({body['title']!r}) from {_display(path)}: {action}"
        + (f" {remote_id}" if remote_id else "") + (f" (changes: {', '.join(diff)})" if diff else "")
        + (" (dry run: nothing changed)" if dry_run else ""))
    if dry_run or action == "unchanged":
        return 0
    assert dashboards is not None
    if action == "create":
        made = _call(lambda: dashboards.create_dashboard(body=parse(body, Dashboard)), "create dashboard")
        out(f"created dashboard {made.id} {getattr(made, 'url', '') or ''}".rstrip())
    else:
        _call(lambda: dashboards.update_dashboard(remote_id, body=parse(body, Dashboard)), "update dashboard")
        out(f"updated dashboard {remote_id}")
    return 0


# -- plumbing ------------------------------------------------------------------------------------


def api_client(settings: Settings, environ: Mapping[str, str] = os.environ, required: bool = True) -> ApiClient | None:
    """A client with DD_API_KEY and DD_APP_KEY (both needed to read and write monitors and dashboards).
    Without them: None when not `required` (a dry run), else SyncError."""
    target = DatadogTarget.from_env(settings, environ)
    if target is None or target.app_key is None:
        if required:
            raise SyncError("DD_API_KEY and DD_APP_KEY must both be set (an application key with monitors_write / "
                            "dashboards_write); use --dry-run to see the plan without them")
        api_url(settings, environ)  # still report a bad DD_SITE
        return None
    # The client's own retries (429 honouring X-RateLimit-Reset, 5xx) suit a one-shot command.
    return ApiClient(target.configuration(REQUEST_TIMEOUT_S, app_key=True, enable_retry=True, max_retries=3))


def _call(request: Callable[[], Any], what: str) -> Any:
    try:
        return request()
    except ApiException as exc:
        errors = _api_errors(exc)
        raise SyncError(f"Datadog API: {what} failed: {exc.status} {exc.reason or ''}".rstrip()
                        + (f": {errors}" if errors else ""), code=1) from None
    except Exception as exc:  # connection errors, timeouts
        raise SyncError(f"Datadog API: {what} failed: {type(exc).__name__}", code=1) from None


def _api_errors(exc: ApiException) -> str:
    """The `errors` list of a Datadog error body (validation messages), never the raw body."""
    body = exc.body
    try:
        data = body if isinstance(body, dict) else json.loads(body or "{}")
        errors = data.get("errors") or []
    except (ValueError, TypeError, AttributeError):
        return ""
    return "; ".join(str(e) for e in errors)[:500]


def _display(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
