"""Which endpoints a replica polls: include/exclude selectors over names and tags, then a stable shard."""

from __future__ import annotations

import hashlib
import re

from pydantic import Field, field_validator

from ..model import EndpointInfo
from ..strict import Strict


class Selector(Strict):
    """Matches endpoints by name (a regular expression that must match the whole name), tags, platform,
    workspace and/or model server."""

    name: str | None = Field(None, description="regular expression matched against the whole endpoint name")
    tags: dict[str, str] = Field(default_factory=dict, description="tags that must all be present with these values")
    platform: str | None = Field(None, description="the endpoint's platform: databricks or self-hosted")
    workspace: str | None = Field(None, description="the endpoint's workspace: its name in `workspaces:` (or the host of the one workspace)")
    server: str | None = Field(None, description="self-hosted: the model server kind (vllm, tgi, triton, ...)")

    @field_validator("name")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except (re.error, RecursionError) as exc:  # RecursionError: groups nested hundreds deep
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    def matches(self, info: EndpointInfo) -> bool:
        if self.name is not None and not re.fullmatch(self.name, info.name):
            return False
        if (self.platform is not None and info.platform != self.platform) or (self.server is not None and info.server != self.server):
            return False
        if self.workspace is not None and info.workspace != self.workspace:
            return False
        return all(info.tags.get(k) == v for k, v in self.tags.items())


class EndpointFilter(Strict):
    include: list[Selector] = Field(default_factory=list, description="poll only endpoints matching one of these (empty: all)")
    exclude: list[Selector] = Field(default_factory=list, description="never poll endpoints matching one of these")

    def selects(self, info: EndpointInfo) -> bool:
        if self.include and not any(s.matches(info) for s in self.include):
            return False
        return not any(s.matches(info) for s in self.exclude)


def shard_of(name: str, count: int, workspace: str | None = None) -> int:
    """The replica that polls an endpoint: a stable hash of its name (and of its configured workspace's name,
    with a `workspaces:` list), so every replica agrees without talking to the others and an endpoint never
    moves when others come and go. A single workspace hashes the name alone, as before there were several."""
    key = name if workspace is None else f"{workspace}/{name}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % count
