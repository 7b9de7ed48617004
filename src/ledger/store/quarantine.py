"""Reading the quarantine."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row


def list_quarantine(conn: psycopg.Connection, *, kind: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT quarantine_id, kind, source_file, line_number, field, reason, raw_text, quarantined_at"
            " FROM quarantine WHERE %(kind)s::text IS NULL OR kind = %(kind)s"
            " ORDER BY quarantine_id LIMIT %(limit)s",
            {"kind": kind, "limit": limit},
        ).fetchall()
