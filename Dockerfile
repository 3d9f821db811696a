# syntax=docker/dockerfile:1
# The bakeoff image: controller, router and CLI (ENTRYPOINT ["bakeoff"]).
#   docker build -t ghcr.io/bakeoff-dev/bakeoff:0.1.0 .
# The chart (charts/bakeoff, docs/helm.md) runs it as uid 10001 with a read-only
# root filesystem and an emptyDir on /tmp.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: `pip install .` into a virtualenv; compilers exist only in this stage ----
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/bakeoff
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE constraints.txt ./
COPY core ./core
COPY router ./router
COPY judge ./judge
COPY controller ./controller
COPY examples ./examples
# Extra packages for a site's own image (none by default; the kubernetes client is a dependency).
ARG EXTRA_PACKAGES=""
RUN /opt/bakeoff/bin/pip install -c constraints.txt . ${EXTRA_PACKAGES} \
 && /opt/bakeoff/bin/pip check \
 && /opt/bakeoff/bin/python -m compileall -q /opt/bakeoff

# ---- final: the virtualenv only (byte-compiled: the root filesystem is read-only); no compilers; non-root ----
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="bakeoff" \
      org.opencontainers.image.description="Traffic-splitting router, statistical judge and Kubernetes controller" \
      org.opencontainers.image.source="https://github.com/bakeoff-dev/bakeoff"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/bakeoff \
    PATH=/opt/bakeoff/bin:$PATH
RUN groupadd --system --gid 10001 bakeoff \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin bakeoff
# Same base image and same path as in the builder, so the venv's interpreter links stay valid.
COPY --from=builder /opt/bakeoff /opt/bakeoff
USER 10001:10001
WORKDIR /tmp
# 8080 router traffic, 8081 router admin, 9090 controller metrics
EXPOSE 8080 8081 9090
ENTRYPOINT ["bakeoff"]
CMD ["--help"]
