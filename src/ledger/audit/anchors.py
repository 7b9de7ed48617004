"""Signed anchors: the chain heads signed with an Ed25519 key kept outside the database (`ledger anchor`).

Someone with the database's superuser password can rewrite facts and recompute every link after them; he cannot
sign. An anchor is one JSON line:

    {"format": "ledger-anchor-1", "position": P, "chain_hash": H, "quarantine_id": Q, "quarantine_hash": QH,
     "anchored_at": T, "oldest_session_at": S, "public_key": K, "signature": SIG}

signed over `signed_bytes()`. `ledger verify --anchors FILE` checks each one against the trusted public key:
1. **signature**: the anchor verifies under the key it names;
2. **trusted key**: that key is the trusted one (LEDGER_ANCHOR_PUBLIC_KEY, else the public half of
   LEDGER_ANCHOR_KEY);
3. **chain**: position P is still in the log and the link recomputed there equals H;
4. **quarantine**: quarantine record Q is still there and the quarantine link recomputed there equals QH;
5. **recorded after**: no fact after P says it was recorded before S, the start of the oldest database session
   open when the anchor was signed (less `CLOCK_SLACK`): such a fact could not have been appended by any command
   running then, so it was written behind the ledger's back, with a back-dated time.
A fact forged after the newest anchor with the current time is caught by the next anchor's rule 3 only if it is
then removed; the anchors bound what can be rewritten, not what can be added after them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import ConfigurationError

FORMAT = "ledger-anchor-1"
CLOCK_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class SignedAnchor:
    position: int | None
    chain_hash: str
    quarantine_id: int | None
    quarantine_hash: str
    anchored_at: str
    oldest_session_at: str
    public_key: str
    signature: str = ""

    def signed_bytes(self) -> bytes:
        return "\n".join((FORMAT, str(self.position), self.chain_hash, str(self.quarantine_id), self.quarantine_hash,
                          self.anchored_at, self.oldest_session_at, self.public_key)).encode()

    def as_json(self) -> str:
        return json.dumps({"format": FORMAT, **self.__dict__}, sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> "SignedAnchor":
        try:
            value = json.loads(text)
            if value.pop("format") != FORMAT:
                raise ValueError("unknown format")
            return cls(**value)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise ValueError(f"not a signed anchor ({error}): {text[:80]!r}") from None


def load_private_key(path: Path, *, create: bool) -> Ed25519PrivateKey:
    """The signing key at `path`; with `create`, a new one is made there (mode 0600) when none exists."""
    if not path.exists():
        if not create:
            raise ConfigurationError(f"no anchor key at {path} (LEDGER_ANCHOR_KEY); `ledger anchor` creates one")
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "wb") as out:
            out.write(pem)
        return key
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"the anchor key {path} cannot be read: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"the anchor key {path} is not an Ed25519 private key")
    return key


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def trusted_public_key(public_path: Path | None, private_path: Path) -> str:
    """The hex public key anchors must be signed with: the public key file if configured, else the private key's."""
    if public_path is not None:
        try:
            text = public_path.read_bytes()
            key = serialization.load_pem_public_key(text) if b"BEGIN" in text else \
                Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.decode().strip()))
        except (OSError, ValueError) as error:
            raise ConfigurationError(f"the anchor public key {public_path} cannot be read: {error}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigurationError(f"the anchor public key {public_path} is not an Ed25519 key")
        return public_hex(key)
    return public_hex(load_private_key(private_path, create=False).public_key())


def heads(conn: psycopg.Connection) -> dict[str, Any]:
    """The chain's and the quarantine's heads, read in one snapshot, and the start of the oldest other session."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        position, chain = conn.execute(
            "SELECT notification_id, chain_hash FROM ledger_events ORDER BY notification_id DESC LIMIT 1"
        ).fetchone() or (None, None)
        quarantine_id, quarantine = conn.execute(
            "SELECT quarantine_id, chain_hash FROM quarantine ORDER BY quarantine_id DESC LIMIT 1"
        ).fetchone() or (None, None)
        now, oldest = conn.execute(
            "SELECT now(), least(now(), (SELECT min(backend_start) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()))").fetchone()
    return {"position": position, "chain_hash": bytes(chain).hex() if chain else "", "quarantine_id": quarantine_id,
            "quarantine_hash": bytes(quarantine).hex() if quarantine else "", "anchored_at": _iso(now),
            "oldest_session_at": _iso(oldest)}


def sign(conn: psycopg.Connection, key: Ed25519PrivateKey) -> SignedAnchor:
    """An anchor of the store's current heads, signed."""
    unsigned = SignedAnchor(**heads(conn), public_key=public_hex(key.public_key()))
    return SignedAnchor(**{**unsigned.__dict__, "signature": key.sign(unsigned.signed_bytes()).hex()})


def signature_problem(anchor: SignedAnchor, trusted: str) -> str | None:
    """Rules 1 and 2: None when the anchor is signed by the trusted key, else why not."""
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(anchor.public_key)).verify(
            bytes.fromhex(anchor.signature), anchor.signed_bytes())
    except (InvalidSignature, ValueError):
        return "its signature does not verify: the anchor was forged or altered"
    if anchor.public_key != trusted:
        return f"it is signed by key {anchor.public_key[:16]}…, not the trusted anchor key {trusted[:16]}…"
    return None


def recorded_bound(anchor: SignedAnchor) -> datetime:
    return datetime.fromisoformat(anchor.oldest_session_at) - CLOCK_SLACK


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")
