"""The platform-neutral pipeline: the poller fetches Observations from a source, keys them by minute
into per-series windows (window.py), derives the window's figures and checks them against targets
(analysis.py, quantile.py, targets.py), turns sustained problems into hints (rules.py), and publishes
one immutable Snapshot for the sinks. Nothing here names a platform's metric."""
