"""The access log: one immutable row per request to the service (migration 0041)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from psycopg.rows import dict_row


@dataclass
class AccessRecord:
    """One request as the log keeps it; the endpoint fills in rows returned or facts appended."""

    request_id: UUID
    at: datetime
    method: str
    path: str
    params: dict[str, Any]
    client: str | None = None
    principal: str | None = None
    token_id: str | None = None
    role: str | None = None
    status: int = 0
    rows_returned: int | None = None
    facts_appended: int | None = None
    duration_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def append_access(conn: psycopg.Connection, record: AccessRecord) -> None:
    conn.execute(
        "INSERT INTO api_access_log (request_id, at, principal, token_id, role, method, path, params, status,"
        " rows_returned, facts_appended, duration_ms, client)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s)",
        (record.request_id, record.at, record.principal, record.token_id, record.role, record.method, record.path,
         orjson.dumps(record.params).decode(), record.status, record.rows_returned, record.facts_appended,
         round(record.duration_ms, 3), record.client))


def list_access(conn: psycopg.Connection, *, principal: str | None = None, since: datetime | None = None,
                after: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Log rows, oldest first: of one principal, at or after an instant, after an access id (a page's start)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT access_id, request_id, at, principal, token_id, role, method, path, params, status,"
            " rows_returned, facts_appended, duration_ms, client FROM api_access_log"
            " WHERE (%(principal)s::text IS NULL OR principal = %(principal)s)"
            " AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)"
            " AND (%(after)s::bigint IS NULL OR access_id > %(after)s)"
            " ORDER BY access_id LIMIT %(limit)s",
            {"principal": principal, "since": since, "after": after, "limit": limit}).fetchall()


def count_access(conn: psycopg.Connection, *, principal: str | None = None, since: datetime | None = None) -> int:
    """How many log rows match (of one principal, at or after an instant)."""
    return conn.execute(
        "SELECT count(*) FROM api_access_log WHERE (%(principal)s::text IS NULL OR principal = %(principal)s)"
        " AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)", {"principal": principal, "since": since}
    ).fetchone()[0]
