"""Datadog: the same figures, hints and paging as Prometheus (docs/datadog.md).

- points.py: Snapshot → points and hint events, from the catalog
- sink.py: the push sink (v2 series, v1 events): packing, sending, self-metrics
- backlog.py: compressed payloads awaiting delivery, in memory and in an optional spill directory
- delivery.py: bounded event buffer, backoff, rate-limit headers
- sync.py: `serving-exporter datadog sync-monitors | sync-dashboard`
- schema.py: strict checks of bodies against datadog-api-client's models
- settings.py: the `datadog:` settings section

Nothing is imported here, so reading the settings does not load datadog-api-client.
"""
