# syntax=docker/dockerfile:1
# serving-exporter: the exporter daemon (`serving-exporter run`) as a small, non-root image.
#
#   docker build -t serving-exporter .
#   docker run --rm -p 9877:9877 -e DATABRICKS_HOST=... -e DATABRICKS_TOKEN=... serving-exporter
#   docker run --rm serving-exporter --once                       # flags of `run`
#   docker run --rm --entrypoint serving-exporter serving-exporter check-config
#
# The base image is pinned by tag and digest; update both together (Renovate/Dependabot do).
ARG PYTHON_IMAGE=python:3.11.17-slim@sha256:45037981b62b34b44602584fccbc4d884d5f7dc92c7ee86bb38a698a79fe1e51

# Build stage: the package and its dependencies into a virtual environment.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/serving-exporter
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
RUN /opt/serving-exporter/bin/pip install . \
    && /opt/serving-exporter/bin/python -m compileall -q /opt/serving-exporter

# Runtime stage: the virtual environment only, no compiler, no pip cache, no source tree.
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="serving-exporter" \
      org.opencontainers.image.description="Prometheus exporter for ML model-serving endpoints" \
      org.opencontainers.image.source="https://github.com/serving-exporter/serving-exporter" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric user, so that Kubernetes' runAsNonRoot can verify it (the chart uses 10001).
RUN groupadd --system --gid 10001 serving-exporter \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/serving-exporter --create-home \
       --shell /usr/sbin/nologin serving-exporter
COPY --from=build /opt/serving-exporter /opt/serving-exporter
ENV PATH=/opt/serving-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/serving-exporter
EXPOSE 9877
# The exporter handles SIGTERM itself (it stops polling and exits), so it runs as PID 1 directly.
ENTRYPOINT ["serving-exporter", "run"]
