"""Configuration: defaults < YAML file < environment (SERVING_EXPORTER_*) < command-line flags.

Validation is strict: an unknown key in the file or an unknown SERVING_EXPORTER_*
variable is an error naming the key and where it came from, and every problem is
reported at once. Credentials are deliberately not settings: the Databricks SDK
reads them from its own variables (DATABRICKS_HOST, DATABRICKS_TOKEN,
DATABRICKS_CLIENT_ID/SECRET, DATABRICKS_CONFIG_PROFILE) and ~/.databrickscfg.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, SettingsConfigDict

from .model import EndpointInfo

ENV_PREFIX = "SERVING_EXPORTER_"
ENV_NESTED = "__"
# Docker-links-style variables Kubernetes injects for every Service in the namespace, e.g.
# SERVING_EXPORTER_SERVICE_HOST or SERVING_EXPORTER_HEADLESS_PORT_9877_TCP_ADDR.
K8S_SERVICE_LINK = re.compile(r"^SERVING_EXPORTER(_[A-Z0-9_]+)?_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$")
DEFAULT_PORT = 9877


class ConfigError(Exception):
    """Invalid configuration; the message lists every problem, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Selector(_Strict):
    """Matches endpoints by name (a regular expression that must match the whole name) and/or tags."""

    name: str | None = Field(None, description="regular expression matched against the whole endpoint name")
    tags: dict[str, str] = Field(default_factory=dict, description="tags that must all be present with these values")

    @field_validator("name")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    def matches(self, info: EndpointInfo) -> bool:
        if self.name is not None and not re.fullmatch(self.name, info.name):
            return False
        return all(info.tags.get(k) == v for k, v in self.tags.items())


class EndpointFilter(_Strict):
    include: list[Selector] = Field(default_factory=list, description="poll only endpoints matching one of these (empty: all)")
    exclude: list[Selector] = Field(default_factory=list, description="never poll endpoints matching one of these")

    def selects(self, info: EndpointInfo) -> bool:
        if self.include and not any(s.matches(info) for s in self.include):
            return False
        return not any(s.matches(info) for s in self.exclude)


# Target field -> check name (see model.CHECKS). None disables a check.
TARGET_CHECKS = {
    "latency_p50_seconds": "latency_p50",
    "latency_p90_seconds": "latency_p90",
    "latency_p99_seconds": "latency_p99",
    "error_ratio": "error_ratio",
    "queue_depth": "queue_depth",
    "cpu_utilization_ratio": "cpu_utilization",
    "memory_utilization_ratio": "memory_utilization",
    "gpu_utilization_ratio": "gpu_utilization",
}


class Targets(_Strict):
    """Production targets; a value is breached when exceeded. Defaults from the serving guide."""

    latency_p50_seconds: float | None = Field(0.1, ge=0)
    latency_p90_seconds: float | None = Field(0.25, ge=0)
    latency_p99_seconds: float | None = Field(0.5, ge=0)
    error_ratio: float | None = Field(0.01, ge=0, le=1)
    queue_depth: float | None = Field(0.0, ge=0)
    cpu_utilization_ratio: float | None = Field(0.8, ge=0, le=1)
    memory_utilization_ratio: float | None = Field(0.8, ge=0, le=1)
    gpu_utilization_ratio: float | None = Field(None, ge=0, le=1)

    def by_check(self) -> dict[str, float | None]:
        return {TARGET_CHECKS[k]: getattr(self, k) for k in TARGET_CHECKS}


