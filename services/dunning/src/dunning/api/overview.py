"""GET /v1/customers/{id}/overview: what a collector's customer page reads from dunning, in
one call: the stage and credit hold, the dry-run timeline, the promises to pay and the
pauses in force (the first page of each list; the list endpoints page through the rest)."""

from __future__ import annotations

from typing import Any

from duewise_service.auth import Principal
from duewise_service.db import SessionDep
from fastapi import APIRouter

from dunning.api.customers import get_stage
from dunning.api.pauses import list_pauses, list_promises
from dunning.api.timelines import customer_timeline
from dunning.auth import CanReadAR

router = APIRouter(tags=["customers"])
#: Items of each list in the overview (the list endpoints' largest page).
LIST_LIMIT = 200


@router.get("/customers/{customer_id}/overview")
async def customer_overview(
    customer_id: str, session: SessionDep, who: CanReadAR
) -> dict[str, Any]:
    """Stage, timeline, promises and active pauses of a customer dunning knows (else 404)."""
    principal: Principal = who
    stage = await get_stage(customer_id, session, principal)
    timeline = await customer_timeline(customer_id, session, principal)
    promises = await list_promises(
        session, principal, customer_id=customer_id, status=None, limit=LIST_LIMIT, cursor=None
    )
    pauses = await list_pauses(
        session, principal, customer_id=customer_id, active=True, limit=LIST_LIMIT, cursor=None
    )
    return {
        "stage": stage.model_dump(mode="json"),
        "timeline": timeline.model_dump(mode="json"),
        "promises": promises.model_dump(mode="json"),
        "pauses": pauses.model_dump(mode="json"),
    }
