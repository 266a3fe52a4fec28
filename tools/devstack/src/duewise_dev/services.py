"""The services the devstack runs, as data.

Adding a service is one entry in SERVICES: `python_service("dunning", 8002, workers=(...))`.
Every service follows the same conventions, which is what keeps the entry that short:

- `python -m <name>.cli migrate` (one-shot, must exit 0), `... api`, and one `... <worker>`
  per background process (relay, consumer, scheduler);
- its own database `duewise_<name>`, passed as `<NAME>_DATABASE_URL`;
- its own topic `<name>.events` and dead-letter topic `<name>.events.dlt`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from duewise_dev._util import LOCALHOST
from duewise_dev.postgres import database_url

EVENT_PARTITIONS = 6


@dataclass(frozen=True)
class Process:
    """One long-running process of a service."""

    name: str
    argv: tuple[str, ...]
    port: int | None = None
    # GET http://127.0.0.1:<port><ready_path> must answer 200; without a port, the process
    # counts as ready once it is still alive `settle_s` after starting.
    ready_path: str = "/readyz"
    settle_s: float = 1.0


@dataclass(frozen=True)
class Service:
    """A service: its migrations, its processes and the topics it produces to."""

    name: str
    port: int
    migrate: tuple[str, ...]
    processes: tuple[Process, ...]
    topics: dict[str, int] = field(default_factory=dict)
    docs_path: str = "/docs"
    example_path: str | None = None  # an authenticated GET worth showing with curl

    @property
    def database(self) -> str:
        """The service's own database on the shared server."""
        return f"duewise_{self.name}"

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def env(self, *, server_url: str, kafka_bootstrap: str, admin_token: str) -> dict[str, str]:
        """The environment this service's processes read (added to the supervisor's own)."""
        prefix = self.name.upper()
        return {
            "DATABASE_URL": server_url,
            f"{prefix}_DATABASE_URL": database_url(server_url, self.database),
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "DUEWISE_ADMIN_TOKEN": admin_token,
            f"{prefix}_PORT": str(self.port),
            f"{prefix}_HOST": LOCALHOST,  # local dev: keep the admin API off the network
            "PYTHONUNBUFFERED": "1",  # so log lines reach the supervisor as they happen
        }


def python_service(
    name: str, port: int, *, workers: tuple[str, ...] = ("relay",), example_path: str | None = None
) -> Service:
    """A service laid out by the project's conventions (see the module docstring)."""
    module = (sys.executable, "-m", f"{name}.cli")
    return Service(
        name=name,
        port=port,
        migrate=(*module, "migrate"),
        processes=(
            Process(f"{name}-api", (*module, "api"), port=port),
            *(Process(f"{name}-{worker}", (*module, worker)) for worker in workers),
        ),
        topics={f"{name}.events": EVENT_PARTITIONS, f"{name}.events.dlt": EVENT_PARTITIONS},
        example_path=example_path,
    )


SERVICES: tuple[Service, ...] = (
    python_service("invoice", 8001, workers=("relay", "consumer"), example_path="/v1/customers"),
    python_service("dunning", 8002, workers=("relay", "consumer", "scheduler")),
    python_service("risk", 8003, workers=("relay", "consumer")),
    python_service("notify", 8004, workers=("relay", "consumer", "sender")),
)


def all_topics(services: tuple[Service, ...] = SERVICES) -> dict[str, int]:
    """Every topic the given services produce to, name -> partitions."""
    return {name: n for service in services for name, n in service.topics.items()}
