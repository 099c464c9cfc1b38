# syntax=docker/dockerfile:1
# The operator image: `python -m jobqueue_operator` (kopf and the Kubernetes client,
# jobqueue[operator]); no book pipeline, no embedder weights.
# Build from the repository root:
#   docker build -f deploy/docker/operator.Dockerfile -t jobqueue-operator:0.1.0 \
#     --build-arg PYTHON_BASE=python:3.12.8-slim-bookworm@sha256:<digest> .
# The base is pinned by version and digest. The digest below is a placeholder that no
# registry serves, so a build that forgets to pin it fails instead of floating; get the real
# one with `docker buildx imagetools inspect python:3.12.8-slim-bookworm`.
ARG PYTHON_BASE=python:3.12.8-slim-bookworm@sha256:0000000000000000000000000000000000000000000000000000000000000000

FROM ${PYTHON_BASE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The wheel holds the three packages (the core, the books plugin, the operator's code);
# the extra decides which dependencies come along.
COPY pyproject.toml README.md ./
COPY worker/ worker/
COPY operator/ operator/
RUN python -m venv /opt/jobqueue \
    && /opt/jobqueue/bin/pip install --no-cache-dir ".[operator]" \
    && /opt/jobqueue/bin/pip uninstall --yes pip setuptools \
    && /opt/jobqueue/bin/python -m compileall -q /opt/jobqueue

FROM ${PYTHON_BASE}
ARG VERSION=0.1.0
ARG REVISION=unknown
# The repository URL, given by the release build.
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="jobqueue-operator" \
      org.opencontainers.image.description="jobqueue operator: runs and scales the workers of each JobQueue resource" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="${SOURCE}"
# The same id as the manifests' runAsUser, so runAsNonRoot can check it.
RUN groupadd --system --gid 65532 jobqueue \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin jobqueue
COPY --from=build /opt/jobqueue /opt/jobqueue
# Read-only root: bytecode is compiled at build time and never written; the only writable
# place a pod gives is the /tmp emptyDir, so HOME points there.
ENV PATH=/opt/jobqueue/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
# /metrics, /healthz and /readyz (JOBQUEUE_OPERATOR_METRICS_PORT); Kubernetes probes, no
# HEALTHCHECK.
EXPOSE 8080
ENTRYPOINT ["python", "-m", "jobqueue_operator"]
