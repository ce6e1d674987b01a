"""Where endpoint data comes from. A source lists endpoints, describes one, and fetches its figures as a
platform-neutral `Observation`; each platform lives in a package of its own (today `databricks/`)."""

from .base import ApiUsage, FetchError, MetricsParseError, Observation, Source

__all__ = ["ApiUsage", "FetchError", "MetricsParseError", "Observation", "Source"]
