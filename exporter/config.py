"""Configuration: defaults < YAML file < environment (SERVING_EXPORTER_*) < command-line flags.

Validation is strict: an unknown key in the file or an unknown SERVING_EXPORTER_*
variable is an error naming the key and where it came from, and every problem is
reported at once. Credentials are deliberately not settings: the Databricks SDK
reads them from its own variables (DATABRICKS_HOST, DATABRICKS_TOKEN,
DATABRICKS_CLIENT_ID/SECRET, DATABRICKS_CONFIG_PROFILE) and ~/.databrickscfg, and a
`workspaces:` entry names a profile or the environment variables holding them.

This module composes the sections that each part of the exporter owns: endpoint
selection and targets (pipeline/), the remediation rules (pipeline/rules.py), the
Databricks source, the self-hosted source and the Datadog sink.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, SettingsConfigDict, SettingsError

from .model import EndpointInfo
from .pipeline.rules import Remediation
from .pipeline.selection import EndpointFilter
from .pipeline.targets import TargetOverride, Targets, targets_for
from .pipeline.workspace import WorkspaceLimits
from .sinks.budget import SeriesBudget
from .sinks.datadog.settings import DatadogSettings
from .sources.databricks.settings import DatabricksSettings, WorkspaceSettings
from .sources.selfhosted.settings import SelfHostedSettings
from .strict import ConfigError

__all__ = ["ConfigError", "DEFAULT_PORT", "Settings", "load_settings", "parse_listen"]

ENV_PREFIX = "SERVING_EXPORTER_"
ENV_NESTED = "__"
# Docker-links-style variables Kubernetes injects for every Service in the namespace, e.g.
# SERVING_EXPORTER_SERVICE_HOST or SERVING_EXPORTER_HEADLESS_PORT_9877_TCP_ADDR.
K8S_SERVICE_LINK = re.compile(r"^SERVING_EXPORTER(_[A-Z0-9_]+)?_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$")
DEFAULT_PORT = 9877


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTED, extra="forbid",
                                      allow_inf_nan=False,
                                      env_parse_none_str="null")

    listen: str = Field(f"0.0.0.0:{DEFAULT_PORT}", description="HOST:PORT for the status page (/), /metrics, /healthz, /readyz and /api/v1/endpoints")
    poll_interval_seconds: float = Field(60.0, ge=1, description="seconds between polls (the source refreshes once a minute)")
    poll_deadline_seconds: float | None = Field(None, gt=0, description="publish a poll after this long even if some endpoints are still fetching (they show as down); default 0.8 x poll interval")
    detail_refresh_seconds: float = Field(600.0, ge=0, description="re-read each endpoint's configuration at most this often (also when its last_updated changes)")
    window_seconds: float = Field(300.0, ge=60, description="analysis window for percentiles, QPS and ratios")
    request_timeout_seconds: float = Field(10.0, gt=0, description="timeout of one HTTP request to the workspace")
    retry_budget_seconds: float = Field(30.0, ge=1, description="total time one request may spend in SDK retries (429/503 honouring Retry-After)")
    max_concurrent_requests: int = Field(16, ge=1, le=256, description="bound on concurrent requests to the workspace")
    max_served_entities: int = Field(50, ge=1, description="per endpoint, served entities exposed separately (cardinality cap)")
    endpoints: EndpointFilter = Field(default_factory=EndpointFilter)
    shard_count: int = Field(1, ge=1, description="replicas splitting the endpoints (of all workspaces) between them")
    shard_index: int | None = Field(None, ge=0, description="this replica's share, 0..shard_count-1; default: the ordinal at the end of HOSTNAME (a StatefulSet pod name), else 0")
    targets: Targets = Field(default_factory=Targets)
    remediation: Remediation = Field(default_factory=Remediation)
    target_overrides: list[TargetOverride] = Field(default_factory=list, description="per-endpoint targets; later entries win")
    workspace_limits: WorkspaceLimits = Field(default_factory=WorkspaceLimits)
    series: SeriesBudget = Field(default_factory=SeriesBudget)
    databricks: DatabricksSettings = Field(default_factory=DatabricksSettings)
    workspaces: list[WorkspaceSettings] = Field(default_factory=list, description="several Databricks workspaces, each polled on its own (docs/configuration.md); empty: the one workspace of `databricks:` and the SDK's environment; env SERVING_EXPORTER_WORKSPACES as JSON")
    self_hosted: SelfHostedSettings = Field(default_factory=SelfHostedSettings, description="self-hosted model servers (docs/self-hosted.md); env SERVING_EXPORTER_SELF_HOSTED as JSON")
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

    @model_validator(mode="after")
    def _workspaces_distinct(self) -> Settings:
        names = [w.name for w in self.workspaces]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"workspaces: names must be unique (the `workspace` label): {', '.join(twice)} repeated")
        if self.workspaces and (self.databricks.host or self.databricks.profile):
            raise ValueError("give either databricks.host/profile (one workspace) or workspaces: (several), not both")
        return self

    def shard(self) -> tuple[int, int]:
        """(index, count) of this replica's share of the endpoints."""
        if self.shard_index is not None or self.shard_count == 1:
            return self.shard_index or 0, self.shard_count
        ordinal = re.search(r"-(\d+)$", os.environ.get("HOSTNAME", ""))
        return (int(ordinal.group(1)) if ordinal else 0), self.shard_count

    def targets_for(self, info: EndpointInfo) -> dict[str, float | None]:
        return targets_for(self.targets, self.target_overrides, info)


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
    except SettingsError as exc:  # a variable of a list or section setting that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        names = sorted(v for v in os.environ if field and v.upper().startswith(ENV_PREFIX + field.group(1).upper()))
        problems.append(f"environment variable {' or '.join(names) or '?'}: {field.group(1) if field else exc}: "
                        "not valid JSON (a list or a section is written as JSON)")
    if problems:
        raise ConfigError(problems)
    return settings


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None
    # PyYAML lets through ValueError (an integer past Python's 4,300 digits) and RecursionError (deep nesting).
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of settings, not {type(data).__name__}"])
    odd = [key for key in data if not isinstance(key, str)]  # pydantic-settings lower-cases every top-level key
    if odd:
        raise ConfigError([f"{path}: {key!r}: a setting name must be a string" for key in odd])
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
