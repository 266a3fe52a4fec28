"""Collector UI users: `python -m notify.ui.users create NAME --role collector`, `… disable NAME`.

A user gets an Argon2 password hash and its own API token for each service, minted with
that service's `POST /v1/tokens` (with DUEWISE_ADMIN_TOKEN) for the user's role, so that the
services see — and log — the user's own rights when the UI acts. Notify's own token is
created in notify's table directly (the UI is part of notify). A service that offers no
`/v1/tokens` (404/405; risk did before it gained one) gets no token: the UI then reads it
with the admin token, which gives a collector nothing more there (risk's collector role has
every risk scope, and its API only reads). Users created since risk mints tokens hold their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httpx
import typer
from duewise_service.db import make_engine, make_sessionmaker
from sqlalchemy import delete, func, update
from sqlalchemy.ext.asyncio import AsyncSession

from notify.auth import AUTH
from notify.config import Settings
from notify.ui.accounts import ROLES, insert_user
from notify.ui.sealing import seal
from notify.ui.settings import UiSettings
from notify.ui.tables import UI_SESSION, UI_USER

#: The services whose tokens are minted over HTTP (notify's is created in its own table).
REMOTE = ("invoice", "dunning", "risk")


async def mint_token(
    http: httpx.AsyncClient,
    url: str,
    admin_token: str,
    *,
    name: str,
    role: str,
    subject: str | None = None,
) -> str | None:
    """A new token for `role` from the service at `url`; None when it has no /v1/tokens."""
    response = await http.post(
        url.rstrip("/") + "/v1/tokens",
        # The subject binds a collector's token to their portfolio (invoice.portfolio).
        json={"name": name, "role": role, "subject": subject},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    if response.status_code in (404, 405):
        return None
    if response.status_code != 201:
        raise RuntimeError(
            f"{url}/v1/tokens answered {response.status_code}: {response.text[:300]}"
        )
    token: str = response.json()["token"]
    return token


async def create_user(
    *,
    session: AsyncSession,
    http: httpx.AsyncClient,
    urls: Mapping[str, str],
    admin_tokens: Mapping[str, str],
    secret: str,
    user_name: str,
    role: str,
    password: str,
    display_name: str | None = None,
) -> list[str]:
    """Add a UI user with its tokens (in the caller's transaction); returns the services for
    which no token could be minted."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    name = f"ui:{user_name}"
    sealed: dict[str, str] = {}
    missing: list[str] = []
    for service in REMOTE:
        token = await mint_token(
            http, urls[service], admin_tokens[service], name=name, role=role, subject=user_name
        )
        if token is None:
            missing.append(service)
        else:
            sealed[service] = seal(secret, token)
    _, notify_token = await AUTH.create_token(session, name=name, role=role, subject=user_name)
    sealed["notify"] = seal(secret, notify_token)
    await insert_user(
        session,
        user_name=user_name,
        display_name=display_name or user_name,
        role=role,
        password=password,
        api_tokens=sealed,
    )
    return missing


def service_urls(settings: Settings, ui: UiSettings) -> dict[str, str]:
    return {
        "invoice": settings.invoice_api_url,
        "dunning": ui.dunning_api_url,
        "risk": ui.risk_api_url,
    }


app = typer.Typer(help="collector UI users", no_args_is_help=True)


@app.callback()
def _main() -> None:
    """Manage the people who sign in to the collector UI."""


@app.command()
def create(
    name: str = typer.Argument(..., help="user name; customers' `owner` refers to it"),
    role: str = typer.Option("collector", help="collector or admin"),
    password: str = typer.Option(
        ..., prompt=True, hide_input=True, confirmation_prompt=True, help="at least 8 characters"
    ),
    display_name: str | None = typer.Option(None, help="shown in the UI (default: the name)"),
) -> None:
    """Create a user and mint its API tokens (needs DUEWISE_ADMIN_TOKEN and the services up)."""
    settings, ui = Settings(), UiSettings()
    if settings.admin_token is None:
        raise typer.BadParameter("set DUEWISE_ADMIN_TOKEN: it mints the user's service tokens")
    admin = settings.admin_token.get_secret_value()

    async def run() -> list[str]:
        engine = make_engine(settings.sqlalchemy_url, pool_size=1)
        try:
            async with (
                httpx.AsyncClient(timeout=ui.service_timeout_s) as http,
                make_sessionmaker(engine)() as session,
                session.begin(),
            ):
                return await create_user(
                    session=session,
                    http=http,
                    urls=service_urls(settings, ui),
                    admin_tokens=dict.fromkeys(REMOTE, admin),
                    secret=settings.secret_key.get_secret_value(),
                    user_name=name,
                    role=role,
                    password=password,
                    display_name=display_name,
                )
        finally:
            await engine.dispose()

    try:
        missing = asyncio.run(run())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"created {role} {name!r}")
    for service in missing:
        typer.echo(f"note: {service} issues no tokens; the UI reads it with the admin token")


async def disable_user(session: AsyncSession, user_name: str) -> bool:
    """Stop `user_name` signing in and end its sessions; False when there is no such user."""
    done = await session.execute(
        update(UI_USER)
        .where(UI_USER.c.user_name == user_name, UI_USER.c.disabled_at.is_(None))
        .values(disabled_at=func.now())
        .returning(UI_USER.c.user_name)
    )
    await session.execute(delete(UI_SESSION).where(UI_SESSION.c.user_name == user_name))
    return done.first() is not None


@app.command()
def disable(name: str = typer.Argument(..., help="the user to stop")) -> None:
    """Stop a user signing in and end its sessions at once."""
    settings = Settings()

    async def run() -> bool:
        engine = make_engine(settings.sqlalchemy_url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                return await disable_user(session, name)
        finally:
            await engine.dispose()

    if not asyncio.run(run()):
        raise typer.BadParameter(f"no enabled user {name!r}")
    typer.echo(f"disabled {name!r}; its sessions are over")


if __name__ == "__main__":
    app()