def _patch_of(model: type[BaseModel], doc: str, nullable: bool) -> type[BaseModel]:
    """The same keys with the same bounds, all optional: only keys written in a patch apply. With
    `nullable`, an explicit null is a value (for targets: no check); otherwise null is rejected."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        base = info.annotation | None if nullable else info.annotation
        annotation = Annotated[base, *info.metadata] if info.metadata else base
        fields[name] = (annotation, Field(None, description=info.description))
    return create_model(f"{model.__name__}Patch", __base__=_Strict, __doc__=doc, **fields)


TargetPatch = _patch_of(Targets, "Only the keys written here override; `null` disables a check for the matched endpoints.",
                        nullable=True)


class TargetOverride(_Strict):
    match: Selector
    targets: TargetPatch


class Thresholds(_Strict):
    """Numbers the remediation rules use besides the targets (docs/remediation.md says which rule uses which)."""

    headroom_ratio: float = Field(0.15, ge=0, le=2, description="spare capacity added to a recommended concurrency")
    saturation_ratio: float = Field(0.9, gt=0, description="load / capacity at or above which an endpoint counts as saturated")
    throttled_4xx_ratio: float = Field(0.005, ge=0, le=1, description="4xx share (429s included) that counts as throttling when saturated")
    oversize_factor: float = Field(3.0, gt=1, description="capacity this many times the peak need is oversized")
    variable_load_ratio: float = Field(1.5, gt=1, description="busiest / quietest minute QPS from which load counts as varying")
    route_optimization_qps: float = Field(200.0, gt=0, description="QPS above which a standard endpoint needs route optimization")
    route_optimized_qps_limit: float = Field(50_000.0, gt=0, description="QPS a route-optimized endpoint serves at most")
    strict_latency_seconds: float = Field(0.05, gt=0, description="a P50 target at or below this is strict (route optimization helps)")
    low_cpu_ratio: float = Field(0.3, ge=0, le=1, description="CPU below this while slow points outside the model")
    gpu_idle_ratio: float = Field(0.1, ge=0, le=1, description="GPU use below this is idle")
    concurrency_limit: int = Field(1024, ge=1, description="platform limit of provisioned concurrency per served entity")
    concurrency_limit_ratio: float = Field(0.8, gt=0, le=1, description="share of the limit from which it counts as near")
    batching_qps: float = Field(100.0, gt=0, description="QPS above which light requests are worth batching")
    light_request_seconds: float = Field(0.02, gt=0, description="mean service time below which a request is light")
    production_tags: list[str] = Field(default_factory=lambda: ["env=production", "env=prod", "environment=production", "environment=prod"],
                                       description="KEY=VALUE endpoint tags that mark production")


ThresholdsPatch = _patch_of(Thresholds, "Only the keys written here override the global thresholds.", nullable=False)


class RemediationOverride(_Strict):
    match: Selector
    disabled: list[str] = Field(default_factory=list, description="rule ids switched off for the matched endpoints")
    thresholds: ThresholdsPatch = Field(default_factory=ThresholdsPatch)  # type: ignore[valid-type]

    @field_validator("disabled")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return _known_rules(value)


class Remediation(_Strict):
    """Remediation hints: hysteresis, thresholds, and which rules run where."""

    fire_after_polls: int = Field(2, ge=1, description="consecutive polls with new data a condition must hold before its hint fires")
    clear_after_polls: int = Field(2, ge=1, description="consecutive polls without the condition before an active hint clears")
    sustained_polls: int = Field(10, ge=1, description="fire_after_polls for cost hints (oversized, idle GPU), which need a sustained pattern")
    disabled: list[str] = Field(default_factory=list, description="rule ids switched off everywhere")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    overrides: list[RemediationOverride] = Field(default_factory=list, description="per-endpoint thresholds and disabled rules; later entries win")

    @field_validator("disabled")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return _known_rules(value)

    def for_endpoint(self, info: EndpointInfo) -> tuple[Thresholds, frozenset[str]]:
        thresholds, disabled = self.thresholds, set(self.disabled)
        for override in self.overrides:
            if override.match.matches(info):
                changes = {k: getattr(override.thresholds, k) for k in override.thresholds.model_fields_set}
                thresholds = thresholds.model_copy(update=changes)
                disabled |= set(override.disabled)
        return thresholds, frozenset(disabled)


def _known_rules(ids: list[str]) -> list[str]:
    from .rules import RULE_IDS  # the rule table imports this module

    unknown = [i for i in ids if i not in RULE_IDS]
    if unknown:
        raise ValueError(f"unknown rule id(s) {', '.join(unknown)}; known: {', '.join(sorted(RULE_IDS))}")
    return ids


class DatabricksSettings(_Strict):
    """Where to find the workspace. Credentials come from the SDK's own environment/profile."""

    host: str | None = Field(None, description="workspace URL; default: DATABRICKS_HOST or the profile's host")
    profile: str | None = Field(None, description="~/.databrickscfg profile; default: DATABRICKS_CONFIG_PROFILE")


