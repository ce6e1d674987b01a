"""Self-hosted model servers (vLLM, TGI, Triton, MLServer, KServe, TorchServe, Ray Serve, BentoML): every
replica's own Prometheus metrics, differenced between fetches into per-minute figures.

- settings.py: the `self_hosted:` settings section
- discovery.py: each endpoint's replicas: static targets, DNS (A/AAAA/SRV), Prometheus file_sd files
- auth.py: bearer token or basic auth read at request time, the TLS context
- servers.py: per server kind, which metric feeds which figure, in which unit
- readings.py: one replica's body → its cumulative counts, histograms and gauges
- aggregate.py: increases since the previous fetch (counter resets as rate() takes them), one minute's worth,
  summed over replicas
- source.py: the Source the poller drives
"""

from .source import SelfHostedSource

__all__ = ["SelfHostedSource"]
