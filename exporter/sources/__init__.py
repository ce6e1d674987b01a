"""Where endpoint data comes from. Each source lists endpoints, describes one, and fetches its metrics body."""

from .base import FetchError, MetricsBody, Source

__all__ = ["FetchError", "MetricsBody", "Source"]