# Tag keys the Datadog sink sets itself; a user tag may not reuse them.
DATADOG_RESERVED_TAG_KEYS = ("endpoint", "served_entity", "workspace", "level")
_DATADOG_TAG = re.compile(r"[A-Za-z][A-Za-z0-9_.:/-]{0,199}")


class DatadogSettings(_Strict):
    """The Datadog sink and the `datadog sync-*` commands (docs/datadog.md). The keys are never settings:
    DD_API_KEY (turns the sink on) and DD_APP_KEY come from the environment, as does DD_SITE."""

    tags: list[str] = Field(default_factory=list, description="tags added to every metric and event, e.g. env:prod, team:ml")
    buffer_points: int = Field(100_000, ge=100, description="points kept for delivery through an intake outage; when full the oldest are dropped")
    max_point_age_seconds: float | None = Field(3600.0, gt=0, description="drop buffered points older than this (the intake ignores points over 1 h old); null keeps them")
    request_timeout_seconds: float = Field(10.0, gt=0, description="timeout of one request to the Datadog API")
    backoff_initial_seconds: float = Field(1.0, gt=0, description="first retry delay after a timeout, 408, 429 or 5xx; doubles per failure, with jitter")
    backoff_max_seconds: float = Field(120.0, gt=0, description="longest retry delay, unless a rate-limit header asks for longer")
    shutdown_flush_seconds: float = Field(5.0, ge=0, description="on shutdown, how long to keep delivering buffered points")
    histogram_buckets: bool = Field(True, description="send the per-minute latency histogram buckets (one custom metric per bucket)")
    events: bool = Field(True, description="send a Datadog event when a remediation hint activates or clears")

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not _DATADOG_TAG.fullmatch(tag):
                raise ValueError(f"invalid Datadog tag {tag!r}: start with a letter; letters, digits, _ - : . / only; at most 200 characters")
            if tag.split(":", 1)[0].lower() in DATADOG_RESERVED_TAG_KEYS:
                raise ValueError(f"tag {tag!r}: the key is set by the exporter ({', '.join(DATADOG_RESERVED_TAG_KEYS)})")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTED, extra="forbid",
                                      env_parse_none_str="null")

    listen: str = Field(f"0.0.0.0:{DEFAULT_PORT}", description="HOST:PORT for /metrics, /healthz, /readyz and /api/v1/endpoints")
    poll_interval_seconds: float = Field(60.0, ge=1, description="seconds between polls (the source refreshes once a minute)")
    poll_deadline_seconds: float | None = Field(None, gt=0, description="publish a poll after this long even if some endpoints are still fetching (they show as down); default 0.8 x poll interval")
    detail_refresh_seconds: float = Field(600.0, ge=0, description="re-read each endpoint's configuration at most this often (also when its last_updated changes)")
    window_seconds: float = Field(300.0, ge=60, description="analysis window for percentiles, QPS and ratios")
    request_timeout_seconds: float = Field(10.0, gt=0, description="timeout of one HTTP request to the workspace")
    retry_budget_seconds: float = Field(30.0, ge=1, description="total time one request may spend in SDK retries (429/503 honouring Retry-After)")
    max_concurrent_requests: int = Field(16, ge=1, le=256, description="bound on concurrent requests to the workspace")
    max_served_entities: int = Field(50, ge=1, description="per endpoint, served entities exposed separately (cardinality cap)")
    endpoints: EndpointFilter = Field(default_factory=EndpointFilter)
    shard_count: int = Field(1, ge=1, description="replicas splitting the workspace's endpoints between them")
    shard_index: int | None = Field(None, ge=0, description="this replica's share, 0..shard_count-1; default: the ordinal at the end of HOSTNAME (a StatefulSet pod name), else 0")
    targets: Targets = Field(default_factory=Targets)
    remediation: Remediation = Field(default_factory=Remediation)
    target_overrides: list[TargetOverride] = Field(default_factory=list, description="per-endpoint targets; later entries win")
    databricks: DatabricksSettings = Field(default_factory=DatabricksSettings)
    datadog: DatadogSettings = Field(default_factory=DatadogSettings)
    datadog_url: str | None = Field(None, description="base URL of the Datadog API, for a proxy or a test intake; default https://api.<DD_SITE>")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("datadog_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError(f"expected an http:// or https:// base URL, got {value!r}")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _shard_in_range(self) -> Settings:
        index = self.shard()[0]
        if index >= self.shard_count:
            raise ValueError(f"shard index {index} is not below shard_count {self.shard_count}")
        return self

    def shard(self) -> tuple[int, int]:
        """(index, count) of this replica's share of the endpoints."""
        if self.shard_index is not None or self.shard_count == 1:
            return self.shard_index or 0, self.shard_count
        ordinal = re.search(r"-(\d+)$", os.environ.get("HOSTNAME", ""))
        return (int(ordinal.group(1)) if ordinal else 0), self.shard_count

    def targets_for(self, info: EndpointInfo) -> dict[str, float | None]:
        merged = self.targets.by_check()
        for override in self.target_overrides:
            if override.match.matches(info):
                for key in override.targets.model_fields_set:
                    merged[TARGET_CHECKS[key]] = getattr(override.targets, key)
        return merged


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def load_settings(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build Settings from the sources in priority order, or raise ConfigError listing every problem."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    source = str(config_file) if config_file else None
    problems = _unknown_env_vars(os.environ)
    file_data: dict[str, Any] = {}
    if config_file:
        try:
            file_data = _read_yaml(Path(config_file))
        except ConfigError as exc:  # keep going: the environment's problems are reported too
            problems += exc.problems

    class _Sourced(Settings):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
            return init_settings, env_settings, InitSettingsSource(settings_cls, file_data)

    try:
        settings = _Sourced(**overrides)
    except ValidationError as exc:
        problems += [_describe(err, overrides, file_data, source) for err in exc.errors()]
    if problems:
        raise ConfigError(problems)
    return settings


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of settings, not {type(data).__name__}"])
    return data


def _unknown_env_vars(environ: Mapping[str, str]) -> list[str]:
    """pydantic-settings silently ignores prefixed variables naming no setting; a typo there must not
    pass unnoticed. (Unknown nested keys, PREFIX_SECTION__TYPO, are rejected by validation itself.)"""
    known = {name.upper() for name in Settings.model_fields} | {"CONFIG_FILE"}
    problems = []
    for var in sorted(environ):
        if K8S_SERVICE_LINK.match(var.upper()):
            continue  # injected by Kubernetes for a Service named serving-exporter*, not a setting
        if var.upper().startswith(ENV_PREFIX):
            top = var[len(ENV_PREFIX):].split(ENV_NESTED)[0].upper()
            if top not in known:
                problems.append(f"environment variable {var}: unknown setting {top.lower()!r}")
    return problems


def _describe(err: dict[str, Any], overrides: dict, file_data: dict, source: str | None) -> str:
    """Name the key and the source that supplied it (highest priority first)."""
    loc = err["loc"]
    key = ".".join(str(p) for p in loc)
    message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
    exact = ENV_PREFIX + ENV_NESTED.join(str(p) for p in loc).upper()
    top = ENV_PREFIX + str(loc[0]).upper() if loc else ""
    if _has_path(overrides, loc):
        where = "command line"
    elif exact in os.environ or top in os.environ:
        where = "environment variable " + (exact if exact in os.environ else top)
    elif source and _has_path(file_data, loc):
        where = source
    else:
        where = ""
    return f"{where + ': ' if where else ''}{key}: {message}"


def _has_path(data: Any, loc: tuple) -> bool:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return False
    return True
