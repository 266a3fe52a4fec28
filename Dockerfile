# One image for every duewise Python service; the command picks the service and process:
#   python -m invoice.cli api | relay | migrate
# Build: docker build -t duewise .   (images, probes and manifests are completed in issue #7)
FROM python:3.11.11-slim-bookworm AS build
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
COPY tools tools
# Exactly the versions uv.lock pins, without the dev tools or the embedded servers.
RUN uv export --frozen --no-dev --no-emit-workspace --package duewise-invoice -o /tmp/req.txt \
 && python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir -r /tmp/req.txt \
 && /venv/bin/pip install --no-cache-dir --no-deps ./libs/events ./services/invoice

FROM python:3.11.11-slim-bookworm
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin duewise
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s \
  CMD python -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('INVOICE_PORT', '8001'), timeout=2)"
ENTRYPOINT ["python", "-m"]
CMD ["invoice.cli", "api"]
