"""Each endpoint's replicas, as metrics URLs: static targets, a DNS name re-resolved at every poll (A, AAAA
or SRV), or Prometheus file_sd files (JSON or YAML, globs) re-read when they change.

A lookup or a file that fails keeps the last good list (logged and counted in `errors`): a DNS hiccup or a
half-written file must not make every replica vanish, and their baselines with them."""

from __future__ import annotations

import glob
import ipaddress
import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from ..base import FetchError
from .settings import DnsSettings, SelfHostedEndpoint

log = logging.getLogger(__name__)

# (name, record type, timeout in seconds) -> [(host, port or None)]; port only from SRV records.
Resolver = Callable[[str, str, float], list[tuple[str, int | None]]]


def dns_resolver(name: str, rdtype: str, timeout_s: float) -> list[tuple[str, int | None]]:
    """dnspython's resolver with the system's configuration (/etc/resolv.conf)."""
    import dns.exception
    import dns.resolver

    try:
        answer = dns.resolver.resolve(name, rdtype, lifetime=timeout_s, search=True)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):  # the name or its records are gone: no replicas
        return []
    except dns.exception.DNSException as exc:
        raise FetchError("dns", f"{rdtype} lookup of {name} failed: {type(exc).__name__}") from None
    if rdtype == "SRV":
        return [(str(r.target).rstrip("."), int(r.port)) for r in answer]
    return [(r.address, None) for r in answer]


def url(scheme: str, host: str, port: int, path: str) -> str:
    try:
        host = f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        pass  # a host name
    return f"{scheme}://{host}:{port}{path}"


@dataclass
class _File:
    stamp: tuple[float, int]  # (mtime, size) when read
    targets: list[str]


class Discovery:
    """The current targets of every endpoint. `resolver` is the DNS seam (tests inject one)."""

    def __init__(self, resolver: Resolver = dns_resolver, dns_timeout_s: float = 5.0):
        self._resolver = resolver
        self._timeout = dns_timeout_s
        self._last: dict[str, list[str]] = {}  # endpoint -> last good DNS answer
        self._files: dict[str, _File] = {}  # path -> its last good read
        self.errors: Counter[tuple[str, str]] = Counter()  # (endpoint, reason) -> count

    def targets(self, endpoint: SelfHostedEndpoint) -> list[str]:
        if endpoint.targets is not None:
            return list(endpoint.targets)
        if endpoint.dns is not None:
            return self._dns(endpoint.name, endpoint.dns)
        return self._file_sd(endpoint)

    def _dns(self, name: str, dns: DnsSettings) -> list[str]:
        try:
            records = self._resolver(dns.name, dns.type, self._timeout)
        except Exception as exc:  # FetchError from the default resolver; anything from an injected one
            self.errors[(name, "dns")] += 1
            last = self._last.get(name)
            log.warning("endpoint %s: %s; keeping the last good list (%s targets)", name,
                        exc if isinstance(exc, FetchError) else type(exc).__name__, len(last) if last else 0)
            if last is None:
                raise FetchError("dns", f"{dns.type} lookup of {dns.name} failed and no earlier answer") from None
            return last
        found = sorted({url(dns.scheme, host, port if port is not None else dns.port, dns.path)  # type: ignore[arg-type]
                        for host, port in records})
        self._last[name] = found
        return found

    def _file_sd(self, endpoint: SelfHostedEndpoint) -> list[str]:
        paths = sorted({p for pattern in endpoint.file_sd or () for p in glob.glob(pattern)})
        found: set[str] = set()
        for path in paths:
            found.update(self._read(endpoint, path))
        return sorted(found)

    def _read(self, endpoint: SelfHostedEndpoint, path: str) -> list[str]:
        known = self._files.get(path)
        try:
            st = os.stat(path)
            stamp = (st.st_mtime, st.st_size)
            if known is not None and known.stamp == stamp:
                return known.targets
            with open(path, encoding="utf-8") as f:
                text = f.read()
            data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
            targets = _file_sd_targets(data, endpoint)
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
            self.errors[(endpoint.name, "file_sd")] += 1
            log.warning("endpoint %s: file_sd %s unusable (%s); keeping its last good targets (%d)", endpoint.name,
                        path, type(exc).__name__ if not isinstance(exc, ValueError) else str(exc)[:200],
                        len(known.targets) if known else 0)
            return known.targets if known else []
        self._files[path] = _File(stamp, targets)
        return targets


def _file_sd_targets(data: object, endpoint: SelfHostedEndpoint) -> list[str]:
    """Prometheus file_sd: a list of {targets: [host:port, ...], labels: {...}}; the labels `__scheme__` and
    `__metrics_path__` override the endpoint's scheme and metrics path, as in a scrape config."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError(f"expected a list of target groups, got {type(data).__name__}")
    found = []
    for group in data:
        if not isinstance(group, dict) or not isinstance(group.get("targets"), list):
            raise ValueError("a target group without a `targets` list")
        labels = group.get("labels") or {}
        if not isinstance(labels, dict):
            raise ValueError("a target group whose `labels` is not a mapping")
        scheme = labels.get("__scheme__", endpoint.scheme)
        path = labels.get("__metrics_path__", endpoint.metrics_path)
        if scheme not in ("http", "https") or not str(path).startswith("/"):
            raise ValueError("a target group with a scheme other than http(s) or a path not starting with '/'")
        for target in group["targets"]:
            host, sep, port = str(target).rpartition(":")
            if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host or "/" in host or "@" in host:
                raise ValueError(f"a target that is not host:port: {str(target)[:100]!r}")
            found.append(url(scheme, host.strip("[]"), int(port), path))
    return found
