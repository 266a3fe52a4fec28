# syntax=docker/dockerfile:1
# One image for every duewise Python service; the command picks the service and process:
#   docker run duewise invoice.cli api | relay | consumer | migrate
#   docker run duewise dunning.cli api | relay | consumer | scheduler | migrate
#   docker run duewise risk.cli    api | relay | consumer | rebuild | migrate
#   docker run duewise notify.cli  api | relay | consumer | sender | migrate
# `migrate` is a one-shot (a compose one-shot service, a Kubernetes Job): nothing migrates at
# start. Build: docker build -t duewise .
#
# The base is pinned to an exact patch release (the same minor as `make test`'s interpreter);
# pin its digest too (`python:3.11.11-slim-bookworm@sha256:…`) where a registry is reachable.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: uv resolves nothing, it installs exactly what uv.lock pins ---------------------
FROM ${PYTHON_IMAGE} AS build
RUN pip install --no-cache-dir uv==0.13.8
ENV UV_PROJECT_ENVIRONMENT=/venv UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
COPY tools tools
# Each service with its libraries and locked dependencies, as real (non-editable) packages, so
# the final stage needs /venv only. --inexact keeps what the previous service installed;
# no dev tools, and not the devstack (its embedded PostgreSQL and broker are for laptops).
RUN for p in invoice dunning risk notify; do \
      uv sync --frozen --no-dev --no-editable --inexact --package duewise-$p || exit 1; \
    done

# --- final: the interpreter, /venv and an unprivileged user; no compilers, no uv ------------
FROM ${PYTHON_IMAGE}
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin duewise
COPY --from=build /venv /venv
COPY deploy/docker/healthcheck.py /usr/local/bin/duewise-healthcheck
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
# APIs: invoice 8001, dunning 8002, risk 8003, notify 8004; workers: /metrics, /livez and
# /readyz on METRICS_PORT (9464 in compose and Kubernetes).
EXPOSE 8001 8002 8003 8004 9464
# An API answers /healthz on its port; a worker /livez on METRICS_PORT (without it, a worker
# is healthy while it runs). The script reads which one this container is from PID 1's argv.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "/usr/local/bin/duewise-healthcheck"]
ENTRYPOINT ["python", "-m"]
CMD ["invoice.cli", "api"]
