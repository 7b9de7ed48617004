"""The service's principals: bearer tokens with a role (`ledger token create|list|revoke`).

A token reads `lgr_<token id>_<secret>`; only its sha256 is stored, so a leaked table grants nothing. Tokens and
revocations are appended, never changed (migration 0040).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ledger.errors import NotFoundError, TokenRefusedError

ROLES = ("ingest", "finance", "auditor", "admin")


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's name and role."""

    name: str
    role: str
    token_id: str


def _sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create_token(conn: psycopg.Connection, *, name: str, role: str, created_by: str, now: datetime,
                 expires_at: datetime | None = None) -> tuple[str, dict[str, Any]]:
    """Stores a new token's hash; returns the token (shown once) and its public record."""
    if role not in ROLES:
        raise TokenRefusedError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not name or not name.strip():
        raise TokenRefusedError("a token needs a name: the principal it stands for")
    if expires_at is not None and expires_at <= now:
        raise TokenRefusedError(f"expiry {expires_at.isoformat()} is not in the future")
    token_id = secrets.token_hex(6)
    token = f"lgr_{token_id}_{secrets.token_urlsafe(32)}"
    conn.execute("INSERT INTO api_tokens (token_id, name, role, token_sha256, created_at, created_by, expires_at)"
                 " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                 (token_id, name.strip(), role, _sha256(token), now, created_by, expires_at))
    return token, {"token_id": token_id, "name": name.strip(), "role": role, "created_at": now,
                   "created_by": created_by, "expires_at": expires_at, "revoked_at": None, "revoked_by": None}


def list_tokens(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT t.token_id, t.name, t.role, t.created_at, t.created_by, t.expires_at, r.revoked_at, r.revoked_by"
            " FROM api_tokens t LEFT JOIN api_token_revocations r USING (token_id)"
            " ORDER BY t.created_at, t.token_id").fetchall()


def revoke_token(conn: psycopg.Connection, token_id: str, *, revoked_by: str, now: datetime) -> dict[str, Any]:
    """Revokes a token from now on; revoking it again changes nothing and returns the first revocation."""
    conn.execute("INSERT INTO api_token_revocations (token_id, revoked_at, revoked_by)"
                 " SELECT token_id, %s, %s FROM api_tokens WHERE token_id = %s ON CONFLICT DO NOTHING",
                 (now, revoked_by, token_id))
    for row in list_tokens(conn):
        if row["token_id"] == token_id:
            return row
    raise NotFoundError(f"token {token_id!r} does not exist")


def authenticate(conn: psycopg.Connection, token: str, now: datetime) -> Principal | str:
    """The principal of a valid token, or the reason it is not valid."""
    row = conn.execute(
        "SELECT t.token_id, t.name, t.role, t.expires_at, r.revoked_at"
        " FROM api_tokens t LEFT JOIN api_token_revocations r USING (token_id) WHERE t.token_sha256 = %s",
        (_sha256(token),)).fetchone()
    if row is None:
        return "unknown token"
    token_id, name, role, expires_at, revoked_at = row
    if revoked_at is not None:
        return f"token {token_id} was revoked at {revoked_at.isoformat()}"
    if expires_at is not None and expires_at <= now:
        return f"token {token_id} expired at {expires_at.isoformat()}"
    return Principal(name, role, token_id)
