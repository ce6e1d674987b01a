"""Settings of the self-hosted source (the `self_hosted:` section): which endpoints, where their replicas'
metrics are (static targets, DNS or Prometheus file_sd), what server they run, and how to authenticate.

Secrets are never written in the configuration: a token or password is named by a file or an environment
variable and read at each request, so a rotated secret is used from the next poll on.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ...strict import Strict

KINDS = ("vllm", "tgi", "triton", "mlserver", "kserve", "torchserve", "ray-serve", "bentoml")
Kind = Literal["vllm", "tgi", "triton", "mlserver", "kserve", "torchserve", "ray-serve", "bentoml", "auto"]
_URL = re.compile(r"(?i)(https?)://[^\s/?#@]+(/[^\s#]*)?")
_PATH = re.compile(r"/[^\s#]*")


def _path(value: str) -> str:
    if not _PATH.fullmatch(value):
        raise ValueError(f"expected a path starting with '/', got {value!r}")
    return value


class BasicAuth(Strict):
    username: str = Field(description="the user name (not a secret)")
    password_file: str | None = Field(None, description="file holding the password, read at each request")
    password_env: str | None = Field(None, description="environment variable holding the password, read at each request")

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuth:
        if (self.password_file is None) == (self.password_env is None):
            raise ValueError("give exactly one of password_file and password_env")
        return self


class AuthSettings(Strict):
    """How to authenticate to the replicas' metrics: secrets by reference only."""

    bearer_token_file: str | None = Field(None, description="file holding a bearer token, read at each request")
    bearer_token_env: str | None = Field(None, description="environment variable holding a bearer token, read at each request")
    basic_auth: BasicAuth | None = Field(None, description="HTTP basic authentication")
    ca_file: str | None = Field(None, description="PEM file of the CA(s) that sign the replicas' certificates (https)")
    insecure_skip_verify: bool = Field(False, description="do not verify the replicas' certificates (https); for tests only")

    @model_validator(mode="after")
    def _one_scheme(self) -> AuthSettings:
        given = [k for k in ("bearer_token_file", "bearer_token_env", "basic_auth") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of bearer_token_file, bearer_token_env and basic_auth (got {', '.join(given)})")
        return self


class DnsSettings(Strict):
    """Replicas found by a DNS name, resolved again at every poll (a Kubernetes headless Service, say)."""

    name: str = Field(description="the DNS name, e.g. vllm-headless.ml.svc.cluster.local")
    type: Literal["A", "AAAA", "SRV"] = Field("A", description="A or AAAA: one replica per address, on `port`; SRV: the record gives each replica's host and port")
    port: int | None = Field(None, ge=1, le=65535, description="the metrics port (A and AAAA: required; SRV: ignored)")
    path: str = Field("/metrics", description="the metrics path")
    scheme: Literal["http", "https"] = "http"

    _path = field_validator("path")(_path)

    @model_validator(mode="after")
    def _port(self) -> DnsSettings:
        if self.type != "SRV" and self.port is None:
            raise ValueError(f"a {self.type} lookup needs `port` (only SRV records carry one)")
        return self


class SelfHostedEndpoint(Strict):
    """One self-hosted endpoint: the replicas of one model server deployment."""

    name: str = Field(min_length=1, description="the endpoint's name (label serving_endpoint)")
    kind: Kind = Field("auto", description="the model server: " + "|".join(KINDS) + "|auto (detected from its metric names)")
    targets: list[str] | None = Field(None, description="static replicas' metrics URLs (sidecar mode: one http://127.0.0.1:PORT/metrics)")
    dns: DnsSettings | None = Field(None, description="replicas found by DNS, re-resolved every poll")
    file_sd: list[str] | None = Field(None, description="Prometheus file_sd files (JSON or YAML; globs), re-read when changed")
    metrics_path: str = Field("/metrics", description="file_sd targets (host:port): the metrics path")
    scheme: Literal["http", "https"] = Field("http", description="file_sd targets (host:port): the scheme")
    per_replica_concurrency: float | None = Field(None, gt=0, description="requests one replica serves at once (capacity = answering replicas x this)")
    tags: dict[str, str] = Field(default_factory=dict, description="tags, as Databricks endpoints have (target overrides match them)")
    auth: AuthSettings = Field(default_factory=AuthSettings)

    @field_validator("targets")
    @classmethod
    def _urls(cls, value: list[str] | None) -> list[str] | None:
        for url in value or []:
            if not _URL.fullmatch(url):
                raise ValueError(f"expected an http:// or https:// URL without credentials, got {url!r}")
        if value is not None and not value:
            raise ValueError("give at least one target")
        return value

    _metrics_path = field_validator("metrics_path")(_path)

    @field_validator("file_sd")
    @classmethod
    def _files(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("give at least one file or glob")
        return value

    @model_validator(mode="after")
    def _one_discovery(self) -> SelfHostedEndpoint:
        given = [k for k in ("targets", "dns", "file_sd") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of targets, dns and file_sd (got {', '.join(given) or 'none'})")
        return self


class SelfHostedSettings(Strict):
    """Self-hosted model servers polled like Databricks endpoints (docs/self-hosted.md)."""

    endpoints: list[SelfHostedEndpoint] = Field(default_factory=list, description="the self-hosted endpoints")

    @field_validator("endpoints")
    @classmethod
    def _distinct(cls, value: list[SelfHostedEndpoint]) -> list[SelfHostedEndpoint]:
        names = [e.name for e in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"endpoint names must be distinct: {', '.join(twice)} given more than once")
        return value
