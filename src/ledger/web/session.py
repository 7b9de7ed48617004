"""Sign-in for the web pages: a token from `ledger token create` is exchanged for a session cookie.

The cookie (HttpOnly, SameSite=Strict, Path=/web) holds the token's id, when it was signed in and a nonce, sealed
with an HMAC under the service's session key; the token itself is never kept. Every request looks the token up
again, so a revoked or expired token ends its sessions at once. Each session has its CSRF token (an HMAC of its
nonce), which every form that changes something carries and the server checks.

The session key: LEDGER_WEB_SECRET, else a random key kept in LEDGER_HOME/web-session.key (created once, mode 0600,
shared by every worker of the service).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson
import psycopg

from ledger.settings import Settings
from ledger.store.principals import Principal

COOKIE = "ledger_session"
SIGNIN_COOKIE = "ledger_signin"
MAX_AGE = 8 * 3600  # a session lasts a working day at most


def session_key(settings: Settings) -> bytes:
    """The key sessions are sealed with (see the module's text)."""
    configured = os.environ.get("LEDGER_WEB_SECRET")
    if configured:
        return hashlib.sha256(configured.encode()).digest()
    path = Path(settings.home) / "web-session.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".web-session.key.{os.getpid()}")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
        try:
            os.link(staged, path)  # the first worker's key wins; the others read it
        except FileExistsError:
            pass
        finally:
            staged.unlink()
    key = path.read_bytes()
    if len(key) < 32:
        raise RuntimeError(f"{path}: a web session key holds 32 bytes; delete the file to make a new one")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, data: str) -> str:
    return _b64(hmac.new(key, f"{purpose}\x00{data}".encode(), hashlib.sha256).digest())


@dataclass(frozen=True)
class Session:
    token_id: str
    signed_in: int
    nonce: str


def seal(key: bytes, token_id: str, now: float | None = None) -> str:
    body = _b64(orjson.dumps({"t": token_id, "s": int(now or time.time()), "n": secrets.token_urlsafe(16)}))
    return f"{body}.{_mac(key, 'session', body)}"


def unseal(key: bytes, value: str | None, now: float | None = None) -> Session | None:
    """The session a cookie holds, or None when it is missing, forged, or older than MAX_AGE."""
    if not value or value.count(".") != 1:
        return None
    body, mac = value.split(".")
    if not hmac.compare_digest(mac, _mac(key, "session", body)):
        return None
    try:
        data = orjson.loads(_unb64(body))
        session = Session(str(data["t"]), int(data["s"]), str(data["n"]))
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return None
    if (now or time.time()) - session.signed_in > MAX_AGE:
        return None
    return session


def csrf_token(key: bytes, nonce: str) -> str:
    return _mac(key, "csrf", nonce)


def csrf_ok(key: bytes, nonce: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(sent, csrf_token(key, nonce))


def principal_of(conn: psycopg.Connection, token_id: str, now: datetime | None = None) -> Principal | str:
    """The principal of a signed-in token, or why it no longer is one (revoked, expired, unknown)."""
    now = now or datetime.now(timezone.utc)
    row = conn.execute(
        "SELECT t.name, t.role, t.expires_at, r.revoked_at FROM api_tokens t"
        " LEFT JOIN api_token_revocations r USING (token_id) WHERE t.token_id = %s", (token_id,)).fetchone()
    if row is None:
        return "unknown token"
    name, role, expires_at, revoked_at = row
    if revoked_at is not None:
        return f"token {token_id} was revoked at {revoked_at.isoformat()}"
    if expires_at is not None and expires_at <= now:
        return f"token {token_id} expired at {expires_at.isoformat()}"
    return Principal(name, role, token_id)
