"""The access log (`GET /v1/access`, auditor and admin) and tokens (`/v1/tokens`, admin)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Query, Request

from ledger.api.deps import Admin, Auditor, Conn, count_rows
from ledger.api.models import AccessPublic, TokenCreated, TokenIn, TokenPublic
from ledger.store.access_log import list_access
from ledger.store.principals import create_token, list_tokens, revoke_token

router = APIRouter(prefix="/v1", tags=["access"])


@router.get("/access", response_model=list[AccessPublic], summary="Who did and read what (`ledger access list`)")
def access(request: Request, who: Auditor, conn: Conn,
           principal: str | None = None, since: datetime | None = None,
           after: Annotated[int | None, Query(description="the last access_id of the page before")] = None,
           limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> list[AccessPublic]:
    rows = list_access(conn, principal=principal, since=since, after=after, limit=limit)
    count_rows(request, rows=len(rows))
    return [AccessPublic(**row) for row in rows]


@router.post("/tokens", response_model=TokenCreated, status_code=201,
             summary="A new bearer token, shown once (`ledger token create`)")
def new_token(body: TokenIn, who: Admin, conn: Conn) -> TokenCreated:
    token, row = create_token(conn, name=body.name, role=body.role, created_by=who.name,
                              now=datetime.now(timezone.utc), expires_at=body.expires_at)
    return TokenCreated(token=token, **row)


@router.get("/tokens", response_model=list[TokenPublic], summary="Every token, without its secret")
def tokens(who: Admin, conn: Conn) -> list[TokenPublic]:
    return [TokenPublic(**row) for row in list_tokens(conn)]


@router.post("/tokens/{token_id}/revoke", response_model=TokenPublic, summary="Revoke a token from now on")
def revoke(token_id: str, who: Admin, conn: Conn) -> TokenPublic:
    return TokenPublic(**revoke_token(conn, token_id, revoked_by=who.name, now=datetime.now(timezone.utc)))
