"""/v1/tokens: create API tokens (admin); the plaintext is returned once."""

from __future__ import annotations

import dataclasses

from duewise_service.db import SessionDep
from fastapi import APIRouter

from invoice.auth import AUTH, CanAdminTokens, CurrentPrincipal
from invoice.models import TokenCreate, TokenCreated

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", status_code=201, response_model=TokenCreated)
async def new_token(data: TokenCreate, session: SessionDep, _: CanAdminTokens) -> TokenCreated:
    """Create a token for a role; copy `token` now, it is stored only as a hash."""
    async with session.begin():
        row, plaintext = await AUTH.create_token(
            session, name=data.name, role=data.role, scopes=data.scopes
        )
    return TokenCreated.model_validate({**dataclasses.asdict(row), "token": plaintext})


@router.get("/me")
async def whoami(principal: CurrentPrincipal) -> dict[str, object]:
    """The calling token's id, name, role and scopes."""
    return {
        "id": principal.token_id,
        "name": principal.name,
        "role": principal.role,
        "scopes": sorted(principal.scopes),
    }
