"""Settings of the Databricks source (the `databricks:` section). Credentials are not settings: the SDK
reads them from its own variables (DATABRICKS_HOST, DATABRICKS_TOKEN, DATABRICKS_CLIENT_ID/SECRET,
DATABRICKS_CONFIG_PROFILE) and ~/.databrickscfg."""

from __future__ import annotations

from pydantic import Field

from ...strict import Strict


class DatabricksSettings(Strict):
    """Where to find the workspace. Credentials come from the SDK's own environment/profile."""

    host: str | None = Field(None, description="workspace URL; default: DATABRICKS_HOST or the profile's host")
    profile: str | None = Field(None, description="~/.databrickscfg profile; default: DATABRICKS_CONFIG_PROFILE")
