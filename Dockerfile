# syntax=docker/dockerfile:1
# One image for the controller (`eventpipeline run`, the default) and the trigger listener
# (`eventpipeline listen`). Build from the repository root:
#
#   docker build -t eventpipeline-operator:dev .
#
# The final stage has no compiler, no pip cache and no source tree: only the Python runtime,
# a virtual environment installed from requirements/runtime.lock, and a non-root user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/eventpipeline
# Dependencies first, from the lock alone, so that a code change reuses this layer.
COPY requirements/runtime.lock requirements/runtime.lock
RUN /opt/eventpipeline/bin/pip install --no-deps --only-binary=:all: -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY operator ./operator
# --no-deps: everything the package needs came from the lock above; nothing unpinned sneaks in.
RUN /opt/eventpipeline/bin/pip install --no-deps . \
    && /opt/eventpipeline/bin/python -m compileall -q /opt/eventpipeline \
    && /opt/eventpipeline/bin/eventpipeline --version

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="eventpipeline-operator" \
      org.opencontainers.image.description="Kubernetes operator that wires Kafka or Pulsar topics to Airflow DAG runs (controller and trigger listener)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/eventpipeline/eventpipeline-operator" \
      org.opencontainers.image.documentation="https://github.com/eventpipeline/eventpipeline-operator/tree/main/docs"
# A fixed numeric user: `runAsNonRoot` can verify it, and it owns nothing in the image.
RUN groupadd --system --gid 65532 eventpipeline \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin eventpipeline
COPY --from=build /opt/eventpipeline /opt/eventpipeline
# Read-only root filesystem: byte code was compiled at build time, nothing is written beside
# the code, and the only writable place a pod needs is /tmp (an emptyDir in the chart).
ENV PATH=/opt/eventpipeline/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
WORKDIR /tmp
# 8080: controller liveness (/healthz); 9102: listener Prometheus metrics.
EXPOSE 8080 9102
ENTRYPOINT ["eventpipeline"]
CMD ["run", "--liveness", "http://0.0.0.0:8080/healthz"]
