"""`ledger token create|list|revoke`: the service's bearer tokens (only their hashes are stored)."""

from __future__ import annotations

import getpass
import sys
from datetime import datetime, timedelta, timezone
from typing import Optional

import typer

from ledger.cli.runtime import fail, id_argument, now, store, store_line
from ledger.errors import InvalidArgumentError, LedgerError

app = typer.Typer()
token_app = typer.Typer(name="token", no_args_is_help=True, help="Bearer tokens of the HTTP service.")
app.add_typer(token_app)


def _expiry(text: str, moment: datetime) -> datetime:
    """An instant (RFC 3339, UTC when no offset) or a duration from now: 30d, 12h, 90m."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if text[-1:] in units and text[:-1].isdigit():
        return moment + timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgumentError("--expires", text, "is neither an instant (2027-01-01T00:00:00Z) nor a duration "
                                   "(30d, 12h, 90m)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@token_app.command("create")
def token_create(
    name: str = typer.Option(..., "--name", help="the principal: a person or a system"),
    role: str = typer.Option(..., "--role", help="ingest | finance | auditor | admin"),
    expires: Optional[str] = typer.Option(None, "--expires", help="an instant or a duration (30d, 12h)"),
    as_json: bool = typer.Option(False, "--json", help="print the token and its record (or the refusal) as one JSON "
                                                       "object"),
) -> None:
    """Create a token and print it once: only its hash is kept."""
    from ledger.cli.output import emit_json
    from ledger.store.principals import create_token

    moment = now()
    try:
        expires_at = _expiry(expires, moment) if expires else None
        with store(create=True) as db, db.connection() as conn:
            token, row = create_token(conn, name=name, role=role, created_by=f"cli:{getpass.getuser()}",
                                      now=moment, expires_at=expires_at)
    except LedgerError as error:
        fail(error)
    if as_json:
        emit_json({"token": token, **row})
    else:
        print(token)  # alone on stdout, for `TOKEN=$(ledger token create ...)`
        if sys.stderr.isatty():  # the person at the terminal is told what it is; a script's stderr stays empty
            print(f"token {row['token_id']} for {row['name']} ({row['role']})"
                  + (f", expires {expires_at.isoformat()}" if expires_at else "") + ": shown once, keep it now",
                  file=sys.stderr)


@token_app.command("list")
def token_list(as_json: bool = typer.Option(False, "--json", help="print the tokens (or the refusal) as JSON")
               ) -> None:
    """Every token: id, principal, role, created, expiry, revocation (never the secret)."""
    from ledger.cli.output import count, emit_json, table
    from ledger.store.principals import list_tokens

    try:
        with store() as db, db.connection() as conn:
            rows = list_tokens(conn)
            where = store_line(db, conn)
    except LedgerError as error:
        fail(error)
    if as_json:
        emit_json(rows)
        return
    print(where)
    if rows:
        print(table(["token_id", "name", "role", "created_at", "created_by", "expires_at", "revoked_at"],
                    [(r["token_id"], r["name"], r["role"], r["created_at"], r["created_by"], r["expires_at"],
                      r["revoked_at"]) for r in rows]))
    print(count(len(rows), "token"))


@token_app.command("revoke")
def token_revoke(token_id: str = typer.Argument(..., help="the token's token_id (from `ledger token list`)"),
                 as_json: bool = typer.Option(False, "--json", help="print the revoked token's record (or the "
                                                                     "refusal) as one JSON object")) -> None:
    """Revoke a token from now on (its requests get 401)."""
    from ledger.cli.output import emit_json
    from ledger.store.principals import revoke_token

    try:
        id_argument(token_id, "TOKEN_ID")
        with store() as db, db.connection() as conn:
            row = revoke_token(conn, token_id, revoked_by=f"cli:{getpass.getuser()}", now=now())
    except LedgerError as error:
        fail(error)
    if as_json:
        emit_json(row)
    else:
        print(f"token {row['token_id']} ({row['name']}, {row['role']}) revoked at {row['revoked_at']} "
              f"by {row['revoked_by']}")
