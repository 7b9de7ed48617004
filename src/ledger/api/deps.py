"""The service's dependencies: its resources, the database connection, the authenticated principal and roles.

    Services            what the app holds for its lifetime (settings, database, pool, follower, metrics)
    Conn                a pooled connection (autocommit) for one request
    CurrentPrincipal    the bearer token's principal: 401 without a valid token
    allow(*roles)       the principal, or 403 when its role may not
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Iterator

import psycopg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from ledger.api.metrics import ConsumerStatusCache, Metrics
from ledger.api.problems import Problem
from ledger.projector.follow import Follower
from ledger.settings import Settings
from ledger.store.access_log import AccessRecord
from ledger.store.database import Database
from ledger.store.principals import Principal, authenticate


@dataclass
class Services:
    settings: Settings
    db: Database
    pool: ConnectionPool
    metrics: Metrics
    follower: Follower | None = None
    consumers: ConsumerStatusCache | None = None
    # Short statements a request makes beside its own connection (its token's lookup, its access-log row, the
    # health and metrics probes) take a connection from this pool, never from `pool`: a request holding one of
    # `pool`'s connections then never waits on `pool` again, so a burst as wide as `pool` cannot deadlock it.
    side_pool: ConnectionPool | None = None

    def __post_init__(self) -> None:
        if self.consumers is None:
            self.consumers = ConsumerStatusCache(self._consumer_status)

    def _consumer_status(self) -> list[dict]:
        """`ledger consume --status` for every group that consumed into this store, the broker asked briefly."""
        from ledger.stream.status import consumer_status

        with self.side.connection(timeout=5) as conn:
            return consumer_status(conn, timeout=2.0)

    @property
    def side(self) -> ConnectionPool:
        return self.side_pool or self.pool


def services(request: Request) -> Services:
    return request.app.state.services


def connection(request: Request) -> Iterator[psycopg.Connection]:
    with request.app.state.services.pool.connection() as conn:
        yield conn


def access_record(request: Request) -> AccessRecord | None:
    return request.scope.get("state", {}).get("access")


Conn = Annotated[psycopg.Connection, Depends(connection)]
Svc = Annotated[Services, Depends(services)]
bearer = HTTPBearer(auto_error=False, description="a token printed by `ledger token create`")


def principal(request: Request,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    """The principal of the request's bearer token; 401 (nothing done) without a valid one."""
    challenge = {"WWW-Authenticate": 'Bearer realm="ledger"'}
    if credentials is None:
        raise Problem(401, "unauthenticated", "no bearer token: send `Authorization: Bearer <token>`", challenge)
    with request.app.state.services.side.connection() as conn:
        found = authenticate(conn, credentials.credentials, datetime.now(timezone.utc))
    if isinstance(found, str):
        raise Problem(401, "unauthenticated", f"bearer token refused: {found}", challenge)
    record = access_record(request)
    if record is not None:
        record.principal, record.token_id, record.role = found.name, found.token_id, found.role
    return found


CurrentPrincipal = Annotated[Principal, Depends(principal)]


def allow(*roles: str):
    """A dependency: the principal when its role is one of ROLES, else 403 (nothing done)."""

    def allowed(request: Request, who: CurrentPrincipal) -> Principal:
        if who.role not in roles:
            raise Problem(403, "forbidden", f"role {who.role} may not {request.method} {request.url.path} "
                                            f"(allowed: {', '.join(roles)})")
        return who

    return allowed


Ingester = Annotated[Principal, Depends(allow("ingest"))]
Finance = Annotated[Principal, Depends(allow("finance"))]
Reader = Annotated[Principal, Depends(allow("finance", "auditor"))]
Auditor = Annotated[Principal, Depends(allow("auditor", "admin"))]
Admin = Annotated[Principal, Depends(allow("admin"))]


def count_rows(request: Request, rows: int | None = None, facts: int | None = None) -> None:
    """Tell the access log what the request returned or appended."""
    record = access_record(request)
    if record is not None:
        if rows is not None:
            record.rows_returned = rows
        if facts is not None:
            record.facts_appended = facts
