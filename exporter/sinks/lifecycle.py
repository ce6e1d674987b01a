"""`/-/reload`, Prometheus's lifecycle endpoint: POST (or PUT) reloads the configuration, and only with
--web.enable-lifecycle (403 otherwise), with Prometheus's answers."""

from __future__ import annotations

from collections.abc import Callable

RELOAD_PATH = "/-/reload"


def with_lifecycle(app: Callable, reload: Callable[[], str | None], enabled: bool) -> Callable:
    """`app` with /-/reload in front; `reload` returns None on success, else why the reload was refused."""

    def lifecycle(environ: dict, start_response: Callable) -> list[bytes]:
        if environ.get("PATH_INFO") != RELOAD_PATH:
            return app(environ, start_response)
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if not enabled:
            status, body = "403 Forbidden", "Lifecycle API is not enabled.\n"
        elif environ.get("REQUEST_METHOD") not in ("POST", "PUT"):
            status, body = "405 Method Not Allowed", "Only POST or PUT requests allowed\n"
            headers.append(("Allow", "POST, PUT"))
        else:
            error = reload()
            status, body = ("200 OK", "") if error is None else ("500 Internal Server Error",
                                                                 f"failed to reload config: {error}\n")
        data = body.encode()
        start_response(status, headers + [("Content-Length", str(len(data)))])
        return [data]

    return lifecycle
