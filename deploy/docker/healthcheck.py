"""The image's HEALTHCHECK: exit 0 when this container's duewise process answers its probe.

Which process it is comes from PID 1's command line (`python -m <service>.cli <process>`):
- an API answers GET /healthz on its port (<SERVICE>_PORT, or the service's default);
- a worker answers GET /livez on METRICS_PORT; without METRICS_PORT it serves nothing, and
  the container is healthy as long as the process runs (Docker already watches that).
Standard library only: it runs in the final image, which has nothing else to offer.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

API_PORTS = {"invoice": 8001, "dunning": 8002, "risk": 8003, "notify": 8004}


def probe_url(argv: list[str], environ: dict[str, str]) -> str | None:
    """The URL to probe for a process started as `argv`, or None when there is none."""
    module = next((a for a in argv if a.endswith(".cli")), "")
    service = module.removesuffix(".cli")
    process = argv[argv.index(module) + 1] if module and argv.index(module) + 1 < len(argv) else ""
    if process == "api" and service in API_PORTS:
        port = environ.get(f"{service.upper()}_PORT", str(API_PORTS[service]))
        return f"http://127.0.0.1:{port}/healthz"
    if metrics_port := environ.get("METRICS_PORT"):
        return f"http://127.0.0.1:{metrics_port}/livez"
    return None


def main() -> int:
    argv = Path("/proc/1/cmdline").read_bytes().decode().split("\0")
    url = probe_url(argv, dict(os.environ))
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
