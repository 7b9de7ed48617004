"""What a superuser can do to a store behind the ledger's back, for the tests of `verify` and the anchors."""

from __future__ import annotations

import psycopg

from ledger.store.appender import GENESIS, chain_hash


def tamper(conn: psycopg.Connection, statement: str, *params) -> None:
    """Rewrite facts as a superuser with triggers disabled: the one way around the immutability triggers."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(statement, params)


def rechain(conn: psycopg.Connection) -> None:
    """Recompute every link of the chain, as a superuser who knows its formula does to hide an edit."""
    previous = GENESIS
    for position, stream, version, topic, state in conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM ledger_events"
            " ORDER BY 1").fetchall():
        previous = chain_hash(previous, position, topic, bytes(state), stream.bytes, version)
        tamper(conn, "UPDATE ledger_events SET chain_hash = %s WHERE notification_id = %s", previous, position)
