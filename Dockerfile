# One image for every duewise Python service; the command picks the service and process:
#   python -m invoice.cli api | relay | consumer | migrate
#   python -m dunning.cli api | relay | consumer | scheduler | migrate
# Build: docker build -t duewise .   (images, probes and manifests are completed in issue #7)
FROM python:3.11.11-slim-bookworm AS build
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
COPY tools tools
# Exactly the versions uv.lock pins, without the dev tools or the embedded servers.
RUN uv export --frozen --no-dev --no-emit-workspace --package duewise-invoice -o /tmp/invoice.txt \
 && uv export --frozen --no-dev --no-emit-workspace --package duewise-dunning -o /tmp/dunning.txt \
 && python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir -r /tmp/invoice.txt -r /tmp/dunning.txt \
 && /venv/bin/pip install --no-cache-dir --no-deps \
      ./libs/events ./libs/service ./services/invoice ./services/dunning

FROM python:3.11.11-slim-bookworm
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin duewise
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8001 8002
# Workers (relay, consumer, scheduler) serve no HTTP: compose and Kubernetes give the API
# processes their own health checks on /healthz and /readyz.
ENTRYPOINT ["python", "-m"]
CMD ["invoice.cli", "api"]
