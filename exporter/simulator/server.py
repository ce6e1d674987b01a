"""HTTP front of a Workspace: the serving-endpoints REST API, invocations, OAuth, and a control API."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from .workspace import DEMO_TOKEN, EndpointNotFound, Workspace

log = logging.getLogger(__name__)

_GARBAGE = b"\x89PNG\r\n\x1a\n\x00\xff<html><body>502 Bad Gateway</body></html>\n"
_API = "/api/2.0/serving-endpoints"
_CONTROL = "/simulator/v1"


class HttpError(Exception):
    """An answer other than 200, with a Databricks-style JSON body."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(body)
        self.status, self.body, self.headers = status, body, headers or {}


def _api_error(status: int, code: str, message: str, **headers: str) -> HttpError:
    return HttpError(status, {"error_code": code, "message": message}, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    workspace: Workspace
    stopping: threading.Event


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as the SDK's pooled session expects; every answer sets Content-Length.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus delayed ACK
    # would add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server: _Server

    # -- plumbing -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    @property
    def ws(self) -> Workspace:
        return self.server.workspace

    def _dispatch(self, method: str) -> None:
        if self.server.stopping.is_set():  # a stopped workspace is gone: its kept-alive connections too
            self.close_connection = True
            return
        path = urlsplit(self.path).path
        try:
            self._raw_body = self._read_body()
            route = next(((kind, handler, match) for methods, pattern, kind, handler in _ROUTES
                          if method in methods and (match := pattern.fullmatch(path))), None)
            if route is None:
                self.ws.count("other")
                raise _api_error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")
            kind, handler, match = route
            args = [unquote(g) for g in match.groups()]
            self.ws.count(kind, args[0] if args else None)
            if kind in _AUTHENTICATED:
                self._authenticate()
                if self.ws.response_delay_s:  # emulate the round trip to a remote workspace
                    self.server.stopping.wait(self.ws.response_delay_s)
            try:
                result = handler(self, *args)
            except EndpointNotFound as e:
                raise _api_error(404, "RESOURCE_DOES_NOT_EXIST", str(e.args[0])) from None
            except (ValueError, TypeError) as e:
                if kind != "control":
                    raise
                raise _api_error(400, "INVALID_PARAMETER_VALUE", str(e)) from None
            if result is not None:
                self._send_json(200, result)
        except HttpError as e:
            self._send_json(e.status, e.body, e.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. during a timeout fault)
        except Exception:  # a simulator bug: answer like the platform would, and keep serving
            log.exception("simulator failed on %s %s", method, path)
            self._send_json(500, {"error_code": "INTERNAL_ERROR", "message": "Simulator error"})

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self._raw_body or b"{}")
        except ValueError:
            raise _api_error(400, "MALFORMED_REQUEST", "Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _api_error(400, "MALFORMED_REQUEST", "Request body must be a JSON object")
        return body

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _base_url(self) -> str:
        # The address the client used, so discovery documents point back at it.
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        return f"http://{host}"

    def _authenticate(self) -> None:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not self.ws.token_valid(token.strip()):
            raise _api_error(401, "UNAUTHENTICATED", "Invalid access token.")
        self._oauth = token.strip() != DEMO_TOKEN

    # -- discovery and OAuth (no auth) ---------------------------------------------------------
    def _databricks_config(self) -> dict[str, Any]:
        return {"oidc_endpoint": f"{self._base_url()}/oidc",
                "workspace_id": self.ws.workspace_id, "cloud": "aws"}

    def _oauth_metadata(self) -> dict[str, Any]:
        url = self._base_url()
        return {"issuer": f"{url}/oidc", "authorization_endpoint": f"{url}/oidc/v1/authorize",
                "token_endpoint": f"{url}/oidc/v1/token"}

    def _token(self) -> dict[str, Any]:
        form = {k: v[0] for k, v in parse_qs(self._raw_body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            raise HttpError(400, {"error": "unsupported_grant_type",
                                  "error_description": "Only client_credentials is supported"})
        # Client credentials from HTTP Basic auth (what the SDK sends) or from the form.
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        scheme, _, credentials = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, client_secret = (
                    base64.b64decode(credentials.strip()).decode().partition(":"))
            except (binascii.Error, UnicodeDecodeError):
                pass
        grant = self.ws.issue_token(client_id, client_secret, form.get("scope"))
        if grant is None:
            raise HttpError(401, {"error": "invalid_client",
                                  "error_description": "Client authentication failed"})
        return grant

    # -- serving-endpoints API (bearer token) -------------------------------------------------
    def _list(self) -> dict[str, Any]:
        return self.ws.list_endpoints()

    def _detail(self, name: str) -> dict[str, Any]:
        return self.ws.get_endpoint(name)

    def _metrics(self, name: str) -> None:
        fault = self.ws.fault(name)
        if fault.kind == "timeout":
            # Interruptible, so stopping the server does not wait for sleeping handlers.
            self.server.stopping.wait(fault.delay_s)
        elif fault.kind == "http_500":
            raise _api_error(500, "INTERNAL_ERROR", "Internal error. Please try again later.")
        elif fault.kind == "http_403":
            raise _api_error(403, "PERMISSION_DENIED",
                             f"User does not have permission 'View' on endpoint '{name}'.")
        elif fault.kind == "http_429":
            raise _api_error(429, "REQUEST_LIMIT_EXCEEDED",
                             "Too many requests. Please wait a moment and try again.",
                             **{"Retry-After": str(fault.retry_after)})
        body, content_type = self.ws.metrics(name)
        if fault.kind == "garbage":
            body = _GARBAGE
        elif fault.kind == "empty":
            body = b""
        self._send(200, body, content_type)

    def _invocations(self, name: str) -> None:
        status, body = self.ws.invoke(name, self._raw_body, self.server.stopping, oauth=self._oauth)
        headers = {"Retry-After": "1"} if status == 429 else None
        self._send_json(status, body, headers)

    # -- control API (no auth) ----------------------------------------------------------------
    def _ctl_state(self) -> dict[str, Any]:
        return self.ws.control_state()

    def _ctl_create(self) -> dict[str, Any]:
        body = self._json_body()
        name = body.pop("name", None)
        if not isinstance(name, str):
            raise ValueError("'name' is required")
        if name in self.ws:
            raise _api_error(409, "RESOURCE_ALREADY_EXISTS", f"Endpoint '{name}' already exists.")
        scenario = self.ws.add_endpoint(name, body.pop("preset", "healthy"), **body)
        return {"name": name, "scenario": scenario.to_dict()}

    def _ctl_endpoint(self, name: str) -> dict[str, Any]:
        return {"name": name, "scenario": self.ws.scenario(name).to_dict(),
                "fault": asdict(self.ws.fault(name)), "minute": self.ws.minute(name).summary()}

    def _ctl_delete(self, name: str) -> dict[str, Any]:
        self.ws.remove_endpoint(name)
        return {}

    def _ctl_scenario(self, name: str) -> dict[str, Any]:
        body = self._json_body()
        preset = body.pop("preset", None)
        if preset is None:
            scenario = self.ws.patch_scenario(name, **body)
        else:
            scenario = self.ws.set_scenario(name, preset, **body)
        return {"name": name, "scenario": scenario.to_dict(),
                "effective_from_minute": self.ws.current_minute + 1}

    def _ctl_fault(self, name: str) -> dict[str, Any]:
        return asdict(self.ws.set_fault(name, **self._json_body()))

    def _ctl_revoke(self) -> dict[str, Any]:
        self.ws.revoke_tokens()
        return {}

    def _ctl_settings(self) -> dict[str, Any]:
        body = self._json_body()
        unknown = set(body) - {"token_lifetime_s", "response_delay_s"}
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        if "response_delay_s" in body:
            delay = float(body["response_delay_s"])
            if delay < 0:
                raise ValueError("response_delay_s must be >= 0")
            self.ws.response_delay_s = delay
        if "token_lifetime_s" in body:
            lifetime = float(body["token_lifetime_s"])
            if lifetime <= 0:
                raise ValueError("token_lifetime_s must be > 0")
            self.ws.token_lifetime_s = lifetime
        return {"token_lifetime_s": self.ws.token_lifetime_s, "response_delay_s": self.ws.response_delay_s}

    def _ctl_advance(self) -> dict[str, Any]:
        self.ws.advance(int(self._json_body().get("minutes", 1)))
        return {"current_minute": self.ws.current_minute}


_AUTHENTICATED = frozenset({"list", "detail", "metrics", "invocations"})
_NAME = "([^/]+)"
# (methods, path pattern, request kind for Workspace.request_counts, handler)
_ROUTES: list[tuple[tuple[str, ...], re.Pattern[str], str, Callable[..., Any]]] = [
    (methods, re.compile(pattern), kind, handler) for methods, pattern, kind, handler in [
        (("GET",), r"/\.well-known/databricks-config", "discovery", _Handler._databricks_config),
        (("GET",), r"/oidc/\.well-known/oauth-authorization-server", "discovery",
         _Handler._oauth_metadata),
        (("POST",), r"/oidc/v1/token", "token", _Handler._token),
        (("GET",), _API, "list", _Handler._list),
        (("GET",), f"{_API}/{_NAME}", "detail", _Handler._detail),
        (("GET",), f"{_API}/{_NAME}/metrics", "metrics", _Handler._metrics),
        # On the workspace host, and the path of a route-optimized endpoint_url (/<workspace id>/serving-endpoints/...).
        (("POST",), rf"(?:/\d+)?/serving-endpoints/{_NAME}/invocations", "invocations", _Handler._invocations),
        (("GET",), f"{_CONTROL}/endpoints", "control", _Handler._ctl_state),
        (("POST",), f"{_CONTROL}/endpoints", "control", _Handler._ctl_create),
        (("GET",), f"{_CONTROL}/endpoints/{_NAME}", "control", _Handler._ctl_endpoint),
        (("DELETE",), f"{_CONTROL}/endpoints/{_NAME}", "control", _Handler._ctl_delete),
        (("PUT", "POST"), f"{_CONTROL}/endpoints/{_NAME}/scenario", "control",
         _Handler._ctl_scenario),
        (("POST",), f"{_CONTROL}/endpoints/{_NAME}/fault", "control", _Handler._ctl_fault),
        (("POST",), f"{_CONTROL}/tokens/revoke", "control", _Handler._ctl_revoke),
        (("PUT",), f"{_CONTROL}/settings", "control", _Handler._ctl_settings),
        (("POST",), f"{_CONTROL}/advance", "control", _Handler._ctl_advance),
    ]
]


class SimulatorServer:
    """Serves a Workspace over HTTP from a daemon thread.

    Binds at construction (port=0 picks a free port, known from `.url` before `.start()`).
    """

    def __init__(self, workspace: Workspace, host: str = "127.0.0.1", port: int = 0) -> None:
        self.workspace = workspace
        self._httpd = _Server((host, port), _Handler)
        self._httpd.workspace = workspace
        self._httpd.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    def start(self) -> SimulatorServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                name=f"simulator-{self._httpd.server_address[1]}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
