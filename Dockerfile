# syntax=docker/dockerfile:1
#
# mtping container image.
#   docker build -t mtping:0.1.0 .
# Stage 1 builds wheels (mtping + runtime deps incl. the `fast` extra, uvloop);
# stage 2 installs them into a venv, with no compiler, no pip in the venv, no
# dev dependencies and no source tree. Both stages use the same base image so
# the venv's interpreter symlink stays valid.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mtping ./mtping
RUN python -m pip wheel --wheel-dir /wheels '.[fast]'

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# The venv gets no pip of its own: the base image's pip installs into it
# (--python; called by full path because the venv's python has no pip), and
# the wheels are bind-mounted so they never become a layer.
# pip compiles .pyc at install time, so the read-only root filesystem in the
# Deployment costs no start-up time.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    /usr/local/bin/python -m venv --without-pip /opt/venv \
    && /usr/local/bin/python -m pip --python /opt/venv/bin/python install \
        --no-index --find-links /wheels 'mtping[fast]' \
    && groupadd --system --gid 65532 nonroot \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin nonroot
# Set only now so the install above still writes its .pyc files.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /
# 8080: /health and /readiness probes; 9090: Prometheus /metrics.
EXPOSE 8080 9090
ENTRYPOINT ["mtping"]
CMD ["run"]
