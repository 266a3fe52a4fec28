"""/v1/tokens: create API tokens (admin); the plaintext is returned once."""

from __future__ import annotations

from duewise_service.db import SessionDep
from fastapi import APIRouter

from invoice.auth import CanAdminTokens, CurrentPrincipal, create_token
from invoice.models import TokenCreate, TokenCreated

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", status_code=201, response_model=TokenCreated)
async def new_token(data: TokenCreate, session: SessionDep, _: CanAdminTokens) -> TokenCreated:
    """Create a token for a role; copy `token` now, it is stored only as a hash."""
    async with session.begin():
        row, plaintext = await create_token(
            session=session, name=data.name, role=data.role, scopes=data.scopes
        )
    return TokenCreated.model_validate(
        {**row.model_dump(), "scopes": row.scopes, "token": plaintext}
    )


@router.get("/me")
async def whoami(principal: CurrentPrincipal) -> dict[str, object]:
    """The calling token's id, name, role and scopes."""
    return {
        "id": principal.token_id,
        "name": principal.name,
        "role": principal.role,
        "scopes": sorted(principal.scopes),
    }
