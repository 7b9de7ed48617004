"""Reading the quarantine."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row


def list_quarantine(conn: psycopg.Connection, *, kind: str | None = None, limit: int = 1000,
                    source_file: str | None = None, after_id: int | None = None, offset: int = 0
                    ) -> list[dict[str, Any]]:
    """Quarantined records in order: of one kind, of one source file, after a quarantine id (a page's start)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT quarantine_id, kind, source_file, line_number, field, reason, raw_text, quarantined_at"
            " FROM quarantine WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)"
            " AND (%(source)s::text IS NULL OR source_file = %(source)s)"
            " AND (%(after)s::bigint IS NULL OR quarantine_id > %(after)s)"
            " ORDER BY quarantine_id LIMIT %(limit)s OFFSET %(offset)s",
            {"kind": kind, "limit": limit, "source": source_file, "after": after_id, "offset": offset},
        ).fetchall()


def count_quarantine(conn: psycopg.Connection, *, kind: str | None = None) -> int:
    """How many records are quarantined (of one kind)."""
    return conn.execute("SELECT count(*) FROM quarantine WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)",
                        {"kind": kind}).fetchone()[0]
