"""--web.config.file: TLS, basic auth and response headers, in the Prometheus exporter-toolkit format.

The file is the one node_exporter and every exporter built on github.com/prometheus/exporter-toolkit
read (docs/web-configuration.md there; restated in docs/configuration.md#web-configuration), with the
toolkit's defaults and checks: unknown keys are errors, relative paths are relative to the file,
TLS 1.2 to 1.3 by default, client CAs only with a client auth type, only the toolkit's five response
headers, `rate_limit` as one token bucket for all requests. What Python's `ssl` cannot do as Go's
crypto/tls does is refused when the file is read, never ignored: the client auth types that request a
certificate without verifying it, and several curves.

Basic auth follows the toolkit's handler: a user that does not exist is checked against a fixed hash
(so timing does not tell which part was wrong), the answer is 401 with `WWW-Authenticate: Basic` either
way, and the password is compared by bcrypt's own constant-time check. Outcomes are cached by a digest
of (user, hash, password), so that the bcrypt cost (tens of milliseconds) is paid once per credential
and not per scrape. bcrypt runs one at a time, as there.

The toolkit reads the file on every request, so a renewed certificate applies without a restart;
`LiveWebConfig` does the same, checking the files' modification stamps at most once a second.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import logging
import os
import re
import socket
import ssl
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import bcrypt
import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from ..strict import ConfigError, Strict

log = logging.getLogger(__name__)

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
                "TLS13": ssl.TLSVersion.TLSv1_3}
# The toolkit's client auth types that Python's ssl can honour. The others ask for a certificate and accept
# it unverified, which OpenSSL through Python cannot do (it verifies every certificate it requests).
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
# Go's names (tls.CipherSuites(), the secure ones the toolkit accepts) -> OpenSSL's. The TLS 1.3 suites are
# not configurable in Go either: accepted, without effect.
CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
# The response headers the toolkit lets the file set, and the values it allows (None: any).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None, "X-Content-Type-Options": ("nosniff",), "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None, "Content-Security-Policy": None}
BCRYPT_HASH = re.compile(r"\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}")
# The toolkit's stand-in for a user that does not exist: bcrypt of "fakepassword" at cost 10.
UNKNOWN_USER_HASH = b"$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
AUTH_CACHE_SIZE = 100  # as the toolkit's: a few users, a few scrapers each
HANDSHAKE_TIMEOUT_S = 10.0  # a client that opens a connection and sends nothing holds one thread this long
CHECK_INTERVAL_S = 1.0  # how often, at most, the files are checked for changes (a few stat calls)


class TLSServerConfig(Strict):
    cert: str | None = Field(None, description="server certificate, PEM inline (instead of cert_file)")
    key: str | None = Field(None, description="its private key, PEM inline (instead of key_file)")
    cert_file: str | None = None
    key_file: str | None = None
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    client_ca: str | None = Field(None, description="client CA certificates, PEM inline (instead of client_ca_file)")
    client_allowed_sans: list[str] | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: list[str] = Field(default_factory=list)
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[str] = Field(default_factory=list)

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value not in TLS_VERSIONS:
            raise ValueError(f"unknown TLS version {value!r}: one of {', '.join(TLS_VERSIONS)}")
        return value

    @field_validator("client_auth_type")
    @classmethod
    def _client_auth(cls, value: str) -> str:
        if value in UNVERIFIED_CLIENT_AUTH:
            raise ValueError(f"{value} is not supported: Python's ssl verifies every client certificate it asks for; "
                             "use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file")
        if value not in CLIENT_AUTH:
            raise ValueError(f"invalid client auth type {value!r}: one of {', '.join(CLIENT_AUTH)}")
        return value

    @field_validator("cipher_suites")
    @classmethod
    def _ciphers(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in CIPHERS]
        if unknown:
            raise ValueError(f"unknown cipher {unknown[0]!r} (Go's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
        return value

    @field_validator("curve_preferences")
    @classmethod
    def _curves(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in CURVES]
        if unknown:
            raise ValueError(f"unknown curve {unknown[0]!r}: one of {', '.join(CURVES)}")
        if len(value) > 1:
            raise ValueError("at most one curve is supported (Python's ssl sets a single curve, not a preference list)")
        return value

    @model_validator(mode="after")
    def _complete(self) -> TLSServerConfig:
        if not (self.cert or self.cert_file):
            raise ValueError("missing one of cert or cert_file")
        if not (self.key or self.key_file):
            raise ValueError("missing one of key or key_file")
        if self.cert and self.cert_file:
            raise ValueError("at most one of cert and cert_file")
        if self.key and self.key_file:
            raise ValueError("at most one of key and key_file")
        if self.client_ca and self.client_ca_file:
            raise ValueError("at most one of client_ca and client_ca_file")
        if (self.client_ca or self.client_ca_file) and self.client_auth_type == "NoClientCert":
            raise ValueError("client CAs are configured without a client_auth_type (use RequireAndVerifyClientCert)")
        if self.client_auth_type != "NoClientCert" and not (self.client_ca or self.client_ca_file):
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file (or client_ca) to verify "
                             "client certificates against")
        if self.client_allowed_sans is not None and self.client_auth_type != "RequireAndVerifyClientCert":
            raise ValueError("client_allowed_sans requires client_auth_type RequireAndVerifyClientCert")
        if TLS_VERSIONS[self.min_version] > TLS_VERSIONS[self.max_version]:
            raise ValueError(f"min_version {self.min_version} is above max_version {self.max_version}")
        return self


class HTTPServerConfig(Strict):
    http2: bool = Field(True, description="accepted for compatibility: the exporter serves HTTP/1.1 only, which every "
                                          "client negotiates when offered no HTTP/2")
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _allowed(cls, value: dict[str, str]) -> dict[str, str]:
        for name, content in value.items():
            if name not in HEADERS:
                raise ValueError(f"HTTP header {name!r} can not be configured (only {', '.join(HEADERS)})")
            allowed = HEADERS[name]
            if allowed and content not in allowed:
                raise ValueError(f"invalid value for {name}: expected one of {', '.join(allowed)}, got {content!r}")
            if "\r" in content or "\n" in content:
                raise ValueError(f"{name}: a header value cannot contain a line break")
        return value


GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
GO_UNITS_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class RateLimit(Strict):
    interval: float = Field(0.0, description="time between two requests (Go duration, e.g. 100ms); 0: no limit")
    burst: int = Field(0, ge=0, description="requests allowed at once")

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        """Go's time.ParseDuration syntax ("1m30s", "250ms", "0"), as the toolkit's YAML reads it."""
        if isinstance(value, str):
            parts = GO_DURATION.findall(value)
            if value != "0" and "".join(n + u for n, u in parts) != value:
                raise ValueError(f"not a duration: {value!r} (e.g. 1s, 250ms, 1m30s)")
            return sum(float(n) * GO_UNITS_S[u] for n, u in parts)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value * 1e-9  # a bare number is nanoseconds, as a Go time.Duration
        raise ValueError(f"not a duration: {value!r} (e.g. 1s, 250ms, 1m30s)")


class TokenBucket:
    """golang.org/x/time/rate's Limiter as the toolkit uses it: one token every `interval`, at most `burst`
    kept; a request without a token gets 429."""

    def __init__(self, interval_s: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self._interval, self._burst, self._clock = interval_s, burst, clock
        self._tokens, self._at = float(burst), clock()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self._burst), self._tokens + (now - self._at) / self._interval)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


class WebConfigFile(Strict):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    rate_limit: RateLimit = Field(default_factory=RateLimit)

    @field_validator("tls_server_config", mode="before")
    @classmethod
    def _tls_present(cls, value: Any) -> Any:
        # As the toolkit: a section with none of its TLS keys set means plain HTTP.
        keys = ("cert", "key", "cert_file", "key_file", "client_ca", "client_ca_file", "client_auth_type")
        if isinstance(value, dict) and not any(value.get(k) for k in keys):
            return None
        return value

    @field_validator("basic_auth_users")
    @classmethod
    def _hashes(cls, value: dict[str, str]) -> dict[str, str]:
        for user, hashed in value.items():
            if not isinstance(hashed, str) or not BCRYPT_HASH.fullmatch(hashed):
                raise ValueError(f"user {user!r}: the password must be a bcrypt hash ($2y$10$..., e.g. from "
                                 "`htpasswd -nBC 10 \"\" | tr -d ':\\n'`), not a plain password")
        return value


class WebConfig:
    """A validated web configuration file: its TLS context (None: plain HTTP), users and headers."""

    def __init__(self, path: Path, parsed: WebConfigFile, context: ssl.SSLContext | None):
        self.path = path
        self.tls = parsed.tls_server_config
        self.context = context
        self.users = {user: hashed.encode() for user, hashed in parsed.basic_auth_users.items()}
        self.headers = list(parsed.http_server_config.headers.items())
        limit = parsed.rate_limit
        self.limiter = TokenBucket(limit.interval, limit.burst) if limit.interval > 0 else None
        tls = self.tls
        named = (tls.cert_file, tls.key_file, tls.client_ca_file) if tls else ()
        self.files = (path, *(path.parent / name for name in named if name))  # what a change is looked for in

    def stamp(self) -> tuple:
        """The files' identity and modification times: it changes when one is rewritten or replaced (a
        Kubernetes Secret volume swaps a symlink)."""
        stamps = []
        for file in self.files:
            try:
                st = file.stat()
                stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def handshake(self, sock: socket.socket) -> ssl.SSLSocket:
        """The TLS side of a new connection, on the connection's own thread; raises if the handshake fails or
        the client certificate has none of client_allowed_sans."""
        assert self.context is not None
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        conn = self.context.wrap_socket(sock, server_side=True)
        allowed = self.tls.client_allowed_sans if self.tls else None
        if allowed is not None and not set(_sans(conn.getpeercert())) & set(allowed):
            conn.close()
            raise ssl.SSLError("the client certificate has none of client_allowed_sans")
        conn.settimeout(None)
        return conn


def load_web_config(path: str | Path) -> WebConfig:
    """Read and check the file completely (certificates and keys loaded, hashes parsed), or raise ConfigError."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"web config {path}: cannot read: {exc.strerror}"]) from None
    except yaml.MarkedYAMLError as exc:  # where, without PyYAML's snippet: the line may hold an inline key
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"web config {path}: not valid YAML: {exc.problem or exc.context}{where}"]) from None
    except (yaml.YAMLError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConfigError([f"web config {path}: not valid YAML: {type(exc).__name__}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"web config {path}: the top level must be a mapping, not {type(data).__name__}"])
    try:
        parsed = WebConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([f"web config {path}: {_where(err)}{_message(err)}" for err in exc.errors()]) from None
    try:
        context = _context(parsed.tls_server_config, path.parent) if parsed.tls_server_config else None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError([f"web config {path}: tls_server_config: {exc}"]) from None
    return WebConfig(path, parsed, context)


def _where(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"])
    return f"{key}: " if key else ""


def _message(err: dict[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    return err["msg"].removeprefix("Value error, ")  # never the input: a misplaced key or password must not be echoed


def _context(tls: TLSServerConfig, directory: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    _load_pair(context, tls, directory)
    context.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca_file:
        ca_file = directory / tls.client_ca_file
        _readable(ca_file, "client_ca_file")
        context.load_verify_locations(cafile=str(ca_file))
    elif tls.client_ca:
        context.load_verify_locations(cadata=tls.client_ca)
    openssl = [CIPHERS[c] for c in tls.cipher_suites if CIPHERS[c]]
    if openssl:
        context.set_ciphers(":".join(openssl))
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.curve_preferences:
        context.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
    return context


def _load_pair(context: ssl.SSLContext, tls: TLSServerConfig, directory: Path) -> None:
    """The certificate and key, from their files or inline (written to a private temporary directory for
    OpenSSL to read, then deleted)."""
    if tls.cert_file and tls.key_file:
        cert, key = directory / tls.cert_file, directory / tls.key_file
        _readable(cert, "cert_file")
        _readable(key, "key_file")
        _pair(context, cert, key)
        return
    with tempfile.TemporaryDirectory(prefix="web-config-") as tmp:
        cert = directory / tls.cert_file if tls.cert_file else _private_file(Path(tmp) / "cert.pem", tls.cert or "")
        key = directory / tls.key_file if tls.key_file else _private_file(Path(tmp) / "key.pem", tls.key or "")
        _readable(cert, "cert_file")
        _readable(key, "key_file")
        _pair(context, cert, key)


def _pair(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        raise ValueError(f"cannot load the certificate and key (not PEM, or the key does not match the certificate): "
                         f"{exc.reason or exc}") from None


def _private_file(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return path


def _readable(path: Path, key: str) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"{key} {path}: cannot read: {exc.strerror}") from None


def _sans(cert: dict[str, Any] | None) -> Iterable[str]:
    """The Subject Alternative Names of a verified peer certificate (DNS, IP, e-mail, URI) as the toolkit
    compares them: IP addresses in Go's form (Python writes IPv6 in full, upper case)."""
    for kind, value in (cert or {}).get("subjectAltName", ()):
        yield ipaddress.ip_address(value.strip()).compressed if kind == "IP Address" else value


class LiveWebConfig:
    """The web configuration in force. A change to the file or to a file it names (a renewed certificate)
    applies to the next connection or request, as in the toolkit; an invalid change is logged once and the
    previous configuration stays. Turning TLS on or off needs a restart (the toolkit's too)."""

    def __init__(self, config: WebConfig, clock: Callable[[], float] = time.monotonic):
        self._config, self._stamp, self._refused = config, config.stamp(), None
        self._clock = clock
        self._checked = clock()
        self._lock = threading.Lock()

    def current(self) -> WebConfig:
        now = self._clock()
        if now - self._checked >= CHECK_INTERVAL_S and self._lock.acquire(blocking=False):  # one checker at a time
            try:
                self._checked = now
                stamp = self._config.stamp()
                if stamp not in (self._stamp, self._refused):
                    try:
                        self._config, self._stamp = self.reread(), stamp
                        log.info("web config %s changed: applied", self._config.path)
                    except ConfigError as exc:
                        self._refused = stamp
                        log.error("web config %s changed but is invalid; the previous one stays in force: %s",
                                  self._config.path, exc)
            finally:
                self._lock.release()
        return self._config

    def reread(self) -> WebConfig:
        """The file read and checked again (not applied); raises ConfigError."""
        new = load_web_config(self._config.path)
        if (new.context is None) != (self._config.context is None):
            raise ConfigError([f"web config {new.path}: turning TLS on or off needs a restart"])
        return new

    def use(self, config: WebConfig) -> None:
        with self._lock:
            self._config, self._stamp, self._refused = config, config.stamp(), None


class Guard:
    """WSGI middleware in front of every path: the configured response headers, then basic auth, with the
    web configuration in force at each request."""

    def __init__(self, app: Callable, config: Callable[[], WebConfig],
                 checkpw: Callable[[bytes, bytes], bool] = bcrypt.checkpw):
        self._app = app
        self._config = config
        self._checkpw = checkpw
        self._bcrypt = threading.Lock()  # one bcrypt at a time: a flood of bad passwords costs one core at most
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._cache_lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        config = self._config()

        def with_headers(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, headers + config.headers, exc_info)

        if config.limiter is not None and not config.limiter.allow():  # before auth, as the toolkit: no bcrypt
            return _refuse(with_headers, "429 Too Many Requests", [])
        if config.users and not self.authorized(config, environ.get("HTTP_AUTHORIZATION", "")):
            return _refuse(with_headers, "401 Unauthorized",
                           [("WWW-Authenticate", 'Basic realm="serving-exporter", charset="UTF-8"')])
        return self._app(environ, with_headers)

    def authorized(self, config: WebConfig, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        hashed = config.users.get(user)
        known = hashed is not None
        hashed = hashed if known else UNKNOWN_USER_HASH
        # The cache key is a digest (the password itself is never kept) of an unambiguous encoding.
        key = hashlib.sha256(repr((user, hashed, password)).encode()).digest()
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is None:
            with self._bcrypt:
                try:
                    cached = self._checkpw(password.encode(), hashed)
                except ValueError:  # bcrypt refuses passwords over 72 bytes: they match nothing
                    cached = False
            with self._cache_lock:
                self._cache[key] = cached
                while len(self._cache) > AUTH_CACHE_SIZE:
                    self._cache.popitem(last=False)
        return known and cached


def _refuse(start_response: Callable, status: str, headers: list[tuple[str, str]]) -> list[bytes]:
    body = status.split(" ", 1)[1].encode() + b"\n"
    start_response(status, headers + [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
