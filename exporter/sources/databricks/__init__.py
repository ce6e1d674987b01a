"""Databricks Model Serving: everything that knows Databricks lives in this package.

- source.py: the REST calls through the vendor SDK (list, detail, metrics), re-authentication, the body cap
- sdk.py: the SDK's configuration, auth and HTTP core without its service modules (imported first)
- client.py: the SDK client factory and error classification
- endpoints.py: endpoint JSON → EndpointInfo, workload types and sizes, readiness and deployment states
- metrics.py: the `/metrics` body → per-minute figures: metric names, units, served-entity labels
- settings.py: the `databricks:` settings section
"""

from . import sdk  # noqa: F401  (first: the modules below then import the SDK without its service modules)
from .client import client_factory
from .source import DatabricksSource

__all__ = ["DatabricksSource", "client_factory"]
