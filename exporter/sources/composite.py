"""Several sources polled as one (Databricks and self-hosted endpoints in one exporter).

Endpoint names must be distinct across sources, since they are the `serving_endpoint` label: a name the
earlier source (Databricks, listed first) already has leaves the later source's endpoint out of the listing,
logged as an error and counted in `collisions` at each listing, so that one endpoint's series never mixes two
platforms' figures. A source whose listing fails keeps its last good listing (logged and counted in
`list_errors`), so it never blanks the other sources' endpoints; the poll's listing fails only when no source
has ever listed.

Each source may run its own event loop (its HTTP client's): the composite's loop is the first source's, and a
fetch of a source on another loop is handed to that loop and awaited."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence

from ..model import EndpointInfo
from .base import FetchError, Observation, Source

log = logging.getLogger(__name__)


class _Usage:
    """The sources' API usage added up (the poller reads `totals()`)."""

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
    def __init__(self, sources: Sequence[Source]):
        if not sources:
            raise ValueError("a composite source needs at least one source")
        self.sources = tuple(sources)
        self.platform = "+".join(s.platform for s in self.sources)
        self.refresh_seconds = max(s.refresh_seconds for s in self.sources)
        self.usage = _Usage(self.sources)  # type: ignore[assignment]
        self._listed: dict[int, list[EndpointInfo]] = {}  # source index -> its last good listing
        self._owner: dict[str, Source] = {}
        self.list_errors: Counter[tuple[str, str]] = Counter()  # (platform, reason) -> count
        self.collisions: Counter[str] = Counter()  # endpoint name -> listings that left a namesake out

    @property
    def workspace(self) -> str | None:  # type: ignore[override]
        return next((s.workspace for s in self.sources if s.workspace), None)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return next(s.loop for s in self.sources if hasattr(s, "fetch_async"))  # type: ignore[attr-defined]

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
                self.list_errors[(source.platform, reason)] += 1
                log.warning("listing the %s endpoints failed (%s): %s; keeping its last good listing (%s endpoints)",
                            source.platform, reason, exc, len(self._listed[i]) if i in self._listed else "no")
        if not self._listed:
            raise FetchError("list_failed", "no source could list its endpoints")
        listing, owner = [], {}
        for i, source in enumerate(self.sources):
            for info in self._listed.get(i, ()):
                if info.name in owner:
                    self.collisions[info.name] += 1
                    log.error("endpoint name %r is both a %s and a %s endpoint: the %s one is left out; "
                              "rename it in the configuration", info.name, owner[info.name].platform,
                              source.platform, source.platform)
                    continue
                owner[info.name] = source
                listing.append(info)
        self._owner = owner
        return listing

    def describe(self, name: str, deadline: float | None = None) -> EndpointInfo:
        return self._source(name).describe(name, deadline)

    def fetch(self, name: str, deadline: float | None = None) -> Observation:
        return self._source(name).fetch(name, deadline)

    async def _fetch_async(self, name: str, deadline: float | None = None) -> Observation:
        source = self._source(name)
        if not hasattr(source, "fetch_async"):
            return await asyncio.get_running_loop().run_in_executor(None, source.fetch, name, deadline)
        if source.loop is asyncio.get_running_loop():  # type: ignore[attr-defined]
            return await source.fetch_async(name, deadline)  # type: ignore[attr-defined]
        future = asyncio.run_coroutine_threadsafe(source.fetch_async(name, deadline), source.loop)  # type: ignore[attr-defined]
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        for source in self.sources:
            source.close()

    def _source(self, name: str) -> Source:
        source = self._owner.get(name)
        if source is None:
            raise FetchError("not_found", f"endpoint {name!r} is in no source's listing")
        return source
