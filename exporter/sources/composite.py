"""Several sources polled as one (several Databricks workspaces and self-hosted endpoints in one exporter).

An endpoint is identified by its workspace and its name (`EndpointInfo.key`, the `workspace` and
`serving_endpoint` labels): two workspaces may each have an endpoint `chat`, and `describe`/`fetch` take the
workspace to tell them apart. Between platforms names must still be distinct (a self-hosted endpoint has no
workspace, and the status page and `recommend --endpoint` name endpoints across platforms by name): a name an
earlier source of another platform (Databricks, listed first) already has leaves the later source's endpoint
out of the listing, logged as an error and counted in `collisions` at each listing, so that one endpoint's
series never mixes two platforms' figures. A source whose listing fails keeps its last good listing (logged
and counted in `list_errors`, by the source's workspace), so it never blanks the other sources' endpoints;
the poll's listing fails only when no source has ever listed.

Each source may run its own event loop (its HTTP client's): the composite's loop is the first source's, and a
fetch of a source on another loop is handed to that loop and awaited."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence

from ..model import EndpointInfo
from .base import ApiUsage, FetchError, Observation, Source

log = logging.getLogger(__name__)


class _Usage:
    """The sources' API usage added up (the poller reads each source's apart: `CompositeSource.usages`)."""

    def __init__(self, sources: Sequence[Source]):
        self._sources = sources

    def totals(self) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        calls: Counter[tuple[str, str]] = Counter()
        retries: Counter[str] = Counter()
        for source in self._sources:
            c, r = source.usage.totals()
            calls.update(c)
            retries.update(r)
        return dict(calls), dict(retries)


class CompositeSource:
    keyed_by_workspace = True  # describe and fetch take the endpoint's workspace (the poller passes it)

    def __init__(self, sources: Sequence[Source]):
        if not sources:
            raise ValueError("a composite source needs at least one source")
        self.sources = tuple(sources)
        self.platform = "+".join(s.platform for s in self.sources)
        self.refresh_seconds = max(s.refresh_seconds for s in self.sources)
        self.usage = _Usage(self.sources)  # type: ignore[assignment]
        self._listed: dict[int, list[EndpointInfo]] = {}  # source index -> its last good listing
        self._owner: dict[tuple[str, str], Source] = {}  # EndpointInfo.key -> its source
        self.list_errors: Counter[tuple[str, str]] = Counter()  # (workspace or "", reason) -> count
        self.collisions: Counter[str] = Counter()  # endpoint name -> listings that left a namesake out

    @property
    def discovery_errors(self) -> Counter[tuple[str, str]]:
        """Its self-hosted sources' failed discoveries, and the listings that left an endpoint out for a namesake."""
        errors: Counter[tuple[str, str]] = Counter({(name, "name_clash"): n for name, n in self.collisions.items()})
        for source in self.sources:
            errors.update(getattr(source, "discovery_errors", {}))
        return errors

    @property
    def workspace(self) -> str | None:  # type: ignore[override]
        """The workspace, where there is one; None with several (each endpoint then names its own)."""
        named = {s.workspace for s in self.sources if s.workspace}
        return named.pop() if len(named) == 1 else None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return next(s.loop for s in self.sources if hasattr(s, "fetch_async"))  # type: ignore[attr-defined]

    def usages(self) -> list[tuple[str | None, ApiUsage]]:
        """Each source's API usage with its workspace: the exporter counts calls per workspace."""
        return [(s.workspace, s.usage) for s in self.sources]

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        # `fetch_async` only when some source has one (the poller checks with hasattr).
        if name == "fetch_async" and any(hasattr(s, "fetch_async") for s in self.sources):
            return self._fetch_async
        raise AttributeError(name)

    def list_endpoints(self, deadline: float | None = None) -> list[EndpointInfo]:
        for i, source in enumerate(self.sources):
            try:
                self._listed[i] = source.list_endpoints(deadline)
            except Exception as exc:  # FetchError, or a bug: the other sources' endpoints stay
                reason = exc.reason if isinstance(exc, FetchError) else "internal_error"
                where = source.workspace or source.platform
                self.list_errors[(source.workspace or "", reason)] += 1
                log.warning("listing the %s endpoints failed (%s): %s; keeping its last good listing (%s endpoints)",
                            where, reason, exc, len(self._listed[i]) if i in self._listed else "no")
        if not self._listed:
            raise FetchError("list_failed", "no source could list its endpoints")
        listing, owner, platform_of = [], {}, {}
        for i, source in enumerate(self.sources):
            for info in self._listed.get(i, ()):
                other = platform_of.get(info.name, source.platform)
                if info.key in owner or other != source.platform:
                    self.collisions[info.name] += 1
                    log.error("endpoint name %r is both a %s and a %s endpoint: the %s one is left out; "
                              "rename it in the configuration", info.name, other, source.platform, source.platform)
                    continue
                owner[info.key] = source
                platform_of[info.name] = source.platform
                listing.append(info)
        self._owner = owner
        return listing

    def describe(self, name: str, deadline: float | None = None, workspace: str | None = None) -> EndpointInfo:
        return self._source(name, workspace).describe(name, deadline)

    def fetch(self, name: str, deadline: float | None = None, workspace: str | None = None) -> Observation:
        return self._source(name, workspace).fetch(name, deadline)

    async def _fetch_async(self, name: str, deadline: float | None = None, workspace: str | None = None) -> Observation:
        source = self._source(name, workspace)
        if not hasattr(source, "fetch_async"):
            return await asyncio.get_running_loop().run_in_executor(None, source.fetch, name, deadline)
        if source.loop is asyncio.get_running_loop():  # type: ignore[attr-defined]
            return await source.fetch_async(name, deadline)  # type: ignore[attr-defined]
        future = asyncio.run_coroutine_threadsafe(source.fetch_async(name, deadline), source.loop)  # type: ignore[attr-defined]
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        for source in self.sources:
            source.close()

    def _source(self, name: str, workspace: str | None) -> Source:
        source = self._owner.get((workspace or "", name))
        if source is None:
            where = f" of workspace {workspace!r}" if workspace else ""
            raise FetchError("not_found", f"endpoint {name!r}{where} is in no source's listing")
        return source
