"""/v1/stages: the dunning state of many customers in one call (a worklist page's worth)."""

from __future__ import annotations

from typing import Annotated

from duewise_service.db import SessionDep
from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlmodel import col

from dunning.auth import CanReadAR
from dunning.models import CustomerStage, Promise

router = APIRouter(tags=["customers"])
#: A worklist page is at most a few hundred customers: the list is bounded, not paginated.
MAX_IDS = 500


class CustomerDunningOut(BaseModel):
    customer_id: str
    stage: str
    on_hold: bool
    hold_reason: str | None
    #: Promises to pay still open (neither kept nor broken yet).
    open_promises: int


class StagesOut(BaseModel):
    items: list[CustomerDunningOut]


@router.get("/stages", response_model=StagesOut)
async def list_stages(
    session: SessionDep,
    _: CanReadAR,
    customer_id: Annotated[list[str], Query(min_length=1, max_length=MAX_IDS)],
) -> StagesOut:
    """Stage, credit hold and open promises of each customer asked for, in the order asked
    (a customer dunning has no stage row for is "current"). Two index lookups in all."""
    ids = list(dict.fromkeys(customer_id))
    async with session.begin():
        stages = {
            s.customer_id: s
            for s in await session.scalars(
                select(CustomerStage).where(col(CustomerStage.customer_id).in_(ids))
            )
        }
        counted = await session.execute(
            select(col(Promise.customer_id), func.count())
            .where(col(Promise.customer_id).in_(ids), col(Promise.status) == "open")
            .group_by(col(Promise.customer_id))
        )
        promises: dict[str, int] = {cid: n for cid, n in counted.all()}
    items = []
    for cid in ids:
        row = stages.get(cid)
        items.append(
            CustomerDunningOut(
                customer_id=cid,
                stage=row.stage if row else "current",
                on_hold=bool(row and row.on_hold),
                hold_reason=row.hold_reason if row else None,
                open_promises=int(promises.get(cid, 0)),
            )
        )
    return StagesOut(items=items)
