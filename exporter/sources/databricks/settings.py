"""Settings of the Databricks source: the `databricks:` section (one workspace) and the `workspaces:` list
(several). Credentials are never settings: with `databricks:` the SDK reads them from its own variables
(DATABRICKS_HOST, DATABRICKS_TOKEN, DATABRICKS_CLIENT_ID/SECRET, DATABRICKS_CONFIG_PROFILE) and
~/.databrickscfg; a `workspaces:` entry names a profile or the environment variables that hold them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from ...strict import Strict

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Keys that would put a secret in the file: refused with a message saying what to write instead.
SECRET_KEYS = ("token", "client_secret", "password", "secret", "client_id")


class DatabricksSettings(Strict):
    """Where to find the workspace. Credentials come from the SDK's own environment/profile."""

    host: str | None = Field(None, description="workspace URL; default: DATABRICKS_HOST or the profile's host")
    profile: str | None = Field(None, description="~/.databrickscfg profile; default: DATABRICKS_CONFIG_PROFILE")


class WorkspaceSettings(Strict):
    """One workspace of the `workspaces:` list: its label, its host, and its credentials by reference."""

    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$",
                      description="the `workspace` label value: a short slug (lower case, digits, - and _), unique")
    host: str | None = Field(None, description="workspace URL; default: the profile's host")
    profile: str | None = Field(None, description="~/.databrickscfg profile holding the host and credentials")
    token_env: str | None = Field(None, pattern=ENV_NAME,
                                  description="name of the environment variable holding a personal access token")
    client_id_env: str | None = Field(None, pattern=ENV_NAME,
                                      description="OAuth M2M: name of the environment variable holding the client id")
    client_secret_env: str | None = Field(None, pattern=ENV_NAME,
                                          description="OAuth M2M: name of the environment variable holding the client secret")

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            literal = [k for k in data if k in SECRET_KEYS]
            if literal:
                raise ValueError(f"{', '.join(literal)}: credentials are never written in the configuration; name the "
                                 "environment variable that holds them (token_env, client_id_env + client_secret_env) "
                                 "or a Databricks config profile")
        return data

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> WorkspaceSettings:
        ways = [w for w, given in (("profile", self.profile), ("token_env", self.token_env),
                                   ("client_id_env + client_secret_env", self.client_id_env or self.client_secret_env))
                if given]
        if len(ways) != 1:
            raise ValueError(f"workspace {self.name!r}: give exactly one of profile, token_env or client_id_env + "
                             f"client_secret_env (got {', '.join(ways) or 'none'})")
        if bool(self.client_id_env) != bool(self.client_secret_env):
            raise ValueError(f"workspace {self.name!r}: client_id_env and client_secret_env go together")
        if not self.host and not self.profile:
            raise ValueError(f"workspace {self.name!r}: host is required (only a profile can supply it)")
        return self

    def auth(self, environ: Mapping[str, str] = os.environ) -> dict[str, str | None]:
        """The SDK's configuration for this workspace, credentials read from the environment now (so a rotated
        Secret is picked up when the client is rebuilt). Raises ValueError naming a variable that is not set,
        never its value."""
        if self.profile:
            return {"host": self.host, "profile": self.profile}

        def read(var: str) -> str:
            value = environ.get(var)
            if not value:
                raise ValueError(f"workspace {self.name!r}: environment variable {var} is not set")
            return value

        if self.token_env:
            return {"host": self.host, "token": read(self.token_env), "auth_type": "pat"}
        return {"host": self.host, "client_id": read(self.client_id_env or ""),
                "client_secret": read(self.client_secret_env or ""), "auth_type": "oauth-m2m"}
