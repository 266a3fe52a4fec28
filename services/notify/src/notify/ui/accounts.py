"""Users, passwords, server-side sessions, CSRF tokens and the sign-in rate limit.

A session id is 32 random bytes in an HttpOnly, SameSite=Lax cookie; the table keeps only
its SHA-256 (like the API tokens), its user, its CSRF token and when it was last used. A
session idle longer than `session_idle_minutes` is over. Every POST form carries the
session's CSRF token (the sign-in form, before there is a session, a double-submit cookie).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notify.ui.sealing import unseal
from notify.ui.tables import UI_LOGIN_FAILURE, UI_SESSION, UI_USER

ROLES = ("collector", "admin")
_HASHER = PasswordHasher()
#: Verified against when the user name is unknown, so both answers take as long.
_DUMMY_HASH = _HASHER.hash("duewise-no-such-user")
#: last_seen_at is written at most this often (not on every page view).
_TOUCH_EVERY = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class SignedIn:
    """The user behind a request's session."""

    user_name: str
    display_name: str
    role: str
    csrf_token: str
    api_tokens: dict[str, str]  # service → sealed token

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def token(self, service: str, secret: str) -> str | None:
        """The user's plaintext token for `service`, or None when the UI holds none."""
        sealed = self.api_tokens.get(service)
        return unseal(secret, sealed) if sealed else None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def hash_password(password: str) -> str:
    """Argon2id, off the event loop (it costs tens of milliseconds of CPU on purpose)."""
    return await anyio.to_thread.run_sync(_HASHER.hash, password)


async def _verify(password_hash: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _HASHER.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(check)


async def insert_user(
    session: AsyncSession,
    *,
    user_name: str,
    display_name: str,
    role: str,
    password: str,
    api_tokens: dict[str, str],
) -> None:
    """Add a user (tokens already sealed)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    await session.execute(
        insert(UI_USER).values(
            user_name=user_name,
            display_name=display_name,
            role=role,
            password_hash=await hash_password(password),
            api_tokens=api_tokens,
        )
    )


async def recent_failures(session: AsyncSession, user_name: str, window: dt.timedelta) -> int:
    """Failed sign-ins of `user_name` within `window`."""
    count = await session.scalar(
        select(func.count())
        .select_from(UI_LOGIN_FAILURE)
        .where(UI_LOGIN_FAILURE.c.user_name == user_name, UI_LOGIN_FAILURE.c.at > utcnow() - window)
    )
    return int(count or 0)


async def authenticate(session: AsyncSession, user_name: str, password: str) -> bool:
    """True when the password is the user's (and the user is enabled); a failure is recorded."""
    row = (
        await session.execute(
            select(UI_USER.c.password_hash).where(
                UI_USER.c.user_name == user_name, UI_USER.c.disabled_at.is_(None)
            )
        )
    ).first()
    ok = await _verify(row.password_hash if row else _DUMMY_HASH, password) and row is not None
    if ok:
        await session.execute(
            delete(UI_LOGIN_FAILURE).where(UI_LOGIN_FAILURE.c.user_name == user_name)
        )
    else:
        await session.execute(insert(UI_LOGIN_FAILURE).values(user_name=user_name))
    return ok


async def start_session(session: AsyncSession, user_name: str, idle: dt.timedelta) -> str:
    """A new session for `user_name`; returns the id for the cookie (stored only hashed).
    The user's sessions idle past `idle` are deleted on the way (they would be refused)."""
    await session.execute(
        delete(UI_SESSION).where(
            UI_SESSION.c.user_name == user_name, UI_SESSION.c.last_seen_at < utcnow() - idle
        )
    )
    session_id = secrets.token_urlsafe(32)
    await session.execute(
        insert(UI_SESSION).values(
            id_hash=hash_session_id(session_id),
            user_name=user_name,
            csrf_token=secrets.token_urlsafe(32),
        )
    )
    return session_id


async def end_session(session: AsyncSession, session_id: str) -> None:
    await session.execute(
        delete(UI_SESSION).where(UI_SESSION.c.id_hash == hash_session_id(session_id))
    )


async def load_session(
    session: AsyncSession, session_id: str, idle: dt.timedelta
) -> SignedIn | None:
    """The signed-in user of a live session; an idle-expired one is deleted and gives None."""
    id_hash = hash_session_id(session_id)
    row = (
        await session.execute(
            select(
                UI_SESSION.c.csrf_token,
                UI_SESSION.c.last_seen_at,
                UI_USER.c.user_name,
                UI_USER.c.display_name,
                UI_USER.c.role,
                UI_USER.c.api_tokens,
            )
            .join(UI_USER, UI_USER.c.user_name == UI_SESSION.c.user_name)
            .where(UI_SESSION.c.id_hash == id_hash, UI_USER.c.disabled_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    now = utcnow()
    if row.last_seen_at + idle < now:
        await session.execute(delete(UI_SESSION).where(UI_SESSION.c.id_hash == id_hash))
        return None
    if row.last_seen_at + _TOUCH_EVERY < now:
        await session.execute(
            update(UI_SESSION).where(UI_SESSION.c.id_hash == id_hash).values(last_seen_at=now)
        )
    tokens: dict[str, Any] = row.api_tokens or {}
    return SignedIn(
        user_name=row.user_name,
        display_name=row.display_name,
        role=row.role,
        csrf_token=row.csrf_token,
        api_tokens={k: str(v) for k, v in tokens.items()},
    )


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted CSRF token with the expected one."""
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())
