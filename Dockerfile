# One image for every duewise Python service; the command picks the service and process:
#   python -m invoice.cli api | relay | consumer | migrate
#   python -m dunning.cli api | relay | consumer | scheduler | migrate
#   python -m risk.cli api | relay | consumer | rebuild | migrate
#   python -m notify.cli api | relay | consumer | sender | migrate
# Build: docker build -t duewise .   (images, probes and manifests are completed in issue #7)
FROM python:3.11.11-slim-bookworm AS build
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
COPY tools tools
# Exactly the versions uv.lock pins, without the dev tools or the embedded servers.
RUN for p in invoice dunning risk notify; do \
      uv export --frozen --no-dev --no-emit-workspace --package duewise-$p -o /tmp/$p.txt; \
    done \
 && python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir \
      -r /tmp/invoice.txt -r /tmp/dunning.txt -r /tmp/risk.txt -r /tmp/notify.txt \
 && /venv/bin/pip install --no-cache-dir --no-deps ./libs/events ./libs/service \
      ./services/invoice ./services/dunning ./services/risk ./services/notify

FROM python:3.11.11-slim-bookworm
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin duewise
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8001 8002 8003 8004
# Workers (relay, consumer, scheduler) serve no HTTP: compose and Kubernetes give the API
# processes their own health checks on /healthz and /readyz.
ENTRYPOINT ["python", "-m"]
CMD ["invoice.cli", "api"]
