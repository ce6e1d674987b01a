"""An endpoint's credentials, read at each request from the file or environment variable the settings name
(a rotated token is used from the next request), and its TLS context. Errors name the file or variable,
never its content."""

from __future__ import annotations

import base64
import os
import ssl

from ..base import FetchError
from .settings import AuthSettings


def headers(auth: AuthSettings) -> dict[str, str]:
    if auth.bearer_token_file or auth.bearer_token_env:
        return {"Authorization": f"Bearer {_secret(auth.bearer_token_file, auth.bearer_token_env)}"}
    if auth.basic_auth is not None:
        password = _secret(auth.basic_auth.password_file, auth.basic_auth.password_env)
        token = base64.b64encode(f"{auth.basic_auth.username}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {}


def _secret(path: str | None, env: str | None) -> str:
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                value = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise FetchError("auth", f"cannot read the secret file {path}: {type(exc).__name__}") from None
        where = f"the secret file {path}"
    else:
        value = os.environ.get(env or "", "").strip()
        where = f"the environment variable {env}"
    if not value:
        raise FetchError("auth", f"{where} is empty or missing")
    if "\r" in value or "\n" in value:
        raise FetchError("auth", f"{where} holds a line break")
    return value


def tls_context(auth: AuthSettings) -> ssl.SSLContext | None:
    """None: the client's default (the system's or certifi's CAs)."""
    if auth.insecure_skip_verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if auth.ca_file:
        return ssl.create_default_context(cafile=auth.ca_file)
    return None
