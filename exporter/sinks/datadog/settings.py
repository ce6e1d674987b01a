"""Settings of the Datadog sink (the `datadog:` section; `datadog_url` is a top-level key). The keys are never
settings: DD_API_KEY (turns the sink on) and DD_APP_KEY come from the environment, as does DD_SITE."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from ...strict import Strict

# Tag keys the Datadog sink sets itself; a user tag may not reuse them.
DATADOG_RESERVED_TAG_KEYS = ("endpoint", "served_entity", "workspace", "level")
_DATADOG_TAG = re.compile(r"[A-Za-z][A-Za-z0-9_.:/-]{0,199}")


class DatadogSettings(Strict):
    """The Datadog sink and the `datadog sync-*` commands (docs/datadog.md). The keys are never settings:
    DD_API_KEY (turns the sink on) and DD_APP_KEY come from the environment, as does DD_SITE."""

    tags: list[str] = Field(default_factory=list, description="tags added to every metric and event, e.g. env:prod, team:ml")
    buffer_bytes: int = Field(64_000_000, ge=1_000_000, description="memory for metric payloads awaiting delivery (gzip-compressed, about 9 bytes a point); beyond it the oldest spill to spill_directory, or are dropped")
    spill_directory: Path | None = Field(None, description="directory where payloads that do not fit in buffer_bytes, and those left at shutdown, wait on disk (kept across restarts; one directory per exporter process); null: memory only")
    spill_max_bytes: int = Field(256_000_000, ge=1_000_000, description="disk space the spill directory may use; when full the oldest payloads are dropped")
    max_point_age_seconds: float | None = Field(3600.0, gt=0, description="drop buffered points older than this (the intake ignores points over 1 h old); null keeps them")
    request_timeout_seconds: float = Field(10.0, gt=0, description="timeout of one request to the Datadog API")
    backoff_initial_seconds: float = Field(1.0, gt=0, description="first retry delay after a timeout, 408, 429 or 5xx; doubles per failure, with jitter")
    backoff_max_seconds: float = Field(120.0, gt=0, description="longest retry delay, unless a rate-limit header asks for longer")
    shutdown_flush_seconds: float = Field(5.0, ge=0, description="on shutdown, how long to keep delivering buffered points")
    histogram_buckets: bool = Field(True, description="send the per-minute latency histogram buckets (one custom metric per bucket)")
    events: bool = Field(True, description="send a Datadog event when a remediation hint activates or clears")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "buffer_points" in data:
            raise ValueError("buffer_points was replaced by buffer_bytes (the buffer holds compressed payloads, "
                             "about 9 bytes a point; see docs/datadog.md)")
        return data

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not _DATADOG_TAG.fullmatch(tag):
                raise ValueError(f"invalid Datadog tag {tag!r}: start with a letter; letters, digits, _ - : . / only; at most 200 characters")
            if tag.split(":", 1)[0].lower() in DATADOG_RESERVED_TAG_KEYS:
                raise ValueError(f"tag {tag!r}: the key is set by the exporter ({', '.join(DATADOG_RESERVED_TAG_KEYS)})")
        return value
