"""serving-exporter: health of ML model-serving endpoints against production targets."""

__version__ = "0.1.0"
